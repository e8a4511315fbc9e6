"""One session builder for ``flamecam track``, the app and the benchmarks.

:func:`build_session` turns what the user chose (:class:`SessionOptions`) into a running set-up:
source → intrinsics plan (``core.intrinsics``) → head model and landmark embedding → tracker →
regressor prior → :class:`core.pipeline.TrackingPipeline`, plus the :class:`core.recording.RecordingMeta`
that describes it. Every failure is a :class:`SessionError` with one complete sentence and whether
it was the user's input (exit code 2) or something else (exit code 1). Nothing here imports Qt;
the heavy modules (torch, MediaPipe) load only when a session is built.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from core.constants import DEFAULT_MAX_FACES

COARSE_NOTICE = ("note: using the built-in head model, a coarse fallback made from MediaPipe's canonical face "
                 "mesh; FLAME is recommended (--model generic_model.pkl; free for research at "
                 "https://flame.is.tue.mpg.de).")


@dataclass(frozen=True)
class SessionOptions:
    """What the user chose; the CLI and the GUI both fill one of these."""

    source: str = "auto"  # auto: the first webcam, else the synthetic source
    model: str = "builtin"
    camera_mode: str = "perspective"  # perspective | ortho
    focal: str = "auto"  # auto | a focal length in pixels
    fov_deg: float | None = None  # fixed focal given as horizontal field of view
    landmarker: str | None = None
    embedding: str | None = None
    device: str = "cpu"  # cpu | cuda | auto (CUDA when torch sees a GPU)
    max_frames: int | None = None
    store_landmarks: bool = True
    keep_history: bool = False
    tracker_overrides: dict = field(default_factory=dict)
    camera_profile: str | None = None  # a stored profile's name or a file (.json, OpenCV .yaml, K/dist .npz)
    auto_profile: bool = True  # use the stored profile of the camera that opened, if there is one
    use_metadata: bool = True  # photo/video focal-length metadata as the focal prior
    regressor: str = "auto"  # auto: the model's trained regressor if any (core.regressor lookup) | none | a .onnx path
    face: str = "largest"  # which face to track when several are in view: largest | centre
    max_faces: int = DEFAULT_MAX_FACES  # faces MediaPipe looks for (1: footage of one person, less CPU)
    # Render the synthetic source in a child process (the app: ModernGL holds the GIL while it renders).
    synthetic_in_subprocess: bool = False


class SessionError(Exception):
    """A session that cannot start, with one complete sentence for people.

    ``bad_input``: the user's choice is at fault (a missing file, a wrong model, a bad option:
    exit code 2); otherwise something failed on the way (exit code 1).
    """

    def __init__(self, message: str, bad_input: bool = True):
        super().__init__(message)
        self.message = message
        self.bad_input = bad_input


def set_tracker_threads(count: int | None = None) -> int:
    """Torch intra-op threads for the tracker: half the cores (1 on 2 cores; FLAMECAM_TORCH_THREADS
    overrides). The tracker runs many small ops; when its threads compete with the UI, the landmark
    thread and the source, each op waits at the thread pool's barrier for a descheduled worker.
    Measured here (2 cores, busy machine): 2 threads 190-360 ms per tracker step, 1 thread 33 ms."""
    import torch  # noqa: PLC0415

    if count is None:
        env = os.environ.get("FLAMECAM_TORCH_THREADS")
        count = int(env) if env else max(1, min(4, (os.cpu_count() or 2) // 2))
    torch.set_num_threads(count)
    return count


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; other values unchanged."""
    if requested != "auto":
        return requested
    import torch  # noqa: PLC0415

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_source(spec: str) -> tuple[str, str | None]:
    """'auto' -> the first webcam or 'synthetic' (with a notice); other specs unchanged."""
    from core.sources import list_webcams  # noqa: PLC0415

    if spec != "auto":
        return spec, None
    cams = list_webcams()
    if cams:
        return f"webcam:{cams[0]}", None
    return "synthetic", "no webcam found; using the synthetic source (a rendered head with known ground truth)"


def open_session_source(options: SessionOptions, log=print, wait: bool = True):
    """The session's frame source (the one place a ``--source`` spec is resolved and opened).

    Raises :class:`core.sources.SourceError` (or OSError/ValueError) when it cannot be opened.
    ``wait=False``: a source in a child process may still be starting (``ProcessSource``); its
    ``wait_ready()`` raises SourceError then."""
    from core.sources import open_source  # noqa: PLC0415

    spec, notice = resolve_source(options.source)
    if notice:
        log(f"note: {notice}")
    if options.synthetic_in_subprocess and spec.split(":", 1)[0] == "synthetic":
        from core.process_source import ProcessSource  # noqa: PLC0415

        return ProcessSource(spec, wait=wait)
    return open_source(spec)


