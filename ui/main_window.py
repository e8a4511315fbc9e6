"""flamecam's main window: video view with overlay, live plots, session/overlay/record panels, status bar.

Two modes, as tabs over the central area: **Track** (the video with the overlay) and **Calibrate**
(:class:`ui.calibration.CalibrationPage`: the current source's frames with the board coverage map
and guidance, solve, save a camera profile). The status bar says which intrinsics the session
uses (:class:`ui.calibration.IntrinsicsStatusLabel`: fixed focal, the camera profile's name, a
metadata prior or estimated online).

Widgets only. The window shows what it is given and emits what the user asks for; ``app.gui``
wires it to the tracking thread. Messages (notices and errors) appear in a banner above the
video, never in a blocking dialog, so the app keeps running whatever happens. Window geometry,
dock layout and every panel's values persist in ``QSettings``.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ui.calibration import CalibrationPage, IntrinsicsStatusLabel
from ui.overlay_view import OverlayView
from ui.panels import CameraPanel, ModelPanel, OverlayPanel, RecordPanel, SourcePanel
from ui.plots import LivePlots
from ui.readout import ReadoutLabel
from ui.stream_panel import StreamPanel
from ui.timeline import TimelineBar, add_playback_menu, shortcuts_html

PLOTS_DOCK_HEIGHT_PX = 340  # the plots dock's height until the user moves it (a saved layout keeps theirs)
BANNER_STYLES = {
    "info": "background:#1f3a5f; color:#e8f0fe; border-radius:4px;",
    "warning": "background:#5c4400; color:#fef7e0; border-radius:4px;",
    "error": "background:#6b1d1d; color:#fce8e6; border-radius:4px;",
}


class MessageBanner(QFrame):
    """One message above the video (info / warning / error), dismissible; keeps a history."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.history: list[tuple[str, str]] = []  # (level, text)
        self.level = "info"
        self.hide()

    def show_message(self, text: str, level: str = "info") -> None:
        self.history.append((level, text))
        self.level = level
        self.setStyleSheet(f"MessageBanner {{{BANNER_STYLES.get(level, BANNER_STYLES['info'])}}}")
        self.label.setText(text)
        self.show()

    @property
    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()


