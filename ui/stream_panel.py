"""The Stream panel: send the tracked head live to another app over OSC/UDP (VMC protocol or flamecam's).

Widgets only: the panel shows the choices and emits the stream URL they make (``core.streaming``'s
form, "" when streaming is off) by ``configChanged``; ``app.gui_stream`` hands it to the tracking
thread and feeds the status line back. Values persist in ``QSettings`` under ``stream/``.
"""
from __future__ import annotations

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QPushButton, QSpinBox

DEFAULT_PORTS = {"vmc": 39539, "flamecam": 9000}
PROTOCOL_ITEMS = (("vmc", "VMC protocol (VSeeFace, Warudo, VNyan, Blender)"),
                  ("flamecam", "flamecam OSC (every tracked parameter)"))
BLENDSHAPE_ITEMS = (("mediapipe", "MediaPipe's 52 (any head model)"),
                    ("model", "Fitted expression (ICT, built-in head)"))
STATUS_COLOURS = {"info": "gray", "ok": "#81c995", "warning": "#fdd663", "error": "#f28b82"}


class StreamPanel(QGroupBox):
    """On/off, protocol, host, port, blendshape source and mirror; a status line below."""

    configChanged = Signal(str)  # the stream URL, "" when off
    recenterRequested = Signal()

    def __init__(self, parent=None):
        super().__init__("Stream", parent)
        self.enabled = QCheckBox("Stream live to another app")
        self.enabled.setToolTip("Send every tracked frame over OSC/UDP while tracking (no effect on recording)")
        self.protocol = QComboBox()
        for key, text in PROTOCOL_ITEMS:
            self.protocol.addItem(text, key)
        self.protocol.setToolTip("VMC: head pose and ARKit blendshapes for avatar apps. flamecam OSC: expression, "
                                 "pose, camera, ρ and states under /flamecam/... (see the README)")
        self.host = QLineEdit("127.0.0.1")
        self.host.setToolTip("The receiving computer (127.0.0.1: this one)")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(DEFAULT_PORTS["vmc"])
        self.port.setToolTip("The receiver's UDP port (VMC receivers usually listen on 39539)")
        self.blendshapes = QComboBox()
        for key, text in BLENDSHAPE_ITEMS:
            self.blendshapes.addItem(text, key)
        self.blendshapes.setToolTip("Where the 52 ARKit blendshape values come from. FLAME's expressions are not "
                                    "ARKit shapes: with FLAME, MediaPipe's are sent")
        for combo in (self.protocol, self.blendshapes):  # long item texts must not widen the dock
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(14)
        self.mirror = QCheckBox("Mirror (avatar moves as the camera image)")
        self.mirror.setToolTip("Off: the avatar moves like your mirror image (usual). On: left and right swapped")
        self.recenter = QPushButton("Recenter head position")
        self.recenter.setToolTip("VMC: the head's position is sent relative to where it was when streaming started; "
                                 "make where it is now the reference")
        self.recenter.clicked.connect(self.recenterRequested.emit)
        self.status = QLabel("Not streaming")
        self.status.setWordWrap(True)
        self.status.setStyleSheet(f"color: {STATUS_COLOURS['info']}")
        form = QFormLayout(self)
        form.addRow(self.enabled)
        form.addRow("Protocol", self.protocol)
        form.addRow("Host", self.host)
        form.addRow("Port", self.port)
        form.addRow("Blendshapes", self.blendshapes)
        form.addRow(self.mirror)
        form.addRow(self.recenter)
        form.addRow(self.status)
        self._protocol = self.protocol_key()
        self.enabled.toggled.connect(self._emit)
        self.protocol.currentIndexChanged.connect(self._on_protocol)
        self.host.editingFinished.connect(self._emit)
        self.port.valueChanged.connect(self._emit)
        self.blendshapes.currentIndexChanged.connect(self._emit)
        self.mirror.toggled.connect(self._emit)
        self._update_enabled()

    def protocol_key(self) -> str:
        return self.protocol.currentData()

    def url(self) -> str:
        """The stream URL of the current choices ("" when streaming is off)."""
        if not self.enabled.isChecked():
            return ""
        host = self.host.text().strip()
        host = f"[{host}]" if ":" in host else host
        if self.protocol_key() == "flamecam":
            return f"flamecam://{host}:{self.port.value()}"
        options = f"blendshapes={self.blendshapes.currentData()}" + ("&mirror=1" if self.mirror.isChecked() else "")
        return f"vmc://{host}:{self.port.value()}?{options}"

    def set_streaming(self, on: bool) -> None:
        self.enabled.setChecked(on)

    def show_status(self, text: str, level: str = "info") -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {STATUS_COLOURS.get(level, STATUS_COLOURS['info'])}")

    def _on_protocol(self, _index: int) -> None:
        previous, self._protocol = self._protocol, self.protocol_key()
        if self.port.value() == DEFAULT_PORTS.get(previous):  # the other protocol's usual port: follow it
            self.port.blockSignals(True)
            self.port.setValue(DEFAULT_PORTS[self._protocol])
            self.port.blockSignals(False)
        self._emit()

    def _update_enabled(self) -> None:
        vmc = self.protocol_key() == "vmc"
        self.blendshapes.setEnabled(vmc)
        self.mirror.setEnabled(vmc)
        self.recenter.setEnabled(vmc and self.enabled.isChecked())

    def _emit(self, *_args) -> None:
        self._update_enabled()
        self.configChanged.emit(self.url())

    def save_settings(self, s: QSettings) -> None:
        s.setValue("stream/enabled", self.enabled.isChecked())
        s.setValue("stream/protocol", self.protocol_key())
        s.setValue("stream/host", self.host.text().strip())
        s.setValue("stream/port", self.port.value())
        s.setValue("stream/blendshapes", self.blendshapes.currentData())
        s.setValue("stream/mirror", self.mirror.isChecked())

    def restore_settings(self, s: QSettings) -> None:
        flag = lambda key, default: str(s.value(key, default)).lower() in ("true", "1")  # noqa: E731
        widgets = (self.enabled, self.protocol, self.host, self.port, self.blendshapes, self.mirror)
        for w in widgets:
            w.blockSignals(True)
        for combo, key in ((self.protocol, "stream/protocol"), (self.blendshapes, "stream/blendshapes")):
            index = combo.findData(s.value(key, combo.currentData()))
            if index >= 0:
                combo.setCurrentIndex(index)
        self._protocol = self.protocol_key()
        self.host.setText(str(s.value("stream/host", self.host.text())) or "127.0.0.1")
        try:
            self.port.setValue(int(s.value("stream/port", self.port.value())))
        except (TypeError, ValueError):
            pass
        self.mirror.setChecked(flag("stream/mirror", False))
        self.enabled.setChecked(flag("stream/enabled", False))
        for w in widgets:
            w.blockSignals(False)
        self._emit()
