"""Frame sources behind one interface: webcam, video file, image folder, synthetic renders.

Every source yields :class:`Frame` objects (RGB uint8 image + timestamp; synthetic frames
also carry their exact ground truth). ``open_source(spec)`` parses the user's ``--source``:

* ``synthetic`` or ``synthetic:focal=600,distance=0.3,model=PATH,...`` (see ``core.synthetic``)
* ``webcam`` / ``webcam:1`` / ``0`` (camera index, OpenCV, buffer size 1)
* a video file path (OpenCV video I/O)
* a folder of images (sorted by natural order; EXIF orientation is ignored on purpose)
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class SourceError(RuntimeError):
    """A source that cannot be opened or stopped delivering frames, with a reason."""


@dataclass(frozen=True)
class Frame:
    index: int
    timestamp_s: float
    rgb: np.ndarray  # (H, W, 3) uint8
    truth: Any = None  # core.synthetic.GroundTruth for synthetic frames
    name: str = ""  # file name for image folders

    @property
    def timestamp_ms(self) -> int:
        return int(round(self.timestamp_s * 1000))


class FrameSource:
    """Base class: iterate for frames; ``close()`` releases the device or file."""

    name: str = "source"
    is_live: bool = False
    fps: float | None = None
    size: tuple[int, int] = (0, 0)  # (width, height), known after opening
    num_frames: int | None = None  # None when unknown or endless

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def close_quietly(source: FrameSource | None) -> None:
    """Close a source at the end of a run whatever happens (a vanished device may fail to close;
    there is nothing left to lose), so the closing never hides the error that ended the run."""
    if source is None:
        return
    try:
        source.close()
    except Exception:  # noqa: BLE001
        pass


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class ImageFolderSource(FrameSource):
    """Images of a folder in natural order (or one image file); timestamps at ``fps`` (default 30)."""

    def __init__(self, folder: str | Path, fps: float = 30.0):
        folder = Path(folder)
        if folder.is_file():
            self.paths = [folder]
        else:
            self.paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not self.paths:
            raise SourceError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        self.name, self.fps, self.num_frames = str(folder), fps, len(self.paths)
        first = self._read(self.paths[0])
        self.size = (first.shape[1], first.shape[0])

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        import cv2  # noqa: PLC0415

        # IGNORE_ORIENTATION: pixels as stored, so landmarks match the file other tools read.
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise SourceError(f"{path}: not a readable image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            rgb = self._read(path)
            if (rgb.shape[1], rgb.shape[0]) != tuple(self.size):
                # The tracker's camera is the first image's; another size would be tracked in the wrong pixels.
                raise SourceError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]} pixels, but the sequence started at "
                                  f"{self.size[0]}x{self.size[1]}; every image of a sequence must have one size")
            yield Frame(i, i / self.fps, rgb, name=path.name)


class VideoFileSource(FrameSource):
    """A video file through OpenCV; timestamps from the container when it has them."""

    def __init__(self, path: str | Path):
        import cv2  # noqa: PLC0415

        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise SourceError(f"{self.path}: OpenCV cannot open this video (unsupported codec or not a video)")
        ok, first = self._cap.read()
        if not ok:
            self._cap.release()
            raise SourceError(f"{self.path}: the video has no readable frames")
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else 30.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.num_frames = count if count > 0 else None
        self.size = (first.shape[1], first.shape[0])
        self.name = str(self.path)

    def __iter__(self) -> Iterator[Frame]:
        import cv2  # noqa: PLC0415

        index = 0
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                return
            pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            ts = pos_ms / 1000.0 if pos_ms and pos_ms > 0 else index / self.fps
            yield Frame(index, ts, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1

    def close(self) -> None:
        self._cap.release()


class WebcamSource(FrameSource):
    """A live camera (OpenCV, buffer size 1 so frames are fresh). Raises SourceError if it vanishes."""

    is_live = True
    MAX_FAILED_READS = 15  # ~0.5 s of silence at 30 fps before we call the camera gone

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None):
        import cv2  # noqa: PLC0415

        self.index = index
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            raise SourceError(f"no camera at index {index} (is it connected and not used by another program?)")
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        ok, first = self._cap.read()
        if not ok:
            self._cap.release()
            raise SourceError(f"camera {index} opened but delivers no frames")
        self.size = (first.shape[1], first.shape[0])
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        self.name = f"webcam:{index}"

    def __iter__(self) -> Iterator[Frame]:
        import cv2  # noqa: PLC0415

        start, index, failures = time.monotonic(), 0, 0
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                failures += 1
                if failures >= self.MAX_FAILED_READS:
                    raise SourceError(f"camera {self.index} stopped delivering frames (unplugged?)")
                time.sleep(0.03)
                continue
            failures = 0
            yield Frame(index, time.monotonic() - start, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1

    def close(self) -> None:
        self._cap.release()


def list_webcams(max_index: int = 6) -> list[int]:
    """Indices of cameras OpenCV can open (quietly probes the first few)."""
    import cv2  # noqa: PLC0415

    found = []
    for i in range(max_index):
        if not Path(f"/dev/video{i}").exists() and Path("/dev").is_dir() and Path("/proc").is_dir():
            continue  # Linux: skip the slow probe of a device node that does not exist
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            found.append(i)
        cap.release()
    return found


def parse_options(text: str) -> dict[str, str]:
    """``"a=1,b=x"`` -> {"a": "1", "b": "x"}; raises SourceError on malformed pairs."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise SourceError(f"expected key=value, got {part!r}")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def open_source(spec: str, **overrides) -> FrameSource:
    """Open a source from its ``--source`` text (see module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        from core.synthetic import SyntheticSource, SyntheticOptions  # noqa: PLC0415

        return SyntheticSource(SyntheticOptions.from_text(rest, **overrides))
    if kind == "webcam" or spec.isdigit():
        index = int(rest or 0) if kind == "webcam" else int(spec)
        return WebcamSource(index, overrides.get("width"), overrides.get("height"))
    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        return ImageFolderSource(path, overrides.get("fps", 30.0))
    if path.exists():
        return VideoFileSource(path)
    raise SourceError(f"source not found: {spec!r} (give a video file, an image folder, 'webcam[:N]' or "
                      "'synthetic[:key=value,...]')")



class FrameListSource(FrameSource):
    """Frames already in memory (benchmarks and tests: transformed copies of a clip, pre-rendered
    sequences). Not live: every frame is delivered, in order."""

    def __init__(self, frames: list[Frame], fps: float = 30.0, name: str = "frames"):
        if not frames:
            raise SourceError(f"{name}: no frames")
        height, width = frames[0].rgb.shape[:2]
        self.frames, self.size, self.fps, self.num_frames, self.name = frames, (width, height), fps, len(frames), name

    def __iter__(self) -> Iterator[Frame]:
        yield from self.frames
