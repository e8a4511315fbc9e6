"""Calibration mode: a self-contained widget that guides the user through a board calibration.

Drop :class:`CalibrationWidget` into a tab or dialog. It is driven by a
``core.calibration.CalibrationSession`` (pure Python/OpenCV, no Qt) and shows:

* the camera frame with a **coverage map** over it — image cells tinted by how many board corners
  the taken views put there (red = none yet, green = well covered) — and the corners found in the
  current frame (green when the view was just taken, yellow otherwise);
* **guidance**: what to do next ("Move the board to the top-left…", "Tilt it…"), the last frame's
  status and the progress towards the target number of views;
* **Solve** (enabled once enough views exist) and **Save profile** (after a successful solve), with
  the result or the reason a calibration was refused.

API (all on the GUI thread)::

    w = CalibrationWidget()
    w.start(BoardSpec.parse("charuco:9x6,square=0.03,marker=0.022"), (1280, 720), model="opencv",
            camera_name="Logitech BRIO")          # or w.set_session(CalibrationSession(...))
    w.show_frame(rgb)                             # per camera frame: runs session.process(rgb) (5-60 ms)
    w.show_frame(rgb, feedback)                   # ... or pass the FrameFeedback if a worker ran process()
    w.show_detection(rgb, detection)              # ... or a BoardDetection a worker found (cheap on this thread)
    w.solve() -> Calibration | None               # synchronous
    w.solve_in_background()                       # the Solve button: OpenCV's solve (0.2-2 s) off the GUI thread
    w.save_profile() -> Path | None               # the Save button; name from start(camera_name=) or the field
    signals: viewTaken(int views), solved(object Calibration), refused(str reason), profileSaved(str path)

:class:`IntrinsicsStatusLabel` is a one-line label for the main window that shows which
intrinsics are active (``set_plan(core.session.IntrinsicsPlan)``): the camera profile's name or the
focal-length mode.

:class:`CalibrationPage` is the main window's calibration mode: the board and lens-model choice,
start / stop, a printable board image, and the :class:`CalibrationWidget`; ``app.gui`` feeds it
the current source's frames (board detection runs in ``app.gui_worker.CalibrationThread``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QThread, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from core.calibration import (
    BoardDetection,
    BoardSpec,
    Calibration,
    CalibrationError,
    CalibrationSession,
    FrameFeedback,
    calibrate,
)

COVERED_WELL = 12  # corners per cell counted as "well covered" (full green)


def coverage_colour(count: int) -> QColor:
    """Red for an empty cell, through yellow, to green at :data:`COVERED_WELL` corners."""
    t = min(count / COVERED_WELL, 1.0)
    if count == 0:
        return QColor(220, 40, 40, 90)
    return QColor(int(230 * (1 - t) + 40 * t), int(180 * (1 - t) + 200 * t), 40, 70)


class CoverageMap(QWidget):
    """The frame (letterboxed) with the coverage grid and the current corners painted over it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self._image: QImage | None = None
        self._size = (640, 480)
        self._grid = np.zeros((6, 8), np.int64)
        self._corners: np.ndarray | None = None
        self._taken = False

    def set_frame(self, rgb: np.ndarray) -> None:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        self._size = (w, h)
        self._image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()  # copy: own the pixels
        self.update()

    def set_coverage(self, grid: np.ndarray, image_size: tuple[int, int]) -> None:
        self._grid = np.asarray(grid)
        self._size = tuple(image_size)
        self.update()

    def set_corners(self, points_px: np.ndarray | None, taken: bool = False) -> None:
        self._corners = None if points_px is None else np.asarray(points_px, np.float64)
        self._taken = taken
        self.update()

    def image_rect(self) -> QRectF:
        """Where the image sits in the widget (aspect kept)."""
        w, h = self._size
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def cell_rect(self, row: int, col: int) -> QRectF:
        r = self.image_rect()
        rows, cols = self._grid.shape
        return QRectF(r.x() + col * r.width() / cols, r.y() + row * r.height() / rows, r.width() / cols,
                      r.height() / rows)

    def paintEvent(self, event) -> None:  # noqa: N802  (Qt's name)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(30, 30, 30))
        rect = self.image_rect()
        if self._image is not None:
            p.drawImage(rect, self._image)
        rows, cols = self._grid.shape
        for r in range(rows):
            for c in range(cols):
                p.fillRect(self.cell_rect(r, c), coverage_colour(int(self._grid[r, c])))
        p.setPen(QPen(QColor(255, 255, 255, 60), 1))
        for c in range(1, cols):
            x = rect.x() + c * rect.width() / cols
            p.drawLine(QPointF(x, rect.y()), QPointF(x, rect.bottom()))
        for r in range(1, rows):
            y = rect.y() + r * rect.height() / rows
            p.drawLine(QPointF(rect.x(), y), QPointF(rect.right(), y))
        if self._corners is not None and len(self._corners):
            scale = rect.width() / self._size[0]
            colour = QColor(60, 230, 90) if self._taken else QColor(250, 210, 40)
            p.setPen(QPen(colour, 2))
            for x, y in self._corners:
                p.drawEllipse(QPointF(rect.x() + x * scale, rect.y() + y * scale), 3, 3)
        p.end()


