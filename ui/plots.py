"""Live pyqtgraph plots: focal length with its uncertainty, ρ, and fps / latency, on a rolling window.

Samples go into fixed-capacity ring buffers (:class:`RollingSeries`) as results arrive; the curves
are redrawn by :meth:`LivePlots.refresh` (the app calls it on a timer, so plotting cost does not
scale with the frame rate). Pause freezes the display and shows the whole history for zooming and
panning with the mouse (wheel / drag; right-click for pyqtgraph's menu) while samples keep being
collected.

The focal curve is solid while the data constrain the focal length and dashed orange while it is
"not yet observable" (the estimate is then the prior); the band is ±1σ.

Cheap redraws keep the GUI thread free for the video (measured under Xvfb, software rendering):
one graphics view for the three plots (one paint, not three), no redraw while hidden, curves
decimated to about two points per pixel column (:func:`decimate`, which keeps peaks and the newest
sample), the band one filled outline (:func:`band_polygon`; pyqtgraph's FillBetweenItem rebuilt two
paths in Python per redraw), y ranges that change only when the data leave them or shrink to a
third (:func:`steady_range`: no autoRange pass, no re-laid-out tick labels per redraw), axes of
fixed width, 1-pixel pens (Qt's raster engine strokes wider lines as polygons) and a readout that
does not re-lay out the window (:class:`ui.readout.ReadoutLabel`).

The three plots are stacked in little height, so their axis texts are laid out by rules that hold
for any data and any height the widget may get (:meth:`LivePlots._lay_out_axes`): each axis title
fits beside its own plot (:class:`StackedPlotAxis`: the full title, or its unit alone when the plot
is low), the axes are wide enough for the title beside the widest tick label the ranges produce, a
tick label stays within its own plot, and the widget is never lower than the plots need for that.
"""
from __future__ import annotations

import html
import math
import time
from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from core.constants import FOCAL_STATES
from ui.readout import ReadoutLabel

STATE_COLOURS = {"fixed": "#9aa0a6", "not_observable": "#f29900", "estimating": "#4f9cf5", "converged": "#34a853"}
STATE_TEXT = {"fixed": "fixed", "not_observable": "not yet observable (prior)", "estimating": "estimating",
              "converged": "converged"}
COLUMNS = ("t_s", "focal_px", "focal_sigma_px", "focal_state", "rho_per_m", "fps", "latency_ms")
POINTS_PER_PIXEL = 2  # decimation limit for the live view: min and max per pixel column
# The band's outline: one bucket per 8 pixel columns. Filling a polygon costs Qt's raster engine
# superlinearly in its vertices (measured: 1200 -> 3.1 ms, 300 -> 0.27 ms, 150 -> 0.09 ms per fill).
BAND_PX_PER_BUCKET = 8
PAUSED_MAX_POINTS = 12000  # the whole history when paused (zoomable), decimated beyond this
# Left and right axes have one fixed width (changing tick labels never re-lay out the plots; the
# stacked plots' x axes stay aligned), computed from the font for a tick label as wide as this one:
# steady_range's least span (2% of the value) gives at most three decimals or five digits.
WIDEST_TICK_LABEL = "-0.000"
TITLE_GAP_PX = 2  # between an axis title and the tick labels beside it
ROW_SPACING_PX = 6  # between the stacked plots; a tick label may reach half of it past its plot
TICK_LABELS_PER_ROW = 2  # a plot is at least this many tick labels high (the window's least height)
TICK_LABEL_PITCH = 1.25  # least distance between major tick labels of a vertical axis, in label heights


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
        """Columns (copies) in time order; ``since``: only samples with t_s >= since (the first
        column must be ascending). Copies only the samples returned."""
        oldest = 0 if self._count < self.capacity else self._next
        skip = 0
        if since is not None and self._count:
            # binary search over the ring in logical order (index i is slot (oldest + i) % capacity)
            t = self._data[0]
            lo, hi = 0, self._count
            while lo < hi:
                mid = (lo + hi) // 2
                if t[(oldest + mid) % self.capacity] < since:
                    lo = mid + 1
                else:
                    hi = mid
            skip = lo
        first = (oldest + skip) % self.capacity
        n = self._count - skip
        if first + n <= self.capacity:
            data = self._data[:, first:first + n].copy()
        else:
            data = np.concatenate([self._data[:, first:], self._data[:, :first + n - self.capacity]], axis=1)
        return {name: data[i] for i, name in enumerate(self.columns)}

    def first(self, name: str) -> float:
        if not self._count:
            return math.nan
        oldest = 0 if self._count < self.capacity else self._next
        return float(self._data[self.columns.index(name), oldest])

    def last(self, name: str) -> float:
        if not self._count:
            return math.nan
        return float(self._data[self.columns.index(name), (self._next - 1) % self.capacity])


