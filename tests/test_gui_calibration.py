"""Calibration mode and lens distortion in the app (pytest-qt, offscreen; the overlay drawing on EGL).

* The Calibrate tab, fed rendered board frames through the app's own source path, reaches a
  solution, shows RMS and σ, saves a camera profile into a temporary ``FLAMECAM_CONFIG``; back on
  the Track tab the session uses that profile and the status bar says so; the undistorted-video
  toggle changes the picture shown.
* A synthetic source with lens distortion and a matching profile: the tracking thread undistorts
  the landmarks (as ``flamecam track``), the recording says so, and the overlay is distorted back
  onto the raw video (or the video is undistorted under the pinhole overlay).
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")


from core.calibration import BoardSpec, render_board_views  # noqa: E402
from core.distortion import LensDistortion, distort_points, undistort_points  # noqa: E402
from core.session import SessionOptions  # noqa: E402
from core.sources import Frame, FrameSource  # noqa: E402
from tests.test_gui_worker import START_TIMEOUT_MS, assert_no_tracking_threads  # noqa: E402

BOARD = BoardSpec.parse("charuco:9x6,square=0.03,marker=0.022")
BOARD_INTRINSICS = (600.0, 600.0, 321.0, 239.0)
BOARD_LENS = LensDistortion.opencv(-0.2, 0.05)
# A face close to the camera, so the lens moves the outer landmarks by several pixels.
LENS_SOURCE = "synthetic:lens=opencv,k1=-0.2,distance=0.32,still=0,frames=400"
LENS_PROFILE = "lens test cam"


class BoardVideo(FrameSource):
    """A 'video' of a printed board: each rendered pose held for two frames (still, as a user would)."""

    is_live = False

    def __init__(self, images: list[np.ndarray]):
        self.images = images
        self.size, self.fps, self.name = (640, 480), 30.0, "board video"
        self.num_frames = 2 * len(images)
        self.closed = False

    def __iter__(self):
        for i in range(self.num_frames):
            yield Frame(i, i / self.fps, self.images[i // 2])

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def board_images():
    return render_board_views(BOARD, BOARD_INTRINSICS, (640, 480), 16, BOARD_LENS, seed=3, poses="guided")


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    path = tmp_path / "config"
    monkeypatch.setenv("FLAMECAM_CONFIG", str(path))
    return path


def test_calibration_mode_solves_saves_and_tracking_uses_the_profile(app_window, qtbot, board_images, config_dir):
    from core.profiles import CameraProfile

    sources: list[BoardVideo] = []

    def open_board_video():
        sources.append(BoardVideo(board_images))
        return sources[-1]

    window, controller = app_window(source="synthetic", source_factory=open_board_video)
    page = window.calibration_page
    widget = page.widget
    assert window.mode() == "track" and not widget.solve_button.isEnabled()

    window.set_mode("calibrate")  # the tab: frames of the current source start flowing at once
    qtbot.waitUntil(lambda: controller.calibration_info is not None, timeout=60_000)
    assert page.running and "board video" in page.source_label.text() and "name the profile" in page.source_label.text()
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)  # the whole 'video' examined
    session = widget.session
    assert session.frames_seen == 32 and session.frames_with_board >= 28
    assert len(session.views) >= 10 and widget.progress.value() == min(len(session.views), widget.progress.maximum())
    assert "views taken" in window.banner.text and sources[0].closed
    # the coverage map: cells the board reached are tinted unlike the ones it never did
    grid = session.coverage()
    assert (grid > 0).mean() > 0.5
    assert "views" in widget.guidance_label.text()

    widget.name_edit.setText("bench cam")
    with qtbot.waitSignal(widget.solved, timeout=60_000) as solved:
        widget.solve_button.click()
        assert widget.solving and not widget.solve_button.isEnabled()  # off the GUI thread, which returns at once
    calibration = solved.args[0]
    assert widget.result is calibration and session.result is calibration
    assert abs(calibration.intrinsics[0] - BOARD_INTRINSICS[0]) / BOARD_INTRINSICS[0] < 0.01
    assert "RMS reprojection error" in widget.result_label.text() and "±" in widget.result_label.text()
    with qtbot.waitSignal(widget.profileSaved, timeout=10_000) as saved:
        widget.save_button.click()
    path = saved.args[0]
    assert str(config_dir) in path
    profile = CameraProfile.load(path)
    assert profile.name == "bench cam" and profile.image_size == (640, 480) and profile.lens.model == "opencv"
    # this source has no camera name to match on, so the app chooses the profile explicitly
    assert window.camera_panel.profile() == "bench cam"
    assert "Saved camera profile “bench cam”" in window.banner.text

    window.set_mode("track")  # back to tracking, which now uses the profile
    qtbot.waitUntil(lambda: controller.session is not None, timeout=START_TIMEOUT_MS)
    plan = controller.session.plan
    assert plan.mode == "profile" and plan.profile.name == "bench cam"
    assert plan.focal_px == pytest.approx(calibration.intrinsics[0])
    assert window.intrinsics_label.text().startswith("Camera profile: bench cam (640×480")
    assert "lens corrected" in window.intrinsics_label.text()

    # the undistorted-video toggle changes the picture (these frames show a board, not a face)
    qtbot.waitUntil(lambda: window.view.scene is not None, timeout=60_000)
    assert window.overlay_panel.undistort.isEnabled() and window.view.lens_remap is not None
    raw = window.view.scene.rgb
    assert window.view.scene.lens_view == "distorted"
    window.overlay_panel.undistort.setChecked(True)
    scene = window.view.scene
    assert scene.lens_view == "undistorted"
    np.testing.assert_array_equal(scene.rgb, window.view.lens_remap.undistort_image(window.view._result.frame.rgb))
    assert np.abs(scene.rgb.astype(int) - raw.astype(int)).mean() > 3


def test_calibration_page_refuses_a_bad_board_and_writes_a_printable_one(app_window, tmp_path, config_dir):
    window, controller = app_window(source="synthetic")
    page = window.calibration_page
    page.set_board("checkerboard:9x6")  # no square size
    assert controller.start_calibration() is None and controller.calibration is None
    assert window.banner.level == "error" and "Cannot calibrate with the board" in window.banner.text
    assert "give square=SIZE" in window.banner.text
    page.set_board("checkerboard:8x6,square=0.025")
    png = page.save_board_image(tmp_path / "board.png", dpi=150)
    from PySide6.QtGui import QImage

    image = QImage(str(png))
    square_px = round(0.025 / 0.0254 * 150)
    assert image.width() == 9 * square_px and image.height() == 7 * square_px  # 8x6 squares + half-square margins
    assert "print it at 100 %" in page.widget.result_label.text()


# --- lens distortion: the worker and the overlay ------------------------------------------------------


@pytest.fixture
def lens_profile(config_dir):
    from core.profiles import CameraProfile, save_profile

    # exactly the synthetic camera: 600 px focal, centred principal point, k1 = -0.2
    return save_profile(CameraProfile(LENS_PROFILE, (640, 480), (600.0, 600.0, 320.0, 240.0),
                                      LensDistortion.opencv(-0.2, 0.0, 0.0, 0.0, 0.0), rms_px=0.1))




def _draw(gl, scene, style, size=(640, 480)):
    from ui.overlay_view import draw_overlay

    ctx, renderer = gl
    with ctx:
        fbo = ctx.framebuffer([ctx.renderbuffer(size, 4)], ctx.depth_renderbuffer(size))
        draw_overlay(ctx, renderer, fbo, scene, style, size, first_row_is_top=True)
        img = np.frombuffer(fbo.read(components=3, alignment=1), np.uint8).reshape(size[1], size[0], 3).copy()
        for obj in (*fbo.color_attachments, fbo.depth_attachment, fbo):
            obj.release()
    return img


def test_lens_profile_undistorts_in_the_worker_and_the_overlay_matches_the_video(qtbot, lens_profile, tmp_path, gl):
    from app.gui_worker import TrackingThread
    from core.recording import load
    from tests.test_gui_worker import Collector
    from ui.overlay_view import DETECTED_RGB, OverlayScene, OverlayStyle, OverlayView

    worker = TrackingThread(SessionOptions(source=LENS_SOURCE, device="cpu", camera_profile=LENS_PROFILE))
    got = Collector(worker)
    try:
        worker.start()
        qtbot.waitUntil(lambda: bool(got.infos) or bool(got.errors), timeout=START_TIMEOUT_MS)
        assert not got.errors
        (info,) = got.infos
        plan = info.plan
        assert plan.mode == "profile" and plan.profile.name == LENS_PROFILE and info.focal_mode == "profile"
        hook = worker._session.pipeline.undistort  # noqa: SLF001  (what the engine was given)
        assert hook is not None and hook.lens == plan.lens
        path = tmp_path / "lens.fcrec"
        worker.start_recording(path)
        qtbot.waitUntil(lambda: sum(r.landmarks.face is not None for r in got.results) >= 6, timeout=180_000)
        worker.stop_recording()
        qtbot.waitUntil(lambda: bool(got.recordings) and got.recordings[-1].state == "stopped", timeout=60_000)
    finally:
        assert worker.shutdown(timeout_s=60)
    assert_no_tracking_threads()
    meta = load(path).meta
    assert meta.focal_mode == "profile" and meta.extra["intrinsics"]["landmarks_undistorted"] is True
    assert meta.extra["intrinsics"]["distortion"]["model"] == "opencv" and meta.extra["recorded_by"] == "flamecam gui"

    result = [r for r in got.results if r.landmarks.face is not None][-1]
    track = result.track
    k, lens = plan.profile.intrinsics, plan.lens
    raw = np.asarray(result.landmarks.face.landmarks_px, np.float64)  # MediaPipe on the distorted frame
    # the engine fitted undistorted landmarks, with the profile's ideal pinhole camera
    np.testing.assert_allclose(track.landmarks_px, undistort_points(raw, k, lens), atol=1e-3)
    np.testing.assert_allclose(track.intrinsics, k, rtol=1e-6)
    moved = np.linalg.norm(track.landmarks_px - raw, axis=1)
    assert moved.max() > 4.0  # the lens matters for this face

    # default view: the raw video, the overlay distorted onto it
    remap = plan.lens_remap()
    scene = OverlayScene.from_result(result, info.model, remap)
    assert scene.lens_view == "distorted" and scene.rgb is result.frame.rgb
    np.testing.assert_allclose(scene.detected_px, raw, atol=0.02)  # back on MediaPipe's raw landmarks
    fitted_ok = np.isfinite(track.fitted_landmarks_px).all(1)
    fitted_distorted = distort_points(track.fitted_landmarks_px[fitted_ok], k, lens)
    np.testing.assert_allclose(scene.fitted_px, fitted_distorted, atol=1e-3)
    err_distorted = np.linalg.norm(fitted_distorted - raw[fitted_ok], axis=1)
    err_pinhole = np.linalg.norm(track.fitted_landmarks_px[fitted_ok] - raw[fitted_ok], axis=1)
    assert np.median(err_distorted) < 4.0  # the fitted model lands on the detections in the raw video
    far = moved[fitted_ok] > 3.0
    assert far.sum() >= 5 and err_distorted[far].mean() < err_pinhole[far].mean() - 2.0
    verts = result.mesh_vertices_cam
    project = lambda v, kk: np.stack([kk[0] * v[:, 0] / v[:, 2] + kk[2], kk[1] * v[:, 1] / v[:, 2] + kk[3]], 1)  # noqa: E731
    np.testing.assert_allclose(project(scene.vertices_cam.astype(np.float64), scene.intrinsics),
                               distort_points(project(verts.astype(np.float64), track.intrinsics), k, lens), atol=0.02)

    # the toggle: the video undistorted, the overlay as the tracker fits it
    flat = OverlayScene.from_result(result, info.model, remap, undistort_video=True)
    assert flat.lens_view == "undistorted"
    np.testing.assert_array_equal(flat.rgb, remap.undistort_image(result.frame.rgb))
    np.testing.assert_allclose(flat.detected_px, track.landmarks_px, atol=1e-4)
    np.testing.assert_array_equal(flat.vertices_cam, verts)

    # the view does the same, and what it draws changes with the toggle
    view = OverlayView()
    qtbot.addWidget(view)
    view.set_model(info.model)
    view.set_lens(remap)
    view.show_result(result)
    assert view.scene.lens_view == "distorted"
    view.set_style(OverlayStyle(undistort_video=True))
    assert view.scene.lens_view == "undistorted"
    style = OverlayStyle(shaded=True, detected_landmarks=True)
    drawn_raw, drawn_flat = _draw(gl, scene, style), _draw(gl, flat, style)
    assert np.abs(drawn_raw.astype(int) - drawn_flat.astype(int)).max(2).mean() > 0.02
    # the detected-landmark dots sit on MediaPipe's raw landmarks in the default view
    dots = _draw(gl, scene, OverlayStyle(shaded=False, detected_landmarks=True, point_size_px=3.0))
    red = (np.abs(dots.astype(int) - np.round(np.array(DETECTED_RGB) * 255)).max(2) < 60)
    inside = (raw[:, 0] >= 1) & (raw[:, 0] < 639) & (raw[:, 1] >= 1) & (raw[:, 1] < 479)
    xs, ys = raw[inside, 0].astype(int), raw[inside, 1].astype(int)
    assert red[ys, xs].mean() > 0.95