class CalibrationWidget(QWidget):
    """Guided board calibration (see the module docstring for the API)."""

    viewTaken = Signal(int)
    solved = Signal(object)
    refused = Signal(str)
    profileSaved = Signal(str)

    def __init__(self, session: CalibrationSession | None = None, parent=None):
        super().__init__(parent)
        self.session: CalibrationSession | None = None
        self.result: Calibration | None = None
        self.camera_name = ""
        self._solver: _SolveThread | None = None
        self.coverage_map = CoverageMap()
        self.status_label = QLabel("Start a calibration to see the board coverage.")
        self.guidance_label = QLabel()
        self.guidance_label.setWordWrap(True)
        font = QFont(self.guidance_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.guidance_label.setFont(font)
        self.progress = QProgressBar()
        self.progress.setFormat("%v of %m views")
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("camera name for the profile")
        self.solve_button = QPushButton("Solve")
        self.solve_button.setToolTip("Compute focal length, principal point and lens distortion from the views taken")
        self.save_button = QPushButton("Save profile")
        self.save_button.setToolTip("Store the calibration; it is used automatically when this camera opens")
        self.reset_button = QPushButton("Start over")
        self.solve_button.clicked.connect(lambda: self.solve_in_background())
        self.save_button.clicked.connect(lambda: self.save_profile())
        self.reset_button.clicked.connect(lambda: self.reset())

        buttons = QHBoxLayout()
        buttons.addWidget(self.name_edit, 1)
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.solve_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.coverage_map, 1)
        layout.addWidget(self.status_label)
        layout.addWidget(self.guidance_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.result_label)
        layout.addLayout(buttons)
        if session is not None:
            self.set_session(session)
        self._refresh()

    # -- API ------------------------------------------------------------------------------------------

    def start(self, board, image_size: tuple[int, int], model: str = "opencv", camera_name: str = "",
              **session_kwargs) -> CalibrationSession:
        """A new session for ``board`` at ``image_size`` (W, H)."""
        session = CalibrationSession(board, image_size, model, **session_kwargs)
        self.set_session(session, camera_name)
        return session

    def set_session(self, session: CalibrationSession, camera_name: str = "") -> None:
        self.wait_for_solver()
        self._solver = None  # its result belongs to the old session
        self.session, self.result = session, None
        self.camera_name = camera_name or self.camera_name
        if camera_name:
            self.name_edit.setText(camera_name)
        self.result_label.clear()
        self.coverage_map.set_corners(None)
        self._refresh()

    def reset(self) -> None:
        """Drop every view and start again with the same board and settings."""
        if self.session is None:
            return
        self.wait_for_solver()
        s = self.session
        self.set_session(CalibrationSession(s.board, s.image_size, s.model, s.criteria, s.target_views,
                                            s.min_novelty, s.still_px, s.cells, s.principal_point))

    def show_frame(self, rgb: np.ndarray, feedback: FrameFeedback | None = None) -> FrameFeedback | None:
        """Show a camera frame; without ``feedback`` the widget runs ``session.process`` on it."""
        self.coverage_map.set_frame(rgb)
        if self.session is None:
            return None
        if feedback is None:
            feedback = self.session.process(rgb)
        det = feedback.detection
        self.coverage_map.set_corners(None if det is None else det.image_points, feedback.accepted)
        self.status_label.setText(f"Last frame: {feedback.message}.")
        if feedback.accepted:
            self.viewTaken.emit(feedback.num_views)
        self._refresh()
        return feedback

    def show_detection(self, rgb: np.ndarray, detection: BoardDetection | None) -> FrameFeedback | None:
        """Show a camera frame whose board ``detection`` (or None) a worker thread found: the
        session judges it here (cheap), so the session is only ever changed on this thread."""
        if self.session is None:
            self.coverage_map.set_frame(rgb)
            return None
        self.session.frames_seen += 1
        return self.show_frame(rgb, self.session.add_detection(detection))

    def solve(self) -> Calibration | None:
        """Solve now, on this thread (blocks for OpenCV's solve); see :meth:`solve_in_background`."""
        if self.session is None:
            return None
        try:
            result = self.session.solve()
        except CalibrationError as exc:
            self._show_solution(None, str(exc))
            return None
        self._show_solution(result, "")
        return self.result

    def solve_in_background(self) -> bool:
        """Solve the views taken so far in a thread (the GUI keeps running; frames keep being judged
        meanwhile but the solve uses the views of the moment); ``solved`` / ``refused`` follow."""
        if self.session is None or self.solving:
            return False
        s = self.session
        self._solver = _SolveThread(list(s.views), s.model, s.criteria, s.board, s.principal_point, self)
        self._solver.done.connect(self._on_solved)
        self.result_label.setText(f"Solving with {len(s.views)} views…")
        self._solver.start()
        self._refresh()
        return True

    @property
    def solving(self) -> bool:
        return self._solver is not None and not self._solver.isFinished()

    def wait_for_solver(self) -> None:
        """Block until a background solve has ended (before the widget or its session goes)."""
        if self._solver is not None:
            self._solver.wait()

    def _on_solved(self, solver, result, error: str) -> None:
        if solver is not self._solver or self.session is None:
            return  # the solve of a session that was replaced meanwhile
        solver.wait()
        self._solver = None
        if result is not None:
            self.session.result = result
        self._show_solution(result, error)

    def _show_solution(self, result: Calibration | None, error: str) -> None:
        self.result = result
        if result is None:
            self.result_label.setText(f"<b>Calibration refused:</b> {error}")
            self.refused.emit(error)
        else:
            self.result_label.setText("<pre>" + result.summary() + "</pre>")
            self.solved.emit(result)
        self._refresh()

    def save_profile(self, directory: str | Path | None = None) -> Path | None:
        """Store the last result as a camera profile (name from the name field)."""
        from core.profiles import profile_from_calibration, save_profile  # noqa: PLC0415

        if self.result is None:
            return None
        name = self.name_edit.text().strip() or self.camera_name or "camera"
        path = save_profile(profile_from_calibration(self.result, name, source="flamecam GUI"), directory)
        self.result_label.setText(self.result_label.text() + f"<p>Saved profile <b>{name}</b>: {path}</p>")
        self.profileSaved.emit(str(path))
        return path

    # -- internals ---------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        s = self.session
        if s is None:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.guidance_label.setText("")
            self.solve_button.setEnabled(False)
            self.save_button.setEnabled(False)
            self.reset_button.setEnabled(False)
            return
        target = max(s.criteria.min_views, s.target_views)
        self.progress.setRange(0, target)
        self.progress.setValue(min(len(s.views), target))
        self.guidance_label.setText("<br>".join(s.guidance()))
        self.coverage_map.set_coverage(s.coverage(), s.image_size)
        self.solve_button.setEnabled(len(s.views) >= s.criteria.min_views and not self.solving)
        self.save_button.setEnabled(self.result is not None and not self.solving)
        self.reset_button.setEnabled(bool(s.views))


