"""The GUI's tracking worker: one QThread that runs the engine (``core.pipeline``) and the recorder.

The thread builds the session with the same helpers as ``flamecam track`` (``core.session``), runs
``TrackingPipeline(with_mesh=True).run()`` and emits every :class:`core.pipeline.FrameResult` by
``frameReady``; the GUI keeps only the newest (latest wins) and never calls into torch. Live
sources drop frames inside the engine (at most one frame in flight). Recording happens here too:
the :class:`core.recording.RecordingWriter` lives in this thread and is driven by thread-safe
requests (:meth:`TrackingThread.start_recording` / :meth:`stop_recording`); it is closed whatever
ends the run (stop, end of file, a source that fails), so what was flushed is never lost.

A video file or image folder is played by the thread's :class:`core.transport.Transport`
(:attr:`TrackingThread.transport`, thread-safe: play, pause, step, seek, the file's rate or as
fast as possible; its state by ``transportChanged``). A recording is one continuous take: it ends
at a seek and at the end of the file, and the worker serves stop requests while paused.

Errors never escape the thread: they reach the GUI as one message by ``failed`` (source or model
problems) or as a :class:`RecordingStatus` with ``state="failed"`` (full disk), and the thread ends
cleanly. :meth:`TrackingThread.shutdown` stops and joins it; :func:`live_threads` lists the ones
still running (tests assert it is empty).
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QThread, Signal

from core.session import SessionOptions
from core.sources import close_quietly
from core.streaming import StreamModel, StreamSwitch

_LIVE: "weakref.WeakSet[QThread]" = weakref.WeakSet()


def live_threads() -> list[QThread]:
    """Tracking, calibration and review threads still running (none once every window has closed)."""
    return [t for t in list(_LIVE) if t.isRunning()]


class StoppableThread(QThread):
    """A worker thread the GUI can ask to stop (``_stop``, which its ``run`` checks) and join; counted
    by :func:`live_threads` while it exists."""

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self._stop = threading.Event()
        self.setObjectName(name)
        _LIVE.add(self)

    def request_stop(self) -> None:
        """Ask the thread to end (returns at once)."""
        self._stop.set()

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Stop and join the thread; True when it has finished."""
        self.request_stop()
        if not self.isRunning():
            return True
        return self.wait() if timeout_s is None else self.wait(int(timeout_s * 1000))


@dataclass(frozen=True)
class SessionInfo:
    """What a running session is made of (sent once, before the first frame)."""

    source_name: str
    image_size: tuple[int, int]  # (width, height)
    is_live: bool
    source_fps: float | None
    num_frames: int | None
    model: object  # core.pipeline.ModelInfo
    model_path: str
    device: str  # "cpu" or "cuda:0 (name)"
    camera_mode: str
    focal_mode: str  # fixed | profile | metadata | auto
    notices: tuple[str, ...] = ()
    plan: object = None  # core.session.IntrinsicsPlan: where the intrinsics come from, the lens (if any)
    seekable: bool = False  # a file: played by TrackingThread.transport (pause, step, seek)


@dataclass(frozen=True)
class RecordingStatus:
    """The recorder's state, emitted on start, about twice a second while recording, and at the end."""

    state: str  # recording | stopped | failed
    path: str
    frames: int = 0  # frames written (flushed or buffered)
    frames_flushed: int = 0  # frames on disk (survive a crash)
    elapsed_s: float = 0.0
    message: str = ""


@dataclass
class _Request:
    kind: str  # start | stop
    path: Path | None = None
    overwrite: bool = False


def describe_device(device: str) -> str:
    import torch  # noqa: PLC0415

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"CUDA ({torch.cuda.get_device_name(torch.device(device))})"
    return device.upper()


