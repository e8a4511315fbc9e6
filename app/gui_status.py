"""The app's status bar and plot redraws, on one timer (their cost does not scale with the frame rate).

:class:`StatusControl` is the part of :class:`app.gui.GuiController` that, four times a second,
shows the tracking rate, latency and state of the newest result and the recorder's clock, and asks
the plots to redraw. One tick for both: every widget update costs a repaint of the window on a
software-rendered desktop, so the status and the plots share one (``benchmarks/gui.py``).
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QTimer

STATUS_INTERVAL_MS = 250
PLOT_INTERVAL_MS = STATUS_INTERVAL_MS  # plots redraw at 4 Hz, on the status bar's tick: ~10 ms CPU each


class StatusControl(QObject):
    """Status bar and plot timers for a :class:`app.gui.GuiController` (see the module docstring)."""

    def __init__(self, controller):
        super().__init__(controller)
        self.controller = controller
        self.window = w = controller.window
        self.timer = QTimer(self)
        self.timer.setInterval(STATUS_INTERVAL_MS)
        self.timer.timeout.connect(self.update_status)
        self.timer.timeout.connect(w.plots.refresh)
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

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
