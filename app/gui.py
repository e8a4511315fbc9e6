"""The desktop app: wires :class:`ui.main_window.MainWindow` to the tracking thread and the exporter.

``run_gui(options)`` creates the QApplication (OpenGL 3.3 core requested first), the window and
a :class:`GuiController`, starts a session and runs the event loop. The controller owns the
threads (:class:`app.gui_worker.TrackingThread`, :class:`app.gui_worker.CalibrationThread`,
:class:`ExportThread`), keeps only the newest frame result for display (latest wins), feeds the
plots and the status bar, drives the recorder and shuts every thread down before the window closes.

Calibration mode (the window's "Calibrate camera" tab) stops tracking and reads the same source in
a ``CalibrationThread`` (board detection there), whose frames feed the page's
``CalibrationSession``; a saved camera profile becomes the Camera panel's choice (automatic when
it is stored under the camera's own name), so tracking, restarted on returning to the Track tab,
uses it: fixed focal length and principal point, landmarks undistorted, overlay distorted back.
"""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QThread, QTimer, Signal
from PySide6.QtWidgets import QApplication, QFileDialog

from app.gui_stream import StreamControl
from app.gui_worker import (
    CalibrationThread,
    RecordingStatus,
    SessionInfo,
    TrackingThread,
    default_recording_path,
)
from core.session import SessionOptions

STATUS_INTERVAL_MS = 250
PLOT_INTERVAL_MS = 200  # plots redraw at 5 Hz: ~10 ms CPU each on a software-rendered desktop