class TrackingThread(StoppableThread):
    """Runs one tracking session; see the module docstring. Signals are delivered queued to the GUI."""

    sessionStarted = Signal(object)  # SessionInfo
    frameReady = Signal(object)  # core.pipeline.FrameResult
    notice = Signal(str)  # informational (e.g. "no webcam found; using the synthetic source")
    failed = Signal(str)  # a clear, complete error message; the thread then ends
    recordingChanged = Signal(object)  # RecordingStatus
    runFinished = Signal(object)  # dict: pipeline stats summary and how the run ended
    transportChanged = Signal(object)  # core.transport.TransportState (files only), from the reading thread

    PROGRESS_INTERVAL_S = 0.5
    RECENT_FRAMES_MB = 64.0  # decoded frames kept for stepping back in a file

    def __init__(self, options: SessionOptions, source_factory: Callable[[], object] | None = None, parent=None):
        super().__init__("flamecam-tracking", parent)
        self.options = options
        self._source_factory = source_factory
        self._lock = threading.Lock()
        self._requests: list[_Request] = []
        self._writer = None
        self._record_started = 0.0
        self._last_progress = 0.0
        self._session = None  # core.session.Session, built in the thread
        self.stream = StreamSwitch()  # live OSC/UDP output; driven from this thread, configured from any
        from core.transport import Transport  # noqa: PLC0415

        self.transport = Transport()  # used when the source is a file; commands may come before it opens
        self.transport.add_listener(self.transportChanged.emit)

    # -- called from the GUI thread ------------------------------------------------------------------

    def start_recording(self, path: str | Path, overwrite: bool = False) -> None:
        """Ask the worker to record from its next frame on into ``path`` (.fcrec)."""
        with self._lock:
            self._requests.append(_Request("start", Path(path), overwrite))

    def stop_recording(self) -> None:
        with self._lock:
            self._requests.append(_Request("stop"))

    def set_stream(self, url: str) -> None:
        """Stream every frame to ``url`` (``core.streaming`` form; "" stops) from the next frame on."""
        self.stream.request(url)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the thread ----------------------------------------------------------------------------------

    def run(self) -> None:  # noqa: C901  (one linear story: open, track, close)
        source = None
        pipeline = None
        ended_by = "stopped"
        try:
            setup = self._setup()
            if setup is None:
                ended_by = "failed" if not self._stop.is_set() else "stopped"
                return
            source, pipeline = setup
            if self._stop.is_set():
                return
            ended_by = self._track(pipeline)
        except BaseException as exc:  # noqa: BLE001  (nothing may escape a QThread)
            ended_by = "failed"
            traceback.print_exc(file=sys.stderr)
            saved = self._close_recording("failed-run")
            self.failed.emit(f"Tracking stopped by an unexpected error: {type(exc).__name__}: {exc}.{saved}")
        finally:
            self._close_recording("stopped" if ended_by != "failed" else "failed-run")
            self.stream.close()
            close_quietly(source)
            summary = {"ended_by": ended_by}
            if pipeline is not None:
                summary.update(pipeline.stats.summary())
            self._session = None  # the model, tracker and source can go now
            self.runFinished.emit(summary)

    def _setup(self):
        """Build the session (``core.session.build_session``, as ``flamecam track`` does) and announce
        it; None (after a ``failed`` message) when it cannot start."""
        from core.session import SessionError, build_session  # noqa: PLC0415

        notices: list[str] = []

        def log(message: str) -> None:
            text = str(message)
            text = text[len("note: "):] if text.startswith("note: ") else text
            notices.append(text)
            self.notice.emit(text)

        # Synthetic frames render in a child process: ModernGL holds the GIL while it rasterises.
        opts = replace(self.options, synthetic_in_subprocess=True)
        source = self._source_factory() if self._source_factory is not None else None
        try:
            session = build_session(opts, log=log, stop=self._stop, source=source, with_mesh=True)
        except SessionError as exc:
            self.failed.emit(exc.message[:1].upper() + exc.message[1:])
            return None
        if self._stop.is_set():
            session.close()
            return None
        self._session = session
        self.stream.set_model(StreamModel.from_head(session.head))
        width, height = session.image_size
        src = session.source
        seekable = bool(getattr(src, "seekable", False))
        if seekable:
            session.pipeline.transport = self.transport
            session.pipeline.on_idle = self._on_idle
            if hasattr(src, "keep_recent"):
                src.keep_recent(self.RECENT_FRAMES_MB)
        info = SessionInfo(source_name=src.name, image_size=(width, height), is_live=bool(src.is_live),
                           source_fps=src.fps, num_frames=src.num_frames, model=session.pipeline.model_info,
                           model_path=session.options.model, device=describe_device(session.options.device),
                           camera_mode=session.options.camera_mode, focal_mode=session.focal_mode,
                           notices=tuple(notices), plan=session.plan, seekable=seekable)
        self.sessionStarted.emit(info)
        return src, session.pipeline

    def _track(self, pipeline) -> str:
        from app.gc_policy import frozen_after_first  # noqa: PLC0415
        from core.assets import AssetError  # noqa: PLC0415
        from core.sources import SourceError  # noqa: PLC0415

        try:
            for result in frozen_after_first(pipeline.run()):
                self.stream.send(result)
                if result.cut and self._writer is not None:
                    saved = self._close_recording("seek")
                    self.notice.emit(f"Recording ended at the jump to frame {result.frame.index}: a take is one "
                                     f"continuous run.{saved}")
                self._service_requests(result.track.frame_index)
                if self._writer is not None:
                    self._record(result)
                self.frameReady.emit(result)
                if self._stop.is_set():
                    break
        except SourceError as exc:
            saved = self._close_recording("source failed")
            self.failed.emit(f"The source stopped delivering frames: {exc}.{saved}")
            return "failed"
        except AssetError as exc:  # e.g. the MediaPipe model file is missing
            self.failed.emit(f"Cannot start the face landmarker: {exc}")
            return "failed"
        self._service_requests(None)  # a stop asked for on the last frame
        return "stopped" if self._stop.is_set() else "finished"

    def _on_idle(self) -> None:
        """A paused file (no frame coming): serve stop requests now (a start waits for the next
        frame) and end the recording at the end of the file."""
        with self._lock:
            requests = self._requests
            if requests and requests[-1].kind == "start":
                self._requests = requests[-1:]
                requests = requests[:-1]
            else:
                self._requests = []
        if any(r.kind == "stop" for r in requests):
            self._close_recording("stopped")
        if self._writer is not None and self.transport.state().at_end:
            saved = self._close_recording("end of the video")
            self.notice.emit(f"Recording ended at the end of the video.{saved}")

    # -- recording (worker thread only) -------------------------------------------------------------

    def _service_requests(self, frame_index: int | None) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for req in requests:
            if req.kind == "stop":
                self._close_recording("stopped")
            elif req.kind == "start" and frame_index is not None and not self._stop.is_set():
                self._open_recording(req)

    def _open_recording(self, req: _Request) -> None:
        from core.recording import RecordingError, RecordingWriter  # noqa: PLC0415

        self._close_recording("stopped")  # a new start ends the previous recording
        try:
            # The same description of the session as `flamecam track` writes.
            meta = self._session.recording_meta(recorded_by="flamecam gui")
            req.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = RecordingWriter(req.path, meta, overwrite=req.overwrite)
        except (RecordingError, OSError, ValueError) as exc:
            self._writer = None
            self.recordingChanged.emit(RecordingStatus("failed", str(req.path), message=f"Cannot start recording: {exc}"))
            return
        self._record_started = time.monotonic()
        self._last_progress = 0.0
        self.recordingChanged.emit(RecordingStatus("recording", str(req.path)))

    def _record(self, result) -> None:
        from core.recording import RecordingError  # noqa: PLC0415

        writer = self._writer
        try:
            writer.write_track_result(result.track)
        except (RecordingError, ValueError) as exc:
            self._writer = None
            writer.close()  # quiet after a failure; the file keeps every flushed record
            self.recordingChanged.emit(RecordingStatus(
                "failed", str(writer.path), writer.frames_written, writer.frames_flushed, self._elapsed(),
                f"Recording stopped: {exc}. Tracking goes on; start a new recording on another disk."))
            return
        now = time.monotonic()
        if now - self._last_progress >= self.PROGRESS_INTERVAL_S:
            self._last_progress = now
            self.recordingChanged.emit(RecordingStatus("recording", str(writer.path), writer.frames_written,
                                                       writer.frames_flushed, self._elapsed()))

    def _elapsed(self) -> float:
        return time.monotonic() - self._record_started

    def _close_recording(self, reason: str) -> str:
        """Close the open recording (if any); returns a sentence saying what is saved, for error messages."""
        from core.recording import RecordingError  # noqa: PLC0415

        writer, self._writer = self._writer, None
        if writer is None:
            return ""
        elapsed = self._elapsed()
        try:
            writer.close(summary={"ended_by": reason, "elapsed_s": elapsed})
        except RecordingError as exc:
            self.recordingChanged.emit(RecordingStatus(
                "failed", str(writer.path), writer.frames_written, writer.frames_flushed, elapsed,
                f"Closing the recording failed: {exc}. {writer.frames_flushed} frames are saved in {writer.path}."))
            return f" {writer.frames_flushed} frames are saved in {writer.path}."
        self.recordingChanged.emit(RecordingStatus("stopped", str(writer.path), writer.frames_written,
                                                   writer.frames_flushed, elapsed))
        return f" The recording {writer.path} is saved ({writer.frames_written} frames)."


