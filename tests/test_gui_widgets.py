"""GUI widgets offscreen (pytest-qt): panels, plots, settings, drag and drop, the overlay drawing
(headless EGL), entry-point decisions. No tracking session runs here (see test_gui_app.py)."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")


from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from ui.overlay_view import (  # noqa: E402
    CLEAR_RGB,
    DETECTED_RGB,
    OverlayScene,
    OverlayStyle,
    default_samples,
    draw_overlay,
    letterbox,
    mirrored,
)


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "flamecam.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    from ui.main_window import MainWindow

    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    return w


# --- pure helpers ---------------------------------------------------------------------------------


def test_letterbox_keeps_aspect_and_centres():
    assert letterbox((640, 480), (640, 480)) == (0, 0, 640, 480)
    assert letterbox((640, 480), (1000, 480)) == (180, 0, 640, 480)  # pillarbox
    assert letterbox((640, 480), (640, 880)) == (0, 200, 640, 480)  # letterbox
    x0, y0, w, h = letterbox((480, 640), (900, 600))
    assert (w, h) == (450, 600) and x0 == 225 and y0 == 0


def test_mirrored_scene_is_a_mirrored_camera():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)
    verts = np.array([[0.05, -0.02, 0.5], [-0.03, 0.01, 0.6]], np.float32)
    scene = OverlayScene(rgb=rgb, intrinsics=np.array([500.0, 500.0, 2.5, 2.0]), vertices_cam=verts,
                         faces=np.zeros((0, 3), np.uint32), detected_px=np.array([[1.0, 2.0]], np.float32))
    m = mirrored(scene)
    assert np.array_equal(m.rgb, rgb[:, ::-1])
    assert m.detected_px.tolist() == [[5.0, 2.0]]  # x -> W - x
    # projecting the mirrored vertices with the mirrored intrinsics mirrors their pixel positions
    def project(v, k):
        return np.stack([k[0] * v[:, 0] / v[:, 2] + k[2], k[1] * v[:, 1] / v[:, 2] + k[3]], 1)
    u = project(verts, scene.intrinsics)
    um = project(m.vertices_cam, m.intrinsics)
    np.testing.assert_allclose(um[:, 0], 6 - u[:, 0], atol=1e-5)
    np.testing.assert_allclose(um[:, 1], u[:, 1], atol=1e-5)


def test_default_samples_off_on_software_renderers(monkeypatch):
    monkeypatch.delenv("FLAMECAM_GL_SAMPLES", raising=False)
    assert default_samples("llvmpipe (LLVM 15.0.6, 256 bits)") == 0
    assert default_samples("NVIDIA GeForce RTX 4090/PCIe/SSE2") == 4
    monkeypatch.setenv("FLAMECAM_GL_SAMPLES", "2")
    assert default_samples("llvmpipe") == 2


# --- the overlay drawing, headless ----------------------------------------------------------------




def _draw(gl, scene, style, size):
    ctx, renderer = gl
    with ctx:
        fbo = ctx.framebuffer([ctx.renderbuffer(size, 4)], ctx.depth_renderbuffer(size))
        viewport = draw_overlay(ctx, renderer, fbo, scene, style, size, first_row_is_top=True)
        img = np.frombuffer(fbo.read(components=3, alignment=1), np.uint8).reshape(size[1], size[0], 3).copy()
        for obj in (*fbo.color_attachments, fbo.depth_attachment, fbo):
            obj.release()
    return img, viewport


@pytest.fixture(scope="module")
def head_scene(builtin_model):
    """A grey frame with the built-in head in front of a 600 px camera."""
    import torch

    from core.camera import model_to_camera
    from core.head_model import HeadModelLayer

    layer = HeadModelLayer(builtin_model)
    with torch.no_grad():
        verts = layer(torch.zeros(1, builtin_model.num_shape), torch.zeros(1, builtin_model.num_expr))
        t = torch.tensor([[0.0, 0.0, 0.45]]) - torch.as_tensor(builtin_model.head_center) * torch.tensor([1.0, -1, -1])
        verts = model_to_camera(verts, t)[0].numpy().astype(np.float32)
    k = np.array([600.0, 600.0, 320.0, 240.0])
    uv = np.stack([k[0] * verts[:, 0] / verts[:, 2] + k[2], k[1] * verts[:, 1] / verts[:, 2] + k[3]], 1)
    rgb = np.full((480, 640, 3), 90, np.uint8)
    rgb[:, :40] = (200, 30, 30)  # a red stripe on the image's left edge shows the mirror
    return OverlayScene(rgb=rgb, intrinsics=k, frame_index=7, vertices_cam=verts,
                        faces=builtin_model.faces.astype(np.uint32), vertex_rgb=builtin_model.vertex_rgb,
                        detected_px=np.array([[600.0, 60.0]], np.float32), fitted_px=None), uv


def test_draw_overlay_letterboxes_and_draws_the_mesh_where_it_projects(gl, head_scene):
    scene, uv = head_scene
    size = (800, 480)  # wider than 4:3: 80 px bars left and right
    plain, viewport = _draw(gl, scene, OverlayStyle(shaded=False), size)
    shaded, _ = _draw(gl, scene, OverlayStyle(shaded=True, opacity=1.0), size)
    assert viewport == (80, 0, 640, 480)
    clear = np.round(np.array(CLEAR_RGB) * 255)
    assert np.abs(plain[:, :78].astype(float) - clear).max() <= 1  # the bars
    assert np.abs(plain[:, 82:110].astype(float) - (200, 30, 30)).max() <= 2  # the frame, unscaled
    diff = np.abs(shaded.astype(int) - plain.astype(int)).sum(2) > 30
    # the mesh covers the projected vertices' bounding box (shifted by the bar) and nothing outside it
    x0, y0 = uv.min(0)
    x1, y1 = uv.max(0)
    inner = diff[int(y0) + 15:int(y1) - 15, int(x0) + 80 + 15:int(x1) + 80 - 15]
    assert inner.mean() > 0.9
    outside = diff.copy()
    outside[int(y0) - 3:int(y1) + 4, int(x0) + 77:int(x1) + 84] = False
    assert outside.mean() < 0.001


def test_draw_overlay_mirror_flips_everything_together(gl, head_scene):
    scene, _ = head_scene
    size = (640, 480)
    style = OverlayStyle(shaded=True, opacity=1.0, detected_landmarks=True, point_size_px=9)
    normal, _ = _draw(gl, scene, style, size)
    flipped, _ = _draw(gl, scene, OverlayStyle(**{**style.__dict__, "mirror": True}), size)
    # the red stripe moves to the right edge, the landmark at x=600 to x=40
    assert np.abs(flipped[:, -38:].astype(float) - (200, 30, 30)).max() <= 2
    red = np.round(np.array(DETECTED_RGB) * 255)
    assert np.abs(normal[60, 600].astype(float) - red).max() <= 3
    assert np.abs(flipped[60, 40].astype(float) - red).max() <= 3
    # the shaded head is the mirror image (lighting is mirrored too; allow rasterisation differences)
    agree = np.abs(flipped[:, ::-1].astype(int) - normal.astype(int)).max(2) <= 12
    assert agree.mean() > 0.98


def test_wireframe_without_shading_and_lost_face_fade(gl, head_scene):
    scene, _ = head_scene
    size = (640, 480)
    plain, _ = _draw(gl, scene, OverlayStyle(shaded=False), size)
    wire, _ = _draw(gl, scene, OverlayStyle(shaded=False, wireframe=True), size)
    assert (np.abs(wire.astype(int) - plain.astype(int)).sum(2) > 30).mean() > 0.01  # edges drawn
    lost = OverlayScene(**{**scene.__dict__, "tracking_state": "lost"})
    full, _ = _draw(gl, scene, OverlayStyle(opacity=1.0), size)
    faded, _ = _draw(gl, lost, OverlayStyle(opacity=1.0), size)
    d_full = np.abs(full.astype(int) - plain.astype(int)).sum()
    d_faded = np.abs(faded.astype(int) - plain.astype(int)).sum()
    assert 0.2 * d_full < d_faded < 0.6 * d_full


# --- panels ---------------------------------------------------------------------------------------


def test_overlay_panel_emits_styles(qtbot):
    from ui.panels import OverlayPanel

    panel = OverlayPanel()
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.styleChanged) as sig:
        panel.wireframe.setChecked(True)
    assert sig.args[0].wireframe and sig.args[0].shaded
    with qtbot.waitSignal(panel.styleChanged) as sig:
        panel.opacity.setValue(25)
    assert math.isclose(sig.args[0].opacity, 0.25)
    style = OverlayStyle(shaded=False, wireframe=True, detected_landmarks=True, fitted_landmarks=True, opacity=0.4,
                         mirror=True)
    panel.set_style(style)
    assert panel.style() == style


def test_camera_panel_modes_map_to_session_options(qtbot):
    from ui.panels import CameraPanel

    panel = CameraPanel()
    qtbot.addWidget(panel)
    auto = {"camera_profile": None, "auto_profile": True}  # the camera's stored profile, if any
    assert panel.options() == {"camera_mode": "perspective", "focal": "auto", "fov_deg": None, **auto}
    panel.set_mode("focal", focal_px=910)
    assert panel.options() == {"camera_mode": "perspective", "focal": "910", "fov_deg": None, **auto}
    assert panel.focal_spin.isEnabled() and not panel.fov_spin.isEnabled() and not panel.profile_combo.isEnabled()
    panel.set_mode("fov", fov_deg=62.5)
    assert panel.options() == {"camera_mode": "perspective", "focal": "auto", "fov_deg": 62.5, **auto}
    panel.set_mode("ortho")
    assert panel.options()["camera_mode"] == "ortho" and panel.profile_combo.isEnabled()
    # camera profiles: a stored one by name, none at all, or automatic
    panel.set_mode("auto")
    panel.set_profiles(["BRIO", "HMC left", "BRIO"])
    assert [panel.profile_combo.itemData(i) for i in range(panel.profile_combo.count())] == [
        "auto", "none", "BRIO", "HMC left"]
    panel.set_profile("HMC left")
    assert panel.options() == {"camera_mode": "perspective", "focal": "auto", "fov_deg": None,
                               "camera_profile": "HMC left", "auto_profile": True}
    panel.set_profiles(["HMC left", "Zoom"])  # the list changes: the choice is kept
    assert panel.profile() == "HMC left"
    panel.set_profile("none")
    assert panel.options()["camera_profile"] is None and panel.options()["auto_profile"] is False
    panel.set_mode("focal")  # a typed focal length wins over any profile (core.session.resolve_intrinsics)
    assert panel.options()["camera_profile"] is None
    panel.set_profile("/data/cams/gopro.json")  # a file given on the command line
    assert "gopro.json" in panel.profile_combo.currentText() and panel.profile() == "/data/cams/gopro.json"


def test_model_panel_explains_models(qtbot, tmp_path):
    from ui.panels import ModelPanel

    panel = ModelPanel()
    qtbot.addWidget(panel)
    assert panel.model() == "builtin" and "coarse" in panel.help.text()
    flame = tmp_path / "generic_model.pkl"
    panel.set_model(str(flame))
    assert panel.kind() == "flame" and panel.model() == str(flame)
    assert "flame.is.tue.mpg.de" in panel.help.text() and "register" in panel.help.text()
    panel.set_model(str(tmp_path / "ict_head.npz"))
    assert panel.kind() == "npz" and "ICT-FaceKit" in panel.help.text()


def test_source_panel_lists_webcams_synthetic_and_files(qtbot, tmp_path):
    from ui.panels import SYNTHETIC_SPEC, SourcePanel

    panel = SourcePanel()
    qtbot.addWidget(panel)
    panel.set_webcams([])
    assert panel.spec() == SYNTHETIC_SPEC
    panel.set_webcams([0, 2])
    panel.set_spec("webcam:2")
    assert panel.spec() == "webcam:2"
    video = tmp_path / "take.mp4"
    video.write_bytes(b"x")
    panel.set_spec(str(video))
    assert panel.spec() == str(video)
    assert any(panel.combo.itemText(i) == "File: take.mp4" for i in range(panel.combo.count()))


def test_record_panel_shows_progress_and_enables_export(qtbot):
    from ui.panels import RecordPanel

    panel = RecordPanel()
    qtbot.addWidget(panel)
    toggles = []
    panel.recordToggled.connect(toggles.append)
    panel.button.click()
    assert toggles == [True]
    panel.set_recording(True)  # reflecting the recorder's state does not emit again
    assert toggles == [True] and "Stop" in panel.button.text()
    panel.show_progress(75.25, 1234)
    assert "01:15.2" in panel.status.text() and "1234 frames" in panel.status.text()
    assert not panel.export_button.isEnabled()
    panel.show_finished("/tmp/x/take.fcrec", 1234)
    assert panel.export_button.isEnabled() and "take.fcrec" in panel.last_label.text()


# --- plots ----------------------------------------------------------------------------------------


def test_rolling_series_wraps_in_time_order():
    from ui.plots import RollingSeries

    series = RollingSeries(("t_s", "v"), capacity=5)
    for i in range(8):
        series.append(t_s=float(i), v=10.0 * i)
    view = series.view()
    assert view["t_s"].tolist() == [3, 4, 5, 6, 7] and series.last("v") == 70 and series.first("v") == 30
    assert series.view(since=5.5)["t_s"].tolist() == [6, 7]


def test_live_plots_window_band_prior_and_pause(qtbot):
    from ui.plots import LivePlots

    plots = LivePlots(window_s=10)
    qtbot.addWidget(plots)
    plots.show()  # hidden plots are not redrawn
    for i in range(300):  # 30 s at 10 Hz: not observable for the first 10 s, then estimating
        state = "not_observable" if i < 100 else "estimating"
        plots.add_sample(i * 0.1, 600 + i, 50.0, state, 2.5, 14.0, 80.0 + i % 7)
    assert plots.refresh()
    t, focal = plots.focal_curve.getData()
    assert t.min() >= 30 - 10 - 0.6 and math.isclose(t.max(), 29.9)  # the rolling window (+5 % lead-in)
    np.testing.assert_allclose(focal, 600 + np.round(t * 10))
    x, y = plots.focal_band.getData()  # ±1σ band: forward along focal + σ, back along focal - σ (bucketed)
    n = len(x) // 2
    t_band, upper, lower = x[:n], y[:n], y[n:][::-1]
    bucket = np.searchsorted(t_band, t)  # the band covers each sample's focal ± σ, and no more
    assert np.all(upper[bucket] >= focal + 50.0 - 1e-9) and np.all(lower[bucket] <= focal - 50.0 + 1e-9)
    assert math.isclose(upper.max(), focal.max() + 50.0) and math.isclose(lower.min(), focal.min() - 50.0)
    assert t_band[-1] == t[-1]
    _, prior = plots.focal_prior_curve.getData()
    assert np.isnan(prior).all()  # the window holds no "not observable" samples any more
    assert "estimating" in plots.focal_label.text() and "ρ = 2.50" in plots.focal_label.text()
    # the whole history, with the not-observable start dashed
    plots.window_spin.setValue(60)
    plots.refresh()
    t, prior = plots.focal_prior_curve.getData()
    assert np.isfinite(prior[t < 9.95]).all() and np.isnan(prior[t > 10.05]).all()
    _, lat_t = plots.latency_curve.getData()
    assert len(lat_t) == 300
    # pause freezes the curves while samples keep arriving
    plots.set_paused(True)
    plots.add_sample(30.0, 1.0, 1.0, "converged", 2.0, 14.0, 80.0)
    assert not plots.refresh() and len(plots.focal_curve.getData()[0]) == 300
    plots.set_paused(False)
    assert len(plots.focal_curve.getData()[0]) == 301 and "converged" in plots.focal_label.text()


# --- the main window ------------------------------------------------------------------------------


def test_settings_persist_panels_and_window_state(qtbot, settings, tmp_path):
    from ui.main_window import MainWindow

    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    first.overlay_panel.set_style(OverlayStyle(shaded=False, wireframe=True, fitted_landmarks=True, opacity=0.3,
                                               mirror=True))
    first.camera_panel.set_mode("focal", focal_px=1234)
    first.camera_panel.set_profile("none")
    first.calibration_page.set_board("checkerboard:8x6,square=0.025")
    first.calibration_page.set_model("fisheye")
    first.record_panel.folder_edit.setText(str(tmp_path))
    first.plots.window_spin.setValue(45)
    first.show()
    qtbot.waitExposed(first)
    first.plots_dock.hide()
    first.resize(760, 540)  # within the offscreen platform's 800x600 screen
    qtbot.waitUntil(lambda: (first.width(), first.height()) == (760, 540))
    size = (first.width(), first.height())
    first.close()
    second = MainWindow(settings=settings)
    qtbot.addWidget(second)
    assert second.overlay_panel.style() == OverlayStyle(shaded=False, wireframe=True, fitted_landmarks=True,
                                                        opacity=0.3, mirror=True)
    assert second.view.style == second.overlay_panel.style()
    assert second.camera_panel.options() == {"camera_mode": "perspective", "focal": "1234", "fov_deg": None,
                                             "camera_profile": None, "auto_profile": True}
    assert second.camera_panel.profile() == "none"
    assert second.calibration_page.board_text() == "checkerboard:8x6,square=0.025"
    assert second.calibration_page.model() == "fisheye"
    assert second.record_panel.folder() == str(tmp_path)
    assert second.plots.window_s == 45
    assert second.plots_dock.isHidden()
    assert (second.width(), second.height()) == size


def test_dropping_a_file_or_folder_selects_it(window, qtbot, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.sessionChanged):
        window.dropEvent(event)
    assert window.source_panel.spec() == str(folder)
    window.drop_path(str(tmp_path / "missing.mp4"))
    assert window.banner.level == "error" and "does not exist" in window.banner.text


def test_banner_and_status_fields(window):
    window.show_message("camera 0 stopped delivering frames (unplugged?)", "error")
    assert window.banner.isVisibleTo(window) and window.banner.level == "error"
    window.set_status(device="CPU", fps="14.2 fps", state="tracking", model="model: builtin (coarse)")
    assert window.status("device") == "CPU" and window.status("fps") == "14.2 fps"
    assert window.record_action.shortcut().toString() == "Ctrl+R"


def test_offscreen_view_says_why_it_cannot_draw(window, qtbot):
    # The offscreen Qt platform has no OpenGL windows: the view says so (banner) instead of crashing.
    from PySide6.QtGui import QGuiApplication

    if QGuiApplication.platformName() != "offscreen":
        pytest.skip(f"runs on Qt's offscreen platform (the tests' default), not {QGuiApplication.platformName()!r}")
    qtbot.waitUntil(lambda: window.banner.level == "error", timeout=2000)  # glFailed, queued at start-up
    assert window.view.gl_window is None
    assert "OpenGL is not available" in window.view.gl_error and window.view.gl_error in window.banner.text
    assert window.view.render_image() is None


# --- entry points ---------------------------------------------------------------------------------


def test_flamecam_without_display_runs_the_headless_tracker(monkeypatch, tmp_path):
    from app import cmd_gui, cmd_track

    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("core.sources.list_webcams", lambda: [])
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(cmd_track, "run", lambda args: seen.append(args) or 0)
    assert cmd_gui.run_default() == 0
    (args,) = seen
    assert args.source == "synthetic" and args.max_frames == cmd_gui.HEADLESS_SYNTHETIC_FRAMES
    assert args.output.startswith("flamecam_") and args.output.endswith(".fcrec")
    # `flamecam gui` without a display says what to do instead
    parser = argparse.ArgumentParser()
    cmd_gui.add_arguments(parser)
    assert cmd_gui.run(parser.parse_args([])) == 2  # app.exit_codes.EXIT_BAD_INPUT


def test_flamecam_with_display_opens_the_app(monkeypatch):
    from app import cmd_gui, gui

    monkeypatch.setenv("DISPLAY", ":99")
    calls = []
    monkeypatch.setattr(gui, "run_gui", lambda options, **kw: calls.append((options, kw)) or 0)
    assert cmd_gui.run_default() == 0
    options, kw = calls[0]
    assert kw["source"] == "auto" and options.device == "auto"
    parser = argparse.ArgumentParser()
    cmd_gui.add_arguments(parser)
    args = parser.parse_args(["--source", "synthetic:focal=900", "--model", "m.pkl", "--camera", "ortho"])
    assert cmd_gui.run(args) == 0
    options, kw = calls[1]
    assert kw["source"] == "synthetic:focal=900,realtime=1" and kw["model"] == "m.pkl" and kw["camera_mode"] == "ortho"
    assert cmd_gui.run(parser.parse_args(["--focal", "-3"])) == 2  # app.exit_codes.EXIT_BAD_INPUT
