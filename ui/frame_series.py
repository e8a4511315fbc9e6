"""Plot samples of a file, stored by frame index: the series :class:`ui.plots.LivePlots` draws for a
video file, an image folder or a recorded take.

A live camera's samples arrive in time order and scroll by (``ui.plots.RollingSeries``). A file's
samples are placed by frame (video time): a seek back overwrites the frames tracked again, and a
take loads whole. :meth:`last` is the value at the *cursor* (the frame under the slider; by default
the frame written last), so the plots' window ends there (or starts at the first frame while the
cursor is within the first window) and their readout is the frame shown. Same interface as
``RollingSeries`` (``append``, ``view``, ``first``, ``last``, ``clear``, ``len``). Numpy only.
"""
from __future__ import annotations

import math

import numpy as np

from ui.plots import COLUMNS


class FrameSeries:
    """Float columns per frame index (NaN: not tracked); ``t_s`` is the frame's video time."""

    def __init__(self, num_frames: int | None, fps: float, columns: tuple[str, ...] = COLUMNS):
        self.columns = columns
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self._data = np.full((len(columns), max(1, int(num_frames or 1))), np.nan)
        self._filled = np.zeros(self._data.shape[1], bool)
        self.cursor = -1  # frame index whose window is shown (-1: none yet)

    def __len__(self) -> int:
        return int(self._filled.sum())

    @property
    def num_frames(self) -> int:
        return int(self._data.shape[1])

    def _grow(self, index: int) -> None:
        if index >= self._data.shape[1]:  # the container's frame count was too low
            extra = max(index + 1, 2 * self._data.shape[1]) - self._data.shape[1]
            self._data = np.concatenate([self._data, np.full((len(self.columns), extra), np.nan)], axis=1)
            self._filled = np.concatenate([self._filled, np.zeros(extra, bool)])

    def append(self, frame_index: int | None = None, **values: float) -> None:
        """Store frame ``frame_index``'s values (replacing earlier ones) and make it the cursor.
        Without a frame index, the frame is found from ``t_s`` and the frame rate."""
        if frame_index is None:
            frame_index = int(round(values.get("t_s", math.nan) * self.fps))
        index = int(frame_index)
        if index < 0:
            return
        self._grow(index)
        for i, name in enumerate(self.columns):
            self._data[i, index] = values.get(name, math.nan)
        if not math.isfinite(self._data[0, index]):
            self._data[0, index] = index / self.fps
        self._filled[index] = True
        self.cursor = index

    def load(self, frame_index: np.ndarray, **columns: np.ndarray) -> None:
        """Store many frames at once (a recorded take); the cursor goes to the first of them."""
        index = np.asarray(frame_index, np.int64)
        if not index.size:
            return
        self._grow(int(index.max()))
        for i, name in enumerate(self.columns):
            if name in columns:
                self._data[i, index] = np.asarray(columns[name], np.float64)
        missing_t = ~np.isfinite(self._data[0, index])
        self._data[0, index[missing_t]] = index[missing_t] / self.fps
        self._filled[index] = True
        self.cursor = int(index.min())

    def set_cursor(self, frame_index: int) -> None:
        self.cursor = int(frame_index)

    def clear(self) -> None:
        self._data[:] = np.nan
        self._filled[:] = False
        self.cursor = -1

    def span(self) -> tuple[int, int]:
        """[first, last] filled frame indices (last > first - 1), or (0, -1) when empty."""
        filled = np.flatnonzero(self._filled)
        return (int(filled[0]), int(filled[-1])) if filled.size else (0, -1)

    def time_of(self, frame_index: int) -> float:
        """The video time of a frame: its stored time, else index / fps."""
        if 0 <= frame_index < self._data.shape[1] and math.isfinite(self._data[0, frame_index]):
            return float(self._data[0, frame_index])
        return frame_index / self.fps

    def frame_at(self, t_s: float) -> int:
        """The frame whose video time is nearest to ``t_s`` (tracked frames first, else by the frame rate)."""
        filled = np.flatnonzero(self._filled)
        guess = max(0, int(round(t_s * self.fps)))
        if not filled.size:
            return guess
        times = self._data[0, filled]
        nearest = int(filled[np.argmin(np.abs(times - t_s))])
        # between tracked frames (e.g. frames dropped while playing), the frame rate knows better
        return nearest if abs(self.time_of(nearest) - t_s) <= 0.5 / self.fps else guess

    def view(self, since: float | None = None) -> dict[str, np.ndarray]:
        """Columns (copies) in frame order, NaN values for frames not tracked (so lines break there;
        their ``t_s`` is index / fps); ``since``: only frames from video time ``since`` on."""
        first, last = self.span()
        data = self._data[:, first:last + 1].copy()
        filled = self._filled[first:last + 1]
        data[1:, ~filled] = np.nan
        data[0] = np.where(filled & np.isfinite(data[0]), data[0], np.arange(first, first + data.shape[1]) / self.fps)
        if since is not None and data.shape[1]:
            data = data[:, int(np.searchsorted(data[0], since)):]
        return {name: data[i] for i, name in enumerate(self.columns)}

    def first(self, name: str) -> float:
        first, last = self.span()
        return float(self._data[self.columns.index(name), first]) if last >= first else math.nan

    def last(self, name: str) -> float:
        """The value at the cursor (the frame shown), else at the last frame tracked."""
        first, last = self.span()
        if last < first:
            return math.nan
        index = self.cursor if 0 <= self.cursor < self._data.shape[1] and self._filled[self.cursor] else last
        return float(self._data[self.columns.index(name), index])
