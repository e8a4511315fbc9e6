"""The live plots' drawing helpers (pure numpy) and the widget's behaviour: decimation keeps peaks and
the newest sample, the band shows ±σ, the "not yet observable" styling, steady y ranges, no redraw
while hidden, pause shows the whole history; the readout label repaints without a re-layout."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QObject, Qt  # noqa: E402
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
