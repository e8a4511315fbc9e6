"""Playback of a seekable source (a video file or an image folder): play at the file's own frame
rate or as fast as the engine goes, pause, step and seek.

:class:`Transport` holds the commands (thread-safe: the GUI thread gives them) and the state a
UI shows. :class:`PlaybackReader` is the loop of the thread that reads the frames (the engine's
landmark thread in ``core.pipeline``, or the thread that plays a recorded take): it follows the
commands and yields each frame with the *generation* it was read in and whether it follows a cut.

Every seek starts a new generation, so a consumer drops frames read before the latest seek
(:meth:`Transport.is_current`): a dragged slider shows the newest position, never a queue of old
ones. A frame reached by a jump (a seek, or a step to any frame but the next) is a *cut*: the
tracker restarts the pose there (``Tracker.reset_pose``) while identity and focal length, shared
estimates of the same footage, stay.

Pacing at the file's rate: during a run of playback, frame ``k`` is due ``k / fps`` after the run
began. A reader that falls behind (a slower engine) by ``CATCH_UP_FRAMES`` passes over the frames
already due, so the picture keeps to the file's clock (latest wins, as with a camera); one a frame
late (a thread woken late) reads on at once; an early one waits, and any command ends the wait. Pausing, seeking or changing the rate begins a new run. Nothing here
imports Qt.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from core.sources import Frame, FrameSource

POLL_S = 0.05  # how often a waiting reader looks at its stop event
CATCH_UP_FRAMES = 2  # a reader this many frames late passes over them; less late, it reads on at once


@dataclass(frozen=True)
class TransportState:
    """What the transport is doing, for a UI."""

    playing: bool
    realtime: bool  # paced to the file's frame rate (False: as fast as the engine goes)
    position: int  # index of the frame read last (-1: none yet)
    num_frames: int | None  # frames in the file (corrected when its end is reached)
    fps: float
    at_end: bool  # the last frame was read; playing stopped there
    generation: int
    idle: bool = False  # the reader is waiting for a command (paused, nothing more will be read)


class Transport:
    """Commands for a :class:`PlaybackReader` (see the module docstring); safe from any thread."""

    def __init__(self, playing: bool = True, realtime: bool = True):
        self._cond = threading.Condition()
        self._playing, self._realtime = bool(playing), bool(realtime)
        self._target: int | None = None  # a pending jump: the frame to read next
        self._generation = 0
        self._position = -1
        self._at_end = False
        self._num_frames: int | None = None
        self._fps = 30.0
        self._idle = False
        self._listeners: list[Callable[[TransportState], None]] = []

    # -- commands ---------------------------------------------------------------------------------

    def play(self) -> None:
        """Play on (from the start again when at the end)."""
        with self._cond:
            if self._at_end:
                self._jump(0)
            self._playing = True
        self._changed()

    def pause(self) -> None:
        with self._cond:
            self._playing = False
        self._changed()

    def toggle(self) -> None:
        if self.state().playing:
            self.pause()
        else:
            self.play()

    def set_playing(self, playing: bool) -> None:
        self.play() if playing else self.pause()

    def set_realtime(self, realtime: bool) -> None:
        """Pace to the file's frame rate (True) or read as fast as the consumer takes frames."""
        with self._cond:
            self._realtime = bool(realtime)
        self._changed()

    def seek(self, index: int) -> None:
        """Read frame ``index`` next (a cut unless it is the next frame anyway); playing goes on from
        there, a paused transport delivers that one frame. Frames read before are stale."""
        with self._cond:
            self._jump(index)
        self._changed()

    def step(self, shown_index: int, delta: int) -> None:
        """Pause and read the frame ``delta`` away from ``shown_index`` (the frame on screen)."""
        with self._cond:
            self._playing = False
            self._jump(shown_index + delta)
        self._changed()

    def _jump(self, index: int) -> None:
        index = max(0, int(index))
        if self._num_frames is not None:
            index = min(index, self._num_frames - 1)
        self._target = index
        self._generation += 1
        self._at_end = False
        self._cond.notify_all()

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> TransportState:
        with self._cond:
            return TransportState(self._playing, self._realtime, self._position, self._num_frames, self._fps,
                                  self._at_end, self._generation, self._idle)

    @property
    def generation(self) -> int:
        return self._generation

    def is_current(self, generation: int) -> bool:
        """False for a frame read before the latest seek (drop it)."""
        return generation == self._generation

    @property
    def drops_frames(self) -> bool:
        """Playing at the file's rate: a slower consumer should get the newest frame (latest wins)."""
        return self._playing and self._realtime

    def add_listener(self, listener: Callable[[TransportState], None]) -> None:
        """Call ``listener(state)`` after every change (from the thread that made it)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        state = self.state()
        for listener in list(self._listeners):
            listener(state)

    # -- the reader's side --------------------------------------------------------------------------

    def _attach(self, num_frames: int | None, fps: float | None) -> float:
        with self._cond:
            self._num_frames = num_frames
            self._fps = float(fps) if fps and fps > 0 else 30.0
            if self._target is not None and num_frames is not None:
                self._target = min(self._target, num_frames - 1)
            fps = self._fps
        self._changed()
        return fps

    def _next_command(self, stop: threading.Event) -> tuple[int | None, int, bool, bool] | None:
        """Wait until there is something to read; (jump target or None, generation, realtime, waited)
        with the jump taken, or None once ``stop`` is set. ``waited``: playback was paused meanwhile."""
        waited = False
        with self._cond:
            while not stop.is_set() and self._target is None and not (self._playing and not self._at_end):
                waited = self._idle = True
                self._cond.wait(POLL_S)
            self._idle = False
            if stop.is_set():
                return None
            target, self._target = self._target, None
            return target, self._generation, self._realtime, waited

    def _wait_unless_commanded(self, seconds: float) -> None:
        with self._cond:
            if self._target is None and self._playing and seconds > 0:
                self._cond.wait(min(seconds, POLL_S))

    def _delivered(self, index: int) -> None:
        with self._cond:
            self._position = index
        self._changed()

    def _reached_end(self, frames_read: int) -> None:
        with self._cond:
            self._playing = False
            self._at_end = True
            if self._num_frames is None or frames_read < self._num_frames:
                self._num_frames = frames_read  # the container's count was too high
        self._changed()


class PlaybackReader:
    """Reads a seekable ``source`` as ``transport`` says until ``stop`` is set (module docstring).

    Iterating yields ``(frame, generation, cut)``. At the end of the file it pauses there and
    waits for a command (play starts again from the first frame). ``dropped`` counts the frames
    passed over to keep to the file's clock."""

    def __init__(self, source: FrameSource, transport: Transport, stop: threading.Event):
        if not getattr(source, "seekable", False):
            raise ValueError(f"{source.name}: playback needs a seekable source (a video file or an image folder)")
        self.source, self.transport, self.stop = source, transport, stop
        self.dropped = 0

    def __iter__(self) -> Iterator[tuple[Frame, int, bool]]:
        src, t = self.source, self.transport
        fps = t._attach(src.num_frames, src.fps)
        run: tuple[int, float] | None = None  # (first index, start time) of the current paced run
        while True:
            command = t._next_command(self.stop)
            if command is None:
                return
            target, generation, realtime, waited = command
            if waited:
                run = None  # paused meanwhile: a new run starts now
            cut = False
            if target is not None:
                run = None
                if target != src.position:
                    src.seek(target)
                    cut = True
            elif realtime:
                now = time.monotonic()
                if run is None:
                    run = (src.position, now)
                due = run[0] + int((now - run[1]) * fps)  # the frame whose time has come
                if src.position <= due - CATCH_UP_FRAMES:  # behind the file's clock: pass over what is late
                    last = due if src.num_frames is None else min(due, src.num_frames - 1)
                    if last > src.position:
                        self.dropped += last - src.position
                        src.skip(last - src.position)
                elif src.position > due:  # early: wait for the frame's time (a command ends the wait)
                    t._wait_unless_commanded(run[1] + (src.position - run[0]) / fps - now)
                    continue
            else:
                run = None
            frame = src.read()
            if frame is None:
                t._reached_end(src.position)
                run = None
                continue
            t._delivered(frame.index)
            yield frame, generation, cut
