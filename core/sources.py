"""Frame sources behind one interface: webcam, video file, image folder, synthetic renders.

Every source yields :class:`Frame` objects (RGB uint8 image + timestamp; synthetic frames
also carry their exact ground truth). ``open_source(spec)`` parses the user's ``--source``:

* ``synthetic`` or ``synthetic:focal=600,distance=0.3,model=PATH,...`` (see ``core.synthetic``)
* ``webcam`` / ``webcam:1`` / ``0`` (camera index, OpenCV, buffer size 1)
* a video file path (OpenCV video I/O)
* a folder of images (sorted by natural order; EXIF orientation is ignored on purpose)

Files and folders are *seekable* (``seekable``): :meth:`FrameSource.seek` makes frame ``index`` the
next one read, exactly (frame ``i`` is the ``i``-th frame of a sequential read; see
:class:`VideoFileSource` for how that is checked), and iteration continues from there, so the
app's transport (``core.transport``) can play, pause, step and scrub a file.
"""
from __future__ import annotations

import bisect
import re
import threading
import time
from collections import OrderedDict
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
    seekable: bool = False  # seek(index) works (files and folders)

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def seek(self, index: int) -> None:
        """Make frame ``index`` the next one read (seekable sources only)."""
        raise SourceError(f"{self.name}: a live source cannot seek")

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
    """Images of a folder in natural order (or one image file); timestamps at ``fps`` (default 30).

    Seekable: :meth:`seek` sets the next image; iteration reads on from the current position."""

    seekable = True

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
        self.position = 0  # index of the next frame read

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        import cv2  # noqa: PLC0415

        # IGNORE_ORIENTATION: pixels as stored, so landmarks match the file other tools read.
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise SourceError(f"{path}: not a readable image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read(self) -> Frame | None:
        """The frame at :attr:`position` (then advance), None after the last."""
        i = self.position
        if i >= len(self.paths):
            return None
        self.position += 1
        path = self.paths[i]
        rgb = self._read(path)
        if (rgb.shape[1], rgb.shape[0]) != tuple(self.size):
            # The tracker's camera is the first image's; another size would be tracked in the wrong pixels.
            raise SourceError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]} pixels, but the sequence started at "
                              f"{self.size[0]}x{self.size[1]}; every image of a sequence must have one size")
        return Frame(i, i / self.fps, rgb, name=path.name)

    def seek(self, index: int) -> None:
        self.position = min(max(0, int(index)), len(self.paths))

    def skip(self, count: int) -> None:
        """Pass over ``count`` frames without reading them."""
        self.seek(self.position + max(0, int(count)))

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame


