"""The app's tracking sessions: the panels' choices, the tracking thread's life, and its results.

:class:`SessionControl` is the part of :class:`app.gui.GuiController` that starts and stops
:class:`app.gui_worker.TrackingThread`, keeps only the newest frame result for display (latest
wins), feeds the plots and shows the worker's notices and errors. Signals from a thread that is
no longer the current one (a session restarted meanwhile) are ignored.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import replace

from PySide6.QtCore import QObject

from app.gui_worker import SessionInfo, TrackingThread
from core.session import SessionOptions


class SessionControl(QObject):
    """Tracking sessions for a :class:`app.gui.GuiController` (see the module docstring)."""

    def __init__(self, controller, base_options: SessionOptions | None = None, source_factory=None):
        super().__init__(controller)
        self.controller = controller
        self.window = controller.window
        self.base_options = base_options or SessionOptions(device="auto")
        self.source_factory = source_factory  # tests: build the source instead of opening a spec
        self.worker: TrackingThread | None = None
        self._session_id = 0
        self.session: SessionInfo | None = None
        self.latest = None  # newest FrameResult
        self.frames_received = 0
        self._arrivals: deque[float] = deque(maxlen=240)
        self._t0 = time.monotonic()
        self._warned: set[str] = set()
        self._notices: list[str] = []

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
        """(Re)start tracking with ``options`` (default: the panels' choices); leaves calibration mode
        and closes a reviewed take."""
        self.stop_worker()
        self.controller.calibration_control.stop_thread()
        self.controller.review_control.close()
        if self.window.mode() != "track":
            self.window.set_mode("track", emit=False)
        options = options or self.options()
        self._session_id += 1
        worker = TrackingThread(options, source_factory=self.source_factory, parent=None)
        worker.session_id = self._session_id
        worker.sessionStarted.connect(self._on_session_started)
        worker.frameReady.connect(self._on_frame)
        worker.notice.connect(self._on_notice)
        worker.failed.connect(self._on_failed)
        worker.recordingChanged.connect(self.controller.recording_control.on_recording)
        worker.runFinished.connect(self._on_run_finished)
        playback = self.controller.transport_control
        worker.transportChanged.connect(playback.on_state)
        playback.prepare(worker.transport, options.source)  # used if the source is a file
        self.controller.stream_control.attach(worker)
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
        self.stop_worker()
        self.window.set_running(False)
        self.window.set_status(fps="–", latency="–", state="stopped")

    def stop_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        if self.controller.transport_control.player is worker:
            self.controller.transport_control.unbind()
        # Joined here: a webcam must be closed before the next session (or calibration) opens it. The
        # recording is closed in the worker; queued signals still arrive (and are ignored as stale).
        worker.shutdown()
        self.controller.retire(worker)

    def _current(self) -> bool:
        """True when the signal being handled comes from the current session's thread."""
        sender = self.sender()
        return sender is not None and getattr(sender, "session_id", None) == self._session_id

    def on_session_changed(self) -> None:
        if self.window.mode() == "calibrate":
            if self.controller.calibration is not None:  # calibrate the newly chosen source instead
                self.controller.start_calibration()
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
        if info.seekable:  # a file: the timeline, and the plots over video time
            self.controller.transport_control.bind(self.worker, info.num_frames, info.source_fps,
                                                   key=self.worker.options.source, kind="file")
        self.controller.sessionStarted.emit(info)

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
        playback = self.controller.transport_control
        if playback.player is self.worker:  # a file: samples at the frame's video time
            t_s, frame_index = result.frame.timestamp_s, result.frame.index
        else:
            t_s, frame_index = now - self._t0, None
        self.window.plots.add_sample(t_s, track.focal_px, track.focal_sigma_px, track.focal_state,
                                     track.rho_per_m, self.fps(), result.latency_ms, frame_index=frame_index)
        if track.focal_evidence:
            from core.tracker.types import describe_shares  # noqa: PLC0415  (numpy only: no torch here)

            self.window.plots.set_focal_basis(describe_shares(track.focal_evidence))
        if frame_index is not None:
            playback.on_result(result)
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
        self.controller.runFinished.emit(summary)
