"""The desktop app: wires :class:`ui.main_window.MainWindow` to the tracking thread and the exporter.

``run_gui(options)`` creates the QApplication (OpenGL 3.3 core requested first), the window and
a :class:`GuiController`, starts a session and runs the event loop. The controller is thin: it
connects the window's requests to its parts, one concern each, and shuts every thread down
before the window closes:

* :class:`app.gui_session.SessionControl`: the panels' choices, the tracking thread
  (:class:`app.gui_worker.TrackingThread`), the newest frame result for display (latest wins),
  the plots' samples, notices and errors;
* :class:`app.gui_calibration.CalibrationControl`: calibration mode (the "Calibrate camera" tab,
  :class:`app.gui_worker.CalibrationThread`) and the camera profile it saves;
* :class:`app.gui_recording.RecordingControl`: recording (in the tracking thread) and export
  (:class:`app.gui_recording.ExportThread`);
* :class:`app.gui_status.StatusControl`: the status bar and plot redraws, on timers;
* :class:`app.gui_transport.TransportControl`: playback of files and takes (timeline, Playback
  menu, plot clicks) through the player's :class:`core.transport.Transport`;
* :class:`app.gui_review.ReviewControl`: a recorded take opened over its video.
"""
from __future__ import annotations

import os
import sys

from PySide6.QtCore import QObject, QSettings, QThread, QTimer, Signal
from PySide6.QtWidgets import QApplication

from app.gui_calibration import CalibrationControl
from app.gui_recording import ExportThread, RecordingControl
from app.gui_review import ReviewControl
from app.gui_session import SessionControl
from app.gui_stream import StreamControl
from app.gui_status import PLOT_INTERVAL_MS, STATUS_INTERVAL_MS, StatusControl
from app.gui_transport import TransportControl
from app.gui_worker import CalibrationThread, RecordingStatus, SessionInfo, TrackingThread
from core.session import SessionOptions

__all__ = ["GuiController", "ExportThread", "build", "run_gui", "create_application", "has_display",
           "STATUS_INTERVAL_MS", "PLOT_INTERVAL_MS"]


class GuiController(QObject):
    """Connects the window to its parts (see the module docstring); the parts' public state and
    actions are reachable here as before the split."""

    sessionStarted = Signal(object)  # SessionInfo, re-emitted for tests and tools
    runFinished = Signal(object)

    def __init__(self, window, base_options: SessionOptions | None = None, source_factory=None, parent=None):
        super().__init__(parent)
        self.window = window
        self._retired: list[QThread] = []
        self._closing = False
        self.session_control = SessionControl(self, base_options, source_factory)
        self.calibration_control = CalibrationControl(self)
        self.recording_control = RecordingControl(self)
        self.transport_control = TransportControl(self)
        self.review_control = ReviewControl(self)

        w = window
        w.startRequested.connect(self.start)
        w.stopRequested.connect(self.stop)
        w.sessionChanged.connect(self.session_control.on_session_changed)
        w.recordToggled.connect(self.set_recording)
        w.exportRequested.connect(self.recording_control.ask_export)
        w.exportFileRequested.connect(self.recording_control.ask_export_file)
        w.refreshWebcamsRequested.connect(self.refresh_webcams)
        w.modeChanged.connect(self.calibration_control.on_mode_changed)
        w.calibration_page.startRequested.connect(self.start_calibration)
        w.calibration_page.stopRequested.connect(self.stop_calibration)
        w.calibration_page.widget.profileSaved.connect(self.calibration_control.on_profile_saved)
        w.takeOpenRequested.connect(self.open_take)
        w.aboutToClose.connect(self.shutdown)
        self.stream_control = StreamControl(w.stream_panel, self)  # the Stream panel -> the tracking thread
        self.status_control = StatusControl(self)
        w.set_running(False)
        self.refresh_profiles()

    # -- sessions (app.gui_session) ------------------------------------------------------------------

    @property
    def base_options(self) -> SessionOptions:
        return self.session_control.base_options

    @property
    def worker(self) -> TrackingThread | None:
        return self.session_control.worker

    @property
    def session(self) -> SessionInfo | None:
        return self.session_control.session

    @property
    def latest(self):
        """The newest ``core.pipeline.FrameResult`` of the current session."""
        return self.session_control.latest

    @property
    def frames_received(self) -> int:
        return self.session_control.frames_received

    @property
    def running(self) -> bool:
        return self.session_control.running

    def refresh_webcams(self) -> list[int]:
        return self.session_control.refresh_webcams()

    def refresh_profiles(self) -> list[str]:
        return self.session_control.refresh_profiles()

    def apply_initial_choice(self, *args, **kwargs) -> None:
        self.session_control.apply_initial_choice(*args, **kwargs)

    def options(self) -> SessionOptions:
        return self.session_control.options()

    def start(self, options: SessionOptions | None = None) -> TrackingThread:
        return self.session_control.start(options)

    def stop(self) -> None:
        self.session_control.stop()

    def fps(self, span_s: float = 1.0) -> float:
        return self.session_control.fps(span_s)

    # -- calibration mode (app.gui_calibration) ------------------------------------------------------

    @property
    def calibration(self) -> CalibrationThread | None:
        return self.calibration_control.calibration

    @property
    def calibration_info(self):
        return self.calibration_control.calibration_info

    @property
    def calibrating(self) -> bool:
        return self.calibration_control.calibrating

    @property
    def saved_profiles(self) -> list[str]:
        return self.calibration_control.saved_profiles

    def start_calibration(self) -> CalibrationThread | None:
        return self.calibration_control.start_calibration()

    def stop_calibration(self) -> None:
        self.calibration_control.stop_calibration()

    # -- recording and export (app.gui_recording) ----------------------------------------------------

    @property
    def recording(self) -> RecordingStatus | None:
        return self.recording_control.recording

    @property
    def recordings(self) -> list[RecordingStatus]:
        return self.recording_control.recordings

    @property
    def export_thread(self) -> ExportThread | None:
        return self.recording_control.export_thread

    def set_recording(self, on: bool) -> None:
        self.recording_control.set_recording(on)

    def start_recording(self, path, overwrite: bool = False) -> None:
        self.recording_control.start_recording(path, overwrite)

    def stop_recording(self) -> None:
        self.recording_control.stop_recording()

    def choose_recording(self, path: str) -> bool:
        return self.recording_control.choose_recording(path)

    def export(self, recording: str, fmt: str, target: str) -> ExportThread:
        return self.recording_control.export(recording, fmt, target)

    # -- playback and takes (app.gui_transport, app.gui_review) --------------------------------------

    @property
    def transport(self):
        """The ``core.transport.Transport`` of the file or take shown, or None (a camera, nothing)."""
        return self.transport_control.transport

    def open_take(self, path: str, video: str | None = None, ask: bool = True) -> bool:
        return self.review_control.open_take(path, video, ask)

    # -- threads -------------------------------------------------------------------------------------

    def retire(self, thread: QThread) -> None:
        """Keep a stopping thread referenced until it has finished (joined in :meth:`shutdown`)."""
        self._retired = [t for t in self._retired if not t.isFinished()] + [thread]

    def shutdown(self) -> None:
        """Stop every thread (closing an open recording) and wait for them; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        self.status_control.stop()
        self.transport_control.save_position()
        self.session_control.stop_worker()
        self.review_control.close()
        self.calibration_control.stop_thread()
        self.window.calibration_page.widget.wait_for_solver()
        export_thread = self.recording_control.export_thread
        if export_thread is not None:
            export_thread.cancel()
            export_thread.wait()
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