class _SolveThread(QThread):
    """``core.calibration.calibrate`` on a snapshot of the views, off the GUI thread."""

    done = Signal(object, object, str)  # this thread, Calibration or None, refusal reason

    def __init__(self, views, model, criteria, board, principal_point, parent=None):
        super().__init__(parent)
        self.views, self.model, self.criteria, self.board = views, model, criteria, board
        self.principal_point = principal_point
        self.setObjectName("flamecam-calibration-solve")

    def run(self) -> None:
        try:
            result = calibrate(self.views, self.model, self.criteria, self.board, principal_point=self.principal_point)
        except CalibrationError as exc:
            self.done.emit(self, None, str(exc))
        except Exception as exc:  # noqa: BLE001  (nothing may escape a QThread; the user sees why)
            self.done.emit(self, None, f"the solver failed: {type(exc).__name__}: {exc}")
        else:
            self.done.emit(self, result, "")


class IntrinsicsStatusLabel(QLabel):
    """One line for the main window: which camera intrinsics the session uses."""

    def set_plan(self, plan) -> None:
        """``plan``: a ``core.session.IntrinsicsPlan`` (or None to clear)."""
        if plan is None:
            self.setText("")
            self.setToolTip("")
            return
        if plan.mode == "profile" and plan.profile is not None:
            p = plan.profile
            text = f"Camera profile: {p.name} ({p.image_size[0]}×{p.image_size[1]}"
            text += f", scaled from {p.scaled_from[0]}×{p.scaled_from[1]})" if p.scaled_from else ")"
            if not plan.lens.is_identity:
                text += f", {plan.lens.model} lens corrected"
        elif plan.mode == "fixed":
            text = f"Focal length fixed: {plan.focal_px:.0f} px"
        elif plan.mode == "metadata":
            text = (f"Focal prior from metadata: {plan.focal_prior.focal_px:.0f} px "
                    f"± {plan.focal_prior.sigma_rel:.0%} (estimated online)")
        else:
            text = "Focal length: estimated online (no camera profile)"
        self.setText(text)
        self.setToolTip(plan.describe())