def _file_identity(path: str | None) -> tuple:
    """What a file's cached load is keyed on: its resolved path, size and modification time."""
    if path is None or path == "builtin" or not os.path.isfile(path):
        return (path,)
    stat = os.stat(path)
    return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


def load_model_and_embedding(options: SessionOptions, log=print, cache: dict | None = None):
    """(HeadModel, LandmarkEmbedding) for ``options.model`` (the embedding is cached per model file).

    ``cache``: a dict the caller keeps for the life of its process (a batch worker), so that each model
    file is read and embedded once per process, not once per session; keyed by the files' identity."""
    from core.embedding import embedding_for, embedding_is_cached  # noqa: PLC0415
    from core.model_io import load_head_model  # noqa: PLC0415

    key = ("model", _file_identity(options.model), _file_identity(options.embedding))
    if cache is not None and key in cache:
        return cache[key]
    head = load_head_model(None if options.model == "builtin" else options.model)
    if head.is_coarse:
        log(COARSE_NOTICE)
    if options.embedding is None and not embedding_is_cached(head):
        log(f"landmark embedding for {head.name}: learned once from renders (~30 s), then cached")
    loaded = head, embedding_for(head, user_file=options.embedding)
    if cache is not None:
        cache[key] = loaded
    return loaded


def tracker_options(options: SessionOptions, plan, image_size: tuple[int, int]):
    """The :class:`core.tracker.TrackerOptions` of a session (the same for the CLI and the app)."""
    from core.tracker import TrackerOptions, default_focal_prior  # noqa: PLC0415

    topts = TrackerOptions(camera_mode=options.camera_mode, device=options.device, keep_history=options.keep_history,
                           **{**plan.tracker_fields(), **options.tracker_overrides})
    if topts.camera_mode == "ortho" and topts.focal_px is None:
        # Weak perspective has no focal length; a nominal one only converts its scale to a depth.
        nominal = (topts.focal_prior or default_focal_prior(*image_size)).focal_px
        topts = replace(topts, focal_px=nominal)
    return topts


def load_regressor_prior(head, options: SessionOptions, estimate_focal: bool, log=print):
    """(RegressorPrior or None, a sentence saying which regressors serve, or that none does).

    The shipped camera regressor (pose, placement, focal belief; any head model) and, when one
    exists, the head model's own coefficient regressor (``--regressor auto`` finds it, a path
    names it). ``--regressor none``: neither. An explicit file that does not fit is a
    :class:`SessionError`."""
    from core.camera_regressor import CameraRegressorError  # noqa: PLC0415
    from core.regressor import NO_REGRESSOR_MESSAGE, RegressorError, RegressorPrior, load_regressor  # noqa: PLC0415

    if options.regressor == "none":
        message = "no regressors (--regressor none): the pose starts from the landmarks alone"
        log(f"note: {message}")
        return None, message
    explicit = None if options.regressor == "auto" else options.regressor
    try:
        regressor, message = load_regressor(head, explicit, options.camera_mode, device=options.device)
    except RegressorError as exc:
        raise SessionError(str(exc)) from None
    camera = None
    if options.camera_mode == "perspective":
        try:
            camera = _camera_regressor()
        except CameraRegressorError as exc:
            log(f"note: camera regressor unusable ({exc}); the focal length rests on the other evidence")
    if regressor is None:
        message = message.replace(NO_REGRESSOR_MESSAGE, "no coefficient regressor for this model")
    if camera is not None:
        message += f"; camera regressor: {camera.path.name} (pose and focal belief, any head model)"
    log(f"note: {message}")
    if regressor is None and camera is None:
        return None, message
    return RegressorPrior(regressor, camera, estimate_focal=estimate_focal), message


_CAMERA_REGRESSOR = None


def _camera_regressor():
    """The shipped camera regressor, loaded once per process (sessions and batch workers share it)."""
    global _CAMERA_REGRESSOR
    if _CAMERA_REGRESSOR is None:
        from core.camera_regressor import CameraRegressor  # noqa: PLC0415

        _CAMERA_REGRESSOR = CameraRegressor()
    return _CAMERA_REGRESSOR


@dataclass
class Session:
    """A built session: everything a run needs, and how to describe it in a recording."""

    options: SessionOptions
    source: object  # core.sources.FrameSource
    plan: object  # core.intrinsics.IntrinsicsPlan
    head: object  # core.head_model.HeadModel
    tracker: object  # core.tracker.Tracker
    pipeline: object  # core.pipeline.TrackingPipeline
    regressor_prior: object | None  # core.regressor.RegressorPrior
    regressor_message: str
    notices: tuple[str, ...] = ()

    @property
    def focal_mode(self) -> str:
        return self.plan.mode

    @property
    def image_size(self) -> tuple[int, int]:
        w, h = self.source.size
        return int(w), int(h)

    def recording_meta(self, **extra):
        """The :class:`core.recording.RecordingMeta` of this session (``extra`` goes into ``meta.extra``)."""
        from core.constants import NUM_LANDMARKS  # noqa: PLC0415
        from core.recording import RecordingMeta  # noqa: PLC0415

        o = self.options
        camera = dict(self.plan.recording_fields())
        camera["extra"] = {**camera.get("extra", {}), "regressor": self.regressor_message, **extra}
        width, height = self.image_size
        return RecordingMeta.for_model(
            self.head, o.model, width, height, source=self.source.name, frame_rate_hz=self.source.fps,
            camera_mode=o.camera_mode, landmark_count=NUM_LANDMARKS if o.store_landmarks else 0, **camera)

    def close(self) -> None:
        from core.sources import close_quietly  # noqa: PLC0415

        close_quietly(self.source)


