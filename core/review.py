"""A recorded take (``.fcrec``) played back over its video, as frame results for a viewer.

:func:`locate_video` finds the take's source video from the path in its metadata
(``RecordingMeta.source``); :func:`video_mismatch` says why a video is not the take's (another
frame size, fewer frames than the take refers to). :class:`BlankSource` stands in for a missing
video: neutral frames of the take's size and rate (seekable), so the mesh still shows.

:class:`TakeFrames` turns a frame of the video into a ``core.pipeline.FrameResult`` holding the
recorded parameters and the head mesh posed by ``core.export.mesh_batches`` in camera space, drawn
with the recorded intrinsics (and the recorded lens: :func:`take_lens_remap`). Frames the take does
not hold (dropped while tracking live, or outside the take) come back without a pose. The meshes
are posed in batches ahead of the position (playback is sequential), on the thread that asks,
never a GUI thread. Nothing here imports Qt.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.constants import FOCAL_STATES, NUM_LANDMARKS, TRACKING_STATES
from core.sources import IMAGE_SUFFIXES, Frame, FrameSource, SourceError

NEUTRAL_RGB = (58, 60, 64)  # the background of a take without its video


def take_frame_count(rec) -> int:
    """Frames of video the take refers to: up to its largest frame index."""
    return int(rec.frame_index.max()) + 1 if len(rec) else 0


def take_fps(rec) -> float:
    """The take's frame rate: the recorded one, else from its timestamps, else 30."""
    rate = rec.meta.frame_rate_hz
    if rate and rate > 0:
        return float(rate)
    if len(rec) >= 2:
        di = np.diff(rec.frame_index.astype(np.float64))
        dt = np.diff(rec.timestamp_s)
        ok = (di > 0) & (dt > 0)
        if ok.any():
            return float(np.median(di[ok] / dt[ok]))
    return 30.0


def locate_video(rec) -> Path | None:
    """The take's source video (a file or image folder) if it is still where the metadata says."""
    source = str(rec.meta.source or "")
    if not source or source.startswith(("webcam", "synthetic")):
        return None
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (Path(rec.path).parent / path) if not path.exists() else path
    return path if path.exists() else None


def is_recorded_from_file(rec) -> bool:
    """The take was tracked on a video file or image folder (not a camera or the synthetic source)."""
    source = str(rec.meta.source or "")
    return bool(source) and not source.startswith(("webcam", "synthetic"))


def video_mismatch(rec, size: tuple[int, int], num_frames: int | None) -> str | None:
    """Why a video of ``size`` (w, h) and ``num_frames`` is not the take's, or None if it fits."""
    meta = rec.meta
    if tuple(int(v) for v in size) != (int(meta.image_width), int(meta.image_height)):
        return (f"its frames are {size[0]}×{size[1]} but the take was tracked on {meta.image_width}×"
                f"{meta.image_height} frames")
    needed = take_frame_count(rec)
    if num_frames is not None and num_frames < needed:
        return f"it has {num_frames} frames but the take refers to frame {needed - 1}"
    return None


def open_take_video(rec, path: str | Path) -> FrameSource:
    """Open ``path`` as the take's video; SourceError when it cannot be opened or is not the take's."""
    from core.sources import open_source  # noqa: PLC0415

    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        path = path.parent  # an image of a folder: the folder
    source = open_source(str(path), fps=take_fps(rec)) if path.is_dir() else open_source(str(path))
    problem = video_mismatch(rec, source.size, source.num_frames)
    if problem is not None:
        source.close()
        raise SourceError(f"{path.name} is not the video of {Path(rec.path).name}: {problem}")
    return source


class BlankSource(FrameSource):
    """Neutral frames of a given size and rate (a take without its video); seekable."""

    seekable = True
    is_blank = True

    def __init__(self, size: tuple[int, int], num_frames: int, fps: float, name: str = "no video"):
        self.size, self.num_frames, self.fps, self.name = (int(size[0]), int(size[1])), int(num_frames), fps, name
        self._rgb = np.empty((self.size[1], self.size[0], 3), np.uint8)
        self._rgb[:] = NEUTRAL_RGB
        self._rgb.flags.writeable = False
        self.position = 0

    def read(self) -> Frame | None:
        if self.position >= self.num_frames:
            return None
        i = self.position
        self.position += 1
        return Frame(i, i / self.fps, self._rgb)

    def seek(self, index: int) -> None:
        self.position = min(max(0, int(index)), self.num_frames)

    def skip(self, count: int) -> None:
        self.seek(self.position + max(0, int(count)))

    def __iter__(self):
        while (frame := self.read()) is not None:
            yield frame


def take_lens_remap(rec):
    """The ``core.distortion.LensRemap`` of a take tracked through a calibrated lens, else None."""
    from core.distortion import LensDistortion, LensRemap  # noqa: PLC0415
    from core.export import finite_frames  # noqa: PLC0415

    lens = LensDistortion.from_dict(((rec.meta.extra or {}).get("intrinsics") or {}).get("distortion"))
    valid = np.flatnonzero(finite_frames(rec)) if len(rec) else np.empty(0, int)
    if lens.is_identity or not valid.size:
        return None
    return LensRemap(rec.intrinsics[valid[0]], lens, (rec.meta.image_width, rec.meta.image_height))


