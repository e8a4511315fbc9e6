"""The tracking engine: source -> landmarks -> (regressor) -> tracker -> recorder, headless.

Pipelined: a landmark thread reads frames and runs MediaPipe for the next frames while the caller's
thread fits frame t. File sources never drop a frame (the queue blocks); live sources keep only
the newest frame (latest wins); a live source that makes each frame when asked (a simulated
camera, ``frames_on_demand = True``) is read only when the tracker has taken the previous frame,
so no frame is rendered or detected just to be dropped. The tracker's joint refinement fills only
the time until the next frame's landmarks are due, so it never holds back an engine that runs flat
out. The same engine drives ``flamecam track`` and the GUI worker, which passes a ``stop`` event to
abort. Each frame yields one :class:`FrameResult`.

With a ``transport`` (``core.transport``; the app, on a video file or image folder) the landmark
thread reads the file as the transport says: at the file's frame rate (latest wins while playing
so) or as fast as the tracker goes, paused, stepped or seeking. Frames read before the latest seek
are dropped, and the tracker restarts the pose at a cut (``Tracker.reset_pose``).

The segmenter's look at each frame (``Segmenter.look``: thumbnails and face features) is
taken by whichever of the two threads has the less work of its own. Before the tracker,
:class:`core.segments.Segmenter` picks the tracked person among the faces in view (the ``--face``
rule at a segment's start, continuity after) and finds shot cuts and changes of person; a new
segment restarts the tracker's identity (and, after a cut, the focal length and the regressor's
focal belief).

``with_mesh=True`` (the GUI) also poses the full head mesh in camera space in the engine's thread,
so a viewer draws it with the frame's intrinsics and never touches torch; :class:`ModelInfo`
carries the per-model constants (triangles, vertex colours) once.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np

from core.constants import POSED_STATES
from core.head_model import HeadModel
from core.landmarks import FaceLandmarker, LandmarkerOptions, LandmarkResult
from core.segments import FrameLook, SegmentOptions, Segmenter
from core.sources import Frame, FrameSource
from core.tracker import FramePrior, Tracker, TrackResult


# Frames the landmark thread may detect ahead of the tracker on a file read flat out (``flamecam
# track``). The tracker's frames differ in cost (a refinement unit every few frames, a keyframe):
# with one frame of slack MediaPipe waits behind each slow frame and the tracker after it for
# MediaPipe; a few frames absorb that. Each is one decoded frame in memory.
FILE_AHEAD_FRAMES = 4


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.flags.writeable = False
    return array


@dataclass(frozen=True)
class ModelInfo:
    """Per-model constants a viewer needs beside the per-frame vertices (sent once per session)."""

    name: str
    kind: str  # flame | ict | builtin | npz
    description: str
    is_coarse: bool
    num_vertices: int
    num_shape: int
    num_expr: int
    faces: np.ndarray  # (F, 3) uint32, read-only
    vertex_rgb: np.ndarray | None  # (V, 3) float32 albedo in [0, 1], read-only; None: the viewer's grey

    @classmethod
    def from_head(cls, head: HeadModel) -> "ModelInfo":
        rgb = None if head.vertex_rgb is None else np.array(head.vertex_rgb, np.float32)
        return cls(name=head.name, kind=head.kind, description=head.description, is_coarse=head.is_coarse,
                   num_vertices=head.num_vertices, num_shape=head.num_shape, num_expr=head.num_expr,
                   faces=_frozen(np.array(head.faces, np.uint32)), vertex_rgb=_frozen(rgb))


@dataclass(frozen=True)
class FrameResult:
    """Everything known about one processed frame (immutable; flows to the UI and recorder)."""

    frame: Frame
    landmarks: LandmarkResult
    track: TrackResult
    landmarks_ms: float  # the landmark stage: MediaPipe (and the segmenter's look when it took it)
    tracker_ms: float
    latency_ms: float  # from the frame being read to its result
    warnings: tuple[str, ...] = ()
    # (V, 3) float32 camera-space vertices of the tracked head (OpenCV axes, metres; read-only), drawn
    # with ``track.intrinsics``. Only with ``TrackingPipeline(with_mesh=True)``; None without a pose.
    mesh_vertices_cam: np.ndarray | None = None
    mesh_ms: float = 0.0  # time spent posing the mesh (part of latency_ms)
    cut: bool = False  # reached by a jump (a seek): the pose was initialised afresh

    @property
    def num_faces(self) -> int:
        return self.landmarks.num_faces


class FrameTimes:
    """Per-frame timings (landmarks, tracker, latency; ms) for run statistics in bounded memory: every
    frame while fewer than ``capacity``, then a uniform random sample of the whole run (reservoir
    sampling, seeded), so a long session does not grow and its percentiles stay the whole run's."""

    COLUMNS = ("landmarks_ms", "tracker_ms", "latency_ms")

    def __init__(self, capacity: int = 8192, seed: int = 0):
        self._rows = np.zeros((capacity, len(self.COLUMNS)))
        self._seen = 0
        self._rng = np.random.default_rng(seed)

    def add(self, *values: float) -> None:
        capacity = len(self._rows)
        if self._seen < capacity:
            self._rows[self._seen] = values
        else:
            slot = int(self._rng.integers(0, self._seen + 1))
            if slot < capacity:
                self._rows[slot] = values
        self._seen += 1

    def column(self, name: str) -> list[float]:
        """The kept samples of one column (every frame's for runs shorter than the capacity)."""
        return self._rows[:min(self._seen, len(self._rows)), self.COLUMNS.index(name)].tolist()


