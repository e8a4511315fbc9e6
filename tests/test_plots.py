"""The live plots' drawing helpers (pure numpy) and the widget's behaviour: decimation keeps peaks and
the newest sample, the band shows ±σ, the "not yet observable" styling, steady y ranges, no redraw
while hidden, pause shows the whole history; axis titles and tick labels never run into each other;
the readout label repaints without a re-layout."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QObject, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QPainter, QPicture  # noqa: E402
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget  # noqa: E402

from ui.plots import (  # noqa: E402
    STATE_COLOURS,
    LivePlots,
    RollingSeries,
    band_polygon,
    bucket_envelope,
    decimate,
    steady_range,
)

# --- pure helpers --------------------------------------------------------------------------------


def test_rolling_series_view_since_matches_a_plain_filter_after_wrapping():
    series = RollingSeries(("t_s", "v"), capacity=7)
    for i in range(19):  # wrapped twice, the oldest slot in the middle of the buffer
        series.append(t_s=0.5 * i, v=float(i))
    t_all = 0.5 * np.arange(12, 19)
    for since in (-1.0, 6.0, 6.2, 7.5, 8.9, 9.0, 9.5):
        view = series.view(since=since)
        np.testing.assert_array_equal(view["t_s"], t_all[t_all >= since])
        np.testing.assert_array_equal(view["v"], (t_all[t_all >= since] * 2))
    np.testing.assert_array_equal(series.view()["t_s"], t_all)


def test_decimate_keeps_peaks_and_ends_at_the_newest_sample():
    rng = np.random.default_rng(0)
    t = np.arange(10_001) / 30.0
    y = rng.normal(size=t.size)
    y[1234], y[5678] = 40.0, -40.0  # single-sample spikes
    y[-1] = 7.0
    td, yd = decimate(t, y, 500)
    assert len(td) <= 501 and len(td) == len(yd)
    assert td[-1] == t[-1] and yd[-1] == 7.0  # the line ends at the latest value
    assert yd.max() == 40.0 and yd.min() == -40.0  # spikes survive
    assert np.all(np.diff(td) >= 0)
    short_t, short_y = decimate(t[:300], y[:300], 500)
    np.testing.assert_array_equal(short_t, t[:300])  # short enough: unchanged
    np.testing.assert_array_equal(short_y, y[:300])


def test_bucket_envelope_holds_every_sample_and_the_newest_time():
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.uniform(0.02, 0.05, 1003))
    low = rng.normal(size=t.size)
    high = low + rng.uniform(0, 2, t.size)
    low[400:460] = np.nan  # a whole bucket without data
    high[400:460] = np.nan
    tb, lb, hb = bucket_envelope(t, low, high, 50)
    assert len(tb) <= 50 and tb[-1] == t[-1]
    bucket = np.searchsorted(tb, t)  # each sample's bucket: the first whose newest time is not earlier
    ok = np.isfinite(low)
    assert np.all(lb[bucket[ok]] <= low[ok]) and np.all(hb[bucket[ok]] >= high[ok])
    assert np.isnan(lb).any() and np.isnan(hb).any()


def test_band_polygon_is_one_closed_outline_per_finite_run():
    t = np.arange(10.0)
    focal = 600 + t
    sigma = np.full(10, 5.0)
    focal[4] = np.nan  # no estimate in frame 4: two shapes, 0-3 and 5-9
    x, y = band_polygon(t, focal - sigma, focal + sigma)
    gaps = np.flatnonzero(np.isnan(x))
    assert len(gaps) == 1 and np.isnan(y[gaps[0]])
    first_x, second_x = x[: gaps[0]], x[gaps[0] + 1:]
    np.testing.assert_array_equal(first_x, [0, 1, 2, 3, 3, 2, 1, 0])
    np.testing.assert_array_equal(second_x, [5, 6, 7, 8, 9, 9, 8, 7, 6, 5])
    second_y = y[gaps[0] + 1:]
    np.testing.assert_allclose(second_y[:5], 600 + t[5:] + 5)  # along the upper edge
    np.testing.assert_allclose(second_y[5:], (600 + t[5:] - 5)[::-1])  # and back along the lower
    assert band_polygon(t[:1], t[:1], t[:1])[0].size == 0


def test_nice_step_is_the_least_1_2_5_interval_not_below_its_argument():
    from ui.plots import nice_step

    for least, step in ((0.0445, 0.05), (0.05, 0.05), (0.051, 0.1), (1.2, 2.0), (3.0, 5.0), (7.0, 10.0),
                        (0.0003, 0.0005), (250.0, 500.0)):
        assert nice_step(least) == pytest.approx(step)


def test_steady_range_changes_only_when_the_data_leave_or_shrink():
    first = steady_range(None, 100.0, 200.0)
    assert first[0] < 100 and first[1] > 200
    assert steady_range(first, 120.0, 190.0) == first  # inside and filling it: unchanged
    grown = steady_range(first, 100.0, 260.0)  # out of range: follows
    assert grown[0] < 100 and grown[1] > 260
    shrunk = steady_range(grown, 150.0, 152.0)  # a small fraction of the range: zooms in
    assert 140 < shrunk[0] < 150 and 152 < shrunk[1] < 162
    flat = steady_range(None, 920.0, 920.0)  # a constant: a line in the middle of a non-empty range
    assert flat[0] < 920 < flat[1] and math.isclose(0.5 * (flat[0] + flat[1]), 920)
    assert steady_range(first, math.nan, math.nan) == first


# --- the widget ----------------------------------------------------------------------------------


@pytest.fixture
def plots(qtbot):
    widget = LivePlots(window_s=20)
    qtbot.addWidget(widget)
    widget.resize(1000, 300)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def feed(plots: LivePlots, seconds: float, rate_hz: float = 30.0, t0: float = 0.0, state="estimating",
         focal=None, sigma_px: float = 40.0) -> None:
    for i in range(int(seconds * rate_hz)):
        t = t0 + i / rate_hz
        f = 600.0 + 10 * math.sin(t) if focal is None else focal(t)
        plots.add_sample(t, f, sigma_px, state, 2.5, 30.0, 50.0)


def test_a_long_window_is_decimated_but_ends_at_the_newest_sample(plots):
    plots.window_spin.setValue(600)
    feed(plots, 600, focal=lambda t: 900.0 if 300 <= t < 300.04 else 600.0 + 10 * math.sin(t))
    plots.add_sample(600.0, 640.0, 40.0, "estimating", 2.5, 30.0, 50.0)
    assert plots.refresh()
    t, focal = plots.focal_curve.getData()
    assert len(t) <= 2 * plots.graphics.width() + 1 < 18_000
    assert t[-1] == 600.0 and focal[-1] == 640.0  # the newest sample is drawn as it is
    assert focal.max() == 900.0  # a one-frame spike stays visible
    x, y = plots.focal_band.getData()  # the band, decimated too, still spans ±σ around the curve
    upper = y[: len(x) // 2]
    assert x[len(x) // 2 - 1] == 600.0 and upper.max() == pytest.approx(940.0)


def test_the_not_observable_start_is_dashed_orange_and_said(plots):
    feed(plots, 10, state="not_observable", sigma_px=120.0)
    assert plots.refresh()
    _, prior = plots.focal_prior_curve.getData()
    _, observed = plots.focal_curve.getData()
    assert np.isfinite(prior).all() and np.isnan(observed).all()
    pen = plots.focal_prior_curve.opts["pen"]
    assert pen.style() == Qt.PenStyle.DashLine and pen.color().name() == STATE_COLOURS["not_observable"]
    label = plots.focal_label.text()
    assert "not yet observable" in label and STATE_COLOURS["not_observable"] in label and "± 120 px" in label
    x, y = plots.focal_band.getData()
    assert np.nanmax(y) - np.nanmin(y) >= 2 * 120.0  # the prior's wide band is drawn
    # What the estimate rests on is said beside it (escaped), and a new session starts without it.
    plots.set_focal_basis("EXIF (Galaxy S24 FE, 23 mm eq.) 91% + landmarks 9%")
    feed(plots, 1, state="converged", sigma_px=20.0)
    assert plots.refresh()
    assert "from EXIF (Galaxy S24 FE, 23 mm eq.) 91% + landmarks 9%" in plots.focal_label.text()
    plots.clear()
    feed(plots, 1, state="converged", sigma_px=20.0)
    plots.refresh()
    assert "EXIF" not in plots.focal_label.text()


def test_y_ranges_stay_put_while_the_data_stay_inside(plots):
    feed(plots, 20)
    plots.refresh()
    before = [tuple(p.getViewBox().viewRange()[1]) for p in (plots.focal_plot, plots.rho_plot, plots.rate_plot)]
    assert before[0][0] < 590 and before[0][1] > 610  # the band (±40 px) fits
    for k in range(5):  # the window scrolls, the values stay in range
        feed(plots, 1, t0=20.0 + k)
        assert plots.refresh()
        after = [tuple(p.getViewBox().viewRange()[1]) for p in (plots.focal_plot, plots.rho_plot, plots.rate_plot)]
        assert after == before
    feed(plots, 1, t0=26.0, focal=lambda t: 1500.0)  # a jump: the range follows at once
    plots.refresh()
    assert plots.focal_plot.getViewBox().viewRange()[1][1] > 1540


def test_hidden_plots_collect_but_do_not_redraw_until_shown(plots, qtbot):
    feed(plots, 2)
    assert plots.refresh()
    drawn = plots.redraws
    plots.hide()
    feed(plots, 2, t0=2.0)
    assert not plots.refresh() and plots.redraws == drawn
    plots.show()
    qtbot.waitExposed(plots)
    assert plots.refresh()
    t, _ = plots.focal_curve.getData()
    assert t[-1] == pytest.approx(2.0 + 59 / 30)


def test_pause_shows_the_whole_history_and_resume_the_window(plots):
    plots.window_spin.setValue(10)
    feed(plots, 60)
    plots.refresh()
    assert plots.focal_curve.getData()[0][0] > 45
    plots.set_paused(True)
    t, _ = plots.focal_curve.getData()
    assert t[0] == 0.0 and len(t) == 1800  # everything collected, to pan back through
    feed(plots, 1, t0=60.0)
    assert not plots.refresh()
    plots.set_paused(False)
    t, _ = plots.focal_curve.getData()
    assert t[0] > 50 and t[-1] == pytest.approx(60 + 29 / 30)


# --- axis titles and tick labels -------------------------------------------------------------------


def axis_texts(plots: LivePlots) -> tuple[list[tuple[str, str, QRectF, QRectF]], list[tuple[str, QRectF]]]:
    """What the axes draw, in the graphics view's pixels: (titles, tick labels), each item named by its
    axis ("rho.left"); a title as (axis, its text, the rectangle of its text without the text item's
    margins, the axis' rectangle), a tick label as (axis, its rectangle)."""
    to_view = plots.graphics.viewportTransform()
    titles, ticks = [], []
    for plot_name in ("focal", "rho", "rate"):
        plot = getattr(plots, f"{plot_name}_plot")
        for side in ("left", "right", "bottom"):
            axis = plot.getAxis(side)
            if not axis.isVisible():
                continue
            name = f"{plot_name}.{side}"
            label = axis.label
            if label.isVisible() and label.toPlainText().strip():
                margin = label.document().documentMargin()
                text_rect = label.boundingRect().adjusted(margin, margin, -margin, -margin)
                titles.append((name, label.toPlainText(), to_view.mapRect(label.mapRectToScene(text_rect)),
                               to_view.mapRect(axis.mapRectToScene(QRectF(0, 0, axis.width(), axis.height())))))
            picture = QPicture()
            painter = QPainter(picture)  # as AxisItem.paint lays out its tick labels
            _, _, texts = axis.generateDrawSpecs(painter)
            painter.end()
            ticks += [(name, to_view.mapRect(axis.mapRectToScene(rect))) for rect, _, _ in texts]
    return titles, ticks


def text_overlaps(plots: LivePlots) -> list[str]:
    """Every axis text that meets another (a title with a title or a tick label, two tick labels)
    and every title that runs past its own axis (beside another plot) or out of the view."""
    titles, ticks = axis_texts(plots)
    view = QRectF(plots.graphics.viewport().rect())
    found = []
    for i, (name, text, rect, axis_rect) in enumerate(titles):
        if not view.contains(rect):
            found.append(f"title {text!r} of {name} leaves the view ({rect} outside {view})")
        vertical = not name.endswith("bottom")
        along, axis_along = ((rect.top(), rect.bottom()), (axis_rect.top(), axis_rect.bottom())) if vertical else \
            ((rect.left(), rect.right()), (axis_rect.left(), axis_rect.right()))
        if along[0] < axis_along[0] or along[1] > axis_along[1]:
            found.append(f"title {text!r} of {name} runs past its axis ({along} beyond {axis_along})")
        found += [f"title {text!r} of {name} overlaps title {other!r} of {other_name}"
                  for other_name, other, other_rect, _ in titles[i + 1:] if rect.intersects(other_rect)]
        found += [f"title {text!r} of {name} overlaps a tick label of {tick_name}"
                  for tick_name, tick_rect in ticks if rect.intersects(tick_rect)]
    for i, (name, rect) in enumerate(ticks):
        found += [f"tick labels of {name} and {other_name} overlap"
                  for other_name, other_rect in ticks[i + 1:] if rect.intersects(other_rect)]
    return found


@pytest.mark.parametrize("values", ["typical", "wide"])
@pytest.mark.parametrize("height_px", [1, 300])  # 1: squeezed to the widget's minimum height
def test_axis_titles_and_tick_labels_never_overlap(qtbot, values, height_px):
    plots = LivePlots(window_s=20)
    qtbot.addWidget(plots)
    plots.resize(640, height_px)
    plots.show()
    qtbot.waitExposed(plots)
    for i in range(600):
        t = i / 30
        if values == "typical":
            plots.add_sample(t, 600 + 10 * math.sin(t), 40.0, "estimating", 2.3 + 0.05 * math.sin(t), 30.0, 45.0)
        else:  # four- and five-digit values, a wide band, long latencies
            plots.add_sample(t, 4000 + 900 * math.sin(t), 1500.0, "converged", 0.4 + 9 * (i % 50) / 50,
                             240.0, 40.0 + 15000 * (i % 7 == 0))
    assert plots.refresh()
    qtbot.wait(20)
    assert not text_overlaps(plots), (plots.graphics.size(), text_overlaps(plots))
    titles = [plots.focal_plot.getAxis("left").title, plots.rate_plot.getAxis("bottom").title]
    assert titles == (["focal (px)", "time (s)"] if height_px == 300 else ["px", "time (s)"])  # low: the unit
    for plot in (plots.focal_plot, plots.rho_plot, plots.rate_plot):  # the titles give the units: no SI prefixes
        assert all(plot.getAxis(side).autoSIPrefixScale == 1.0 for side in ("left", "right", "bottom"))


# --- the readout label ---------------------------------------------------------------------------


class LayoutRequests(QObject):
    def __init__(self):
        super().__init__()
        self.count = 0

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.LayoutRequest:
            self.count += 1
        return False


@pytest.mark.parametrize("kind", ["readout", "qlabel"])
def test_a_changing_readout_does_not_re_lay_out_its_parent(qtbot, kind):
    from ui.readout import ReadoutLabel

    parent = QWidget()
    qtbot.addWidget(parent)
    label = ReadoutLabel("29.9 fps", min_width_text="000.0 fps") if kind == "readout" else QLabel("29.9 fps")
    layout = QHBoxLayout(parent)
    layout.addWidget(label)
    layout.addWidget(QLabel("beside"), 1)
    parent.show()
    qtbot.waitExposed(parent)
    requests = LayoutRequests()
    parent.installEventFilter(requests)
    qtbot.wait(20)  # the layout requests of showing the window
    requests.count = 0
    for value in (30.1, 28.7, 31.0, 9.5):
        label.setText(f"{value:.1f} fps")
        qtbot.wait(5)
    assert label.text() == "9.5 fps"
    if kind == "readout":
        assert requests.count == 0
        label.setText("a much longer text than the readout was ever sized for")  # grows when it must
        qtbot.wait(5)
        assert requests.count == 1 and label.sizeHint().width() > label.fontMetrics().horizontalAdvance("a much")
    else:  # the control: a QLabel asks its parent to re-lay out on every change
        assert requests.count >= 4