class ExportThread(QThread):
    """Exports a recording (``core.export.export_recording``: meshes, arrays, glTF, ...) off the GUI thread;
    cancellable."""

    progressed = Signal(int, int)
    succeeded = Signal(str)
    failed = Signal(str)

    def __init__(self, recording: str, fmt: str, target: str, parent=None):
        super().__init__(parent)
        self.recording, self.fmt, self.target = recording, fmt, target
        self._cancel = False
        self.setObjectName("flamecam-export")

    def cancel(self) -> None:
        self._cancel = True

    def run(self) -> None:
        from core.export import MESH_FORMATS, ExportCancelled, ExportInputError, export_recording  # noqa: PLC0415

        try:  # a file target was confirmed by the save dialog; mesh folders are never overwritten
            result = export_recording(self.recording, self.fmt, self.target, progress=self.progressed.emit,
                                      cancel=lambda: self._cancel, overwrite=self.fmt not in MESH_FORMATS)
            self.succeeded.emit(" ".join([f"Exported {result.summary}."] + [f"Note: {n}." for n in result.notes]))
        except ExportCancelled as exc:
            self.failed.emit(str(exc).capitalize())
        except ExportInputError as exc:
            self.failed.emit(f"Cannot export {Path(self.recording).name}: {exc}")
        except OSError as exc:
            self.failed.emit(f"Export to {self.target} failed: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001  (nothing may escape a QThread)
            self.failed.emit(f"Export failed: {type(exc).__name__}: {exc}")


class GuiController(QObject):
    """Connects the window to the tracking and export threads (see module docstring)."""

    sessionStarted = Signal(object)  # SessionInfo, re-emitted for tests and tools
    runFinished = Signal(object)

    def __init__(self, window, base_options: SessionOptions | None = None, source_factory=None, parent=None):
        super().__init__(parent)
        self.window = window
        self.base_options = base_options or SessionOptions(device="auto")
        self._source_factory = source_factory  # tests: build the source instead of opening a spec
        self.worker: TrackingThread | None = None
        self.export_thread: ExportThread | None = None
        self._retired: list[QThread] = []
        self._session_id = 0
        self.session: SessionInfo | None = None
        self.latest = None  # newest FrameResult
        self.frames_received = 0
        self._arrivals: deque[float] = deque(maxlen=240)
        self._t0 = time.monotonic()
        self._recording: RecordingStatus | None = None
        self._record_t0 = 0.0
        self.recordings: list[RecordingStatus] = []  # finished ones, newest last
        self._warned: set[str] = set()
        self._notices: list[str] = []
        self._closing = False
        self.calibration: CalibrationThread | None = None
        self.calibration_info = None  # CalibrationSourceInfo of the running calibration
        self._calibration_id = 0
        self._resume_tracking = False  # tracking ran when calibration mode was entered
        self.saved_profiles: list[str] = []  # profile files saved from calibration mode, newest last

        w = window
        w.startRequested.connect(self.start)
        w.stopRequested.connect(self.stop)
        w.sessionChanged.connect(self._on_session_changed)
        w.recordToggled.connect(self.set_recording)
        w.exportRequested.connect(self._ask_export)
        w.exportFileRequested.connect(self._ask_export_file)
        w.refreshWebcamsRequested.connect(self.refresh_webcams)
        w.modeChanged.connect(self._on_mode_changed)
        w.calibration_page.startRequested.connect(self.start_calibration)
        w.calibration_page.stopRequested.connect(self.stop_calibration)
        w.calibration_page.widget.profileSaved.connect(self._on_profile_saved)
        w.aboutToClose.connect(self.shutdown)
        self.stream_control = StreamControl(w.stream_panel, self)  # the Stream panel -> the tracking thread
        self.status_timer = QTimer(self)
        self.status_timer.setInterval(STATUS_INTERVAL_MS)
        self.status_timer.timeout.connect(self._update_status)
        self.status_timer.start()
        self.plot_timer = QTimer(self)
        self.plot_timer.setInterval(PLOT_INTERVAL_MS)
        self.plot_timer.timeout.connect(w.plots.refresh)
        self.plot_timer.start()
        w.set_running(False)
        self.refresh_profiles()

    # -- sources -------------------------------------------------------------------------------------

    def refresh_webcams(self) -> list[int]:
        from core.sources import list_webcams  # noqa: PLC0415

        cams = list_webcams()
        self.window.source_panel.set_webcams(cams)
        return cams

    def refresh_profiles(self) -> list[str]:
        """Offer the stored camera profiles in the Camera panel; returns their names."""
        from core.profiles import list_profiles  # noqa: PLC0415

        try:
            names = [p.name for p in list_profiles()]
        except OSError as exc:
            self.window.show_message(f"Cannot read the camera profiles: {exc}", "warning")
            names = []
        self.window.camera_panel.set_profiles(names)
        return names

    def apply_initial_choice(self, source: str = "auto", model: str | None = None, camera_mode: str | None = None,
                             focal: str | None = None, fov_deg: float | None = None,
                             camera_profile: str | None = None) -> None:
        """Put command-line choices into the panels; 'auto' picks the first webcam, else synthetic (notice).
        ``camera_profile``: a profile name or file, 'none', or None (keep the saved choice)."""
        w = self.window
        if source == "auto":
            cams = self.refresh_webcams()
            if cams:
                w.source_panel.set_spec(f"webcam:{cams[0]}")
            else:
                from ui.panels import SYNTHETIC_SPEC  # noqa: PLC0415

                w.source_panel.set_spec(SYNTHETIC_SPEC)
                w.show_message("No webcam found, so flamecam shows its synthetic source: a rendered head whose "
                               "focal length and pose are known. Pick a video file or image folder in Source "
                               "(or drop one on the window) to track your own footage.", "info")
        else:
            self.refresh_webcams()
            w.source_panel.set_spec(source)
        if model is not None:
            w.model_panel.set_model(model)
        if camera_mode == "ortho":
            w.camera_panel.set_mode("ortho")
        elif fov_deg is not None:
            w.camera_panel.set_mode("fov", fov_deg=fov_deg)
        elif focal not in (None, "auto"):
            w.camera_panel.set_mode("focal", focal_px=float(focal))
        elif camera_mode == "perspective" or focal == "auto":
            w.camera_panel.set_mode("auto")
        if camera_profile is not None:
            w.camera_panel.set_profile(camera_profile)

    def options(self) -> SessionOptions:
        w = self.window
        return replace(self.base_options, source=w.source_panel.spec(), model=w.model_panel.model(),
                       **w.camera_panel.options())

    # -- sessions ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def start(self, options: SessionOptions | None = None) -> TrackingThread:
        """(Re)start tracking with ``options`` (default: the panels' choices); leaves calibration mode."""
        self._stop_worker()
        self._stop_calibration_thread()
        if self.window.mode() != "track":
            self.window.set_mode("track", emit=False)
        options = options or self.options()
        self._session_id += 1
        worker = TrackingThread(options, source_factory=self._source_factory, parent=None)
        worker.session_id = self._session_id
        worker.sessionStarted.connect(self._on_session_started)
        worker.frameReady.connect(self._on_frame)
        worker.notice.connect(self._on_notice)
        worker.failed.connect(self._on_failed)
        worker.recordingChanged.connect(self._on_recording)
        worker.runFinished.connect(self._on_run_finished)
        self.stream_control.attach(worker)
        self.worker = worker
        self.session = None
        self.latest = None
        self.frames_received = 0
        self._arrivals.clear()
        self._warned.clear()
        self._notices: list[str] = []
        self._t0 = time.monotonic()
        self.window.plots.clear()
        self.window.view.clear()
        self.window.view.set_lens(None)
        self.window.set_intrinsics(None)
        self.window.banner.hide()
        self.window.set_running(False, starting=True)
        self.window.set_status(device="…", fps="–", latency="–", state="starting", model="…")
        worker.start()
        return worker

    def stop(self) -> None:
        self._stop_worker()
        self.window.set_running(False)
        self.window.set_status(fps="–", latency="–", state="stopped")

    def _stop_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        # Joined here: a webcam must be closed before the next session (or calibration) opens it. The
        # recording is closed in the worker; queued signals still arrive (and are ignored as stale).
        worker.shutdown()
        self._retire(worker)

    def _retire(self, thread: QThread) -> None:
        """Keep a stopping thread referenced until it has finished (joined in :meth:`shutdown`)."""
        self._retired = [t for t in self._retired if not t.isFinished()] + [thread]

    def _current(self) -> bool:
        """True when the signal being handled comes from the current session's thread."""
        sender = self.sender()
        return sender is not None and getattr(sender, "session_id", None) == self._session_id

    def _on_session_changed(self) -> None:
        if self.window.mode() == "calibrate":
            if self.calibration is not None:  # calibrate the newly chosen source instead
                self.start_calibration()
        elif self.running or (self.worker is not None and not self.worker.isFinished()):
            self.start()

    def _on_session_started(self, info: SessionInfo) -> None:
        if not self._current():
            return
        self.session = info
        w = self.window
        w.view.set_model(info.model)
        w.view.set_lens(info.plan.lens_remap() if info.plan is not None else None)
        w.set_intrinsics(info.plan)
        model_text = info.model.name + (" (coarse)" if info.model.is_coarse else "")
        w.set_status(device=info.device, model=f"model: {model_text}", state="waiting for frames")
        w.set_running(True)
        w.setWindowTitle(f"flamecam — {info.source_name}")
        self.sessionStarted.emit(info)

    def _on_frame(self, result) -> None:
        if not self._current():
            return
        now = time.monotonic()
        if self.latest is None:
            self._t0 = now  # plots count time from the first frame
        self.latest = result
        self.frames_received += 1
        self._arrivals.append(now)
        self.window.view.show_result(result)  # stores it; Qt merges the repaint requests
        track = result.track
        self.window.plots.add_sample(now - self._t0, track.focal_px, track.focal_sigma_px, track.focal_state,
                                     track.rho_per_m, self.fps(), result.latency_ms)
        for warning in result.warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                self.window.show_message(warning, "warning")

    def fps(self, span_s: float = 1.0) -> float:
        """Results received per second over the last ``span_s``."""
        if len(self._arrivals) < 2:
            return float("nan")
        last = self._arrivals[-1]
        recent = [t for t in self._arrivals if t >= last - span_s]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return float("nan")
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _on_notice(self, text: str) -> None:
        if self._current():
            self._notices.append(text)
            self.window.show_message("\n".join(self._notices[-4:]), "info")

    def _on_failed(self, message: str) -> None:
        if self._current():
            self.window.show_message(message, "error")
            self.window.set_status(state="error")

    def _on_run_finished(self, summary: dict) -> None:
        if not self._current():
            return
        self.window.set_running(False)
        ended = summary.get("ended_by")
        state = {"finished": "finished", "stopped": "stopped", "failed": "error"}.get(ended, str(ended))
        self.window.set_status(state=state)
        if ended == "finished":
            self.window.show_message(f"Finished: {summary.get('frames', 0)} frames tracked "
                                     f"({summary.get('frames_with_face', 0)} with a face) at "
                                     f"{summary.get('fps', 0.0):.1f} fps.", "info")
        self.runFinished.emit(summary)

    # -- calibration mode ----------------------------------------------------------------------------

    @property
    def calibrating(self) -> bool:
        return self.calibration is not None and self.calibration.isRunning()

    def _on_mode_changed(self, mode: str) -> None:
        if mode == "calibrate":
            self.start_calibration()
        else:
            self._stop_calibration_thread()
            if self._resume_tracking:
                self._resume_tracking = False
                self.start()

    def start_calibration(self) -> CalibrationThread | None:
        """Stop tracking and look for the board in the current source's frames (calibration mode)."""
        page = self.window.calibration_page
        try:
            board = page.board()
        except ValueError as exc:
            self.window.show_message(f"Cannot calibrate with the board {page.board_text()!r}: {exc}", "error")
            return None
        if self.worker is not None:
            self._resume_tracking = self._resume_tracking or self.running
            self.stop()
        self._stop_calibration_thread()
        if self.window.mode() != "calibrate":
            self.window.set_mode("calibrate", emit=False)
        self._calibration_id += 1
        thread = CalibrationThread(self.options(), board, source_factory=self._source_factory)
        thread.session_id = self._calibration_id
        thread.started_on.connect(self._on_calibration_started)
        thread.frameReady.connect(self._on_calibration_frame)
        thread.failed.connect(self._on_calibration_failed)
        thread.runFinished.connect(self._on_calibration_finished)
        self.calibration = thread
        self.calibration_info = None
        page.set_running(True)
        page.set_source_text(f"Opening {self.window.source_panel.spec()}…")
        thread.start()
        return thread

    def stop_calibration(self) -> None:
        """Stop reading frames; the views taken so far stay (solve, save, or start again to add more)."""
        self._stop_calibration_thread()
        self.window.calibration_page.set_running(False)

    def _stop_calibration_thread(self) -> None:
        thread, self.calibration = self.calibration, None
        if thread is None:
            return
        thread.shutdown()  # joined: the camera must be free for the next user
        self._retire(thread)
        self.window.calibration_page.set_running(False)

    def _current_calibration(self) -> bool:
        """True when the signal being handled comes from the running calibration thread."""
        sender, thread = self.sender(), self.calibration
        return sender is not None and thread is not None and getattr(sender, "session_id", None) == thread.session_id

    def _on_calibration_started(self, info) -> None:
        if not self._current_calibration():
            return
        self.calibration_info = info
        page = self.window.calibration_page
        widget = page.widget
        board = self.calibration.board
        s = widget.session
        if s is None or (s.board, s.image_size, s.model) != (board, info.image_size, page.model()):
            widget.start(board, info.image_size, model=page.model(), camera_name=info.camera_name or "",
                         **({"still_px": None} if info.unrelated_frames else {}))
        elif info.camera_name:  # the same board and size again: keep the views taken
            widget.camera_name = info.camera_name
        w, h = info.image_size
        text = f"Calibrating <b>{info.source_name}</b> at {w}×{h}. "
        if info.is_synthetic:
            text += ("The synthetic source shows a head, not a board: choose a webcam, or a video or image folder "
                     "of the board, in Session. ")
        elif info.camera_name:
            text += (f"The profile is stored for “{info.camera_name}” and picked automatically whenever it opens at "
                     f"{w}×{h} (or the same aspect ratio). ")
        else:
            text += "This source has no camera name: name the profile; tracking this source then uses it. "
        if not info.is_live:
            text += "Every frame of the file is examined in order."
        page.set_source_text(text)

    def _on_calibration_frame(self, frame) -> None:
        if not self._current_calibration():
            return
        try:
            self.window.calibration_page.widget.show_detection(frame.rgb, frame.detection)
        finally:
            self.calibration.frame_taken()

    def _on_calibration_failed(self, message: str) -> None:
        if self._current_calibration():
            self.window.show_message(message, "error")

    def _on_calibration_finished(self, summary: dict) -> None:
        if not self._current_calibration():
            return
        page = self.window.calibration_page
        page.set_running(False)
        session = page.widget.session
        if summary.get("ended_by") == "finished" and session is not None:
            self.window.show_message(
                f"End of the source: {summary.get('frames', 0)} frames examined, the board seen in "
                f"{session.frames_with_board}, {len(session.views)} views taken. "
                + ("Press Solve." if len(session.views) >= session.criteria.min_views else
                   f"At least {session.criteria.min_views} views are needed to solve."), "info")

    def _on_profile_saved(self, path: str) -> None:
        """Make the new profile the one tracking uses, and say so."""
        from core.profiles import CameraProfile, ProfileError  # noqa: PLC0415

        try:
            profile = CameraProfile.load(path)
        except (ProfileError, OSError) as exc:
            self.window.show_message(f"The profile was saved to {path} but cannot be read back: {exc}", "error")
            return
        self.saved_profiles.append(path)
        self.refresh_profiles()
        panel = self.window.camera_panel
        if panel.mode() in ("focal", "fov"):
            panel.set_mode("auto")  # a typed focal length would override the calibration
        info = self.calibration_info
        automatic = info is not None and info.camera_name == profile.name
        panel.set_profile("auto" if automatic else profile.name)
        how = ("picked automatically whenever this camera opens" if automatic else
               "chosen in Session → Camera → Camera profile")
        self._resume_tracking = True
        w, h = profile.image_size
        self.window.show_message(f"Saved camera profile “{profile.name}” ({w}×{h}, {profile.lens.model} lens) to "
                                 f"{path}. Tracking uses it from now on ({how}): go back to the Track tab.", "info")

    # -- status --------------------------------------------------------------------------------------

    def _update_status(self) -> None:
        w = self.window
        self.stream_control.refresh()
        if self._recording is not None and self._recording.state == "recording":
            w.record_panel.show_progress(time.monotonic() - self._record_t0, self._recording.frames)
        if not self.running or self.latest is None:
            return
        track = self.latest.track
        fps = self.fps()
        state = track.tracking_state.replace("_", " ")
        if self.latest.num_faces > 1:
            state += f" ({self.latest.num_faces} faces)"
        w.set_status(fps=f"{fps:.1f} fps" if fps == fps else "– fps", latency=f"latency {self.latest.latency_ms:.0f} ms",
                     state=state)

    # -- recording -----------------------------------------------------------------------------------

    def set_recording(self, on: bool) -> None:
        """Start (into a new dated file in the record folder) or stop recording."""
        panel = self.window.record_panel
        if on:
            if not self.running:
                panel.set_recording(False)
                self.window.show_message("Start tracking first: recording writes the tracked frames.", "warning")
                return
            folder = Path(panel.folder()).expanduser()
            self.start_recording(default_recording_path(folder))
        elif self.worker is not None:
            self.worker.stop_recording()

    def start_recording(self, path: str | Path, overwrite: bool = False) -> None:
        if self.worker is None:
            raise RuntimeError("no tracking session")
        self.worker.start_recording(path, overwrite=overwrite)
        self.window.record_panel.set_recording(True)
        self.window.record_panel.status.setText(f"Starting to record into {Path(path).name}…")

    def stop_recording(self) -> None:
        if self.worker is not None:
            self.worker.stop_recording()

    def _on_recording(self, status: RecordingStatus) -> None:
        panel = self.window.record_panel
        if status.state == "recording":
            if self._recording is None or self._recording.path != status.path:
                self._record_t0 = time.monotonic() - status.elapsed_s
            self._recording = status
            panel.set_recording(True)
            panel.show_progress(status.elapsed_s, status.frames)
            return
        self._recording = None
        self.recordings.append(status)
        panel.set_recording(False)
        if status.state == "failed":
            panel.show_finished(status.path, status.frames_flushed, "Recording failed")
            self.window.show_message(status.message, "error")
        else:
            panel.show_finished(status.path, status.frames)
            self.window.statusBar().showMessage(f"Saved {status.frames} frames to {status.path}", 8000)

    @property
    def recording(self) -> RecordingStatus | None:
        return self._recording

    # -- export --------------------------------------------------------------------------------------

    def _ask_export(self, recording: str, fmt: str) -> None:
        if not recording:
            return
        rec = Path(recording)
        if fmt == "npz":
            target, _ = QFileDialog.getSaveFileName(self.window, "Export arrays", str(rec.with_suffix(".npz")),
                                                    "NumPy arrays (*.npz)")
        else:
            parent = QFileDialog.getExistingDirectory(self.window, f"Folder for the {fmt.upper()} meshes",
                                                      str(rec.parent))
            target = str(Path(parent) / f"{rec.stem}_{fmt}") if parent else ""
        if target:
            self.export(recording, fmt, target)

    def _ask_export_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Choose a recording", self.window.record_panel.folder(),
                                              "flamecam recordings (*.fcrec)")
        if path:
            self.choose_recording(path)

    def choose_recording(self, path: str) -> bool:
        """Make ``path`` the recording the Export button exports (after checking that it reads)."""
        from core.recording import RecordingFormatError, load  # noqa: PLC0415

        try:
            frames = len(load(path))
        except (RecordingFormatError, OSError) as exc:
            self.window.show_message(f"Cannot read the recording {path}: {exc}", "error")
            return False
        self.window.record_panel.show_finished(path, frames, "")
        if frames == 0:
            self.window.show_message(f"{path} holds no frames to export.", "warning")
        return frames > 0

    def export(self, recording: str, fmt: str, target: str) -> ExportThread:
        """Export ``recording`` as ``fmt`` (obj | ply | npz) to ``target`` in a background thread."""
        if self.export_thread is not None and self.export_thread.isRunning():
            self.window.show_message("An export is already running; wait for it to finish.", "warning")
            return self.export_thread
        thread = ExportThread(recording, fmt, target)
        progress = self.window.progress
        thread.progressed.connect(lambda done, total: (progress.setMaximum(total), progress.setValue(done)))
        thread.succeeded.connect(lambda msg: self.window.show_message(msg, "info"))
        thread.failed.connect(lambda msg: self.window.show_message(msg, "error"))
        thread.finished.connect(progress.hide)
        progress.setRange(0, 0)
        progress.show()
        self.export_thread = thread
        thread.start()
        return thread

    # -- shutdown ------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every thread (closing an open recording) and wait for them; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        self.status_timer.stop()
        self.plot_timer.stop()
        self._stop_worker()
        self._stop_calibration_thread()
        self.window.calibration_page.widget.wait_for_solver()
        if self.export_thread is not None:
            self.export_thread.cancel()
            self.export_thread.wait()
        for thread in self._retired:
            thread.wait()