@dataclass
class PipelineStats:
    frames: int = 0
    frames_with_face: int = 0
    dropped: int = 0
    times: FrameTimes = field(default_factory=FrameTimes)
    wall_s: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def landmarks_ms(self) -> list[float]:
        return self.times.column("landmarks_ms")

    @property
    def tracker_ms(self) -> list[float]:
        return self.times.column("tracker_ms")

    @property
    def latency_ms(self) -> list[float]:
        return self.times.column("latency_ms")

    def summary(self) -> dict:
        pct = lambda v, q: float(np.percentile(v, q)) if v else float("nan")  # noqa: E731
        return {"frames": self.frames, "frames_with_face": self.frames_with_face, "dropped": self.dropped,
                "fps": self.fps, "landmarks_ms_p50": pct(self.landmarks_ms, 50),
                "tracker_ms_p50": pct(self.tracker_ms, 50), "tracker_ms_p95": pct(self.tracker_ms, 95),
                "latency_ms_p50": pct(self.latency_ms, 50), "latency_ms_p95": pct(self.latency_ms, 95)}


_END = object()


class TrackingPipeline:
    """Runs one source through landmarks and the tracker. Iterate :meth:`run` for results."""

    def __init__(self, source: FrameSource, tracker: Tracker, landmarker_options: LandmarkerOptions | None = None,
                 prior_fn: Callable[[LandmarkResult, bool], FramePrior | None] | None = None, pipelined: bool = True,
                 max_frames: int | None = None, stop: threading.Event | None = None,
                 undistort: Callable[[np.ndarray], np.ndarray] | None = None, with_mesh: bool = False,
                 segments: SegmentOptions | None = None):
        self.source, self.tracker = source, tracker
        self.landmarker_options = landmarker_options or LandmarkerOptions(running_mode="video")
        # per-frame FramePrior (core.regressor.RegressorPrior) from (landmarks, pose_needed); None: landmarks only
        self.prior_fn = prior_fn
        self.pipelined = pipelined
        self.max_frames = max_frames
        self.stop = stop or threading.Event()
        self.undistort = undistort  # (N, 2) distorted pixels -> ideal pinhole pixels (lens calibration)
        self.stats = PipelineStats()
        self.error: BaseException | None = None
        self.with_mesh = with_mesh
        self._taken = threading.Event()  # the consumer took an item (on-demand live sources wait for it)
        self._taken.set()
        self._mesh_layer = None  # HeadModelLayer of the full mesh, built on first use (float32)
        self._mesh_identity = None  # (shape bytes, its HeadModelLayer.identity_template)
        self.transport = None  # core.transport.Transport: play a seekable source as it says (the app)
        self.on_idle: Callable[[], None] | None = None  # with a transport: called ~10x/s while no frame comes
        # Running means (s) that place the work: the landmark stage's whole duration (for the tracker's
        # spare time), MediaPipe's part of it, and the tracker stage's own work (without the joint
        # refinement, which fills spare time, and the segmenter's look).
        self._detecting_since: float | None = None  # perf_counter() at the start of the landmark stage under way
        self._stage_s, self._detect_s, self._fit_s = 0.006, 0.006, 0.0
        # The segmenter's look at a frame is taken by the faster of the two threads (the landmark
        # thread while the tracker is the slower one): the pair then runs at the pace of the slower.
        self._look_in_landmark_thread = True
        seg = segments or SegmentOptions()
        self.segmenter = Segmenter(replace(seg, face_rule=self.landmarker_options.select))

    @property
    def model_info(self) -> ModelInfo:
        """Triangles and colours of the tracked head model (what ``mesh_vertices_cam`` indexes)."""
        return ModelInfo.from_head(self.tracker.head)

    def _pose_mesh(self, track: TrackResult) -> np.ndarray | None:
        """(V, 3) float32 camera-space vertices of a track result, None when it has no pose."""
        if track.tracking_state not in POSED_STATES:
            return None
        params = (track.shape, track.expr, track.rotation, track.neck_pose, track.jaw_pose, track.eyes_pose,
                  track.translation)
        if not all(np.isfinite(p).all() for p in params):
            return None
        import torch  # noqa: PLC0415

        from core.camera import model_to_camera  # noqa: PLC0415
        from core.head_model import HeadModelLayer  # noqa: PLC0415

        device = self.tracker.dev
        if self._mesh_layer is None:
            self._mesh_layer = HeadModelLayer(self.tracker.head, device=device, dtype=torch.float32)
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device)[None]  # noqa: E731
        with torch.no_grad():
            key = np.asarray(track.shape, np.float32).tobytes()
            if self._mesh_identity is None or self._mesh_identity[0] != key:  # the identity changes rarely
                self._mesh_identity = (key, self._mesh_layer.identity_template(t(track.shape)[0]))
            verts = self._mesh_layer(None, t(track.expr), t(track.rotation), t(track.neck_pose), t(track.jaw_pose),
                                     t(track.eyes_pose), identity=self._mesh_identity[1])
            verts = model_to_camera(verts, t(track.translation))[0]
        return _frozen(verts.cpu().numpy().astype(np.float32, copy=False))

    def _frames(self) -> Iterator[Frame]:
        for i, frame in enumerate(self.source):
            if self.stop.is_set() or (self.max_frames is not None and i >= self.max_frames):
                return
            yield frame

    def _detect(self, landmarker: FaceLandmarker,
                frame: Frame) -> tuple[Frame, LandmarkResult, float, float, FrameLook | None]:
        """The landmark stage of a frame: MediaPipe, then (while the tracker is the slower thread)
        the segmenter's look at the frame, else None (the tracker's thread takes it)."""
        read_at = t0 = self._detecting_since = time.perf_counter()
        look = None
        try:
            result = landmarker.detect(frame.rgb, frame.timestamp_ms)
            detect_s = time.perf_counter() - t0
            if self._look_in_landmark_thread:
                look = self._look(frame, result)
        finally:
            self._detecting_since = None
        stage_s = time.perf_counter() - t0
        self._detect_s = 0.8 * self._detect_s + 0.2 * detect_s
        self._stage_s = 0.8 * self._stage_s + 0.2 * stage_s
        return frame, result, stage_s * 1000, read_at, look

    def _look(self, frame: Frame, result: LandmarkResult) -> FrameLook:
        return self.segmenter.look(frame.rgb, () if result.face is None else (result.face, *result.others))

    def _next_frame_in_s(self, items: queue.Queue) -> float:
        """Seconds until the landmark thread is expected to hand over the next frame: 0 when one is
        waiting, what is left of a landmark stage under way, else (reading a frame) a whole stage.
        The tracker's joint refinement fills only this time (``Tracker.step(next_frame_in_s=)``)."""
        if not items.empty():
            return 0.0
        since = self._detecting_since
        if since is None:
            return self._stage_s
        return max(0.0, since + self._stage_s - time.perf_counter())

    def _producer(self, out: queue.Queue, landmarker: FaceLandmarker) -> None:
        # A live source that makes each frame when asked (``frames_on_demand``, e.g. a simulated camera
        # in another process) is read only once the tracker has taken the previous item: the frame is
        # then the newest one, and no frame is produced or detected only to be dropped.
        on_demand = self.source.is_live and getattr(self.source, "frames_on_demand", False)
        transport = self.transport
        try:
            if transport is None:
                frames = ((frame, 0, False) for frame in self._frames())
            else:
                from core.transport import PlaybackReader  # noqa: PLC0415

                frames = iter(PlaybackReader(self.source, transport, self.stop))
            while True:
                if on_demand and not self._wait_until_taken(out):
                    return
                frame, generation, cut = next(frames, (None, 0, False))
                if frame is None:
                    return
                if transport is not None and not transport.is_current(generation):
                    continue  # a newer seek came while it was read
                item = (*self._detect(landmarker, frame), generation, cut)
                if self.source.is_live or (transport is not None and transport.drops_frames):
                    while True:  # latest wins: replace a result the tracker has not taken yet
                        try:
                            out.put_nowait(item)
                            break
                        except queue.Full:
                            try:
                                out.get_nowait()
                                self.stats.dropped += 1
                            except queue.Empty:
                                pass
                else:
                    while not self.stop.is_set():
                        try:
                            out.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer thread)
            self.error = exc
        finally:
            while True:
                try:
                    out.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self.stop.is_set():
                        try:
                            out.get_nowait()
                        except queue.Empty:
                            pass

    def _wait_until_taken(self, out: queue.Queue) -> bool:
        """Block until the consumer has taken the queued item (if any); False when stopping."""
        while True:
            while not self._taken.wait(0.05):
                if self.stop.is_set():
                    return False
            self._taken.clear()
            if out.empty():  # else the flag was from an earlier get and our item is still waiting
                return not self.stop.is_set()

    def run(self) -> Iterator[FrameResult]:
        """Yield a :class:`FrameResult` per processed frame; re-raises source errors at the end."""
        start = self._started_at = time.perf_counter()
        with FaceLandmarker(self.landmarker_options) as landmarker:
            if self.pipelined:
                # A file played at its own rate keeps one frame of slack: a tracker step that runs
                # long once (a refinement unit, a busy GUI) then costs no frame; latest wins beyond.
                # A live source keeps one (the newest); a file read flat out FILE_AHEAD_FRAMES.
                ahead = 2 if self.transport is not None else 1 if self.source.is_live else FILE_AHEAD_FRAMES
                items: queue.Queue = queue.Queue(maxsize=ahead)
                thread = threading.Thread(target=self._producer, args=(items, landmarker), name="flamecam-landmarks",
                                          daemon=True)
                thread.start()
                try:
                    while True:
                        try:
                            item = items.get(timeout=0.1 if self.on_idle is not None else None)
                        except queue.Empty:
                            self.on_idle()
                            continue
                        self._taken.set()
                        if item is _END:
                            break
                        if self.transport is not None and not self.transport.is_current(item[5]):
                            continue  # read before the latest seek
                        yield self._track(*item, next_frame_in_s=lambda: self._next_frame_in_s(items))
                finally:
                    self.stop.set()
                    while thread.is_alive():
                        try:
                            items.get(timeout=0.05)
                        except queue.Empty:
                            pass
                    thread.join()
            else:
                try:
                    for frame in self._frames():
                        yield self._track(*self._detect(landmarker, frame))
                except BaseException as exc:  # noqa: BLE001
                    self.error = exc
            self.stats.wall_s = time.perf_counter() - start
        if self.error is not None:
            raise self.error

    def _track(self, frame: Frame, lm: LandmarkResult, landmarks_ms: float, read_at: float,
               look: FrameLook | None, generation: int = 0, cut: bool = False,
               next_frame_in_s: Callable[[], float] | None = None) -> FrameResult:
        t0 = time.perf_counter()
        look_s = 0.0
        if look is None:
            look = self._look(frame, lm)
            look_s = time.perf_counter() - t0
        if cut:
            self.tracker.reset_pose()
            self.segmenter.jumped()
        warnings = []
        faces = list(look.faces)
        decision = self.segmenter.update(look, frame.timestamp_s, frame.index)
        if decision.start is not None:
            if decision.start.kind != "start":
                warnings.append(f"new segment {decision.start.segment_id} at frame {frame.index}: "
                                f"{decision.start.reason}")
            self.tracker.start_segment(decision.start)
            if decision.start.reset_focal and hasattr(self.prior_fn, "reset"):
                self.prior_fn.reset()  # the regressor's focal belief belongs to the old shot
        face = decision.face
        if face is not lm.face or len(faces) != lm.num_faces:  # the followed person first, as LandmarkResult.face
            lm = replace(lm, face=face, others=tuple(f for f in faces if f is not face), num_faces=len(faces))
        if lm.num_faces > 1:
            warnings.append(f"{lm.num_faces} faces in view; tracking the person chosen at the segment's start "
                            f"(--face {self.landmarker_options.select}), followed by position and size")
        points = None if face is None else face.landmarks_px
        seen = lm
        if points is not None and self.undistort is not None:
            points = self.undistort(points)
            seen = replace(lm, face=replace(face, landmarks_px=points))  # the prior sees the ideal pinhole too
        prior = None
        if self.prior_fn is not None and face is not None:  # (may skip work when no pose is needed)
            prior = self.prior_fn(seen, self.tracker.needs_pose_prior(frame.timestamp_s))
        track = self.tracker.step(points, frame.timestamp_s, frame.index,
                                  prior=prior, presence=None if face is None else face.presence,
                                  other_faces=face is None and lm.num_faces > 0,
                                  next_frame_in_s=next_frame_in_s)
        tracker_ms = (time.perf_counter() - t0) * 1000
        own_s = tracker_ms / 1000 - look_s - self.tracker.last_refinement_s
        self._fit_s = 0.8 * self._fit_s + 0.2 * own_s
        self._look_in_landmark_thread = self._fit_s > self._detect_s
        mesh, mesh_ms = None, 0.0
        if self.with_mesh:
            t1 = time.perf_counter()
            mesh = self._pose_mesh(track)
            mesh_ms = (time.perf_counter() - t1) * 1000
        latency_ms = (time.perf_counter() - read_at) * 1000
        s = self.stats
        s.frames += 1
        s.frames_with_face += face is not None
        s.times.add(landmarks_ms, tracker_ms, latency_ms)
        s.wall_s = time.perf_counter() - self._started_at  # kept current: an interrupted run never reaches the end
        return FrameResult(frame, lm, track, landmarks_ms, tracker_ms, latency_ms, tuple(warnings),
                           mesh_vertices_cam=mesh, mesh_ms=mesh_ms, cut=cut)
