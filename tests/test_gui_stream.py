"""The Stream panel (pytest-qt, offscreen): the URL it makes, its settings, and switching live streaming
on and off while the app tracks, received by a real python-osc server on loopback."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from tests.test_gui_worker import START_TIMEOUT_MS  # noqa: E402
from tests.test_streaming import osc_server  # noqa: E402


def test_panel_makes_the_stream_url_and_keeps_its_settings(qtbot, tmp_path):
    from ui.stream_panel import StreamPanel

    panel = StreamPanel()
    qtbot.addWidget(panel)
    urls = []
    panel.configChanged.connect(urls.append)
    assert panel.url() == ""  # off by default
    assert not panel.recenter.isEnabled()
    panel.enabled.setChecked(True)
    assert urls[-1] == "vmc://127.0.0.1:39539?blendshapes=mediapipe"
    recentred = []
    panel.recenterRequested.connect(lambda: recentred.append(True))
    panel.recenter.click()
    assert recentred == [True]
    panel.blendshapes.setCurrentIndex(panel.blendshapes.findData("model"))
    panel.mirror.setChecked(True)
    assert urls[-1] == "vmc://127.0.0.1:39539?blendshapes=model&mirror=1"
    panel.protocol.setCurrentIndex(panel.protocol.findData("flamecam"))
    assert urls[-1] == "flamecam://127.0.0.1:9000"  # the port follows the protocol's usual one
    assert not (panel.blendshapes.isEnabled() or panel.mirror.isEnabled() or panel.recenter.isEnabled())  # VMC only
    panel.host.setText("::1")
    panel.port.setValue(9100)
    assert urls[-1] == panel.url() == "flamecam://[::1]:9100"

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    panel.save_settings(settings)
    again = StreamPanel()
    qtbot.addWidget(again)
    restored = []
    again.configChanged.connect(restored.append)
    again.restore_settings(settings)
    assert again.url() == "flamecam://[::1]:9100" and restored == [again.url()]
    assert again.blendshapes.currentData() == "model" and again.mirror.isChecked()


def test_switching_streaming_on_and_off_while_tracking(app_window, qtbot):
    window, controller = app_window()
    panel = window.stream_panel
    with osc_server() as (port, log):
        panel.protocol.setCurrentIndex(panel.protocol.findData("flamecam"))
        panel.port.setValue(port)
        assert panel.url() == ""  # not streaming yet
        controller.start()
        qtbot.waitUntil(lambda: controller.frames_received >= 3, timeout=START_TIMEOUT_MS)
        assert log.frames("/flamecam/frame") == []

        panel.enabled.setChecked(True)
        qtbot.waitUntil(lambda: len(log.frames("/flamecam/frame")) >= 5, timeout=60_000)
        qtbot.waitUntil(lambda: panel.status.text().startswith(f"Streaming to flamecam://127.0.0.1:{port}"),
                        timeout=10_000)
        tracked = [f for f in log.frames("/flamecam/frame") if f["/flamecam/frame"][3] in ("tracking", "reacquired")]
        assert tracked and all(len(f["/flamecam/expr"]) == 51 for f in tracked)  # the built-in head's expression

        panel.enabled.setChecked(False)
        qtbot.wait(500)  # a frame already in flight may still arrive
        stopped_at = len(log.frames("/flamecam/frame"))
        frames_then = controller.frames_received
        qtbot.waitUntil(lambda: controller.frames_received >= frames_then + 5, timeout=60_000)
        time.sleep(0.2)
        assert len(log.frames("/flamecam/frame")) == stopped_at  # tracking went on, sending did not
        qtbot.waitUntil(lambda: panel.status.text() == "Not streaming", timeout=5_000)

        panel.enabled.setChecked(True)  # and back on, in the same session
        qtbot.waitUntil(lambda: len(log.frames("/flamecam/frame")) >= stopped_at + 3, timeout=60_000)
        controller.stop()
        assert not controller.running
