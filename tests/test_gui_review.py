"""A recorded take opened in the app (pytest-qt, offscreen; one part under Xvfb with the real GL
overlay): the take's video found from its metadata, asked for when it moved (a wrong one refused),
or a neutral background; the overlay at frame N is ``core.export``'s mesh of frame N seen through
the recorded intrinsics; the timeline and plots show the whole take; playing keeps the take's rate;
scrubbing, stepping, dropping a take on the window, exporting it. Saves ``artifacts/gui_take.png``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, QSettings, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from core.session import SessionOptions  # noqa: E402
from tests.test_gui_worker import START_TIMEOUT_MS, assert_no_tracking_threads  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "artifacts" / "gui_take.png"
FRAMES = 50
SHOW_FRAME = 37


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    """(take path, video path): a rendered head video and the take `flamecam track` recorded from it."""
    from app.cli import main
    from tests.clips import render_head_video

    folder = tmp_path_factory.mktemp("take")
    video = render_head_video(folder / "head.mp4", frames=FRAMES, fps=25.0, seed=5)
    path = folder / "head.fcrec"
    assert main(["track", str(video), "-o", str(path), "--quiet"]) == 0
    return path, video


@pytest.fixture
def app(qtbot, tmp_path):
    from app.gui import build

    settings = QSettings(str(tmp_path / "flamecam.ini"), QSettings.Format.IniFormat)
    window, controller = build(SessionOptions(device="cpu"), source="synthetic", settings=settings, model="builtin")
    qtbot.addWidget(window)
    window.show()
    yield window, controller
    window.close()
    assert_no_tracking_threads()


def shown(qtbot, controller, index: int):
    review = controller.review_control
    qtbot.waitUntil(lambda: review.latest is not None and review.latest.frame.index == index, timeout=START_TIMEOUT_MS)
    return review.latest


def projected_export_mesh(rec, position: int) -> np.ndarray:
    """(V, 2) pixels: ``core.export``'s camera-space mesh of the frame at ``position`` through the
    recorded intrinsics of that frame."""
    from core import camera
    from core.export import mesh_batches, resolve_model

    (_, verts), = list(mesh_batches(rec, resolve_model(rec), "camera", positions=np.array([position])))
    return camera.project_perspective(verts[0].astype(np.float64), rec.intrinsics[position].astype(np.float64))


def test_an_opened_take_shows_its_video_and_recorded_mesh(app, qtbot, take):
    from core import camera
    from core.recording import load
    from tests.test_transport import sequential_frames

    window, controller = app
    path, video = take
    rec = load(path)
    frames = sequential_frames(video)
    assert controller.open_take(str(path))
    first = shown(qtbot, controller, int(rec.frame_index[0]))  # opens at the take's first frame, paused
    assert controller.review_control.info.video == str(video) and not controller.transport.state().playing
    assert window.timeline.isVisibleTo(window) and window.record_panel.last_path == str(path)  # Export: this take

    controller.transport_control.seek(SHOW_FRAME)
    result = shown(qtbot, controller, SHOW_FRAME)
    scene = window.view.scene
    position = int(np.flatnonzero(rec.frame_index == SHOW_FRAME)[0])
    np.testing.assert_array_equal(scene.rgb, frames[SHOW_FRAME].rgb)  # the video's frame N
    drawn = camera.project_perspective(scene.vertices_cam.astype(np.float64), scene.intrinsics)
    expected = projected_export_mesh(rec, position)
    assert np.abs(drawn - expected).max() < 0.5  # px
    np.testing.assert_allclose(scene.intrinsics, rec.intrinsics[position], rtol=1e-6)
    assert result.track.tracking_state == "tracking" and window.status("state") == "tracking"
    assert first.frame.index != SHOW_FRAME

    # the whole take on the timeline and the plots, by video time
    codes = window.timeline.strip.codes
    np.testing.assert_array_equal(codes["tracking"][rec.frame_index], rec.tracking_state)
    np.testing.assert_array_equal(codes["focal"][rec.frame_index], rec.focal_state)
    series = window.plots.series
    assert len(series) == len(rec) and series.time_of(SHOW_FRAME) == pytest.approx(rec.timestamp_s[position])
    assert window.plots.series.view()["focal_px"][rec.frame_index[-1] - rec.frame_index[0]] == pytest.approx(rec.fx[-1])

    # steps and scrubbing
    window.playback_actions["back"].trigger()
    shown(qtbot, controller, SHOW_FRAME - 1)
    strip = window.timeline.strip
    y = strip.height() // 2
    QTest.mousePress(strip, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPointF(strip.x_of(10), y).toPoint())
    QTest.mouseMove(strip, QPointF(strip.x_of(20), y).toPoint())
    QTest.mouseRelease(strip, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       QPointF(strip.x_of(30), y).toPoint())
    shown(qtbot, controller, 30)
    assert window.timeline.frame_label.text() == f"frame 30 / {FRAMES}"

    # playing keeps the take's frame rate (25 fps; showing a take is much faster than that)
    arrivals = []  # (time, frame) where the frames leave the player (not delayed by the GUI thread)
    controller.review_control.thread.frameReady.connect(
        lambda r: arrivals.append((time.monotonic(), r.frame.index)), Qt.ConnectionType.DirectConnection)
    controller.transport_control.seek(0)
    controller.transport_control.play()
    qtbot.waitUntil(lambda: len(arrivals) >= 40 or controller.transport.state().at_end, timeout=30_000)
    (t0, i0), (t1, i1) = arrivals[1], arrivals[-1]
    assert 24.0 <= (i1 - i0) / (t1 - t0) <= 26.0, arrivals  # the video's frames per second
    assert len(arrivals) - 1 >= 0.9 * (i1 - i0 + 1)  # nearly every one shown: showing a take is fast


def test_a_take_whose_video_moved(app, qtbot, take, tmp_path):
    from core.review import NEUTRAL_RGB
    from tests.clips import render_head_video

    window, controller = app
    path, video = take
    moved = tmp_path / "elsewhere.mp4"
    shutil.move(video, moved)
    try:
        # not found, not asked: the mesh on a neutral background, and why
        assert controller.open_take(str(path), ask=False)
        result = shown(qtbot, controller, 0)
        assert "is not there" in window.banner.text and "neutral background" in window.banner.text
        assert (result.frame.rgb == np.array(NEUTRAL_RGB, np.uint8)).all()
        assert result.mesh_vertices_cam is not None and controller.review_control.info.video == ""

        # the video of another size is refused, with the reason
        wrong = render_head_video(tmp_path / "small.mp4", frames=5, fps=25.0)
        small = tmp_path / "small_320.mp4"
        import cv2

        reader, writer = cv2.VideoCapture(str(wrong)), cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"mp4v"),
                                                                      25.0, (320, 240))
        while True:
            ok, image = reader.read()
            if not ok:
                break
            writer.write(cv2.resize(image, (320, 240)))
        reader.release()
        writer.release()
        assert controller.open_take(str(path), video=str(small), ask=False)
        shown(qtbot, controller, 0)
        assert "small_320.mp4 is not the video of head.fcrec" in window.banner.text
        assert "320×240" in window.banner.text and controller.review_control.info.video == ""
        # a video with too few frames is refused too
        assert controller.open_take(str(path), video=str(wrong), ask=False)
        shown(qtbot, controller, 0)
        assert "it has 5 frames but the take refers to frame" in window.banner.text

        # the moved video, given: shown
        assert controller.open_take(str(path), video=str(moved), ask=False)
        shown(qtbot, controller, 0)
        assert controller.review_control.info.video == str(moved)
    finally:
        shutil.move(moved, video)


def test_dropping_a_take_opens_it_and_start_tracks_again(app, qtbot, take):
    window, controller = app
    path, _ = take
    window.drop_path(str(path))
    shown(qtbot, controller, 0)
    assert controller.review_control.open and window.windowTitle() == "flamecam — take head.fcrec"
    controller.start()  # tracking again closes the take
    assert not controller.review_control.open
    qtbot.waitUntil(lambda: controller.frames_received >= 1 or controller.worker.isFinished(), timeout=START_TIMEOUT_MS)
    assert controller.frames_received >= 1 and not window.timeline.isVisibleTo(window)  # a camera: no timeline


@pytest.mark.parametrize("size", [None, (800, 520)], ids=["default_size", "small"])
def test_the_take_views_axis_titles_do_not_overlap(app, qtbot, take, size):
    from tests.test_plots import text_overlaps

    window, controller = app
    path, _ = take
    if size is not None:
        window.resize(*size)
    assert controller.open_take(str(path))
    shown(qtbot, controller, 0)
    plots = window.plots
    qtbot.waitUntil(lambda: plots.redraws > 0 and not plots._dirty, timeout=5000)  # the take's series drawn
    qtbot.wait(50)
    assert not text_overlaps(plots), (window.size(), plots.graphics.size(), text_overlaps(plots))
    if size is None:  # a new window's plots dock has its full height: whole titles, not the units alone
        assert [plots.focal_plot.getAxis("left").title, plots.rho_plot.getAxis("left").title] == \
            ["focal (px)", "ρ (1/m)"]


# --- under Xvfb: the real GL overlay of a take, and the screenshot ----------------------------------


def test_opened_take_on_screen_under_xvfb(take, tmp_path):
    from app.virtual_display import VirtualDisplay

    if not VirtualDisplay.available():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI must run the GUI tests under Xvfb: bash .ci/install_system_deps.sh")
        pytest.skip("Xvfb is not installed")
    path, _ = take
    report_path = tmp_path / "report.json"
    display = VirtualDisplay(1280, 1024).start()
    try:
        env = display.env()
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(path), str(tmp_path),
                               str(SCREENSHOT), str(report_path)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
    finally:
        display.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    report = json.loads(report_path.read_text())
    assert not report["errors"], report["errors"]
    assert report["frame_index"] == SHOW_FRAME and report["gl"]["GL_VERSION"]
    # the mesh is drawn where core.export's mesh of the frame projects: pixels change inside its outline
    # and not outside it (overlay on vs off, the same GL drawing the window shows)
    assert report["inside_changed"] > 0.3 and report["outside_changed"] < 0.01, report
    assert SCREENSHOT.exists() and report["screenshot_std"] > 10


def drive(take_path: str, out_dir: str, screenshot: str, report_path: str) -> int:
    """The app under Xvfb: open the take, seek to SHOW_FRAME, compare the overlay with the export's
    mesh outline, save the screenshot."""
    from PySide6.QtCore import QTimer

    from app.gui import build, create_application
    from core.recording import load
    from ui.overlay_view import OverlayStyle

    app = create_application()
    settings = QSettings(str(Path(out_dir) / "settings.ini"), QSettings.Format.IniFormat)
    window, controller = build(SessionOptions(device="cpu"), source="synthetic", settings=settings, model="builtin")
    window.overlay_panel.set_style(OverlayStyle(shaded=True, wireframe=True, opacity=0.6))
    window.resize(1280, 960)
    window.show()
    window.activateWindow()
    rec = load(take_path)
    report: dict = {"errors": []}
    state = {"phase": "open", "t": time.monotonic()}

    def step() -> None:
        review, view = controller.review_control, window.view
        if state["phase"] == "closing":
            return
        if time.monotonic() - state["t"] > 240:
            report["errors"].append(f"stuck in phase {state['phase']}")
            state["phase"] = "closing"
            window.close()
        elif state["phase"] == "open":
            controller.open_take(take_path, ask=False)
            state["phase"] = "seek"
        elif state["phase"] == "seek" and review.latest is not None:
            controller.transport_control.seek(SHOW_FRAME)
            state["phase"] = "paint"
        elif (state["phase"] == "paint" and review.latest is not None and review.latest.frame.index == SHOW_FRAME
              and view.painted_frames and view.painted_frames[-1] == SHOW_FRAME and not view._scene_dirty):
            state.update(phase="screenshot", at=time.monotonic() + 0.3)
        elif state["phase"] == "screenshot" and time.monotonic() >= state["at"]:
            # What the X server shows (the GL window included), once the frame has been on screen a moment.
            window.plots.refresh()
            shot = window.screen().grabWindow(window.winId())
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            shot.save(screenshot)
            report["screenshot_std"] = float(qimage_rgb(shot.toImage()).std())
            # The overlay on vs off, drawn by the view's own GL code at its size.
            on, off = view.render_image(), view.render_image(OverlayStyle(shaded=False, wireframe=False))
            position = int(np.flatnonzero(rec.frame_index == SHOW_FRAME)[0])
            outline = view.image_to_view(projected_export_mesh(rec, position))
            mask = hull_mask(outline, on.shape[:2])
            changed = np.abs(on.astype(int) - off.astype(int)).max(2) > 30
            report.update(frame_index=int(review.latest.frame.index), gl=dict(view.gl_info),
                          inside_changed=float(changed[mask].mean()),
                          outside_changed=float(changed[~grow(mask, 6)].mean()))
            state["phase"] = "closing"  # the timer ticks on until the event loop ends
            window.close()

    timer = QTimer()
    timer.timeout.connect(step)
    timer.start(50)
    app.exec()
    timer.stop()
    controller.shutdown()
    Path(report_path).write_text(json.dumps(report, indent=1))
    return 0


def qimage_rgb(image) -> np.ndarray:
    from tests.test_gui_e2e import qimage_rgb as convert

    return convert(image)


def hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)).astype(bool)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("FLAMECAM_NO_DOWNLOAD", "1")
    sys.exit(drive(*sys.argv[1:5]))
