"""Wires the Stream panel (``ui.stream_panel``) to the tracking thread's streamer (``core.streaming``).

The tracking thread owns the streamer (a :class:`core.streaming.StreamSwitch`): it sends each frame
result from its own thread and applies a new configuration at its next frame. This object, in the
GUI thread, validates the panel's URL, hands it to the current thread (a thread-safe request) and
turns the streamer's counters into the panel's status line (polled by the app's status timer).
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject

from core.streaming import StreamError, StreamTarget


class StreamControl(QObject):
    """The Stream panel's side of streaming (see the module docstring)."""

    def __init__(self, panel, parent=None):
        super().__init__(parent)
        self.panel = panel
        self.worker = None
        self.url = ""
        self._rate_mark: tuple[float, int] | None = None  # (time, frames sent) of the last refresh
        self._refused_seen = self._errors_seen = 0
        panel.configChanged.connect(self.set_url)
        panel.recenterRequested.connect(self.recenter)
        self.set_url(panel.url())

    def attach(self, worker) -> None:
        """A new tracking thread (before it starts): it streams with the panel's settings."""
        self.worker = worker
        self._rate_mark, self._refused_seen, self._errors_seen = None, 0, 0
        worker.set_stream(self.url)
        self.refresh()

    def set_url(self, url: str) -> None:
        if url:
            try:
                StreamTarget.parse(url)
            except StreamError as exc:
                self.url = ""
                self.panel.show_status(f"Not streaming: {exc}", "error")
                if self.worker is not None:
                    self.worker.set_stream("")
                return
        self.url = url
        self._rate_mark, self._refused_seen, self._errors_seen = None, 0, 0
        if self.worker is not None:
            self.worker.set_stream(url)
        self.refresh()

    def recenter(self) -> None:
        if self.worker is not None:
            self.worker.stream.recenter()

    def refresh(self) -> None:
        """Update the panel's status line from the streamer's counters."""
        panel, worker = self.panel, self.worker
        if not self.url:
            if panel.enabled.isChecked():
                return  # the URL error stays shown
            panel.show_status("Not streaming")
            return
        if worker is None or not worker.isRunning():
            panel.show_status(f"Streams to {self.url} while tracking runs")
            return
        switch = worker.stream
        status = switch.status()
        if status is None or not status.targets:
            panel.show_status(switch.problem or f"Starting to stream to {self.url}…",
                              "error" if switch.problem else "info")
            return
        if status.failure:
            panel.show_status(f"Streaming to {self.url} stopped: {status.failure}", "error")
            return
        target = status.targets[0]
        now = time.monotonic()
        rate = ""
        if self._rate_mark is not None and now > self._rate_mark[0]:
            rate = f", {(target.frames - self._rate_mark[1]) / (now - self._rate_mark[0]):.0f} fps"
        self._rate_mark = (now, target.frames)
        refused_now, self._refused_seen = target.refused > self._refused_seen, target.refused
        failed_now, self._errors_seen = target.errors > self._errors_seen, target.errors
        if refused_now:
            panel.show_status(f"Nothing is listening at {target.url}: start the receiving app (and its "
                              "receiver on this port)", "warning")
        elif failed_now:
            panel.show_status(f"Cannot stream to {target.url}: {target.last_error}", "error")
        else:
            note = f" ({switch.problem})" if switch.problem else ""
            panel.show_status(f"Streaming to {target.url}: {target.frames} frames{rate}{note}",
                              "warning" if switch.problem else "ok")