def has_display() -> bool:
    """Whether Qt can open a window here: not on a Linux box without X11 / Wayland (unless the Qt
    platform was chosen explicitly, e.g. QT_QPA_PLATFORM=offscreen)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"))


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication, with the OpenGL 3.3 core format requested before it exists."""
    app = QApplication.instance()
    if app is None:
        from ui.overlay_view import configure_default_surface_format  # noqa: PLC0415

        configure_default_surface_format()
        app = QApplication(argv if argv is not None else [sys.argv[0]])
        app.setApplicationName("flamecam")
        app.setOrganizationName("flamecam")
    return app


def build(options: SessionOptions, source: str = "auto", settings: QSettings | None = None, source_factory=None,
          model: str | None = None, camera_mode: str | None = None, focal: str | None = None,
          fov_deg: float | None = None, camera_profile: str | None = None):
    """Window + controller with the initial choices applied (no session started yet)."""
    from ui.main_window import MainWindow  # noqa: PLC0415

    window = MainWindow(settings=settings)
    controller = GuiController(window, options, source_factory=source_factory)
    window.controller = controller  # keep it alive with the window
    controller.apply_initial_choice(source, model, camera_mode, focal, fov_deg, camera_profile)
    return window, controller


def run_gui(options: SessionOptions, source: str = "auto", model: str | None = None, camera_mode: str | None = None,
            focal: str | None = None, fov_deg: float | None = None, settings_path: str | None = None,
            record_dir: str | None = None, camera_profile: str | None = None) -> int:
    """Open the app, start tracking at once and run until the window closes."""
    app = create_application()
    settings = QSettings(settings_path, QSettings.Format.IniFormat) if settings_path else None
    window, controller = build(options, source, settings, model=model, camera_mode=camera_mode, focal=focal,
                               fov_deg=fov_deg, camera_profile=camera_profile)
    if record_dir:
        window.record_panel.folder_edit.setText(record_dir)
    window.show()
    QTimer.singleShot(0, controller.start)
    code = app.exec()
    controller.shutdown()
    return int(code)