@dataclass(frozen=True)
class CalibrationSourceInfo:
    """The source a calibration runs on (sent once, before the first frame)."""

    source_name: str
    image_size: tuple[int, int]  # (width, height)
    is_live: bool
    camera_name: str | None  # the name tracking looks profiles up by (core.profiles); None: no automatic match
    unrelated_frames: bool  # an image folder: no motion between frames to judge stillness by
    is_synthetic: bool = False


@dataclass(frozen=True)
class CalibrationFrame:
    """One frame and the board found in it (``core.calibration.BoardDetection`` or None)."""

    index: int
    rgb: object  # (H, W, 3) uint8
    detection: object
    detect_ms: float


class CalibrationThread(StoppableThread):
    """Reads the session's source and looks for the calibration board in each frame.

    Board detection (5-100 ms a frame, OpenCV) runs here; the GUI judges each detection with its
    ``CalibrationSession`` (cheap) and acknowledges it with :meth:`frame_taken`. The next frame is
    read only then, so a slow GUI never builds a queue: a live camera's stale frames are skipped
    as the tracker's are, a file's frames are all examined in order.
    """

    started_on = Signal(object)  # CalibrationSourceInfo
    frameReady = Signal(object)  # CalibrationFrame
    failed = Signal(str)
    runFinished = Signal(object)  # {"ended_by": finished | stopped | failed, "frames": n}

    def __init__(self, options: SessionOptions, board, source_factory: Callable[[], object] | None = None,
                 parent=None):
        super().__init__("flamecam-calibration", parent)
        self.options, self.board = options, board
        self._source_factory = source_factory
        self._taken = threading.Event()
        self._taken.set()

    def frame_taken(self) -> None:
        """The GUI has handled the last frame: read the next."""
        self._taken.set()

    def request_stop(self) -> None:
        super().request_stop()
        self._taken.set()  # a read waiting for the GUI's acknowledgement ends too

    def run(self) -> None:
        from core.calibration import BoardDetector  # noqa: PLC0415
        from core.profiles import camera_name_for_source  # noqa: PLC0415
        from core.session import open_session_source  # noqa: PLC0415
        from core.sources import ImageFolderSource, SourceError  # noqa: PLC0415

        source = None
        ended_by, frames = "stopped", 0
        try:
            try:
                source = (self._source_factory() if self._source_factory is not None
                          else open_session_source(replace(self.options, synthetic_in_subprocess=True),
                                                   lambda *_: None))
            except (SourceError, OSError, ValueError) as exc:
                ended_by = "failed"
                self.failed.emit(f"Cannot open the source {self.options.source!r} to calibrate: {exc}")
                return
            width, height = source.size
            self.started_on.emit(CalibrationSourceInfo(
                source_name=source.name, image_size=(int(width), int(height)), is_live=bool(source.is_live),
                camera_name=camera_name_for_source(source), unrelated_frames=isinstance(source, ImageFolderSource),
                is_synthetic=str(source.name).startswith("synthetic")))
            detector = BoardDetector(self.board)
            iterator = iter(source)
            while not self._stop.is_set():
                while not self._taken.wait(0.05):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                try:
                    frame = next(iterator, None)
                except SourceError as exc:
                    ended_by = "failed"
                    self.failed.emit(f"The source stopped delivering frames: {exc}. The views taken so far are kept.")
                    return
                if frame is None:
                    ended_by = "finished"
                    return
                t0 = time.perf_counter()
                detection = detector.detect(frame.rgb, frame.index)
                self._taken.clear()
                frames += 1
                self.frameReady.emit(CalibrationFrame(frame.index, frame.rgb, detection,
                                                      (time.perf_counter() - t0) * 1000))
        except BaseException as exc:  # noqa: BLE001  (nothing may escape a QThread)
            ended_by = "failed"
            traceback.print_exc(file=sys.stderr)
            self.failed.emit(f"Calibration stopped by an unexpected error: {type(exc).__name__}: {exc}")
        finally:
            close_quietly(source)
            self.runFinished.emit({"ended_by": ended_by, "frames": frames})


def default_recording_path(folder: str | Path) -> Path:
    """A new dated ``.fcrec`` name in ``folder`` (never an existing file)."""
    from datetime import datetime  # noqa: PLC0415

    folder = Path(folder)
    stem = f"flamecam_{datetime.now():%Y%m%d_%H%M%S}"
    path = folder / f"{stem}.fcrec"
    n = 2
    while path.exists():
        path = folder / f"{stem}_{n}.fcrec"
        n += 1
    return path
