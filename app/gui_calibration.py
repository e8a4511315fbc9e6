"""The app's calibration mode: the "Calibrate camera" tab wired to the calibration thread.

:class:`CalibrationControl` is the part of :class:`app.gui.GuiController` that, in calibration
mode, stops tracking and reads the same source in a :class:`app.gui_worker.CalibrationThread`
(board detection there), whose frames feed the page's ``CalibrationSession``. A saved camera
profile becomes the Camera panel's choice (automatic when it is stored under the camera's own
name), so tracking, restarted on returning to the Track tab, uses it: fixed focal length and
principal point, landmarks undistorted, overlay distorted back.
"""
from __future__ import annotations

from PySide6.QtCore import QObject

from app.gui_worker import CalibrationThread


class CalibrationControl(QObject):
    """Calibration mode for a :class:`app.gui.GuiController` (see the module docstring)."""

    def __init__(self, controller):
        super().__init__(controller)
        self.controller = controller
        self.window = controller.window
        self.calibration: CalibrationThread | None = None
        self.calibration_info = None  # CalibrationSourceInfo of the running calibration
        self._calibration_id = 0
        self._resume_tracking = False  # tracking ran when calibration mode was entered
        self.saved_profiles: list[str] = []  # profile files saved from calibration mode, newest last

    @property
    def calibrating(self) -> bool:
        return self.calibration is not None and self.calibration.isRunning()

    def on_mode_changed(self, mode: str) -> None:
        if mode == "calibrate":
            self.start_calibration()
        else:
            self.stop_thread()
            if self._resume_tracking:
                self._resume_tracking = False
                self.controller.start()

    def start_calibration(self) -> CalibrationThread | None:
        """Stop tracking and look for the board in the current source's frames (calibration mode)."""
        page = self.window.calibration_page
        try:
            board = page.board()
        except ValueError as exc:
            self.window.show_message(f"Cannot calibrate with the board {page.board_text()!r}: {exc}", "error")
            return None
        self.controller.review_control.close()
        sessions = self.controller.session_control
        if sessions.worker is not None:
            self._resume_tracking = self._resume_tracking or sessions.running
            sessions.stop()
        self.stop_thread()
        if self.window.mode() != "calibrate":
            self.window.set_mode("calibrate", emit=False)
        self._calibration_id += 1
        thread = CalibrationThread(sessions.options(), board, source_factory=sessions.source_factory)
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
        self.stop_thread()
        self.window.calibration_page.set_running(False)

    def stop_thread(self) -> None:
        thread, self.calibration = self.calibration, None
        if thread is None:
            return
        thread.shutdown()  # joined: the camera must be free for the next user
        self.controller.retire(thread)
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

    def on_profile_saved(self, path: str) -> None:
        """Make the new profile the one tracking uses, and say so."""
        from core.profiles import CameraProfile, ProfileError  # noqa: PLC0415

        try:
            profile = CameraProfile.load(path)
        except (ProfileError, OSError) as exc:
            self.window.show_message(f"The profile was saved to {path} but cannot be read back: {exc}", "error")
            return
        self.saved_profiles.append(path)
        self.controller.refresh_profiles()
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
