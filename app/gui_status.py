"""The app's status bar and plot redraws, on timers (their cost does not scale with the frame rate).

:class:`StatusControl` is the part of :class:`app.gui.GuiController` that, four times a second,
shows the tracking rate, latency and state of the newest result and the recorder's clock, and,
five times a second, asks the plots to redraw.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QTimer

STATUS_INTERVAL_MS = 250
PLOT_INTERVAL_MS = 200  # plots redraw at 5 Hz: ~10 ms CPU each on a software-rendered desktop


class StatusControl(QObject):
    """Status bar and plot timers for a :class:`app.gui.GuiController` (see the module docstring)."""

    def __init__(self, controller):
        super().__init__(controller)
        self.controller = controller
        self.window = w = controller.window
        self.status_timer = QTimer(self)
        self.status_timer.setInterval(STATUS_INTERVAL_MS)
        self.status_timer.timeout.connect(self.update_status)
        self.status_timer.start()
        self.plot_timer = QTimer(self)
        self.plot_timer.setInterval(PLOT_INTERVAL_MS)
        self.plot_timer.timeout.connect(w.plots.refresh)
        self.plot_timer.start()

    def stop(self) -> None:
        self.status_timer.stop()
        self.plot_timer.stop()

    def update_status(self) -> None:
        w = self.window
        self.controller.recording_control.show_progress()
        self.controller.stream_control.refresh()
        sessions = self.controller.session_control
        if not sessions.running or sessions.latest is None:
            return
        latest = sessions.latest
        track = latest.track
        fps = sessions.fps()
        state = track.tracking_state.replace("_", " ")
        if latest.num_faces > 1:
            state += f" ({latest.num_faces} faces)"
        w.set_status(fps=f"{fps:.1f} fps" if fps == fps else "– fps", latency=f"latency {latest.latency_ms:.0f} ms",
                     state=state)
