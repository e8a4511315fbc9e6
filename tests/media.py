"""Frames for tests that need edited footage: clips cut together, faces composited into one frame.

The real clips are read in place from ../shared/data/real (skipped when absent); synthetic heads
come from ``core.synthetic``. Nothing here is written into the repository.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from core.sources import Frame, FrameSource

# FLAMECAM_REAL overrides (like FLAMECAM_ICT; /nonexistent shows what a clone without ../shared runs).
REAL = Path(os.environ.get("FLAMECAM_REAL", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"))


def real_clip(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real clip {name} not found in {REAL} (../shared/data/real beside the repo)")
    return path


def read_frames(path: Path, size: tuple[int, int], start: int = 0, count: int | None = None) -> list[np.ndarray]:
    """RGB frames ``start .. start+count`` of a video, resized to ``size`` (width, height)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames, index = [], 0
    try:
        while count is None or len(frames) < count:
            ok, bgr = cap.read()
            if not ok:
                break
            if index >= start:
                frames.append(cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        cap.release()
    return frames


def synthetic_frames(count: int, **options) -> list[np.ndarray]:
    """``count`` rendered frames of ``synthetic:`` with these options."""
    from core.synthetic import SyntheticOptions, SyntheticSource

    source = SyntheticSource(SyntheticOptions(frames=count, **options))
    try:
        return [frame.rgb for frame in source]
    finally:
        source.close()


def write_video(frames: list[np.ndarray], path: Path, fps: float = 25.0) -> Path:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def paste(canvas: np.ndarray, image: np.ndarray, centre_xy: tuple[float, float], width: int,
          blur: int = 0) -> np.ndarray:
    """``image`` scaled to ``width`` pixels wide (aspect kept, optionally blurred) pasted into
    ``canvas`` centred at ``centre_xy`` (clipped at the borders). Returns the canvas."""
    import cv2

    h = int(round(image.shape[0] * width / image.shape[1]))
    small = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)
    if blur:
        small = cv2.GaussianBlur(small, (0, 0), blur)
    x0, y0 = int(round(centre_xy[0] - width / 2)), int(round(centre_xy[1] - h / 2))
    H, W = canvas.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + width, W), min(y0 + h, H)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = small[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return canvas


class FrameListSource(FrameSource):
    """A file-like source over frames in memory (no frame is dropped), at ``fps``."""

    def __init__(self, frames: list[np.ndarray], fps: float = 25.0, name: str = "frames in memory"):
        self.frames, self.fps, self.name = frames, fps, name
        self.size = (frames[0].shape[1], frames[0].shape[0])
        self.num_frames = len(frames)

    def __iter__(self) -> Iterator[Frame]:
        for i, rgb in enumerate(self.frames):
            yield Frame(i, i / self.fps, rgb)


def track_frames(frames: list[np.ndarray], fps: float = 25.0, **session_options):
    """Run ``frames`` through the app's session (``core.session.build_session``, built-in model unless
    given) and return the list of :class:`core.pipeline.FrameResult`."""
    from core.session import SessionOptions, build_session

    overrides = session_options.pop("tracker_overrides", {})
    # The joint refinement runs in the time the engine has to spare, so a run depends on the machine's
    # load; running every refinement to its end at once makes runs comparable.
    overrides = {"refine_units_per_frame": 10**6, **overrides}
    session = build_session(SessionOptions(source="frames", tracker_overrides=overrides, **session_options),
                            log=lambda message: None, source=FrameListSource(frames, fps))
    try:
        return list(session.pipeline.run())
    finally:
        session.close()
