"""The calibration widget, offscreen (pytest-qt): coverage map, guidance, solve, save."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from core.calibration import BoardSpec, CalibrationCriteria, CalibrationSession, render_board_views  # noqa: E402
from core.distortion import LensDistortion  # noqa: E402

BOARD = BoardSpec.parse("charuco:9x6,square=0.03,marker=0.022")
INTR = (600.0, 600.0, 321.0, 239.0)


@pytest.fixture(scope="module")
def frames():
    return render_board_views(BOARD, INTR, (640, 480), 14, LensDistortion.opencv(-0.2, 0.05), seed=21)


@pytest.fixture
def widget(qtbot, tmp_path, monkeypatch):
    from ui.calibration import CalibrationWidget

    monkeypatch.setenv("FLAMECAM_CONFIG", str(tmp_path / "config"))
    w = CalibrationWidget()
    qtbot.addWidget(w)
    w.resize(800, 700)
    w.show()
    return w


def _cell_colour(w, row, col):
    img = w.coverage_map.grab().toImage()
    rect = w.coverage_map.cell_rect(row, col)
    c = img.pixelColor(int(rect.center().x()), int(rect.center().y()))
    return c.red(), c.green(), c.blue()


def test_widget_guides_solves_and_saves(widget, frames, qtbot):
    w = widget
    assert not w.solve_button.isEnabled() and w.guidance_label.text() == ""
    w.start(BOARD, (640, 480), camera_name="bench cam", target_views=10, still_px=None)
    assert "Hold the charuco board" in w.guidance_label.text()
    first = frames[0]
    taken = []
    w.viewTaken.connect(taken.append)
    fb = w.show_frame(first)
    assert fb.accepted and taken == [1]
    assert w.progress.value() == 1 and w.progress.maximum() == 10
    assert "Move the board to the" in w.guidance_label.text()
    # the coverage map paints the cells with corners differently from the empty ones
    grid = w.session.coverage()
    full = np.argwhere(grid > 0)[0]
    empty = np.argwhere(grid == 0)[0]
    assert _cell_colour(w, *full) != _cell_colour(w, *empty)
    # a frame without the board
    w.show_frame(np.full((480, 640, 3), 90, np.uint8))
    assert "no board found" in w.status_label.text()
    for im in frames[1:]:
        w.show_frame(im)
    assert w.solve_button.isEnabled() and w.session.ready
    with qtbot.waitSignal(w.solved, timeout=10000) as blocker:
        w.solve_button.click()
    cal = blocker.args[0]
    assert abs(cal.intrinsics[0] - INTR[0]) / INTR[0] < 0.006
    assert "RMS reprojection error" in w.result_label.text() and w.save_button.isEnabled()
    with qtbot.waitSignal(w.profileSaved, timeout=5000) as saved:
        w.save_button.click()
    from core.profiles import CameraProfile

    profile = CameraProfile.load(saved.args[0])
    assert profile.name == "bench cam" and profile.image_size == (640, 480)
    w.reset()
    assert w.session.views == [] and w.progress.value() == 0 and w.result is None


def test_widget_shows_refusals(widget, frames):
    w = widget
    w.set_session(CalibrationSession(BOARD, (640, 480), still_px=None, criteria=CalibrationCriteria(min_views=3)))
    reasons = []
    w.refused.connect(reasons.append)
    for im in frames[:3]:
        w.show_frame(im)
    assert w.solve_button.isEnabled()
    w.session.criteria = CalibrationCriteria(min_views=8)  # stricter at solve time: refused, with the reason
    assert w.solve() is None
    assert reasons and "too few views" in reasons[0] and "refused" in w.result_label.text()


def test_intrinsics_status_label(qtbot, tmp_path, monkeypatch):
    from core.profiles import CameraProfile, save_profile
    from core.intrinsics import resolve_intrinsics
    from core.session import SessionOptions
    from ui.calibration import IntrinsicsStatusLabel

    monkeypatch.setenv("FLAMECAM_CONFIG", str(tmp_path / "config"))
    save_profile(CameraProfile("BRIO", (1280, 720), (900, 900, 640, 360), LensDistortion.opencv(-0.1, 0.0)))

    class Src:
        size = (640, 360)

    label = IntrinsicsStatusLabel()
    qtbot.addWidget(label)
    label.set_plan(resolve_intrinsics(SessionOptions(camera_profile="BRIO"), Src(), log=lambda *_: None))
    assert "Camera profile: BRIO" in label.text() and "scaled from 1280×720" in label.text()
    assert "lens corrected" in label.text()
    label.set_plan(resolve_intrinsics(SessionOptions(), Src(), log=lambda *_: None))
    assert "estimated online" in label.text()
    label.set_plan(None)
    assert label.text() == ""
