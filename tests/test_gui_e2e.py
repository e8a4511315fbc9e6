"""End to end under Xvfb: the real app (xcb, OpenGL overlay) on the synthetic source.

Runs ~3 s of tracking, records from the Record button, stops with Ctrl+R, closes the window.
Asserts that the overlay changed the pixels where the face is (and only there), the plots hold
data, the recording loads and holds the frames shown while recording, and no thread is left.
Saves ``artifacts/gui_e2e.png``.

The app runs in a subprocess (this file with ``--drive``) on its own Xvfb, so it never meets the
offscreen QApplication of the other Qt tests. Without Xvfb the test is skipped, except in CI
(CI=true), where it fails: ``.ci/install_system_deps.sh`` installs it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
SCREENSHOT = ARTIFACTS / "gui_e2e.png"
TRACK_SECONDS = 3.0
RECORD_SECONDS = 2.0


# --- the test (parent process) --------------------------------------------------------------------


def test_app_end_to_end_under_xvfb(tmp_path):
    import numpy as np
    import pytest

    from app.virtual_display import VirtualDisplay, XvfbMissing
    from core.recording import load

    if not VirtualDisplay.available():
        message = "Xvfb is not installed (Debian/Ubuntu: bash .ci/install_system_deps.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the GUI end-to-end test: {message}")
        pytest.skip(message)
    report_path = tmp_path / "report.json"
    try:
        display = VirtualDisplay(1280, 1024).start()
    except XvfbMissing as exc:  # pragma: no cover (checked above)
        pytest.skip(str(exc))
    try:
        env = display.env()
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--drive", str(tmp_path),
                               "--screenshot", str(SCREENSHOT), "--report", str(report_path)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - t0
    finally:
        display.stop()
    log = (proc.stdout[-4000:] + "\n" + proc.stderr[-6000:]).strip()
    assert proc.returncode == 0, f"the app exited with {proc.returncode}:\n{log}"
    report = json.loads(report_path.read_text())
    print(json.dumps({k: report[k] for k in ("frames_received", "paint_ms", "repaint_ms", "tick_gap_ms", "gl")}),
          f"\nsubprocess wall time {wall:.1f} s")
    assert not report["errors"], report["errors"]

    # The GL overlay ran and changed the pixels where the face is, and only there.
    assert report["gl"]["GL_VERSION"] and report["frames_received"] >= 10
    pixels = report["pixels"]
    assert pixels["face_changed_fraction"] > 0.10, pixels
    assert pixels["outside_changed_fraction"] < 0.005, pixels
    assert pixels["background_vs_frame_mae"] < 8.0, pixels  # with the overlay off the view is the frame
    assert pixels["letterbox_ok"], pixels
    shot = report["screenshot"]  # the same on the real screen (X server's picture) against the raw frame
    assert shot["face_changed_fraction"] > 0.10 and shot["outside_changed_fraction"] < 0.01, shot

    # The plots hold the session's data.
    plots = report["plots"]
    assert plots["samples"] >= 10 and plots["focal_points"] >= 5 and plots["all_focal_finite"]
    assert plots["redraws"] >= 3 and "focal length" in plots["label"]

    # The recording loads and holds exactly what was shown while recording.
    rec = load(report["recording"]["path"])
    assert rec.complete and len(rec) == report["recording"]["frames"] >= 5
    assert report["recording"]["stopped_by"] == "Ctrl+R"
    recorded = {int(i): k for k, i in enumerate(rec.frame_index.tolist())}
    shown = report["shown_while_recording"]
    assert len(shown) >= 3
    for item in shown:
        k = recorded[item["frame_index"]]  # a shown frame that is not in the recording fails here
        np.testing.assert_allclose(rec.translation[k], item["translation"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(rec.fx[k], item["focal_px"], rtol=1e-6)
        np.testing.assert_allclose(rec.rotation[k], item["rotation"], rtol=1e-5, atol=1e-6)

    # Clean shutdown: no tracking thread and no other thread left behind.
    assert report["threads_after_close"]["tracking_threads"] == []
    assert report["threads_after_close"]["non_daemon"] == ["MainThread"]
    assert report["threads_after_close"]["flamecam_threads"] == []

    # The screenshot is there and shows a real picture.
    assert SCREENSHOT.exists()
    from PySide6.QtGui import QImage

    shot = QImage(str(SCREENSHOT))
    assert shot.width() >= 1000 and shot.height() >= 700
    assert report["screenshot"]["video_std"] > 10


# --- the driver (child process, under Xvfb) -------------------------------------------------------


def drive(out_dir: Path, screenshot: Path, report_path: Path) -> int:
    import threading

    import numpy as np
    from PySide6.QtCore import QSettings, Qt, QTimer
    from PySide6.QtTest import QTest

    from app.gui import build, create_application
    from app.gui_worker import live_threads
    from core.session import SessionOptions
    from ui.overlay_view import OverlayStyle, letterbox

    app = create_application()
    settings = QSettings(str(out_dir / "settings.ini"), QSettings.Format.IniFormat)
    window, controller = build(SessionOptions(device="cpu"), source="synthetic:realtime=1", settings=settings,
                               model="builtin", camera_mode="perspective", focal="auto")
    window.record_panel.folder_edit.setText(str(out_dir))
    style = OverlayStyle(shaded=True, wireframe=True, fitted_landmarks=True, opacity=0.7)
    window.overlay_panel.set_style(style)
    window.resize(1280, 980)
    window.show()
    window.activateWindow()
    report: dict = {"errors": [], "gl": {}}
    state = {"phase": "starting", "t": time.monotonic(), "rec_first_index": None, "painted_mark": 0}
    results: dict[int, dict] = {}
    ticks: list[float] = []

    def fail(message: str) -> None:
        report["errors"].append(message)
        window.close()

    def on_session(_info) -> None:
        controller.worker.recordingChanged.connect(on_recording)
        controller.worker.frameReady.connect(on_result)

    def on_recording(status) -> None:
        # Results emitted after this status are the recorded ones (one sender thread: queued in order);
        # a result already in flight when Record was clicked is not.
        if status.state == "recording" and state["phase"] == "recording":
            state["armed"] = True

    def on_result(result) -> None:
        track = result.track
        results[track.frame_index] = {"frame_index": int(track.frame_index),
                                      "translation": np.asarray(track.translation, float).tolist(),
                                      "rotation": np.asarray(track.rotation, float).tolist(),
                                      "focal_px": float(track.focal_px)}
        if state.get("armed") and state["rec_first_index"] is None:
            state["rec_first_index"] = int(track.frame_index)
            state["painted_mark"] = len(window.view.painted_frames)

    controller.sessionStarted.connect(on_session)

    def tick() -> None:
        ticks.append(time.perf_counter())

    def step() -> None:  # a small state machine, polled every 50 ms
        now = time.monotonic()
        phase, since = state["phase"], now - state["t"]
        banner_error = window.banner.level == "error" and window.banner.text
        if banner_error and phase != "closing":
            return fail(f"error shown in the window: {window.banner.text}")
        if phase == "starting":
            if controller.frames_received >= 1:
                state.update(phase="tracking", t=now)
            elif since > 240:
                return fail("no frame within 240 s")
        elif phase == "tracking" and since >= TRACK_SECONDS:
            window.record_panel.button.click()
            state.update(phase="recording", t=now)
        elif phase == "recording":
            rec = controller.recording
            if rec is not None and since >= RECORD_SECONDS and rec.frames >= 5 and state["rec_first_index"] is not None:
                first = state["rec_first_index"]
                painted = list(window.view.painted_frames)[state["painted_mark"]:]
                report["shown_while_recording"] = [results[i] for i in sorted(set(painted)) if i >= first and i in results]
                window.activateWindow()
                QTest.qWaitForWindowActive(window, 3000)
                QTest.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
                state.update(phase="stopping", t=now)
            elif since > 120:
                return fail("recording did not reach 5 frames in 120 s")
        elif phase == "stopping":
            if controller.recordings:
                status = controller.recordings[-1]
                report["recording"] = {"path": status.path, "frames": status.frames, "state": status.state,
                                       "stopped_by": "Ctrl+R"}
                state.update(phase="snapshot", t=now)
            elif since > 10:
                return fail("Ctrl+R did not stop the recording within 10 s")
        elif phase == "snapshot":  # still tracking: wait for a tick where the newest frame is on screen
            if save_screenshot():
                check_pixels()
                state.update(phase="closing", t=now)
                window.close()  # while tracking: closing must stop the thread
            elif since > 30:
                return fail("the newest frame was never on screen long enough for a screenshot")

    def face_box(view, scene):
        """The projected mesh's bounding box in view pixels (top-left origin)."""
        k, v = scene.intrinsics, scene.vertices_cam
        uv = np.stack([k[0] * v[:, 0] / v[:, 2] + k[2], k[1] * v[:, 1] / v[:, 2] + k[3]], 1)
        pts = view.image_to_view(uv)
        return pts.min(0), pts.max(0)

    def changed_inside_outside(a, b, box, margin=12):
        (x0, y0), (x1, y1) = box
        changed = np.abs(a.astype(int) - b.astype(int)).max(2) > 40
        inside = changed[int(y0):int(y1) + 1, int(x0):int(x1) + 1]
        outside = changed.copy()  # antialiased edges and point discs reach slightly past the vertices
        outside[max(0, int(y0) - margin):int(y1) + margin, max(0, int(x0) - margin):int(x1) + margin] = False
        return float(inside.mean()), float(outside.mean())

    def frame_in_view(view, scene, size):
        """The raw video frame as the view letterboxes it (x0, top, w, h) and its pixels at that size."""
        import cv2

        w, h = size
        gx0, gy0, gw, gh = letterbox(scene.size, (w, h))
        top = h - gy0 - gh
        rgb = scene.rgb[:, ::-1] if view.style.mirror else scene.rgb
        return (gx0, top, gw, gh), cv2.resize(rgb, (gw, gh), interpolation=cv2.INTER_AREA)

    def check_pixels() -> bool:
        """Overlay on vs off on the same frame (rendered by the view's GL context and code)."""
        view = window.view
        report["gl"] = dict(view.gl_info)
        scene = view.scene
        if scene is None or scene.vertices_cam is None:
            report["errors"].append("no tracked frame on screen")
            return False
        on = view.render_image()
        off = view.render_image(OverlayStyle(shaded=False, wireframe=False))
        h, w = on.shape[:2]
        box = face_box(view, scene)
        inside, outside = changed_inside_outside(on, off, box)
        (gx0, top, gw, gh), frame = frame_in_view(view, scene, (w, h))
        shown = off[top:top + gh, gx0:gx0 + gw]
        bars = np.concatenate([off[:, :gx0].reshape(-1, 3), off[:, gx0 + gw:].reshape(-1, 3),
                               off[:top].reshape(-1, 3), off[top + gh:].reshape(-1, 3)])
        report["pixels"] = {
            "view_size": [w, h], "face_box": [float(v) for v in (*box[0], *box[1])],
            "face_changed_fraction": inside, "outside_changed_fraction": outside,
            "background_vs_frame_mae": float(np.abs(shown.astype(float) - frame.astype(float)).mean()),
            "letterbox_ok": bool(len(bars) == 0 or np.ptp(bars, axis=0).max() <= 2)}
        plots = window.plots
        plots.refresh()
        t, _ = plots.focal_curve.getData()
        series = plots.series.view()
        report["plots"] = {"samples": len(plots.series), "focal_points": int(np.isfinite(series["focal_px"]).sum()),
                           "all_focal_finite": bool(np.isfinite(series["focal_px"]).all()),
                           "redraws": plots.redraws, "label": plots.focal_label.text(),
                           "curve_points": 0 if t is None else int(len(t))}
        return True

    def save_screenshot() -> bool:
        """Grab the window from the X server (what is really on screen, GL child window included) once
        the newest result has been painted; compare its video area with the raw frame."""
        view = window.view
        scene = view.scene
        if view._scene_dirty or not view.painted_frames or view.painted_frames[-1] != scene.frame_index:
            return False  # a newer frame is about to be painted: try again on the next tick
        image = window.screen().grabWindow(window.winId())
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        image.save(str(screenshot))
        rgb = qimage_rgb(image.toImage())
        origin = view.container.mapTo(window, view.container.rect().topLeft())
        ratio = view.gl_window.devicePixelRatio()
        w, h = view._target_size()
        x, y = round(origin.x() * ratio), round(origin.y() * ratio)
        video = rgb[y:y + h, x:x + w]
        (gx0, top, gw, gh), frame = frame_in_view(view, scene, (w, h))
        raw = np.zeros_like(video)
        raw[top:top + gh, gx0:gx0 + gw] = frame
        screen_view = video.copy()
        screen_view[:top], screen_view[top + gh:], screen_view[:, :gx0], screen_view[:, gx0 + gw:] = 0, 0, 0, 0
        inside, outside = changed_inside_outside(screen_view, raw, face_box(view, scene))
        report["screenshot"] = {"path": str(screenshot), "size": [image.width(), image.height()],
                                "video_std": float(video.std()) if video.size else 0.0,
                                "frame_index": int(scene.frame_index),
                                "face_changed_fraction": inside, "outside_changed_fraction": outside}
        return True

    QTimer.singleShot(0, controller.start)
    timer = QTimer()
    timer.timeout.connect(step)
    timer.start(50)
    probe = QTimer()
    probe.timeout.connect(tick)
    probe.start(5)
    app.exec()
    timer.stop()
    probe.stop()
    controller.shutdown()
    report["frames_received"] = controller.frames_received
    paint = np.array(window.view.paint_ms) if window.view.paint_ms else np.zeros(1)
    gaps = np.diff(ticks) * 1000 if len(ticks) > 1 else np.zeros(1)
    report["paint_ms"] = {"count": int(len(window.view.paint_ms)), "p50": float(np.percentile(paint, 50)),
                          "p95": float(np.percentile(paint, 95)), "max": float(paint.max())}
    frames = np.array(window.view.frame_ms) if window.view.frame_ms else np.zeros(1)
    report["repaint_ms"] = {"p50": float(np.percentile(frames, 50)), "p95": float(np.percentile(frames, 95)),
                            "max": float(frames.max())}
    report["tick_gap_ms"] = {"p50": float(np.percentile(gaps, 50)), "p95": float(np.percentile(gaps, 95)),
                             "max": float(gaps.max())}
    report["threads_after_close"] = {
        "tracking_threads": [t.objectName() for t in live_threads()],
        "non_daemon": sorted(t.name for t in threading.enumerate() if t.is_alive() and not t.daemon),
        "flamecam_threads": sorted(t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith("flamecam")),
    }
    report_path.write_text(json.dumps(report, indent=1))
    return 0


def qimage_rgb(image):
    """QImage -> (H, W, 3) uint8 RGB."""
    import numpy as np
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    data = np.frombuffer(image.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    return data[:, : w * 3].reshape(h, w, 3).copy()


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser()
    parser.add_argument("--drive", type=Path, required=True)
    parser.add_argument("--screenshot", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("FLAMECAM_NO_DOWNLOAD", "1")
    sys.exit(drive(args.drive, args.screenshot, args.report))