LENS_MODEL_TEXT = {  # (combo text, tooltip)
    "opencv": ("Standard lens", "Radial-tangential: k1 k2, plus p1 p2 k3 when the views need them"),
    "rational": ("Strong distortion", "Rational model k1..k6 p1 p2, for strong barrel distortion"),
    "fisheye": ("Fisheye", "Equidistant k1..k4, for lenses wider than ~120°"),
}


class CalibrationPage(QWidget):
    """The main window's calibration mode: board and lens choice, start / stop, and the guided
    :class:`CalibrationWidget` (frames come from ``app.gui``)."""

    startRequested = Signal()
    stopRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.board_edit = QLineEdit()
        self.board_edit.setPlaceholderText("charuco:9x6,square=0.03,marker=0.022")
        self.board_edit.setToolTip("The printed board: charuco:NXxNY,square=M,marker=M[,dict=DICT_5X5_100] or "
                                   "checkerboard:NXxNY,square=M (counts are squares; measure the printed square "
                                   "in metres)")
        self.board_edit.editingFinished.connect(self._check_board)
        self.model_combo = QComboBox()
        for key, (text, tip) in LENS_MODEL_TEXT.items():
            self.model_combo.addItem(text, key)
            self.model_combo.setItemData(self.model_combo.count() - 1, tip, Qt.ToolTipRole)
        self.start_button = QPushButton("▶ Start calibration")
        self.start_button.setToolTip("Open the current source and look for the board (tracking stops meanwhile)")
        self.start_button.clicked.connect(self._on_start_clicked)
        self.board_image_button = QPushButton("Board image…")
        self.board_image_button.setToolTip("Save a printable image of this board (300 dpi PNG)")
        self.board_image_button.clicked.connect(self._save_board_image)
        self.source_label = QLabel("Shows the current source (choose it in Session). Print the board, glue it flat, "
                                   "measure a square, then press Start.")
        self.source_label.setWordWrap(True)
        self.source_label.setStyleSheet("color: #b0b0b0")
        self.widget = CalibrationWidget()
        self.widget.coverage_map.setMinimumSize(200, 150)
        top = QHBoxLayout()
        top.addWidget(QLabel("Board"))
        top.addWidget(self.board_edit, 1)
        top.addWidget(self.board_image_button)
        second = QHBoxLayout()
        second.addWidget(QLabel("Lens"))
        second.addWidget(self.model_combo)
        second.addStretch(1)
        second.addWidget(self.start_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(second)
        layout.addWidget(self.source_label)
        layout.addWidget(self.widget, 1)
        self.running = False

    def board_text(self) -> str:
        return self.board_edit.text().strip()

    def set_board(self, text: str) -> None:
        self.board_edit.setText(text)

    def board(self) -> BoardSpec:
        """The board to look for; ValueError (with the reason) for a spec that does not parse."""
        return BoardSpec.parse(self.board_text() or self.board_edit.placeholderText())

    def model(self) -> str:
        return self.model_combo.currentData()

    def set_model(self, model: str) -> None:
        index = self.model_combo.findData(model)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)

    def set_running(self, running: bool) -> None:
        self.running = running
        self.start_button.setText("■ Stop calibration" if running else "▶ Start calibration")
        self.board_edit.setEnabled(not running)
        self.model_combo.setEnabled(not running)

    def set_source_text(self, text: str) -> None:
        self.source_label.setText(text)

    def _on_start_clicked(self) -> None:
        (self.stopRequested if self.running else self.startRequested).emit()

    def _check_board(self) -> bool:
        try:
            self.board()
        except ValueError as exc:
            self.board_edit.setToolTip(f"Not a board: {exc}")
            self.board_edit.setStyleSheet("border: 1px solid #d93025")
            return False
        self.board_edit.setStyleSheet("")
        return True

    def _save_board_image(self) -> None:
        from PySide6.QtWidgets import QFileDialog  # noqa: PLC0415

        try:
            board = self.board()
        except ValueError as exc:
            self.widget.result_label.setText(f"<b>Not a board:</b> {exc}")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save a printable board", f"{board.kind}_board.png",
                                              "PNG image (*.png)")
        if path:
            self.save_board_image(path)

    def save_board_image(self, path: str | Path, dpi: int = 300) -> Path:
        """Write the board as a PNG to print at 100 % (``dpi``); returns the path."""
        board = self.board()
        px = max(20, int(round(board.square_m / 0.0254 * dpi)))
        rgb = np.ascontiguousarray(board.image(px_per_square=px))
        if rgb.ndim == 2:
            rgb = np.ascontiguousarray(np.repeat(rgb[:, :, None], 3, axis=2))
        h, w = rgb.shape[:2]
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888)
        image.setDotsPerMeterX(round(dpi / 0.0254))
        image.setDotsPerMeterY(round(dpi / 0.0254))
        if not image.save(str(path), "PNG"):
            raise OSError(f"cannot write {path}")
        w_m, h_m = board.size_m
        self.widget.result_label.setText(f"Saved {path}: print it at 100 % scale ({w_m * 100:.1f} × {h_m * 100:.1f} cm), "
                                         "glue it flat and measure a square; enter the measured size as square=…")
        return Path(path)

    def save_settings(self, s) -> None:
        s.setValue("calibration/board", self.board_text())
        s.setValue("calibration/model", self.model())

    def restore_settings(self, s) -> None:
        board = s.value("calibration/board")
        if board:
            self.set_board(str(board))
        self.set_model(str(s.value("calibration/model", "opencv")))
