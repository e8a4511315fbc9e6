"""The app's playback of files and takes: the timeline bar, the Playback menu and plot clicks wired
to a :class:`core.transport.Transport`.

:class:`TransportControl` is the part of :class:`app.gui.GuiController` that, while a video file or
image folder is tracked (its :class:`app.gui_worker.TrackingThread`) or a take is reviewed
(:class:`app.gui_review.ReviewThread`), turns play / pause (Space), steps (← →, ±10 with Shift),
first / last frame, "track this frame again", scrubbing and seeking on the timeline strip, and
clicks on the plots into transport commands. It shows each frame's position, video time and states
on the timeline, moves the plots' cursor, and keeps the rate toggle and the position in QSettings
(a file opened again resumes where it was left). ``seek_log`` times each seek from the request to
the result's arrival (``benchmarks/gui.py --playback``).
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject

from ui.frame_series import FrameSeries
from ui.timeline import PlotTimeCursor

SETTINGS_REALTIME = "playback/realtime"
SETTINGS_SOURCE = "playback/last_source"
SETTINGS_FRAME = "playback/last_frame"


class TransportControl(QObject):
    """Playback for a :class:`app.gui.GuiController` (see the module docstring)."""

    def __init__(self, controller):
        super().__init__(controller)
        self.controller = controller
        self.window = w = controller.window
        self.player = None  # the thread whose transport is bound (TrackingThread or ReviewThread)
        self.transport = None
        self.kind = ""  # "file" (tracked) | "take" (reviewed)
        self.key = ""  # the file or take played, for the remembered position
        self.series: FrameSeries | None = None
        self.shown_index = -1
        self.shown_time_s = float("nan")
        self.at_index = -1  # the frame steps count from: the one shown, or one sought and on its way
        self.seek_log: list[list] = []  # [frame index, requested at (perf_counter), result at or None]
        self.cursor = PlotTimeCursor(w.plots, self)
        self.cursor.timeClicked.connect(self.seek_time)
        bar = w.timeline
        bar.playToggled.connect(self.toggle)
        bar.stepRequested.connect(self.step)
        bar.realtimeToggled.connect(self.set_realtime)
        bar.strip.scrubbed.connect(self.scrub)
        bar.strip.seekRequested.connect(self.seek)
        a = w.playback_actions
        a["play"].triggered.connect(self.toggle)
        a["back"].triggered.connect(lambda: self.step(-1))
        a["forward"].triggered.connect(lambda: self.step(1))
        a["back10"].triggered.connect(lambda: self.step(-10))
        a["forward10"].triggered.connect(lambda: self.step(10))
        a["first"].triggered.connect(lambda: self.seek(0))
        a["last"].triggered.connect(lambda: self.seek(max(0, w.timeline.strip.num_frames - 1)))
        a["retrack"].triggered.connect(self.retrack)
        a["fast"].toggled.connect(lambda fast: self.set_realtime(not fast))
        realtime = str(w.settings.value(SETTINGS_REALTIME, "true")).lower() not in ("false", "0")
        bar.set_realtime(realtime)
        a["fast"].setChecked(not realtime)

    # -- binding ------------------------------------------------------------------------------------

    @property
    def bound(self) -> bool:
        return self.transport is not None

    def prepare(self, transport, key: str) -> None:
        """Before a player starts: the remembered rate, and the remembered position of ``key``."""
        transport.set_realtime(self.window.timeline.realtime)
        s = self.window.settings
        if key and s.value(SETTINGS_SOURCE) == key:
            frame = int(s.value(SETTINGS_FRAME, 0) or 0)
            if frame > 0:
                transport.seek(frame)  # clamped to the file's length when it opens

    def bind(self, player, num_frames: int | None, fps: float | None, key: str, kind: str,
             series: FrameSeries | None = None) -> FrameSeries:
        """Play ``player.transport`` from now on; returns the plots' series (a new one unless given)."""
        self.unbind()
        self.player, self.transport, self.kind, self.key = player, player.transport, kind, key
        self.shown_index, self.shown_time_s, self.at_index = -1, float("nan"), -1
        w = self.window
        w.timeline.set_clip(num_frames, fps)
        w.timeline.set_playing(self.transport.state().playing)
        w.timeline.show()
        for action in w.playback_actions.values():
            action.setEnabled(True)
        self.series = series if series is not None else FrameSeries(num_frames, fps or 30.0)
        w.plots.use_series(self.series)
        return self.series

    def unbind(self) -> None:
        """Forget the transport (the session or review ended); the plots go back to a rolling window."""
        if self.transport is None:
            return
        self.save_position()
        self.player = self.transport = self.series = None
        self.kind = self.key = ""
        w = self.window
        w.timeline.hide()
        for name, action in w.playback_actions.items():
            action.setEnabled(name == "fast")
        w.plots.use_series(None)
        w.plots.clear()
        self.cursor.set_time(None)

    def save_position(self) -> None:
        if self.key and self.shown_index >= 0:
            s = self.window.settings
            s.setValue(SETTINGS_SOURCE, self.key)
            s.setValue(SETTINGS_FRAME, self.shown_index)

    def _current(self) -> bool:
        sender = self.sender()
        return self.player is not None and (sender is None or sender is self.player)

    # -- from the player ------------------------------------------------------------------------------

    def on_state(self, state) -> None:
        """A ``core.transport.TransportState`` from the bound player."""
        if not self._current():
            return
        bar = self.window.timeline
        bar.set_playing(state.playing, state.at_end)
        if state.num_frames and state.num_frames != bar.strip.num_frames and state.at_end:
            bar.strip.set_length(state.num_frames)  # the container's count was wrong

    def on_result(self, result) -> None:
        """A frame result of the bound player is being shown."""
        if self.transport is None:
            return
        index, t_s = int(result.frame.index), float(result.frame.timestamp_s)
        self.shown_index, self.shown_time_s, self.at_index = index, t_s, index
        bar = self.window.timeline
        bar.set_position(index, t_s)
        if self.kind == "file":  # a take's states are all known when it opens
            bar.strip.set_frame(index, result.track.tracking_state, result.track.focal_state,
                                getattr(result.track, "segment_id", None))  # segments: where the tracker has them
        elif self.series is not None:
            self.series.set_cursor(index)
            self.window.plots.use_series(self.series)  # redrawn: the window moves with the cursor
        self.cursor.set_time(t_s)
        for entry in self.seek_log[-8:]:
            if entry[0] == index and entry[2] is None:
                entry[2] = time.perf_counter()

    # -- commands -----------------------------------------------------------------------------------

    def toggle(self) -> None:
        if self.transport is not None:
            self.transport.toggle()

    def play(self) -> None:
        if self.transport is not None:
            self.transport.play()

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause()

    def step(self, delta: int) -> None:
        if self.transport is not None:
            target = max(0, self.at_index + int(delta))
            if self.window.timeline.strip.num_frames:
                target = min(target, self.window.timeline.strip.num_frames - 1)
            self.at_index = target
            self.transport.step(target, 0)

    def seek(self, index: int) -> None:
        """Show frame ``index`` (a cut: the pose starts afresh there); playing goes on from it."""
        if self.transport is not None:
            self.seek_log.append([int(index), time.perf_counter(), None])
            del self.seek_log[:-200]
            self.at_index = int(index)
            self.transport.seek(int(index))

    def scrub(self, index: int) -> None:
        """The timeline is being dragged: show frames as it goes (the newest position wins)."""
        if self.transport is not None:
            self.at_index = int(index)
            self.transport.seek(int(index))

    def seek_time(self, t_s: float) -> None:
        """A click on a plot at video time ``t_s``."""
        if self.transport is not None and self.series is not None:
            self.seek(min(max(0, self.series.frame_at(t_s)), max(0, self.window.timeline.strip.num_frames - 1)))

    def retrack(self) -> None:
        """Fit the frame shown again, from a fresh start (as after a seek)."""
        if self.transport is not None and self.shown_index >= 0:
            self.seek(self.shown_index)

    def set_realtime(self, realtime: bool) -> None:
        """The file's own frame rate (True) or as fast as the engine goes; remembered."""
        w = self.window
        w.timeline.set_realtime(realtime)
        fast = w.playback_actions["fast"]
        fast.blockSignals(True)
        fast.setChecked(not realtime)
        fast.blockSignals(False)
        w.settings.setValue(SETTINGS_REALTIME, bool(realtime))
        if self.transport is not None:
            self.transport.set_realtime(realtime)