def build_session(options: SessionOptions, log: Callable[[str], None] = print, stop: threading.Event | None = None,
                  source=None, with_mesh: bool = False, pipelined: bool = True,
                  model_cache: dict | None = None) -> Session:
    """Build a session (see the module docstring). ``source``: an already opened source to use
    instead of ``options.source``; ``stop``: an event that aborts the run; ``with_mesh``: the
    pipeline also poses the full mesh for a viewer; ``model_cache``: a per-process dict that keeps
    loaded models between sessions (see :func:`load_model_and_embedding`; the regressor has its own
    process cache in ``core.regressor``). Raises :class:`SessionError`; the source is closed on failure."""
    from core.sources import SourceError, close_quietly  # noqa: PLC0415

    notices: list[str] = []

    def note(message: str) -> None:
        notices.append(message[len("note: "):] if message.startswith("note: ") else message)
        log(message)

    if source is None:
        # First: a source opening in a child process (the app's synthetic source imports torch and
        # sets up its renderer, seconds) then starts while this process loads torch and MediaPipe.
        try:
            source = open_session_source(options, log=note, wait=False)
        except (SourceError, OSError, ValueError) as exc:
            raise SessionError(f"cannot open the source {options.source!r}: {exc}") from None
    try:
        from core.assets import AssetError  # noqa: PLC0415
        from core.intrinsics import resolve_intrinsics  # noqa: PLC0415
        from core.landmarks import LandmarkerOptions  # noqa: PLC0415
        from core.model_io import ModelFileError  # noqa: PLC0415
        from core.pipeline import TrackingPipeline  # noqa: PLC0415
        from core.tracker import Tracker  # noqa: PLC0415

        try:
            options = replace(options, device=resolve_device(options.device))
        except Exception as exc:  # noqa: BLE001  (torch's CUDA probing raises many kinds)
            raise SessionError(f"cannot choose a compute device: {exc}", bad_input=False) from None
        try:
            if hasattr(source, "wait_ready"):
                source.wait_ready()
        except SourceError as exc:
            raise SessionError(f"cannot open the source {options.source!r}: {exc}") from None
    except BaseException:
        close_quietly(source)
        raise
    model_text = "the built-in head model" if options.model == "builtin" else f"the model file {options.model}"
    try:
        try:
            plan = resolve_intrinsics(options, source, log=note)
        except ValueError as exc:
            raise SessionError(f"cannot use these camera settings: {exc}") from None
        try:
            head, embedding = load_model_and_embedding(options, log=note, cache=model_cache)
            topts = tracker_options(options, plan, source.size)
            tracker = Tracker(head, embedding, source.size, topts)
        except (ModelFileError, AssetError, ValueError, OSError) as exc:
            raise SessionError(f"cannot use {model_text}: {exc}") from None
        except RuntimeError as exc:  # e.g. the landmarker never found the model's face while embedding it
            raise SessionError(f"cannot use {model_text}: {exc}", bad_input=False) from None
        regressor_prior, regressor_message = load_regressor_prior(
            head, options, estimate_focal=not tracker.focal_fixed and topts.camera_mode == "perspective", log=note)
    except BaseException:
        close_quietly(source)
        raise
    set_tracker_threads()  # after the one-off embedding work, which may use every core
    landmarker = LandmarkerOptions(model_path=options.landmarker, running_mode="video", select=options.face,
                                   max_faces=options.max_faces)
    pipeline = TrackingPipeline(source, tracker, landmarker, prior_fn=regressor_prior, pipelined=pipelined,
                                max_frames=options.max_frames, stop=stop, undistort=plan.undistorter(),
                                with_mesh=with_mesh)
    return Session(options=options, source=source, plan=plan, head=head, tracker=tracker, pipeline=pipeline,
                   regressor_prior=regressor_prior, regressor_message=regressor_message, notices=tuple(notices))


def eprint(*args) -> None:
    print(*args, file=sys.stderr)


def default_output(path: str | None) -> Path:
    from datetime import datetime  # noqa: PLC0415

    if path:
        return Path(path)
    return Path(f"flamecam_{datetime.now():%Y%m%d_%H%M%S}.fcrec")
