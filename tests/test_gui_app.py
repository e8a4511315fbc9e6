"""The app wired together, offscreen (pytest-qt): window + controller + tracking thread + exporter.

Errors show in the window and the app keeps running; recording from the button and the shortcut
action; export from the app; every thread gone after close."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")


from app.gui_worker import live_threads  # noqa: E402
from tests.test_gui_worker import START_TIMEOUT_MS, FailingSource  # noqa: E402


def test_bad_model_is_shown_then_tracking_recording_and_export_work(app_window, qtbot, tmp_path):
    from core.recording import load

    bad = tmp_path / "broken_head.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    window, controller = app_window(model=str(bad))
    assert window.model_panel.kind() == "npz"
    controller.start()
    qtbot.waitUntil(lambda: window.banner.level == "error" and not controller.running
                    and not window.stop_button.isEnabled(), timeout=START_TIMEOUT_MS)
    assert f"Cannot use the model file {bad}" in window.banner.text and "unreadable .npz" in window.banner.text
    assert window.isVisible() and window.status("state") == "error"
    assert not window.record_panel.button.isEnabled()  # nothing to record

    # The app keeps running: choose the built-in head and start again.
    window.model_panel.set_model("builtin")
    controller.start()
    qtbot.waitUntil(lambda: controller.frames_received >= 5, timeout=START_TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.plots.redraws > 0 and window.status("fps").endswith("fps"), timeout=10_000)
    # The readout says what the focal length rests on: the synthetic source's evidence is the broad
    # class range and the camera regressor.
    qtbot.waitUntil(lambda: "from " in window.plots.focal_label.text(), timeout=10_000)
    assert "class range" in window.plots.focal_label.text()
    assert window.status("device") == "CPU" and "builtin" in window.status("model")
    assert window.status("state") in ("tracking", "reacquired")
    # the curve is redrawn on the 4 Hz tick: it has points once a few frames went into a redraw
    def curve_points() -> int:
        t = window.plots.focal_curve.getData()[0]
        return 0 if t is None else len(t)

    qtbot.waitUntil(lambda: curve_points() >= 3, timeout=10_000)
    t, focal = window.plots.focal_curve.getData()
    assert np.all(np.isfinite(window.plots.series.view()["focal_px"]))
    # the newest result is the one kept for display (drawn by GL where there is GL; kept here offscreen)
    assert window.view.scene is not None and window.view.scene.frame_index == controller.latest.track.frame_index
    assert window.view.scene.vertices_cam is controller.latest.mesh_vertices_cam is not None

    # Record with the button, stop with the Ctrl+R action.
    # (Polled, not qtbot.waitSignal: a queued cross-thread emission can reach pytest-qt's blocker
    # after it was disposed of, which pytest-qt 4.5 reports as an error in the event loop.)
    window.record_panel.button.click()
    qtbot.waitUntil(lambda: controller.recording is not None and controller.recording.frames >= 6, timeout=120_000)
    assert "REC" in window.record_panel.status.text() and window.record_panel.button.isChecked()
    window.record_action.trigger()
    qtbot.waitUntil(lambda: len(controller.recordings) == 1, timeout=60_000)
    status = controller.recordings[0]
    assert status.state == "stopped" and status.path.startswith(str(tmp_path / "recordings"))
    rec = load(status.path)
    assert rec.complete and len(rec) == status.frames >= 6
    assert window.record_panel.export_button.isEnabled() and not window.record_panel.button.isChecked()

    # Any recording can be chosen for export (File > Export a recording...); a bad file is refused clearly.
    junk = tmp_path / "junk.fcrec"
    junk.write_bytes(b"not a recording")
    assert not controller.choose_recording(str(junk))
    assert window.banner.level == "error" and "Cannot read the recording" in window.banner.text
    assert controller.choose_recording(status.path) and window.record_panel.last_path == status.path

    # Export from the app: arrays and meshes, in background threads.
    npz = tmp_path / "take.npz"
    thread = controller.export(status.path, "npz", str(npz))
    qtbot.waitUntil(thread.isFinished, timeout=60_000)
    qtbot.waitUntil(lambda: "Exported" in window.banner.text, timeout=5000)
    with np.load(npz) as data:
        np.testing.assert_array_equal(data["frame_index"], rec.frame_index)
    objs = tmp_path / "meshes"
    thread = controller.export(status.path, "obj", str(objs))
    qtbot.waitUntil(thread.isFinished, timeout=120_000)
    qtbot.waitUntil(lambda: "OBJ meshes" in window.banner.text, timeout=5000)
    files = sorted(objs.glob("frame_*.obj"))
    assert len(files) == len(rec)
    assert sum(line.startswith("v ") for line in files[0].read_text().splitlines()) == window.view._model.num_vertices

    # Changing the camera choice while running restarts the session with it.
    old = controller.worker
    window.camera_panel.set_mode("fov", fov_deg=70.0)
    qtbot.waitUntil(lambda: controller.worker is not old and controller.session is not None, timeout=START_TIMEOUT_MS)
    assert controller.worker.options.fov_deg == 70.0 and old.isFinished()
    window.close()
    assert live_threads() == [] and controller.export_thread.isFinished()


def test_camera_unplugged_mid_run_is_reported_and_the_recording_kept(app_window, qtbot, tmp_path):
    from core.recording import load

    source = FailingSource()
    window, controller = app_window(source="synthetic", source_factory=lambda: source)
    controller.start()
    # (offscreen, the banner already shows the no-OpenGL error: only frames say the session runs)
    qtbot.waitUntil(lambda: controller.frames_received >= 2, timeout=START_TIMEOUT_MS)
    window.record_panel.button.click()
    qtbot.waitUntil(lambda: controller.recording is not None and controller.recording.frames >= 3, timeout=120_000)
    source.unplug()
    qtbot.waitUntil(lambda: window.banner.level == "error" and not controller.running
                    and not window.stop_button.isEnabled(), timeout=120_000)
    assert "stopped delivering frames (unplugged?)" in window.banner.text and "is saved" in window.banner.text
    qtbot.waitUntil(lambda: len(controller.recordings) == 1, timeout=10_000)
    rec = load(controller.recordings[0].path)
    assert rec.complete and len(rec) == controller.recordings[0].frames >= 1
    assert window.isVisible() and not window.record_panel.button.isEnabled()


def test_the_app_and_the_cli_build_the_same_tracker_for_the_same_settings(app_window):
    """One session builder: for the same source, model and camera settings, `flamecam track` and the app
    hand the tracker identical options (core.session.tracker_options on core.intrinsics.resolve_intrinsics)."""
    import argparse

    from app import cmd_track
    from core.intrinsics import resolve_intrinsics
    from core.session import tracker_options

    class Src:
        size, name = (640, 480), "synthetic"

    window, controller = app_window(source="synthetic")
    for cli_flags, panel in ((["--fov", "62"], dict(mode="fov", fov_deg=62.0)),
                             (["--focal", "900"], dict(mode="focal", focal_px=900.0)),
                             ([], dict(mode="auto"))):
        parser = argparse.ArgumentParser()
        cmd_track.add_arguments(parser)
        cli = cmd_track.session_options(parser.parse_args(["synthetic", "--no-profile", *cli_flags]))
        window.camera_panel.set_mode(panel.pop("mode"), **panel)
        window.camera_panel.set_profile("none")
        gui = controller.options()
        assert gui.source == cli.source == "synthetic"
        built = [tracker_options(o, resolve_intrinsics(o, Src(), log=lambda *_: None), Src.size) for o in (cli, gui)]
        assert built[0] == built[1], (cli_flags, built)
