"""The app on a video file (pytest-qt, offscreen): the timeline, pause / play, steps and seeks with
the overlay of the frame sought, the plots over video time (a click seeks), the Playback menu and
its shortcuts, and the rate toggle and position kept in the settings."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from tests.test_gui_worker import START_TIMEOUT_MS  # noqa: E402

FRAMES = 60


@pytest.fixture(scope="module")
def head_clip(tmp_path_factory):
    from tests.clips import render_head_video

    return render_head_video(tmp_path_factory.mktemp("playback") / "head.mp4", frames=FRAMES, fps=25.0)


@pytest.fixture(scope="module")
def clip_frames(head_clip):
    from tests.test_transport import sequential_frames

    return sequential_frames(head_clip)


def wait_for_frames(qtbot, window, controller, count: int) -> None:
    """Until ``count`` results arrived; fails with the window's message if the session ended first."""
    qtbot.waitUntil(lambda: controller.frames_received >= count or (controller.worker is not None
                                                                   and controller.worker.isFinished()),
                    timeout=START_TIMEOUT_MS)
    assert controller.frames_received >= count, window.banner.text


def wait_until_paused(qtbot, controller):
    """Pause, then wait until the frames already read have arrived (nothing more is read)."""
    controller.transport_control.pause()
    qtbot.waitUntil(lambda: controller.latest is not None and controller.transport.state().idle
                    and controller.latest.frame.index == controller.transport.state().position, timeout=60_000)


def test_a_video_file_pauses_steps_seeks_and_plays(app_window, qtbot, head_clip, clip_frames):
    window, controller = app_window(str(head_clip), model="builtin")
    controller.start()
    wait_for_frames(qtbot, window, controller, 3)
    assert controller.session.seekable and controller.transport is not None
    assert window.timeline.isVisibleTo(window) and window.playback_actions["play"].isEnabled()
    assert window.timeline.strip.num_frames == FRAMES

    # pause stops frame delivery
    wait_until_paused(qtbot, controller)
    delivered, position = controller.frames_received, controller.transport.state().position
    qtbot.wait(1500)
    assert controller.frames_received == delivered and controller.transport.state().position == position

    # seeking to frame N shows frame N, with its overlay, as a cut
    controller.transport_control.seek(45)
    qtbot.waitUntil(lambda: controller.latest.frame.index == 45, timeout=60_000)
    result, scene = controller.latest, window.view.scene
    assert result.cut and scene.frame_index == 45
    np.testing.assert_array_equal(scene.rgb, clip_frames[45].rgb)  # the frame itself, exactly
    assert scene.vertices_cam is not None and result.track.tracking_state == "tracking"
    detected, fitted = result.track.landmarks_px, result.track.fitted_landmarks_px
    both = np.isfinite(fitted).all(1) & np.isfinite(detected).all(1)
    assert both.sum() > 100 and np.median(np.linalg.norm(detected[both] - fitted[both], axis=1)) < 10
    assert window.timeline.frame_label.text() == f"frame 45 / {FRAMES}"
    assert window.timeline.time_label.text() == "00:01.80 / 00:02.40"  # 45 / 25 fps of a 60-frame clip
    assert window.timeline.strip.codes["tracking"][45] == 0  # "tracking" band at the frame

    # steps: on by one reads on (no cut); back by one is a jump
    window.playback_actions["forward"].trigger()
    qtbot.waitUntil(lambda: controller.latest.frame.index == 46, timeout=60_000)
    assert not controller.latest.cut
    window.playback_actions["back"].trigger()
    qtbot.waitUntil(lambda: controller.latest.frame.index == 45, timeout=60_000)
    assert controller.latest.cut
    received = controller.frames_received
    window.playback_actions["retrack"].trigger()  # the paused frame, fitted again from a fresh start
    qtbot.waitUntil(lambda: controller.frames_received == received + 1, timeout=60_000)
    assert controller.latest.frame.index == 45 and controller.latest.cut
    assert window.playback_actions["play"].shortcut().toString() == "Space"
    assert window.playback_actions["back"].shortcut().toString() == "Left"
    assert window.playback_actions["forward"].shortcut().toString() == "Right"

    # the plots are over video time: the sample of frame 45 sits at 1.8 s, and a click there seeks
    series = window.plots.series
    assert series.time_of(45) == pytest.approx(clip_frames[45].timestamp_s) == pytest.approx(1.8)
    # Draw what the app's own redraw timer has not drawn yet (it may have drawn the newest sample
    # already, and then there is nothing to refresh): the curves below are the current ones.
    window.plots.refresh()
    assert not window.plots._dirty
    t, _ = window.plots.focal_prior_curve.getData() if series.last('focal_state') == 1 else \
        window.plots.focal_curve.getData()
    x0, x1 = window.plots.focal_plot.getViewBox().viewRange()[0]
    assert x0 <= 1.8 <= x1 and np.nanmin(t) < 1.8  # the window holds the frame shown and what led to it
    assert controller.transport_control.cursor.lines[0].value() == pytest.approx(1.8)
    focal_45 = controller.latest.track.focal_px
    assert series.last("focal_px") == pytest.approx(focal_45)  # the series' newest is the frame shown
    assert f"{focal_45:.0f} ±" in window.plots.focal_label.text()  # the readout is the frame shown
    click_plot_at(window.plots.focal_plot, clip_frames[20].timestamp_s)
    qtbot.waitUntil(lambda: controller.latest.frame.index == 20, timeout=60_000)
    assert controller.latest.cut

    # play resumes delivery, from where it is
    controller.transport_control.play()
    qtbot.waitUntil(lambda: controller.frames_received >= delivered + 10, timeout=60_000)
    assert controller.latest.frame.index > 20


