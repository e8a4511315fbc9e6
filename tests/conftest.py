"""Shared test set-up: no downloads, a private cache, the ICT head from ../shared when present."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ICT_PATH = Path(os.environ.get("FLAMECAM_ICT", REPO.parent / "shared" / "data" / "ict_facekit_head.npz"))

# Before anything imports core: never download in tests; Qt without a screen.
os.environ["FLAMECAM_NO_DOWNLOAD"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest_plugins = ("tests.gui_windows",)  # the app_window fixture of the GUI tests


def pytest_configure(config):
    if os.environ.get("CI") and not ICT_PATH.exists():
        raise pytest.UsageError(f"CI must have the ICT head model at {ICT_PATH} (../shared/data); refusing to skip")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Caches written by tests go to a temporary folder, not the user's cache."""
    old = os.environ.get("FLAMECAM_CACHE")
    os.environ["FLAMECAM_CACHE"] = str(tmp_path_factory.mktemp("flamecam-cache"))
    yield
    if old is None:
        os.environ.pop("FLAMECAM_CACHE", None)
    else:
        os.environ["FLAMECAM_CACHE"] = old


@pytest.fixture(scope="session")
def ict_path() -> Path:
    if not ICT_PATH.exists():
        pytest.skip(f"ICT-FaceKit head model not found at {ICT_PATH} (it lives in ../shared/data beside the repo)")
    return ICT_PATH


@pytest.fixture(scope="session")
def ict_model(ict_path):
    from core.model_io import load_ict

    return load_ict(ict_path)


@pytest.fixture(scope="session")
def builtin_model():
    from core.model_io import load_head_model

    return load_head_model("builtin")


@pytest.fixture(autouse=True)
def _no_leftover_threads():
    """Like napari: a test that leaves a thread running fails."""
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    for t in leftover:
        t.join(timeout=2.0)
    leftover = [t for t in leftover if t.is_alive()]
    assert not leftover, f"threads left running: {[t.name for t in leftover]}"


@pytest.fixture(scope="module")
def gl():  # module scope: one context per test file
    """An EGL context with a MeshRenderer (the drawing code the Qt view runs in paintGL)."""
    try:
        from core.render import MeshRenderer, create_egl_context

        ctx = create_egl_context()
    except RuntimeError as exc:
        pytest.skip(f"no headless OpenGL here: {exc}")
    with ctx:
        renderer = MeshRenderer(ctx)
        yield ctx, renderer
        renderer.release()
    ctx.release()