# --- drawing helpers (pure numpy) -----------------------------------------------------------------


def bucket_envelope(t: np.ndarray, low: np.ndarray, high: np.ndarray, max_buckets: int):
    """Envelope of a sampled band in at most ``max_buckets`` buckets of consecutive samples.

    t, low, high: (N,) with t ascending. Returns (t_b, low_b, high_b), each (B,): per bucket the
    time of its newest sample, the least ``low`` and the greatest ``high`` (NaN where the bucket
    holds no finite value). Buckets are counted back from the newest sample, so the newest time is
    always kept (t_b[-1] == t[-1]). Inputs with at most ``max_buckets`` samples come back unchanged.
    """
    n = len(t)
    if n <= max_buckets:
        return t, low, high
    per = -(-n // max(1, max_buckets))
    pad = (-n) % per  # the oldest bucket is the short one: padded with NaN in front

    def grid(a: np.ndarray) -> np.ndarray:
        return np.concatenate([np.full(pad, np.nan), a]).reshape(-1, per)

    return grid(t)[:, -1], np.fmin.reduce(grid(low), axis=1), np.fmax.reduce(grid(high), axis=1)


def decimate(t: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """A curve for drawing with at most about ``max_points`` points (N,) -> (M,).

    Unchanged when short enough; else per bucket its least and greatest value (peaks stay visible,
    as pyqtgraph's "peak" mode) followed by the newest sample itself, so the line always ends at the
    latest value (pyqtgraph's own downsampling drops up to a bucket of the newest samples).
    """
    if len(t) <= max_points:
        return t, y
    t_b, low, high = bucket_envelope(t, y, y, max(1, (max_points - 1) // 2))
    return np.append(np.repeat(t_b, 2), t[-1]), np.append(np.column_stack([low, high]).ravel(), y[-1])


def band_polygon(t: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outline of a filled band for one PlotCurveItem with ``fillLevel="enclosed"``.

    t, low, high: (N,). Returns (x, y): for each run of at least two samples where all three are
    finite, forward along ``high`` and back along ``low``; runs separated by NaN (drawn with
    ``connect="finite"``, so each run is its own closed shape).
    """
    finite = np.isfinite(t) & np.isfinite(low) & np.isfinite(high)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    xs: list = []
    ys: list = []
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start < 2:
            continue
        if xs:
            xs.append([np.nan])
            ys.append([np.nan])
        xs += [t[start:end], t[start:end][::-1]]
        ys += [high[start:end], low[start:end][::-1]]
    if not xs:
        return np.empty(0), np.empty(0)
    return np.concatenate(xs), np.concatenate(ys)


def steady_range(current: tuple[float, float] | None, lo: float, hi: float, pad: float = 0.2,
                 min_relative_span: float = 0.02) -> tuple[float, float] | None:
    """The axis range for data spanning [lo, hi], changed as rarely as possible.

    Returns ``current`` while it holds the data and they fill at least a third of it; else [lo, hi]
    widened by ``pad`` of the span on each side (the span at least ``min_relative_span`` of the
    values' magnitude, so a constant shows as a line in the middle). None data (non-finite lo or
    hi) keep ``current``.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return current
    span = max(hi - lo, min_relative_span * max(abs(lo), abs(hi)), 1e-9)
    if current is not None:
        c0, c1 = current
        if c0 <= lo and hi <= c1 and 3 * span >= c1 - c0:
            return current
    mid = 0.5 * (lo + hi)
    half = 0.5 * span * (1 + 2 * pad)
    return mid - half, mid + half


def nice_step(least: float) -> float:
    """The smallest tick interval of the form 1, 2 or 5 × 10^k that is at least ``least`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(least))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= least * (1 - 1e-9):
            return factor * power
    return 10.0 * power


class StackedPlotAxis(pg.AxisItem):
    """An axis of a low plot stacked with others: the first of its titles (longest first, e.g.
    "focal (px)", then "px") that fits along it, none if none fits; on a vertical axis, major tick
    labels at least TICK_LABEL_PITCH label heights apart.

    pyqtgraph centres a title on its axis and draws it whole however short the axis is, so the title
    of a low plot reached into the plots above and below it; and it labels two to about six major
    ticks whatever the axis' length, so in a low plot they were printed over each other. The title
    is chosen again when the axis is resized, not when the plot is redrawn. The titles carry their
    units, so no SI prefix (pyqtgraph would scale the values of a unitless axis by 1000 when its
    range ends just below 1, as an empty plot's does).
    """

    def __init__(self, orientation: str, titles: tuple[str, ...] = (), **kwargs):
        self._titles: tuple[str, ...] = ()
        self._title: str | None = None
        super().__init__(orientation, **kwargs)
        self.setSIPrefixEnableRanges(())
        self.set_titles(*titles)

    @property
    def title(self) -> str:
        """The title shown ("" for none)."""
        return self._title or ""

    @property
    def titles(self) -> tuple[str, ...]:
        return self._titles

    @property
    def vertical(self) -> bool:
        return self.orientation in ("left", "right")

    def set_titles(self, *titles: str) -> None:
        self._titles = titles
        self._title = None
        self._fit_title()

    def title_length_px(self, text: str) -> float:
        """Length of the title ``text`` along the axis, with the text item's margins."""
        return QFontMetricsF(self.label.font()).horizontalAdvance(text) + 2 * self.label.document().documentMargin()

    def title_depth_px(self) -> float:
        """Room the title takes across the axis, with the text item's margins."""
        return QFontMetricsF(self.label.font()).height() + 2 * self.label.document().documentMargin()

    def _fit_title(self) -> None:
        if not self._titles:  # pyqtgraph's own title (none) while no titles are given
            return
        room_px = self.size().height() if self.vertical else self.size().width()
        title = next((text for text in self._titles if self.title_length_px(text) <= room_px), "")
        if title == self._title:
            return
        self._title = title
        if title:
            self.setLabel(title, siPrefixEnableRanges=())  # without, it would bring the prefixes back
        else:
            self.showLabel(False)

    def labelString(self) -> str:  # noqa: N802
        # The titles carry their units; pyqtgraph's string would end in a space (its empty units).
        style = ";".join(f"{key}: {value}" for key, value in self.labelStyle.items())
        return f"<span style='{style}'>{html.escape(self.labelText)}</span>"

    def resizeEvent(self, ev=None) -> None:  # noqa: N802
        self._fit_title()
        super().resizeEvent(ev)  # places the title shown

    def tickSpacing(self, minVal: float, maxVal: float, size: float):  # noqa: N802, N803
        levels = super().tickSpacing(minVal, maxVal, size)
        if not self.vertical or not levels or self._tickSpacing is not None or size <= 0:
            return levels
        label_px = QFontMetricsF(self.style["tickFont"] or self.label.font()).height()
        least = TICK_LABEL_PITCH * label_px * abs(maxVal - minVal) / size
        if levels[0][0] >= least:
            return levels
        # Lower levels are labelled only where pyqtgraph finds room (its textFillLimits).
        major = nice_step(least)
        mantissa = round(major / 10.0 ** math.floor(math.log10(major)))  # 1, 2 or 5
        return [(major, 0), (major / (2 if mantissa == 2 else 5), 0)]


def _finite_bounds(*arrays: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.empty(0)
    if not values.size:
        return math.nan, math.nan
    return float(values.min()), float(values.max())


class LivePlots(QWidget):
    """Three linked plots (focal length, ρ, fps / latency) over a rolling time window."""

    pausedChanged = Signal(bool)

    def __init__(self, window_s: float = 20.0, capacity: int = 36000, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, foreground="#d0d0d0", background="#1e1f22")
        self.series = RollingSeries(capacity=capacity)
        self._dirty = False
        self.redraws = 0
        self.redraw_log: deque[tuple[float, float]] = deque(maxlen=20000)  # (start s, ms) of each refresh
        self.focal_basis = ""  # what the focal length rests on (set_focal_basis)

        self.window_spin = QDoubleSpinBox()
        self.window_spin.setRange(2.0, 600.0)
        self.window_spin.setDecimals(0)
        self.window_spin.setSuffix(" s")
        self.window_spin.setValue(window_s)
        self.window_spin.setToolTip("Length of the rolling time window")
        self.window_spin.valueChanged.connect(self._mark_dirty)
        self.pause_box = QCheckBox("Pause")
        self.pause_box.setToolTip("Freeze the plots to zoom (mouse wheel) and pan (drag) through the whole history; "
                                  "data keep being collected")
        self.pause_box.toggled.connect(self._on_pause)
        clear_button = QPushButton("Clear")
        clear_button.clicked.connect(self.clear)
        self.focal_label = ReadoutLabel("focal length: –")
        bar = QHBoxLayout()
        bar.addWidget(self.focal_label, 1)
        bar.addWidget(QLabel("Window"))
        bar.addWidget(self.window_spin)
        bar.addWidget(self.pause_box)
        bar.addWidget(clear_button)

        # One graphics view holds the three plots: one paint per redraw instead of three.
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)
        self.graphics.ci.setSpacing(ROW_SPACING_PX)
        # Short titles, then the unit alone: the three plots share ~150-300 px of height.
        self.focal_plot = self._plot(0, "focal (px)", "px")
        self.rho_plot = self._plot(1, "ρ (1/m)", "1/m")
        self.rate_plot = self._plot(2, "fps (1/s)", "fps")
        for plot in (self.rho_plot, self.rate_plot):
            plot.setXLink(self.focal_plot)
        for plot in (self.focal_plot, self.rho_plot):  # one time axis, at the bottom
            plot.hideAxis("bottom")
        self.rate_plot.getAxis("bottom").set_titles("time (s)")
        for plot in (self.focal_plot, self.rho_plot, self.rate_plot):
            for name in ("left", "bottom", "right"):  # with it, every range change re-typesets the axis title
                plot.getAxis(name).enableAutoSIPrefix(False)

        # The ±1σ band: one filled outline (band_polygon), no stroke.
        self.focal_band = pg.PlotCurveItem(pen=None, brush=pg.mkBrush(79, 156, 245, 60), fillLevel="enclosed",
                                           connect="finite")
        self.focal_plot.addItem(self.focal_band)
        self.focal_curve = self._curve(self.focal_plot, STATE_COLOURS["estimating"], "focal length")
        self.focal_prior_curve = self._curve(self.focal_plot, STATE_COLOURS["not_observable"],
                                             "not yet observable (prior)", style=Qt.PenStyle.DashLine)
        self.rho_curve = self._curve(self.rho_plot, "#e8eaed", "ρ")
        self.fps_curve = self._curve(self.rate_plot, "#34a853", "fps")
        # Latency on its own right-hand axis (milliseconds), sharing the time axis.
        self.rate_plot.showAxis("right")
        self.rate_plot.getAxis("right").set_titles("latency (ms)", "ms")
        for plot in (self.focal_plot, self.rho_plot):  # a right axis too keeps the x axes aligned
            plot.showAxis("right", show=True)
            plot.getAxis("right").setStyle(showValues=False)
        self._lay_out_axes()
        self.latency_box = pg.ViewBox(enableMenu=False)
        self.latency_box.setMouseEnabled(x=False, y=False)
        self.rate_plot.scene().addItem(self.latency_box)
        self.rate_plot.getAxis("right").linkToView(self.latency_box)
        self.latency_box.setXLink(self.rate_plot)
        self.latency_curve = pg.PlotDataItem(pen=pg.mkPen("#f28b82", width=1), name="latency (ms)", connect="finite")
        self.latency_box.addItem(self.latency_curve)
        self.rate_plot.legend.addItem(self.latency_curve, "latency (ms)")
        self.rate_plot.getViewBox().sigResized.connect(self._sync_latency_box)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        layout.addLayout(bar)
        layout.addWidget(self.graphics, 1)

    def _plot(self, row: int, *titles: str) -> pg.PlotItem:
        axes = {"left": StackedPlotAxis("left", titles), "right": StackedPlotAxis("right"),
                "bottom": StackedPlotAxis("bottom")}
        plot = self.graphics.addPlot(row=row, col=0, axisItems=axes)
        # No grid: on a software-rendered desktop the grid lines double the cost of each redraw.
        plot.addLegend(offset=(-5, 5), labelTextSize="8pt", colCount=2)  # one row: a low plot would cut a second
        plot.disableAutoRange()  # ranges are set by refresh() (steady_range); autoRange re-scans all items
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=True, y=True)
        return plot

    def _lay_out_axes(self) -> None:
        """Size the axes and the plots so that no axis text runs into another, whatever the data.

        Width: pyqtgraph puts a left title at the axis' outer edge and a right one at its outer edge
        too, the tick labels against the plot; the axis holds both side by side. Height: each plot is
        at least as high as its shortest titles and TICK_LABELS_PER_ROW tick labels, and the widget
        at least as high as the three plots then are (pyqtgraph's view does not grow with its
        layout's minimum: it would cut the plots off). Tick labels may reach only half the row
        spacing past their plot (pyqtgraph lets them reach 15 px, into the neighbour's labels).
        """
        plots = (self.focal_plot, self.rho_plot, self.rate_plot)
        metrics = QFontMetricsF(self.graphics.font())
        style = self.rate_plot.getAxis("left").style
        nudge_px = 5  # pyqtgraph's shift of a vertical title outward, past the axis' edge
        title_px = self.rate_plot.getAxis("left").title_depth_px() - nudge_px
        tick_text_px = max(0, style["tickLength"]) + style["tickTextOffset"][0] + \
            metrics.horizontalAdvance(WIDEST_TICK_LABEL)
        # One width for every axis keeps the stacked plots' x axes aligned.
        width_px = math.ceil(title_px + TITLE_GAP_PX + tick_text_px)
        tick_rows_px = TICK_LABELS_PER_ROW * metrics.height()
        for plot in plots:
            axes = [plot.getAxis(side) for side in ("left", "right")]
            shortest_px = [min(axis.title_length_px(text) for text in axis.titles) for axis in axes if axis.titles]
            for axis in axes:
                axis.setWidth(width_px)
                axis.setMinimumHeight(math.ceil(max([tick_rows_px, *shortest_px])))
                axis.setStyle(hideOverlappingLabels=ROW_SPACING_PX // 2)
        grid = self.graphics.ci.layout
        grid.invalidate()  # its size hints are cached from before the axes' minimum heights
        self.graphics.setMinimumHeight(math.ceil(grid.effectiveSizeHint(Qt.SizeHint.MinimumSize).height()))

    @staticmethod
    def _curve(plot: pg.PlotItem, colour: str, name: str, style=Qt.PenStyle.SolidLine) -> pg.PlotDataItem:
        return plot.plot(pen=pg.mkPen(colour, width=1, style=style), name=name, connect="finite")

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
        self._dirty = True

    def set_focal_basis(self, text: str) -> None:
        """What the focal length rests on, in words (e.g. "EXIF (…) 91% + landmarks 9%"), shown with the
        readout from the next redraw."""
        self.focal_basis = text

    def use_series(self, series=None) -> None:
        """Draw ``series`` (e.g. a file's ``ui.frame_series.FrameSeries``); None: the rolling one again."""
        if isinstance(self.series, RollingSeries):
            self._rolling = self.series  # back in use for the next camera
        self.series = series if series is not None else self._rolling
        self._dirty = True

    def clear(self) -> None:
        self.series.clear()
        self.focal_basis = ""
        for curve in (self.focal_curve, self.focal_prior_curve, self.focal_band, self.rho_curve, self.fps_curve,
                      self.latency_curve):
            curve.setData([], [])
        self.focal_label.setText("focal length: –")
        self._dirty = False

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _on_pause(self, paused: bool) -> None:
        self._dirty = True
        self._draw(whole_history=paused)  # paused: everything collected, to zoom and pan through
        self.pausedChanged.emit(paused)

    @property
    def shown(self) -> bool:
        """Whether a redraw would be seen (not hidden, e.g. the dock closed or tabbed away; not minimised)."""
        return self.isVisible() and not self.window().isMinimized()

    def refresh(self) -> bool:
        """Redraw the curves if new samples arrived, the plots are shown and not paused; True if redrawn.
        While hidden the samples keep being collected and are drawn when the plots are shown again."""
        if not self._dirty or self.paused or not self.shown:
            return False
        return self._draw(whole_history=False)

    def _draw(self, whole_history: bool) -> bool:
        if not len(self.series):
            return False
        self._dirty = False
        t_start = time.perf_counter()
        t_last = self.series.last("t_s")
        start = max(t_last - self.window_s, self._t_first())  # fills from the left, then scrolls
        width_px = max(200, self.graphics.width())
        band_buckets = width_px // BAND_PX_PER_BUCKET
        if whole_history:
            d, max_points = self.series.view(), PAUSED_MAX_POINTS
            band_buckets = PAUSED_MAX_POINTS // BAND_PX_PER_BUCKET
        else:
            # A little history to the left so lines enter the window instead of starting inside it.
            d = self.series.view(since=start - 0.05 * self.window_s)
            max_points = POINTS_PER_PIXEL * width_px
        t, focal, sigma, state = d["t_s"], d["focal_px"], d["focal_sigma_px"], d["focal_state"]
        prior = state == FOCAL_STATES.index("not_observable")
        observed = np.where(prior, np.nan, focal)
        # The dashed curve reaches one sample into its neighbours so the line has no gap.
        joined = prior.copy()
        joined[:-1] |= prior[1:]
        joined[1:] |= prior[:-1]
        guessed = np.where(joined, focal, np.nan)
        sig = np.nan_to_num(sigma, nan=0.0)
        t_band, lower, upper = bucket_envelope(t, focal - sig, focal + sig, band_buckets)
        self.focal_band.setData(*band_polygon(t_band, lower, upper))
        self.focal_curve.setData(*decimate(t, observed, max_points))
        self.focal_prior_curve.setData(*decimate(t, guessed, max_points))
        self.rho_curve.setData(*decimate(t, d["rho_per_m"], max_points))
        self.fps_curve.setData(*decimate(t, d["fps"], max_points))
        self.latency_curve.setData(*decimate(t, d["latency_ms"], max_points))
        if not whole_history:  # live: the window scrolls and the y ranges follow the data shown
            end = max(t_last, start + self.window_s)
            shown = (t >= start) & (t <= end)  # a file's series may hold frames after the one shown
            in_band = (t_band >= start) & (t_band <= end)
            self.focal_plot.setXRange(start, end, padding=0)
            self._follow(self.focal_plot.getViewBox(), *_finite_bounds(lower[in_band], upper[in_band]))
            self._follow(self.rho_plot.getViewBox(), *_finite_bounds(d["rho_per_m"][shown]))
            self._follow(self.rate_plot.getViewBox(), 0.0, _finite_bounds(d["fps"][shown])[1])
            self._follow(self.latency_box, 0.0, _finite_bounds(d["latency_ms"][shown])[1])
        # The readout is the newest sample (a file's series: the frame shown, which need not be the last).
        now = {name: self.series.last(name) for name in ("focal_px", "focal_sigma_px", "focal_state", "rho_per_m")}
        self._update_label(now["focal_px"], np.nan_to_num(now["focal_sigma_px"]),
                           int(now["focal_state"]) if np.isfinite(now["focal_state"]) else -1, now["rho_per_m"])
        self.redraws += 1
        self.redraw_log.append((t_start, (time.perf_counter() - t_start) * 1000))
        return True

    @staticmethod
    def _follow(view: pg.ViewBox, lo: float, hi: float) -> None:
        current = tuple(view.viewRange()[1])
        target = steady_range(current, lo, hi)
        if target is not None and target != current:
            view.setYRange(*target, padding=0)

    def _t_first(self) -> float:
        return self.series.first("t_s") if len(self.series) else 0.0

    def _update_label(self, focal: float, sigma: float, code: int, rho: float) -> None:
        state = FOCAL_STATES[code] if 0 <= code < len(FOCAL_STATES) else "unknown"
        colour = STATE_COLOURS.get(state, "#d0d0d0")
        text = STATE_TEXT.get(state, state)
        rho_text = f"ρ = {rho:.2f} 1/m" if np.isfinite(rho) else "ρ = –"
        basis = self.focal_basis
        basis_html = f" &nbsp; <span style='color:#9aa0a6'>from {html.escape(basis)}</span>" if basis else ""
        self.focal_label.setText(f"focal length <b>{focal:.0f} ± {sigma:.0f} px</b> "
                                 f"<span style='color:{colour}'>● {text}</span> &nbsp; {rho_text}{basis_html}")