def click_plot_at(plot, t_s: float) -> None:
    """A left click on ``plot`` (a pyqtgraph plot) at time ``t_s``, through its graphics view."""
    box = plot.getViewBox()
    y = float(np.mean(box.viewRange()[1]))
    scene_pos = box.mapViewToScene(QPointF(t_s, y))
    view = plot.scene().views()[0]
    pos = view.mapFromScene(scene_pos)
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)


def test_a_recording_is_one_continuous_run_and_settings_are_remembered(app_window, qtbot, head_clip, tmp_path):
    from core.recording import load

    window, controller = app_window(str(head_clip), model="builtin")
    window.record_panel.folder_edit.setText(str(tmp_path / "takes"))
    assert window.timeline.realtime  # the file's own rate by default
    window.playback_actions["fast"].trigger()  # process as fast as possible
    assert not window.timeline.realtime and window.timeline.fast_box.isChecked()
    controller.start()
    wait_for_frames(qtbot, window, controller, 1)
    assert not controller.transport.state().realtime

    # a recording ends at the end of the file (which pauses there), and at a seek
    wait_until_paused(qtbot, controller)  # (the clip could be over before the click otherwise)
    if controller.transport.state().at_end:
        controller.transport_control.seek(10)
        qtbot.waitUntil(lambda: controller.latest.frame.index == 10, timeout=60_000)
    window.record_panel.button.click()  # recording starts with the next frame
    controller.transport_control.play()
    qtbot.waitUntil(lambda: "Recording ended at the end of the video" in window.banner.text, timeout=120_000)
    assert len(controller.recordings) == 1
    assert controller.transport.state().at_end and window.timeline.frame_label.text().endswith("(end)")
    first = load(controller.recordings[0].path)
    assert first.complete and first.frame_index[-1] == FRAMES - 1
    assert np.array_equal(np.diff(first.frame_index), np.ones(len(first) - 1))  # every frame, in order
    controller.transport_control.seek(5)
    qtbot.waitUntil(lambda: controller.latest.frame.index == 5, timeout=60_000)
    window.record_panel.button.click()  # paused: recording starts with the next frame shown
    for index in (6, 7, 8):
        window.playback_actions["forward"].trigger()
        qtbot.waitUntil(lambda: controller.latest.frame.index == index, timeout=60_000)
    controller.transport_control.seek(2)
    qtbot.waitUntil(lambda: "Recording ended at the jump to frame 2" in window.banner.text, timeout=60_000)
    assert len(controller.recordings) == 2
    second = load(controller.recordings[1].path)
    assert second.complete and second.frame_index.tolist() == [6, 7, 8]

    controller.transport_control.seek(33)
    qtbot.waitUntil(lambda: controller.latest.frame.index >= 33 and controller.latest.cut, timeout=60_000)
    wait_until_paused(qtbot, controller)
    last = controller.latest.frame.index
    window.close()

    again, controller2 = app_window(str(head_clip), model="builtin")
    assert not again.timeline.realtime and again.playback_actions["fast"].isChecked()
    controller2.start()
    wait_for_frames(qtbot, again, controller2, 1)
    # resumed where it was left: the first frame tracked is the one shown at close (the file plays on
    # from there, so the latest result may already be a later one)
    assert controller2.transport_control.series.span()[0] == last
