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
    w.solve() -> Calibration | None               # the Solve button does this
    w.save_profile() -> Path | None               # the Save button; name from start(camera_name=) or the field
    signals: viewTaken(int views), solved(object Calibration), refused(str reason), profileSaved(str path)

:class:`IntrinsicsStatusLabel` is a one-line label for the main window that shows which
intrinsics are active (``set_plan(core.session.IntrinsicsPlan)``): the camera profile's name or the
focal-length mode.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from core.calibration import Calibration, CalibrationError, CalibrationSession, FrameFeedback

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
        self.solve_button.clicked.connect(lambda: self.solve())
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
        s = self.session
        self.set_session(CalibrationSession(s.board, s.image_size, s.model, s.criteria, s.target_views,
                                            s.min_novelty, s.still_px, s.cells))

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

    def solve(self) -> Calibration | None:
        if self.session is None:
            return None
        try:
            self.result = self.session.solve()
        except CalibrationError as exc:
            self.result = None
            self.result_label.setText(f"<b>Calibration refused:</b> {exc}")
            self.refused.emit(str(exc))
            self._refresh()
            return None
        self.result_label.setText("<pre>" + self.result.summary() + "</pre>")
        self.solved.emit(self.result)
        self._refresh()
        return self.result

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
        self.solve_button.setEnabled(len(s.views) >= s.criteria.min_views)
        self.save_button.setEnabled(self.result is not None)
        self.reset_button.setEnabled(bool(s.views))


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