class VideoFileSource(FrameSource):
    """A video file through OpenCV; timestamps from the container when it has them.

    Seekable, exactly: frame ``i`` is always the ``i``-th frame a sequential read delivers.
    ``CAP_PROP_POS_FRAMES`` is OpenCV's frame number derived from each frame's timestamp; it is
    checked against the count of frames read after every read, and a seek through it is checked
    the same way after the frame is read. Where the two disagree (irregular timestamps) a seek
    decodes on from a position known to be right instead: the current one when the target lies
    ahead, else the start. Jumps ahead are decoded on (``grab``) rather than seeking when they are
    short or when no keyframe lies between (OpenCV's seek decodes from the keyframe before the
    target, which is then at or before the capture's position; phone and stock videos often have
    one keyframe every few seconds, some a single one). Where the keyframes are is read from the
    file's packets, without decoding, in a background thread started at the first seek
    (:attr:`keyframe_packets`; a file read straight through never needs them). With
    :meth:`keep_recent` the most recently read frames are kept, so stepping back costs nothing (the
    app's playback; off by default).
    """

    seekable = True
    GRAB_AHEAD_MAX = 24  # frames: decoding on is cheaper than a seek back to a keyframe and forward

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
        self.position = 0  # index of the next frame read
        self._cap_next = 0  # index of the frame the capture decodes next
        self._numbering_trusted = True  # OpenCV's POS_FRAMES has matched the frames counted so far
        self._counted_from_start = True  # the capture's position was reached by reading on from frame 0
        self._cache: "OrderedDict[int, Frame]" = OrderedDict()
        self._cache_max = 0
        self._frame_bytes = first.nbytes
        self.seeks = {"capture": 0, "grabbed": 0, "fallback": 0}  # how the capture was repositioned
        self.keyframe_packets: list[int] | None = None  # packet (decode-order) indices of keyframes, once known
        self._closing = False
        self._keyframe_scan: threading.Thread | None = None

    def find_keyframes(self) -> threading.Thread:
        """Start reading where the keyframes are (once; :meth:`seek` does it), in a background thread."""
        if self._keyframe_scan is None:
            self._keyframe_scan = threading.Thread(target=self._scan_keyframes, name="flamecam-keyframes",
                                                   daemon=True)
            self._keyframe_scan.start()
        return self._keyframe_scan

    def _scan_keyframes(self) -> None:
        """Fill :attr:`keyframe_packets` from the file's packets (demuxed, not decoded: a few ms per
        thousand frames); it stays None where OpenCV's backend cannot tell."""
        import cv2  # noqa: PLC0415

        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_FORMAT, -1])
        try:
            if not cap.isOpened():
                return
            keys, index = [], 0
            while not self._closing and cap.grab():
                if cap.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME):
                    keys.append(index)
                index += 1
            if not self._closing and keys:
                self.keyframe_packets = keys
        finally:
            cap.release()

    def _no_keyframe_before(self, index: int) -> bool:
        """Whether no keyframe lies after the capture's next frame and at or before ``index`` (packet
        order stands in for frame order: they differ by a few frames at most, which only makes a cost
        estimate a little off). Unknown keyframes: False."""
        keys = self.keyframe_packets
        if keys is None:
            return False
        after = bisect.bisect_right(keys, self._cap_next)
        return after == len(keys) or keys[after] > index

    def keep_recent(self, megabytes: float) -> None:
        """Keep up to ``megabytes`` of the most recently read frames for re-reading them without
        decoding (0: none). Their images are shared: callers must not write into them."""
        self._cache_max = int(megabytes * 1e6 // max(1, self._frame_bytes))
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    def read(self) -> Frame | None:
        """The frame at :attr:`position` (then advance), None after the last."""
        index = self.position
        frame = self._cache.get(index)
        if frame is not None:
            self._cache.move_to_end(index)
        else:
            frame = self._decode(index)
            if frame is None:
                return None
        self.position = index + 1
        return frame

    def seek(self, index: int) -> None:
        index = max(0, int(index))
        if self.num_frames is not None:
            index = min(index, self.num_frames)
        self.position = index
        self.find_keyframes()

    def skip(self, count: int) -> None:
        """Pass over ``count`` frames (decoded, not converted: cheaper than reading them)."""
        self.seek(self.position + max(0, int(count)))

    def _decode(self, index: int) -> Frame | None:
        import cv2  # noqa: PLC0415

        if index != self._cap_next:
            self._position_capture(index)
        ok, bgr = self._cap.read()
        if not ok:
            return None
        self._cap_next = index + 1
        if self._numbering_trusted and int(round(self._cap.get(cv2.CAP_PROP_POS_FRAMES))) != index + 1:
            # OpenCV's frame number disagrees with the count: irregular timestamps. Seek by counting
            # from now on; if OpenCV's numbering placed the capture, this frame may be the wrong one.
            self._numbering_trusted = False
            self._cache.clear()
            if not self._counted_from_start:
                self._position_capture(index)
                return self._decode(index)
        pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        ts = pos_ms / 1000.0 if pos_ms and pos_ms > 0 else index / self.fps
        frame = Frame(index, ts, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if self._cache_max:
            self._cache[index] = frame
            while len(self._cache) > self._cache_max:
                self._cache.popitem(last=False)
        return frame

    def _position_capture(self, index: int) -> None:
        """Make ``index`` the capture's next frame, exactly (see the class docstring)."""
        import cv2  # noqa: PLC0415

        ahead = index - self._cap_next
        if 0 < ahead and (ahead <= self.GRAB_AHEAD_MAX or not self._numbering_trusted
                          or self._no_keyframe_before(index)):
            self.seeks["grabbed"] += 1
            self._grab(ahead)
        elif self._numbering_trusted:
            self.seeks["capture"] += 1
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._cap_next = index  # checked after the read: POS_FRAMES must then be index + 1
            self._counted_from_start = False
        else:
            self.seeks["fallback"] += 1  # back to the start and decode on: slow, but exact
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._cap_next = 0
            self._counted_from_start = True
            self._grab(index)

    def _grab(self, count: int) -> None:
        for _ in range(count):
            if not self._cap.grab():
                break
            self._cap_next += 1

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self) -> None:
        self._closing = True
        if self._keyframe_scan is not None:
            self._keyframe_scan.join(timeout=5.0)
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
