"""A one-line text readout that changes often without re-laying out the window.

``QLabel.setText`` calls ``updateGeometry()``, and a changed size hint re-lays out every ancestor up
to the ``QMainWindow``, whose layout then repaints everything above the docks. With a status bar
and a plot readout changing several times a second that was the app's largest repaint (1280x648
pixels, 8 times a second, measured under Xvfb). :class:`ReadoutLabel` repaints only itself; its size
hint grows when a longer text needs it (rare) and never shrinks.
"""
from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QAbstractTextDocumentLayout, QPainter, QPalette, Qt, QTextDocument
from PySide6.QtWidgets import QSizePolicy, QWidget


class ReadoutLabel(QWidget):
    """Rich or plain text on one line; ``setText`` / ``text`` like a QLabel's (see module docstring)."""

    def __init__(self, text: str = "", parent=None, min_width_text: str = ""):
        super().__init__(parent)
        self._doc = QTextDocument(self)
        self._doc.setDocumentMargin(0)
        self._doc.setDefaultFont(self.font())
        self._text = None
        self._hint = QSize(self.fontMetrics().horizontalAdvance(min_width_text), self.fontMetrics().height() + 4)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setText(text)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802  (QLabel's name)
        if text == self._text:
            return
        self._text = text
        if Qt.mightBeRichText(text):  # QtGui's Qt namespace
            self._doc.setHtml(text)
        else:
            self._doc.setPlainText(text)
        width = int(self._doc.idealWidth()) + 2
        if width > self._hint.width():
            self._hint.setWidth(width)
            self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(self._hint)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(0, self._hint.height())

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        context = QAbstractTextDocumentLayout.PaintContext()
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Text, palette.color(QPalette.ColorRole.WindowText))  # as a QLabel
        context.palette = palette
        painter.translate(0, (self.height() - self._doc.size().height()) / 2)
        self._doc.documentLayout().draw(painter, context)