class TakeFrames:
    """Frame results of a take (module docstring). ``head``: the take's model
    (``core.export.resolve_model``), or None to show the recorded values without a mesh."""

    def __init__(self, rec, head=None, batch_size: int = 24, device: str = "cpu"):
        from core.export import finite_frames  # noqa: PLC0415

        self.rec, self.head, self.batch_size, self.device = rec, head, int(batch_size), device
        self.position_of = {int(f): p for p, f in enumerate(rec.frame_index.tolist())}
        self.posable = finite_frames(rec) if len(rec) else np.zeros(0, bool)
        self._meshes: dict[int, np.ndarray] = {}  # position -> (V, 3) camera-space vertices
        self._layer = None
        self.model_info = None
        if head is not None:
            from core.pipeline import ModelInfo  # noqa: PLC0415

            self.model_info = ModelInfo.from_head(head)

    def vertices(self, position: int) -> np.ndarray | None:
        """(V, 3) float32 camera-space vertices of the take's frame at ``position`` (read-only), or
        None without a model or a pose; posed with the next frames in one batch."""
        if self.head is None or not self.posable[position]:
            return None
        if position not in self._meshes:
            from core.export import mesh_batches  # noqa: PLC0415
            from core.head_model import HeadModelLayer  # noqa: PLC0415

            if self._layer is None:
                self._layer = HeadModelLayer(self.head, device=self.device)
            ahead = np.flatnonzero(self.posable[position:])[: self.batch_size] + position
            self._meshes = {}  # playback moves on: only the newest batch is kept
            for idx, verts in mesh_batches(self.rec, self.head, "camera", self.batch_size, ahead, self.device,
                                           layer=self._layer):
                for p, v in zip(idx.tolist(), verts):
                    v.flags.writeable = False
                    self._meshes[p] = v
        return self._meshes[position]

    def track_result(self, frame: Frame):
        """The recorded ``core.tracker.TrackResult`` of a video frame (no pose when the take lacks it)."""
        from core.tracker.types import TrackResult  # noqa: PLC0415

        rec = self.rec
        p = self.position_of.get(frame.index)
        nan2 = np.full((NUM_LANDMARKS, 2), np.nan)
        if p is None:
            near = int(np.argmin(np.abs(rec.frame_index - frame.index))) if len(rec) else None
            intr = rec.intrinsics[near].astype(np.float64) if near is not None else np.full(4, np.nan)
            z = np.zeros
            return TrackResult(frame.index, frame.timestamp_s, "no_face", z(rec.meta.num_shape), z(rec.meta.num_expr),
                               z(3), z(3), z(3), z(3), z(6), intr, float("nan"), float("nan"), "fixed",
                               float("nan"), 0.0, nan2, nan2, 0, rec.meta.camera_mode)
        landmarks = nan2
        if rec.landmarks_px is not None and rec.landmarks_px.shape[1] == NUM_LANDMARKS:
            landmarks = rec.landmarks_px[p].astype(np.float64)
        code = lambda names, c: names[c] if c < len(names) else str(c)  # noqa: E731
        f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
        return TrackResult(
            frame_index=frame.index, timestamp_s=float(rec.timestamp_s[p]),
            tracking_state=code(TRACKING_STATES, int(rec.tracking_state[p])), shape=f64(rec.shape_per_frame[p]),
            expr=f64(rec.expr[p]), rotation=f64(rec.rotation[p]), translation=f64(rec.translation[p]),
            neck_pose=f64(rec.neck_pose[p]), jaw_pose=f64(rec.jaw_pose[p]), eyes_pose=f64(rec.eyes_pose[p]),
            intrinsics=f64(rec.intrinsics[p]), rho_per_m=float(rec.rho_per_m[p]),
            focal_sigma_px=float(rec.focal_sigma_px[p]), focal_state=code(FOCAL_STATES, int(rec.focal_state[p])),
            fit_error_px=float(rec.fit_error_px[p]), confidence=float(rec.confidence[p]), landmarks_px=landmarks,
            fitted_landmarks_px=nan2, shape_version=0, camera_mode=rec.meta.camera_mode,
            scale_px_per_m=float(rec.scale_px_per_m[p]))

    def result(self, frame: Frame, cut: bool = False):
        """The ``core.pipeline.FrameResult`` to show for a video frame."""
        from core.landmarks import LandmarkResult  # noqa: PLC0415
        from core.pipeline import FrameResult  # noqa: PLC0415

        p = self.position_of.get(frame.index)
        verts = None if p is None else self.vertices(p)
        track = self.track_result(frame)
        lm = LandmarkResult(frame.timestamp_ms, (frame.rgb.shape[1], frame.rgb.shape[0]), None, 0)
        return FrameResult(frame, lm, track, 0.0, 0.0, 0.0, mesh_vertices_cam=verts, cut=cut)
