"""The timeline widgets and a file's plot series (pytest-qt, offscreen): per-frame state bands with an
optional segment row, scrubbing by mouse, the position readout, the plots' series by frame index,
and the keyboard shortcuts listed in Help."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QSettings, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from ui.frame_series import FrameSeries  # noqa: E402
from ui.timeline import (  # noqa: E402
    SEGMENT_PALETTE, TRACKING_PALETTE, UNKNOWN, TimelineBar, TimelineStrip, format_time, shortcuts_html)


def test_frame_series_stores_by_frame_and_ends_the_view_at_the_cursor_frame():
    series = FrameSeries(10, fps=10.0)
    for i in (2, 3, 4, 7):
        series.append(frame_index=i, t_s=i / 10, focal_px=100.0 + i, focal_state=2)
    series.append(frame_index=3, t_s=0.3, focal_px=999.0)  # tracked again after a seek back: replaced
    assert len(series) == 4 and series.cursor == 3
    assert series.last("focal_px") == 999.0 and series.first("t_s") == pytest.approx(0.2)  # the frame shown
    view = series.view()
    np.testing.assert_allclose(view["t_s"], [0.2, 0.3, 0.4, 0.5, 0.6, 0.7])  # frames 5, 6: index / fps
    assert math.isnan(view["focal_px"][3]) and view["focal_px"][1] == 999.0  # a break where nothing was tracked
    np.testing.assert_allclose(series.view(since=0.45)["t_s"], [0.5, 0.6, 0.7])
    assert series.frame_at(0.71) == 7 and series.frame_at(0.52) == 5  # between tracked frames: by the rate
    series.append(frame_index=15, t_s=1.5, focal_px=1.0)  # beyond the container's count: grows
    assert series.num_frames >= 16 and series.last("focal_px") == 1.0
    series.load(np.array([0, 1]), t_s=np.array([0.0, 0.1]), focal_px=np.array([5.0, 6.0]))
    assert series.cursor == 0 and series.last("focal_px") == 5.0 and len(series) == 7


def test_strip_bands_segments_and_scrubbing(qtbot):
    strip = TimelineStrip()
    qtbot.addWidget(strip)
    strip.resize(458, 40)
    strip.show()
    strip.set_length(100)
    strip.set_frame(10, "tracking", "converged")
    strip.set_frame(11, "lost", "not_observable")
    strip.set_frame(12, "bogus", None)
    assert strip.codes["tracking"][10:13].tolist() == [0, 1, UNKNOWN] and strip.codes["focal"][10] == 3
    assert not strip.has_segments
    strip.set_states(np.arange(20, 30), np.full(10, 3), np.full(10, 2), segment_ids=np.array([0] * 5 + [1] * 5))
    assert strip.has_segments and strip.codes["segment"][20] != strip.codes["segment"][29]
    assert strip.codes["tracking"][25] == 3  # no_face
    # the painted bands: the colour of each frame's state at its x position, three rows with segments
    image = strip.grab().toImage()
    x = round(strip.x_of(25))
    rows = [image.pixelColor(x, y) for y in range(image.height())]
    colours = {(c.red(), c.green(), c.blue()) for c in rows}
    assert tuple(int(v) for v in TRACKING_PALETTE[3]) in colours  # the no-face red
    assert tuple(int(v) for v in SEGMENT_PALETTE[strip.codes["segment"][25]]) in colours

    scrubbed, sought = [], []
    strip.scrubbed.connect(scrubbed.append)
    strip.seekRequested.connect(sought.append)
    y = strip.height() // 2
    QTest.mousePress(strip, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(round(strip.x_of(40)), y))
    QTest.mouseMove(strip, QPoint(round(strip.x_of(60)), y))
    QTest.mouseRelease(strip, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(round(strip.x_of(70)), y))
    assert scrubbed[:2] == [40, 60] and sought == [70] and strip.value == 70
    assert strip.index_at(-50) == 0 and strip.index_at(10_000) == 99


def test_bar_shows_position_time_and_end(qtbot):
    bar = TimelineBar()
    qtbot.addWidget(bar)
    bar.set_clip(250, 25.0)
    bar.set_position(124, 4.96)
    assert bar.frame_label.text() == "frame 124 / 250" and bar.time_label.text() == "00:04.96 / 00:10.00"
    bar.set_position(249, 9.96)
    bar.set_playing(False, at_end=True)
    assert bar.frame_label.text().endswith("(end)") and "from the start" in bar.play_button.toolTip()
    steps = []
    bar.stepRequested.connect(steps.append)
    bar.back_button.click()
    bar.forward_button.click()
    assert steps == [-1, 1]
    assert format_time(3725.5) == "1:02:05.50" and format_time(float("nan")) == "–"


def test_help_lists_the_keyboard_shortcuts(qtbot, tmp_path):
    from ui.main_window import MainWindow

    window = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    text = shortcuts_html(window.menuBar())
    for keys, what in (("Space", "Play / pause"), ("Left", "Back one frame"), ("Right", "On one frame"),
                       ("Ctrl+Shift+O", "Open take"), ("Ctrl+R", "Record"), ("F5", "Start / restart")):
        assert f"<b>{keys}</b></td><td>&nbsp;{what}" in text, (keys, what)
    help_menu = [a for a in window.menuBar().actions() if a.text() == "&Help"][0].menu()
    [a for a in help_menu.actions() if "Keyboard" in a.text()][0].trigger()
    assert "Keyboard shortcuts" in window.banner.text and "Space" in window.banner.text
    assert not window.playback_actions["play"].isEnabled()  # nothing plays yet: Space stays with the widgets