class MainWindow(QMainWindow):
    """The application window (see module docstring)."""

    startRequested = Signal()
    stopRequested = Signal()
    sessionChanged = Signal()  # source, model or camera choice changed
    recordToggled = Signal(bool)
    exportRequested = Signal(str, str)  # recording path, format
    exportFileRequested = Signal()  # pick any recording to export
    refreshWebcamsRequested = Signal()
    modeChanged = Signal(str)  # "track" | "calibrate": the user switched tabs
    takeOpenRequested = Signal(str)  # a recording (.fcrec) to open and review
    aboutToClose = Signal()  # emitted synchronously from closeEvent: stop threads here

    def __init__(self, settings: QSettings | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings("flamecam", "flamecam")
        self.setWindowTitle("flamecam")
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)

        # central: banner + video view (or a placeholder while a session starts)
        self.banner = MessageBanner()
        self.view = OverlayView()
        self.placeholder = QLabel("Choose a source and press Start.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color:#9aa0a6; background:#17171a; font-size:15px;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.view)
        self.calibration_page = CalibrationPage()
        self.mode_tabs = QTabWidget()
        self.mode_tabs.setDocumentMode(True)
        self.timeline = TimelineBar()  # files and takes: transport and timeline under the video
        self.timeline.hide()
        track_page = QWidget()
        track_layout = QVBoxLayout(track_page)
        track_layout.setContentsMargins(0, 0, 0, 0)
        track_layout.setSpacing(0)
        track_layout.addWidget(self.stack, 1)
        track_layout.addWidget(self.timeline)
        self.mode_tabs.addTab(track_page, "Track")
        calibration_scroll = QScrollArea()  # its wrapped texts must not set the window's minimum height
        calibration_scroll.setWidget(self.calibration_page)
        calibration_scroll.setWidgetResizable(True)
        calibration_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.mode_tabs.addTab(calibration_scroll, "Calibrate camera")
        self.mode_tabs.setTabToolTip(1, "Calibrate the current camera with a printed board: focal length, principal "
                                        "point and lens distortion, saved as a camera profile that tracking uses")
        self.mode_tabs.currentChanged.connect(lambda _i: self.modeChanged.emit(self.mode()))
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.banner)
        layout.addWidget(self.mode_tabs, 1)
        self.setCentralWidget(central)

        # panels
        self.source_panel = SourcePanel()
        self.model_panel = ModelPanel()
        self.camera_panel = CameraPanel()
        self.start_button = QPushButton("▶ Start")
        self.start_button.setToolTip("Start (or restart) tracking with these choices (F5)")
        self.start_button.clicked.connect(self.startRequested.emit)
        self.stop_button = QPushButton("■ Stop")
        self.stop_button.setToolTip("Stop tracking")
        self.stop_button.clicked.connect(self.stopRequested.emit)
        self.stop_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        session = QWidget()
        session_layout = QVBoxLayout(session)
        session_layout.addWidget(self.source_panel)
        session_layout.addWidget(self.model_panel)
        session_layout.addWidget(self.camera_panel)
        session_layout.addLayout(buttons)
        session_layout.addStretch(1)
        self.overlay_panel = OverlayPanel()
        self.record_panel = RecordPanel()
        self.stream_panel = StreamPanel()
        for panel in (self.overlay_panel, self.record_panel):  # the dock's title says it already
            panel.setTitle("")
            panel.setFlat(True)
        self.plots = LivePlots()
        self.session_dock = self._dock("Session", session, Qt.DockWidgetArea.RightDockWidgetArea)
        self.overlay_dock = self._dock("Overlay", self.overlay_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        outputs = QWidget()  # recording and live streaming share a dock: the right column keeps its room
        outputs_layout = QVBoxLayout(outputs)
        outputs_layout.setContentsMargins(0, 0, 0, 0)
        outputs_layout.addWidget(self.record_panel)
        outputs_layout.addWidget(self.stream_panel)
        outputs_layout.addStretch(1)
        self.record_dock = self._dock("Record and stream", outputs, Qt.DockWidgetArea.RightDockWidgetArea)
        self.record_dock.setObjectName("dock_record")  # the name saved layouts know it by
        self.plots_dock = self._dock("Plots", self.plots, Qt.DockWidgetArea.BottomDockWidgetArea, scroll=False)
        self._docks_placed = False  # the plots dock's first height: see showEvent

        for panel in (self.source_panel, self.model_panel, self.camera_panel):
            panel.changed.connect(self.sessionChanged.emit)
        self.source_panel.refreshRequested.connect(self.refreshWebcamsRequested.emit)
        self.overlay_panel.styleChanged.connect(self.view.set_style)
        self.record_panel.recordToggled.connect(self.recordToggled.emit)
        self.record_panel.exportRequested.connect(self.exportRequested.emit)
        self.view.glFailed.connect(lambda msg: self.show_message(msg, "error"))
        self.view.fileDropped.connect(self.drop_path)

        # status bar: permanent fields
        self.intrinsics_label = IntrinsicsStatusLabel("")
        self.intrinsics_label.setStyleSheet("color: #8ab4f8")
        self.statusBar().addPermanentWidget(self.intrinsics_label)
        self.status_fields: dict[str, ReadoutLabel] = {}
        for key, tip in (("device", "Where the tracker runs"), ("fps", "Frames tracked per second"),
                         ("latency", "From a frame being read to its result"), ("state", "Tracking state"),
                         ("model", "Head model in use")):
            label = ReadoutLabel("–", min_width_text="000.0 fps")  # changes 4x a second: no window re-layout
            label.setToolTip(tip)
            self.statusBar().addPermanentWidget(label)
            self.status_fields[key] = label
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.hide()
        self.statusBar().addPermanentWidget(self.progress)

        self._build_menus()
        self.resize(1280, 900)
        self.restore_settings()
        self.view.set_style(self.overlay_panel.style())

    def _dock(self, title: str, widget: QWidget, area, scroll: bool = True) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")  # saveState needs names
        if scroll:  # panels scroll rather than forcing a tall window on small screens
            area_widget = QScrollArea()
            area_widget.setWidget(widget)
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QFrame.Shape.NoFrame)
            area_widget.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            widget = area_widget
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction("Open &video file…", self._open_video, QKeySequence.StandardKey.Open)
        file_menu.addAction("Open image &folder…", self._open_folder)
        file_menu.addAction("Open &take…", self._open_take, QKeySequence("Ctrl+Shift+O"))
        file_menu.addSeparator()
        file_menu.addAction("&Export a recording…", self.exportFileRequested.emit)
        file_menu.addSeparator()
        file_menu.addAction("&Quit", self.close, QKeySequence.StandardKey.Quit)
        track_menu = self.menuBar().addMenu("&Tracking")
        self.start_action = track_menu.addAction("&Start / restart", self.startRequested.emit, QKeySequence("F5"))
        track_menu.addAction("S&top", self.stopRequested.emit, QKeySequence("Shift+F5"))
        self.record_action = QAction("&Record", self)
        self.record_action.setShortcut(RecordPanel.SHORTCUT)
        self.record_action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self.record_action.triggered.connect(self.record_panel.button.toggle)
        track_menu.addAction(self.record_action)
        track_menu.addSeparator()
        track_menu.addAction("&Calibrate camera…", lambda: self.set_mode("calibrate"), QKeySequence("Ctrl+K"))
        self.playback_actions = add_playback_menu(self)
        view_menu = self.menuBar().addMenu("&View")
        for dock in (self.session_dock, self.overlay_dock, self.record_dock, self.plots_dock):
            view_menu.addAction(dock.toggleViewAction())
        pause = QAction("&Pause plots", self)
        pause.setShortcut(QKeySequence("P"))
        pause.triggered.connect(lambda: self.plots.set_paused(not self.plots.paused))
        view_menu.addAction(pause)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("About head &models", self._about_models)
        help_menu.addAction("&Keyboard shortcuts", lambda: self.show_message(shortcuts_html(self.menuBar()), "info"))

    # -- user actions --------------------------------------------------------------------------------

    def _open_video(self) -> None:
        self.source_panel.browse_video()

    def _open_folder(self) -> None:
        self.source_panel.browse_folder()

    def _open_take(self) -> None:
        from PySide6.QtWidgets import QFileDialog  # noqa: PLC0415

        path, _ = QFileDialog.getOpenFileName(self, "Open a take", self.record_panel.folder(),
                                              "flamecam recordings (*.fcrec)")
        if path:
            self.takeOpenRequested.emit(path)

    def _about_models(self) -> None:
        from ui.panels import MODEL_HELP  # noqa: PLC0415

        self.show_message("<br>".join(MODEL_HELP.values()), "info")

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if len(urls) == 1 and urls[0].isLocalFile():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            self.drop_path(urls[0].toLocalFile())
            event.acceptProposedAction()

    def drop_path(self, path: str) -> None:
        """A dropped video file or image folder becomes the source; a dropped take (.fcrec) opens."""
        if not Path(path).exists():
            self.show_message(f"{path} does not exist", "error")
            return
        if Path(path).suffix.lower() == ".fcrec":
            self.takeOpenRequested.emit(path)
            return
        self.source_panel.set_spec(path)
        self.sessionChanged.emit()

    # -- shown state ---------------------------------------------------------------------------------

    def mode(self) -> str:
        """'track' or 'calibrate' (the central tab shown)."""
        return "calibrate" if self.mode_tabs.currentIndex() == 1 else "track"

    def set_mode(self, mode: str, emit: bool = True) -> None:
        index = 1 if mode == "calibrate" else 0
        if not emit:
            self.mode_tabs.blockSignals(True)
        self.mode_tabs.setCurrentIndex(index)
        if not emit:
            self.mode_tabs.blockSignals(False)

    def set_intrinsics(self, plan) -> None:
        """Show which intrinsics the session uses (``core.session.IntrinsicsPlan``) and offer the
        undistorted-video toggle when its camera profile has lens distortion."""
        self.intrinsics_label.set_plan(plan)
        lens = None if plan is None else plan.lens
        has_lens = plan is not None and plan.profile is not None and not lens.is_identity
        self.overlay_panel.set_lens(f"{lens.model}, {plan.profile.name}" if has_lens else None)

    def show_message(self, text: str, level: str = "info") -> None:
        self.banner.show_message(text, level)
        self.statusBar().showMessage(text if len(text) < 160 else text[:157] + "…", 8000)

    def set_running(self, running: bool, starting: bool = False) -> None:
        self.start_button.setText("⟳ Restart" if running or starting else "▶ Start")
        self.stop_button.setEnabled(running or starting)
        self.record_panel.button.setEnabled(running)
        self.record_action.setEnabled(running)
        if starting:
            self.placeholder.setText("Starting: opening the source and loading the model…")
            self.stack.setCurrentWidget(self.placeholder)
        elif running:
            self.stack.setCurrentWidget(self.view)
        elif self.view.scene is None:
            self.placeholder.setText("Stopped. Choose a source and press Start.")
            self.stack.setCurrentWidget(self.placeholder)

    def set_status(self, **fields: str) -> None:
        for key, text in fields.items():
            self.status_fields[key].setText(text)

    def status(self, key: str) -> str:
        return self.status_fields[key].text()

    # -- settings ------------------------------------------------------------------------------------

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("plots/window_s", self.plots.window_s)
        for panel in (self.source_panel, self.model_panel, self.camera_panel, self.overlay_panel, self.record_panel,
                      self.stream_panel, self.calibration_page):
            panel.save_settings(s)
        s.sync()

    def restore_settings(self) -> None:
        s = self.settings
        geometry, state = s.value("window/geometry"), s.value("window/state")
        if isinstance(geometry, (QByteArray, bytes)):
            self.restoreGeometry(geometry)
        if isinstance(state, (QByteArray, bytes)):
            self._docks_placed = self.restoreState(state)
        self.plots.window_spin.setValue(float(s.value("plots/window_s", self.plots.window_s)))
        for panel in (self.source_panel, self.model_panel, self.camera_panel, self.overlay_panel, self.record_panel,
                      self.stream_panel, self.calibration_page):
            panel.restore_settings(s)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._docks_placed:
            # Qt ignores resizeDocks before the window is first shown: the plots dock kept its least
            # height, which leaves the three plots only their minimum (units alone as axis titles).
            self._docks_placed = True
            self.resizeDocks([self.plots_dock], [PLOTS_DOCK_HEIGHT_PX], Qt.Orientation.Vertical)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.aboutToClose.emit()
        self.save_settings()
        super().closeEvent(event)
