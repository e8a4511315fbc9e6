"""The transport bar under the video for files and recorded takes: play / pause, step, the rate
toggle, the frame number and video time, and a timeline strip to scrub and seek.

The strip (:class:`TimelineStrip`) shows each frame's state as coloured bands, one row each:
tracking (tracking / re-acquired / lost / no face / not tracked yet), focal length (fixed / not
yet observable / estimating / converged) and, when the footage has them, segments (a per-frame
segment id). A playhead marks the frame shown; pressing or dragging on the strip scrubs (the
``scrubbed`` signal while the button is down, ``seekRequested`` when it is released).
:class:`PlotTimeCursor` draws the same position on the plots and turns a click on a plot into a
seek. Widgets only: ``app.gui_transport`` wires them to the transport.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QStyle, QToolButton, QVBoxLayout, QWidget

from core.constants import FOCAL_STATES, TRACKING_STATES
from ui.plots import STATE_COLOURS

UNKNOWN = 255  # band code of a frame not tracked (yet)
UNKNOWN_RGB = (48, 49, 52)
TRACKING_COLOURS = {"tracking": "#34a853", "reacquired": "#8ab4f8", "lost": "#f29900", "no_face": "#d93025"}
SEGMENT_COLOURS = ("#8e7cc3", "#4fb3bf", "#c27ba0", "#a4c639", "#e6a23c", "#6d9eeb")
ROW_NAMES = ("tracking", "focal", "segment")
LABEL_WIDTH_PX = 58
ROW_HEIGHT_PX = 7


def palette(names: tuple[str, ...], colours: dict[str, str]) -> np.ndarray:
    """(256, 3) uint8 lookup from a state code (index in ``names``) to RGB; unknown codes dark."""
    table = np.tile(np.array(UNKNOWN_RGB, np.uint8), (256, 1))
    for code, name in enumerate(names):
        colour = QColor(colours.get(name, "#9aa0a6"))
        table[code] = (colour.red(), colour.green(), colour.blue())
    return table


TRACKING_PALETTE = palette(TRACKING_STATES, TRACKING_COLOURS)
FOCAL_PALETTE = palette(FOCAL_STATES, STATE_COLOURS)


def segment_codes(segment_ids: np.ndarray) -> np.ndarray:
    """Per-frame segment ids (negative: none) -> band codes cycling through SEGMENT_COLOURS."""
    ids = np.asarray(segment_ids, np.int64)
    return np.where(ids >= 0, ids % len(SEGMENT_COLOURS), UNKNOWN).astype(np.uint8)


SEGMENT_PALETTE = palette(tuple(str(i) for i in range(len(SEGMENT_COLOURS))),
                          {str(i): c for i, c in enumerate(SEGMENT_COLOURS)})


class TimelineStrip(QWidget):
    """Per-frame state bands with a playhead; press / drag / release to scrub (module docstring)."""

    scrubbed = Signal(int)  # frame under the pointer while the button is down
    seekRequested = Signal(int)  # frame where the button was released

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(3 * ROW_HEIGHT_PX + 12)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Tracking state (green tracking, blue re-acquired, orange lost, red no face), focal length "
                        "state (grey fixed, orange not yet observable, blue estimating, green converged) and "
                        "segments, per frame. Click or drag to seek.")
        self.num_frames = 0
        self.value = -1  # the frame shown
        self.codes = {name: np.zeros(0, np.uint8) for name in ROW_NAMES}
        self.has_segments = False
        self._images: dict[str, QImage] = {}
        self._dragging = False

    # -- data --------------------------------------------------------------------------------------

    def set_length(self, num_frames: int) -> None:
        n = max(0, int(num_frames))
        if n != self.num_frames:
            old = self.codes
            self.codes = {name: np.full(n, UNKNOWN, np.uint8) for name in ROW_NAMES}
            for name, codes in old.items():
                keep = min(n, len(codes))
                self.codes[name][:keep] = codes[:keep]
            self.num_frames = n
            self._images.clear()
            self.update()

    def clear(self) -> None:
        for codes in self.codes.values():
            codes[:] = UNKNOWN
        self.has_segments = False
        self.value = -1
        self._images.clear()
        self.update()

    def set_frame(self, index: int, tracking_state: str | None, focal_state: str | None,
                  segment_id: int | None = None) -> None:
        """One frame's states (names as in ``core.constants``)."""
        if index >= self.num_frames:
            self.set_length(index + 1)
        if index < 0:
            return
        self.codes["tracking"][index] = TRACKING_STATES.index(tracking_state) if tracking_state in TRACKING_STATES \
            else UNKNOWN
        self.codes["focal"][index] = FOCAL_STATES.index(focal_state) if focal_state in FOCAL_STATES else UNKNOWN
        if segment_id is not None and segment_id >= 0:
            self.codes["segment"][index] = segment_id % len(SEGMENT_COLOURS)
            self.has_segments = True
        self._images.clear()
        self.update()

    def set_states(self, frame_index: np.ndarray, tracking_codes: np.ndarray, focal_codes: np.ndarray,
                   segment_ids: np.ndarray | None = None) -> None:
        """Many frames at once (a recorded take): codes as stored in recordings."""
        index = np.asarray(frame_index, np.int64)
        if index.size and index.max() >= self.num_frames:
            self.set_length(int(index.max()) + 1)
        self.codes["tracking"][index] = np.asarray(tracking_codes, np.uint8)
        self.codes["focal"][index] = np.asarray(focal_codes, np.uint8)
        if segment_ids is not None:
            self.codes["segment"][index] = segment_codes(segment_ids)
            self.has_segments = bool((np.asarray(segment_ids) >= 0).any())
        self._images.clear()
        self.update()

    def set_value(self, index: int) -> None:
        if index != self.value:
            self.value = int(index)
            self.update()

    # -- geometry ------------------------------------------------------------------------------------

    def _track_rect(self) -> QRectF:
        return QRectF(LABEL_WIDTH_PX, 4, max(1, self.width() - LABEL_WIDTH_PX - 6), self.height() - 8)

    def x_of(self, index: int) -> float:
        """The x pixel of the centre of frame ``index``."""
        r = self._track_rect()
        return r.left() + (index + 0.5) * r.width() / max(1, self.num_frames)

    def index_at(self, x: float) -> int:
        r = self._track_rect()
        i = int((x - r.left()) / r.width() * max(1, self.num_frames))
        return min(max(0, i), max(0, self.num_frames - 1))

    # -- painting and the mouse ---------------------------------------------------------------------

    def _row_image(self, name: str) -> QImage:
        image = self._images.get(name)
        if image is None:
            table = {"tracking": TRACKING_PALETTE, "focal": FOCAL_PALETTE, "segment": SEGMENT_PALETTE}[name]
            rgb = np.ascontiguousarray(table[self.codes[name]][None])  # (1, N, 3)
            image = QImage(rgb.data, rgb.shape[1], 1, rgb.shape[1] * 3, QImage.Format.Format_RGB888).copy()
            self._images[name] = image
        return image

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#1e1f22"))
        rows = [n for n in ROW_NAMES if n != "segment" or self.has_segments]
        r = self._track_rect()
        height = r.height() / len(rows)
        painter.setPen(QColor("#9aa0a6"))
        font = painter.font()
        font.setPixelSize(max(8, int(min(height, 11))))
        painter.setFont(font)
        for k, name in enumerate(rows):
            top = r.top() + k * height
            painter.drawText(QRectF(2, top, LABEL_WIDTH_PX - 6, height),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, name)
            if self.num_frames:
                painter.drawImage(QRectF(r.left(), top + 1, r.width(), height - 2), self._row_image(name))
        if 0 <= self.value < self.num_frames:
            x = self.x_of(self.value)
            painter.setPen(QPen(QColor("#ffffff"), 2))
            painter.drawLine(int(round(x)), 0, int(round(x)), self.height())
        painter.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.num_frames:
            self._dragging = True
            self._scrub(event.position().x())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._dragging:
            self._scrub(event.position().x())

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._dragging and event.button() == Qt.MouseButton.LeftButton:
            self._dragging = False
            index = self.index_at(event.position().x())
            self.set_value(index)
            self.seekRequested.emit(index)

    def _scrub(self, x: float) -> None:
        index = self.index_at(x)
        if index != self.value:
            self.set_value(index)
            self.scrubbed.emit(index)


