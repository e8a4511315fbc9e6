"""Live pyqtgraph plots: focal length with its uncertainty, ρ, and fps / latency, on a rolling window.

Samples go into fixed-capacity ring buffers (:class:`RollingSeries`) as results arrive; the curves
are redrawn by :meth:`LivePlots.refresh` (the app calls it on a timer, so plotting cost does not
scale with the frame rate). Pause freezes the display for zooming and panning with the mouse
(wheel / drag; right-click for pyqtgraph's menu) while samples keep being collected.

The focal curve is solid while the data constrain the focal length and dashed grey while it is
"not yet observable" (the estimate is then the prior); the band is ±1σ.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from core.constants import FOCAL_STATES
STATE_COLOURS = {"fixed": "#9aa0a6", "not_observable": "#f29900", "estimating": "#4f9cf5", "converged": "#34a853"}
STATE_TEXT = {"fixed": "fixed", "not_observable": "not yet observable (prior)", "estimating": "estimating",
              "converged": "converged"}
COLUMNS = ("t_s", "focal_px", "focal_sigma_px", "focal_state", "rho_per_m", "fps", "latency_ms")


class RollingSeries:
    """Fixed-capacity ring buffer of float columns; :meth:`view` returns them oldest first."""

    def __init__(self, columns: tuple[str, ...] = COLUMNS, capacity: int = 36000):
        self.columns = columns
        self.capacity = int(capacity)
        self._data = np.full((len(columns), self.capacity), np.nan)
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, **values: float) -> None:
        column = self._data[:, self._next]
        for i, name in enumerate(self.columns):
            column[i] = values.get(name, math.nan)
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def clear(self) -> None:
        self._data[:] = np.nan
        self._next = self._count = 0

    def view(self, since: float | None = None) -> dict[str, np.ndarray]:
        """Columns (copies) in time order; ``since``: only samples with t_s >= since."""
        if self._count < self.capacity:
            data = self._data[:, : self._count]
        else:
            data = np.roll(self._data, -self._next, axis=1)
        if since is not None and data.shape[1]:
            data = data[:, np.searchsorted(data[0], since):]
        return {name: data[i].copy() for i, name in enumerate(self.columns)}

    def first(self, name: str) -> float:
        if not self._count:
            return math.nan
        oldest = 0 if self._count < self.capacity else self._next
        return float(self._data[self.columns.index(name), oldest])

    def last(self, name: str) -> float:
        if not self._count:
            return math.nan
        return float(self._data[self.columns.index(name), (self._next - 1) % self.capacity])


class LivePlots(QWidget):
    """Three linked plots (focal length, ρ, fps / latency) over a rolling time window."""

    pausedChanged = Signal(bool)

    def __init__(self, window_s: float = 20.0, capacity: int = 36000, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, foreground="#d0d0d0", background="#1e1f22")
        self.series = RollingSeries(capacity=capacity)
        self._dirty = False
        self.redraws = 0

        self.window_spin = QDoubleSpinBox()
        self.window_spin.setRange(2.0, 600.0)
        self.window_spin.setDecimals(0)
        self.window_spin.setSuffix(" s")
        self.window_spin.setValue(window_s)
        self.window_spin.setToolTip("Length of the rolling time window")
        self.window_spin.valueChanged.connect(self._mark_dirty)
        self.pause_box = QCheckBox("Pause")
        self.pause_box.setToolTip("Freeze the plots to zoom (mouse wheel) and pan (drag); data keep being collected")
        self.pause_box.toggled.connect(self._on_pause)
        clear_button = QPushButton("Clear")
        clear_button.clicked.connect(self.clear)
        self.focal_label = QLabel("focal length: –")
        self.focal_label.setTextFormat(Qt.TextFormat.RichText)
        bar = QHBoxLayout()
        bar.addWidget(self.focal_label, 1)
        bar.addWidget(QLabel("Window"))
        bar.addWidget(self.window_spin)
        bar.addWidget(self.pause_box)
        bar.addWidget(clear_button)

        self.focal_plot = self._plot("focal length", "px")
        self.rho_plot = self._plot("ρ", "1/m")
        self.rate_plot = self._plot("fps", "1/s")
        for plot in (self.rho_plot, self.rate_plot):
            plot.setXLink(self.focal_plot)
        for plot in (self.focal_plot, self.rho_plot):  # one time axis, at the bottom (each costs a repaint)
            plot.hideAxis("bottom")
        self.rate_plot.setLabel("bottom", "time", "s")

        band_brush = pg.mkBrush(79, 156, 245, 60)
        # Bare curve items (an invisible pen, not None: a PlotDataItem without a pen drops its data).
        self.focal_upper = pg.PlotCurveItem(pen=pg.mkPen(0, 0, 0, 0))
        self.focal_lower = pg.PlotCurveItem(pen=pg.mkPen(0, 0, 0, 0))
        self.focal_plot.addItem(self.focal_upper)
        self.focal_plot.addItem(self.focal_lower)
        self.focal_band = pg.FillBetweenItem(self.focal_upper, self.focal_lower, brush=band_brush)
        self.focal_plot.addItem(self.focal_band)
        self.focal_curve = self.focal_plot.plot(pen=pg.mkPen("#4f9cf5", width=2), name="focal length", connect="finite")
        self.focal_prior_curve = self.focal_plot.plot(
            pen=pg.mkPen(STATE_COLOURS["not_observable"], width=2, style=Qt.PenStyle.DashLine),
            name="not yet observable (prior)", connect="finite")
        self.rho_curve = self.rho_plot.plot(pen=pg.mkPen("#e8eaed", width=2), name="ρ", connect="finite")
        self.fps_curve = self.rate_plot.plot(pen=pg.mkPen("#34a853", width=2), name="fps", connect="finite")
        # Latency on its own right-hand axis (milliseconds), sharing the time axis.
        self.rate_plot.showAxis("right")
        self.rate_plot.setLabel("right", "latency", "ms")
        self.latency_box = pg.ViewBox()
        self.rate_plot.scene().addItem(self.latency_box)
        self.rate_plot.getAxis("right").linkToView(self.latency_box)
        self.latency_box.setXLink(self.rate_plot)
        self.latency_curve = pg.PlotDataItem(pen=pg.mkPen("#f28b82", width=1.5), name="latency (ms)", connect="finite")
        self.latency_box.addItem(self.latency_curve)
        self.rate_plot.getPlotItem().legend.addItem(self.latency_curve, "latency (ms)")
        self.rate_plot.getViewBox().sigResized.connect(self._sync_latency_box)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        layout.addLayout(bar)
        for plot in (self.focal_plot, self.rho_plot, self.rate_plot):
            layout.addWidget(plot, 1)

    def _plot(self, title: str, units: str) -> pg.PlotWidget:
        plot = pg.PlotWidget()
        plot.setMinimumHeight(50)
        plot.setLabel("left", title, units)
        # No grid: on a software-rendered desktop the grid lines double the cost of each redraw
        # (measured: 50 -> 23 ms CPU per refresh of the three plots at 1280x300).
        plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        plot.getPlotItem().setAutoVisible(y=True)
        plot.getAxis("left").enableAutoSIPrefix(False)  # "1200 px", not "1.2 kpx"
        plot.setMouseEnabled(x=True, y=True)
        return plot

    def _sync_latency_box(self) -> None:
        self.latency_box.setGeometry(self.rate_plot.getViewBox().sceneBoundingRect())

    # -- data ---------------------------------------------------------------------------------------

    @property
    def window_s(self) -> float:
        return float(self.window_spin.value())

    @property
    def paused(self) -> bool:
        return self.pause_box.isChecked()

    def set_paused(self, paused: bool) -> None:
        self.pause_box.setChecked(paused)

    def add_sample(self, t_s: float, focal_px: float, focal_sigma_px: float, focal_state: str, rho_per_m: float,
                   fps: float, latency_ms: float, frame_index: int | None = None) -> None:
        """One result. ``frame_index``: where a file's series (``ui.frame_series``) stores it."""
        code = FOCAL_STATES.index(focal_state) if focal_state in FOCAL_STATES else math.nan
        extra = {} if frame_index is None else {"frame_index": frame_index}
        self.series.append(t_s=t_s, focal_px=focal_px, focal_sigma_px=focal_sigma_px, focal_state=code,
                           rho_per_m=rho_per_m, fps=fps, latency_ms=latency_ms, **extra)
        self._last_state = focal_state
        self._dirty = True

    def use_series(self, series=None) -> None:
        """Draw ``series`` (e.g. a file's ``ui.frame_series.FrameSeries``); None: the rolling one again."""
        if isinstance(self.series, RollingSeries):
            self._rolling = self.series  # back in use for the next camera
        self.series = series if series is not None else self._rolling
        self._dirty = True

    def clear(self) -> None:
        self.series.clear()
        for curve in (self.focal_curve, self.focal_prior_curve, self.focal_upper, self.focal_lower, self.rho_curve,
                      self.fps_curve, self.latency_curve):
            curve.setData([], [])
        self.focal_label.setText("focal length: –")
        self._dirty = False

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _on_pause(self, paused: bool) -> None:
        if not paused:
            self._dirty = True
            self.refresh()
        self.pausedChanged.emit(paused)

    def refresh(self) -> bool:
        """Redraw the curves if new samples arrived and the plots are not paused; True if redrawn."""
        if not self._dirty or self.paused or not len(self.series):
            return False
        self._dirty = False
        t_last = self.series.last("t_s")
        start = max(t_last - self.window_s, self._t_first())  # fills from the left, then scrolls
        # A little history to the left so lines enter the window instead of starting inside it.
        d = self.series.view(since=start - 0.05 * self.window_s)
        t, focal, sigma, state = d["t_s"], d["focal_px"], d["focal_sigma_px"], d["focal_state"]
        prior = state == FOCAL_STATES.index("not_observable")
        observed = np.where(prior, np.nan, focal)
        # The dashed curve reaches one sample into its neighbours so the line has no gap.
        joined = prior.copy()
        joined[:-1] |= prior[1:]
        joined[1:] |= prior[:-1]
        guessed = np.where(joined, focal, np.nan)
        sig = np.nan_to_num(sigma, nan=0.0)
        self.focal_curve.setData(t, observed)
        self.focal_prior_curve.setData(t, guessed)
        self.focal_upper.setData(t, focal + sig)
        self.focal_lower.setData(t, focal - sig)
        self.rho_curve.setData(t, d["rho_per_m"])
        self.fps_curve.setData(t, d["fps"])
        self.latency_curve.setData(t, d["latency_ms"])
        self.focal_plot.setXRange(start, max(t_last, start + self.window_s), padding=0)
        finite_latency = d["latency_ms"][np.isfinite(d["latency_ms"])]
        if finite_latency.size:
            self.latency_box.setYRange(0.0, float(finite_latency.max()) * 1.1 + 1.0, padding=0)
        # The readout is the newest sample (a file's series: the frame shown, which need not be the last).
        now = {name: self.series.last(name) for name in ("focal_px", "focal_sigma_px", "focal_state", "rho_per_m")}
        self._update_label(now["focal_px"], np.nan_to_num(now["focal_sigma_px"]),
                           int(now["focal_state"]) if np.isfinite(now["focal_state"]) else -1, now["rho_per_m"])
        self.redraws += 1
        return True

    def _t_first(self) -> float:
        return self.series.first("t_s") if len(self.series) else 0.0

    def _update_label(self, focal: float, sigma: float, code: int, rho: float) -> None:
        state = FOCAL_STATES[code] if 0 <= code < len(FOCAL_STATES) else "unknown"
        colour = STATE_COLOURS.get(state, "#d0d0d0")
        text = STATE_TEXT.get(state, state)
        rho_text = f"ρ = {rho:.2f} 1/m" if np.isfinite(rho) else "ρ = –"
        self.focal_label.setText(f"focal length <b>{focal:.0f} ± {sigma:.0f} px</b> "
                                 f"<span style='color:{colour}'>● {text}</span> &nbsp; {rho_text}")
