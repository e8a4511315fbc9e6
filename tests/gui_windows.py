"""The app's window as the GUI tests open it: one factory fixture for every GUI test module (a
plugin of ``tests/conftest.py``; Qt is imported only when a test asks for a window)."""
from __future__ import annotations

import pytest


@pytest.fixture
def app_window(qtbot, tmp_path):
    """``make(source="synthetic", **build_options) -> (window, controller)``: the app with one private
    settings file per test (a second window sees what the first remembered) and a private recordings
    folder; every window is closed at the end (its controller joins its threads here) and no tracking
    thread may be left."""
    from PySide6.QtCore import QSettings  # noqa: PLC0415

    from app.gui import build  # noqa: PLC0415
    from core.session import SessionOptions  # noqa: PLC0415
    from tests.test_gui_worker import assert_no_tracking_threads  # noqa: PLC0415

    made = []
    settings_path = str(tmp_path / "flamecam.ini")

    def make(source: str = "synthetic", **build_options):
        settings = QSettings(settings_path, QSettings.Format.IniFormat)
        window, controller = build(SessionOptions(device="cpu"), source=source, settings=settings, **build_options)
        qtbot.addWidget(window)
        window.record_panel.folder_edit.setText(str(tmp_path / "recordings"))
        window.show()
        made.append(window)
        return window, controller

    yield make
    for window in made:
        window.close()
    assert_no_tracking_threads()