def format_time(t_s: float) -> str:
    """Video time as mm:ss.ss (h:mm:ss.ss from an hour)."""
    if not np.isfinite(t_s):
        return "–"
    minutes, seconds = divmod(max(0.0, t_s), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:05.2f}" if hours else f"{minutes:02d}:{seconds:05.2f}"


class TimelineBar(QWidget):
    """Transport buttons, position readout, rate toggle and the timeline strip (module docstring)."""

    playToggled = Signal()
    stepRequested = Signal(int)  # -1 / +1 frames
    realtimeToggled = Signal(bool)  # True: the file's own frame rate; False: as fast as possible

    def __init__(self, parent=None):
        super().__init__(parent)
        self.fps = 30.0
        icons = QStyle.StandardPixmap
        self._play_icon, self._pause_icon = self._icon(icons.SP_MediaPlay), self._icon(icons.SP_MediaPause)
        self.play_button = self._button(self._play_icon, "Play / pause (Space)", self.playToggled.emit)
        self.back_button = self._button(self._icon(icons.SP_MediaSeekBackward), "One frame back (←)",
                                        lambda: self.stepRequested.emit(-1))
        self.forward_button = self._button(self._icon(icons.SP_MediaSeekForward), "One frame on (→)",
                                           lambda: self.stepRequested.emit(1))
        self.frame_label = QLabel("frame –")
        self.frame_label.setToolTip("The frame shown (numbered from 0) and the frames in the file")
        self.time_label = QLabel("–")
        self.time_label.setToolTip("The frame's time in the video, and the video's length")
        for label in (self.frame_label, self.time_label):
            label.setStyleSheet("font-family: monospace;")
        self.fast_box = QCheckBox("As fast as possible")
        self.fast_box.setToolTip("Process every frame as fast as the engine goes, instead of playing at the "
                                 "file's own frame rate (which passes over frames when the engine is slower)")
        self.fast_box.toggled.connect(lambda fast: self.realtimeToggled.emit(not fast))
        self.strip = TimelineStrip()
        self.playing = self.at_end = False
        self._index, self._t_s = -1, float("nan")
        buttons = QHBoxLayout()
        buttons.setContentsMargins(4, 0, 4, 0)
        buttons.setSpacing(10)
        for widget in (self.back_button, self.play_button, self.forward_button, self.frame_label, self.time_label):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        buttons.addWidget(self.fast_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(2)
        layout.addLayout(buttons)
        layout.addWidget(self.strip)

    def _icon(self, which):
        return self.style().standardIcon(which)

    @staticmethod
    def _button(icon, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setIcon(icon)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space and the arrows belong to the transport
        button.clicked.connect(slot)
        return button

    def set_clip(self, num_frames: int | None, fps: float | None) -> None:
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.strip.clear()
        self.strip.set_length(int(num_frames or 0))
        self._show_position(-1, float("nan"))

    def set_position(self, index: int, t_s: float) -> None:
        self.strip.set_value(index)
        self._show_position(index, t_s)

    def _show_position(self, index: int, t_s: float) -> None:
        n = self.strip.num_frames
        self._index, self._t_s = index, t_s
        end = " (end)" if self.at_end and index == n - 1 else ""
        self.frame_label.setText(f"frame {index if index >= 0 else '–'} / {n}{end}")
        self.time_label.setText(f"{format_time(t_s)} / {format_time(n / self.fps)}")

    def set_playing(self, playing: bool, at_end: bool = False) -> None:
        self.playing, self.at_end = playing, at_end
        self.play_button.setIcon(self._pause_icon if playing else self._play_icon)
        self._show_position(self._index, self._t_s)
        self.play_button.setToolTip(("Pause" if playing else "Play from the start" if at_end else "Play")
                                    + " (Space)")

    def set_realtime(self, realtime: bool) -> None:
        self.fast_box.blockSignals(True)
        self.fast_box.setChecked(not realtime)
        self.fast_box.blockSignals(False)

    @property
    def realtime(self) -> bool:
        return not self.fast_box.isChecked()


class PlotTimeCursor(QObject):
    """A vertical line at the shown frame's time on each plot of :class:`ui.plots.LivePlots`, and a
    click on a plot as a request to show the frame at that time."""

    timeClicked = Signal(float)  # video time (s) under a click

    def __init__(self, plots, parent=None):
        super().__init__(parent)
        self.plots = plots
        self.items = [plot for plot in (plots.focal_plot, plots.rho_plot, plots.rate_plot)]
        self.lines = []
        for plot in self.items:
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#ffffff", width=1))
            line.setZValue(100)
            line.hide()
            plot.addItem(line, ignoreBounds=True)
            self.lines.append(line)
        scenes = []
        for plot in self.items:
            scene = plot.scene()
            if all(scene is not s for s in scenes):
                scenes.append(scene)
                scene.sigMouseClicked.connect(self._clicked)

    def set_time(self, t_s: float | None) -> None:
        for line in self.lines:
            if t_s is None or not np.isfinite(t_s):
                line.hide()
            else:
                line.setValue(float(t_s))
                line.show()

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or not self.lines[0].isVisible():
            return
        for plot in self.items:
            box = plot.getViewBox()
            if box.sceneBoundingRect().contains(event.scenePos()):
                self.timeClicked.emit(float(box.mapSceneToView(event.scenePos()).x()))
                return


# (name, menu text, shortcut): the Playback menu; its shortcuts are listed in Help.
PLAYBACK_ACTIONS = (
    ("play", "&Play / pause", "Space"),
    ("back", "&Back one frame", "Left"),
    ("forward", "&On one frame", "Right"),
    ("back10", "Back 10 frames", "Shift+Left"),
    ("forward10", "On 10 frames", "Shift+Right"),
    ("first", "&First frame", "Home"),
    ("last", "&Last frame", "End"),
    ("retrack", "&Track this frame again", "Shift+R"),
    ("fast", "Process as fast as &possible", None),
)


def add_playback_menu(window) -> dict:
    """The window's Playback menu (files and takes; disabled otherwise): name -> QAction."""
    from PySide6.QtGui import QAction, QKeySequence  # noqa: PLC0415

    menu = window.menuBar().addMenu("&Playback")
    actions = {}
    for name, text, shortcut in PLAYBACK_ACTIONS:
        action = QAction(text, window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(name == "fast")
        action.setEnabled(name == "fast")  # a preference; the rest while a file or take plays
        menu.addAction(action)
        actions[name] = action
    return actions


def shortcuts_html(menu_bar) -> str:
    """Every menu action with a shortcut, as an HTML table (Help → Keyboard shortcuts)."""
    rows = []
    for top in menu_bar.actions():
        menu = top.menu()
        if menu is None:
            continue
        for action in menu.actions():
            keys = action.shortcut().toString()
            if keys:
                rows.append(f"<tr><td><b>{keys}</b></td><td>&nbsp;{action.text().replace('&', '')}</td>"
                            f"<td>&nbsp;<i>{top.text().replace('&', '')}</i></td></tr>")
    return "<b>Keyboard shortcuts</b><table>" + "".join(rows) + "</table>"
