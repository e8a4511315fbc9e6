"""Side panels of the main window: source, head model, camera, overlay and recording controls.

Widgets only: they show choices and emit signals; ``app.gui`` turns them into sessions. Each
panel saves and restores its values in a ``QSettings`` under its own group.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QRadioButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ui.overlay_view import OverlayStyle

SYNTHETIC_SPEC = "synthetic:realtime=1"
VIDEO_FILTER = "Videos (*.mp4 *.mov *.avi *.mkv *.webm *.m4v);;All files (*)"
MODEL_FILTERS = {"flame": "FLAME model (*.pkl);;All files (*)",
                 "npz": "Head model (*.npz);;All files (*)"}

MODEL_HELP = {
    "builtin": ("<b>Built-in head</b>: a coarse head made from MediaPipe's canonical face mesh. It ships with "
                "flamecam (nothing to download) and is fine for trying things out, but its identity and "
                "expression range are limited. FLAME is recommended."),
    "flame": ("<b>FLAME</b> (MPI-IS): the standard research head model, 5023 vertices with identity, expression "
              "and neck/jaw/eye joints; 2020, 2023 and 2023 Open files all work. It is free for research after "
              "registering at <a href='https://flame.is.tue.mpg.de'>flame.is.tue.mpg.de</a>; download "
              "'FLAME 2023' (or 2020) and choose <i>flame2023.pkl</i> / <i>generic_model.pkl</i>."),
    "npz": ("<b>ICT-FaceKit / head-model .npz</b>: the ICT-FaceKit light head (USC ICT, MIT licence; 100 identity "
            "and 53 ARKit-named expression shapes) or any model saved in flamecam's .npz form. Convert a full "
            "ICT-FaceKit clone with <i>flamecam convert-ict</i>. The first use computes the landmark embedding "
            "(a few seconds; cached)."),
}


def _set_combo_data(combo: QComboBox, data) -> bool:
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)
    return index >= 0


class SourcePanel(QGroupBox):
    """Webcams, the synthetic source, a video file or an image folder (also set by drag and drop)."""

    changed = Signal()
    refreshRequested = Signal()

    def __init__(self, parent=None):
        super().__init__("Source", parent)
        self.combo = QComboBox()
        self.combo.setToolTip("What to track: a webcam, the synthetic head, a video file or an image folder")
        self.combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        refresh = QToolButton()
        refresh.setText("⟳")
        refresh.setToolTip("Look for webcams again")
        refresh.clicked.connect(self.refreshRequested.emit)
        video = QPushButton("Video file…")
        video.clicked.connect(self.browse_video)
        folder = QPushButton("Image folder…")
        folder.clicked.connect(self.browse_folder)
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(refresh)
        buttons = QHBoxLayout()
        buttons.addWidget(video)
        buttons.addWidget(folder)
        hint = QLabel("Or drop a video file or an image folder on the window.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: gray")
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(hint)
        self._webcams: list[int] = []
        self._paths: list[str] = []
        self._rebuild()

    def _rebuild(self, keep: str | None = None) -> None:
        keep = self.spec() if keep is None and self.combo.count() else keep
        self.combo.blockSignals(True)
        self.combo.clear()
        for index in self._webcams:
            self.combo.addItem(f"Webcam {index}", f"webcam:{index}")
        if not self._webcams:
            self.combo.addItem("(no webcam found)", None)
            item = self.combo.model().item(self.combo.count() - 1)
            item.setEnabled(False)
        self.combo.addItem("Synthetic head (rendered, known ground truth)", SYNTHETIC_SPEC)
        for path in self._paths:
            kind = "Folder" if Path(path).is_dir() else "File"
            self.combo.addItem(f"{kind}: {Path(path).name}", path)
            self.combo.setItemData(self.combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        if keep is None or not _set_combo_data(self.combo, keep):
            self.combo.setCurrentIndex(0 if self._webcams else self.combo.findData(SYNTHETIC_SPEC))
        self.combo.blockSignals(False)

    def set_webcams(self, indices: list[int]) -> None:
        self._webcams = list(indices)
        self._rebuild()

    def spec(self) -> str:
        data = self.combo.currentData()
        return data if data else SYNTHETIC_SPEC

    def set_spec(self, spec: str) -> None:
        """Select a source; a path is added to the list (most recent first)."""
        if spec.startswith(("webcam", "synthetic")) or spec.isdigit():
            if spec.isdigit():
                spec = f"webcam:{spec}"
            if not _set_combo_data(self.combo, spec):
                if spec.startswith("webcam:"):
                    self._webcams = sorted(set(self._webcams) | {int(spec.split(":")[1] or 0)})
                self._rebuild(keep=spec)
                if not _set_combo_data(self.combo, spec):  # e.g. synthetic with other options
                    self.combo.addItem(spec, spec)
                    self.combo.setCurrentIndex(self.combo.count() - 1)
            return
        path = str(Path(spec).expanduser())
        self._paths = [path] + [p for p in self._paths if p != path][:7]
        self._rebuild(keep=path)

    def browse_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a video file", self._start_dir(), VIDEO_FILTER)
        if path:
            self.set_spec(path)
            self.changed.emit()

    def browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open an image folder", self._start_dir())
        if path:
            self.set_spec(path)
            self.changed.emit()

    def _start_dir(self) -> str:
        return str(Path(self._paths[0]).parent) if self._paths else str(Path.home())

    def save_settings(self, s: QSettings) -> None:
        s.setValue("source/spec", self.spec())
        s.setValue("source/recent", self._paths)

    def restore_settings(self, s: QSettings) -> None:
        recent = s.value("source/recent", [])
        self._paths = [p for p in ([recent] if isinstance(recent, str) else (recent or [])) if Path(p).exists()]
        self._rebuild()
        spec = s.value("source/spec")
        if spec:
            _set_combo_data(self.combo, spec)


class ModelPanel(QGroupBox):
    """Built-in head, a FLAME .pkl or an ICT / head-model .npz, with what each is and where to get it."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__("Head model", parent)
        self.combo = QComboBox()
        self.combo.addItem("Built-in (coarse)", "builtin")
        self.combo.addItem("FLAME .pkl…", "flame")
        self.combo.addItem("ICT-FaceKit / head-model .npz…", "npz")
        self.combo.activated.connect(self._on_activated)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("model file")
        self.path_edit.editingFinished.connect(self.changed.emit)
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(lambda: self._browse(self.kind()))
        self.help = QLabel()
        self.help.setWordWrap(True)
        self.help.setOpenExternalLinks(True)
        self.help.setTextFormat(Qt.TextFormat.RichText)
        self.help.setStyleSheet("color: #b0b0b0")
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.path_row = QWidget()
        self.path_row.setLayout(path_row)
        path_row.setContentsMargins(0, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.addWidget(self.combo)
        layout.addWidget(self.path_row)
        layout.addWidget(self.help)
        self._paths = {"flame": "", "npz": ""}
        self._update()

    def kind(self) -> str:
        return self.combo.currentData()

    def _on_activated(self, _index: int) -> None:
        kind = self.kind()
        if kind != "builtin" and not self._paths.get(kind):
            self._browse(kind)
        self._update()
        self.changed.emit()

    def _browse(self, kind: str) -> None:
        if kind == "builtin":
            return
        start = self._paths.get(kind) or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Choose a head model", start, MODEL_FILTERS[kind])
        if path:
            self._paths[kind] = path
            self._update()
            self.changed.emit()

    def _update(self) -> None:
        kind = self.kind()
        self.path_row.setVisible(kind != "builtin")
        self.path_edit.setText(self._paths.get(kind, ""))
        self.help.setText(MODEL_HELP[kind])

    def model(self) -> str:
        """'builtin' or the chosen file's path (as typed)."""
        kind = self.kind()
        if kind == "builtin":
            return "builtin"
        text = self.path_edit.text().strip()
        self._paths[kind] = text
        return text or "builtin"

    def set_model(self, model: str) -> None:
        if not model or model == "builtin":
            _set_combo_data(self.combo, "builtin")
        else:
            kind = "flame" if model.lower().endswith(".pkl") else "npz"
            self._paths[kind] = model
            _set_combo_data(self.combo, kind)
        self._update()

    def save_settings(self, s: QSettings) -> None:
        s.setValue("model/kind", self.kind())
        s.setValue("model/flame", self._paths["flame"])
        s.setValue("model/npz", self._paths["npz"])

    def restore_settings(self, s: QSettings) -> None:
        self._paths["flame"] = s.value("model/flame", "") or ""
        self._paths["npz"] = s.value("model/npz", "") or ""
        _set_combo_data(self.combo, s.value("model/kind", "builtin"))
        self._update()


class CameraPanel(QGroupBox):
    """Auto focal length, a fixed focal length (px) or field of view (°), or orthographic; and
    which camera profile (calibration) to use: the camera's stored one, a named one, or none."""

    changed = Signal()
    MODES = ("auto", "focal", "fov", "ortho")

    def __init__(self, parent=None):
        super().__init__("Camera", parent)
        self.buttons = {
            "auto": QRadioButton("Auto focal length (estimated online)"),
            "focal": QRadioButton("Fixed focal length"),
            "fov": QRadioButton("Fixed field of view"),
            "ortho": QRadioButton("Orthographic (weak perspective)"),
        }
        self.buttons["ortho"].setToolTip("For comparisons: no perspective, as older trackers do")
        self.group = QButtonGroup(self)
        self.focal_spin = QDoubleSpinBox()
        self.focal_spin.setRange(50.0, 20000.0)
        self.focal_spin.setDecimals(0)
        self.focal_spin.setSuffix(" px")
        self.focal_spin.setValue(600.0)
        self.fov_spin = QDoubleSpinBox()
        self.fov_spin.setRange(5.0, 150.0)
        self.fov_spin.setDecimals(1)
        self.fov_spin.setSuffix(" °")
        self.fov_spin.setValue(60.0)
        self.fov_spin.setToolTip("Horizontal field of view")
        grid = QGridLayout(self)
        for row, (mode, button) in enumerate(self.buttons.items()):
            self.group.addButton(button, row)
            grid.addWidget(button, row, 0)
            button.toggled.connect(self._on_toggle)
        grid.addWidget(self.focal_spin, 1, 1)
        grid.addWidget(self.fov_spin, 2, 1)
        self.profile_combo = QComboBox()
        self.profile_combo.setToolTip(
            "A camera profile (from the Calibrate tab or `flamecam calibrate`) fixes the focal length, principal "
            "point and lens distortion. Automatic: the stored profile of the camera that opens (by its name and "
            "resolution), else the focal length is estimated. Not used with a fixed focal length or field of view")
        self.profile_combo.activated.connect(lambda _i: self.changed.emit())
        grid.addWidget(QLabel("Camera profile"), len(self.buttons), 0)
        grid.addWidget(self.profile_combo, len(self.buttons), 1)
        self._profiles: list[str] = []
        self._rebuild_profiles()
        self.buttons["auto"].setChecked(True)
        self.focal_spin.editingFinished.connect(self.changed.emit)
        self.fov_spin.editingFinished.connect(self.changed.emit)
        self._on_toggle()

    def _on_toggle(self, checked: bool = True) -> None:
        self.focal_spin.setEnabled(self.mode() == "focal")
        self.fov_spin.setEnabled(self.mode() == "fov")
        self.profile_combo.setEnabled(self.mode() not in ("focal", "fov"))
        if checked:
            self.changed.emit()

    def _rebuild_profiles(self, keep: str | None = None) -> None:
        keep = self.profile() if keep is None and self.profile_combo.count() else keep
        self.profile_combo.blockSignals(True)
        self.profile_combo.clear()
        self.profile_combo.addItem("Automatic (the camera's stored profile)", "auto")
        self.profile_combo.addItem("None (estimate the focal length)", "none")
        for name in self._profiles:
            self.profile_combo.addItem(f"Profile: {name}", name)
        if keep and not _set_combo_data(self.profile_combo, keep):
            file = Path(keep).suffix.lower() in (".json", ".yaml", ".yml", ".xml", ".npz")
            self.profile_combo.addItem(f"Profile file: {Path(keep).name}" if file else f"Profile: {keep} (not stored)",
                                       keep)
            self.profile_combo.setCurrentIndex(self.profile_combo.count() - 1)
        self.profile_combo.blockSignals(False)

    def set_profiles(self, names: list[str]) -> None:
        """The stored camera profiles' names (the choice is kept)."""
        self._profiles = sorted(dict.fromkeys(names))
        self._rebuild_profiles()

    def profile(self) -> str:
        """'auto', 'none' or a profile's name."""
        return self.profile_combo.currentData() or "auto"

    def set_profile(self, choice: str) -> None:
        if not _set_combo_data(self.profile_combo, choice):
            self._rebuild_profiles(keep=choice)

    def mode(self) -> str:
        return next((m for m, b in self.buttons.items() if b.isChecked()), "auto")

    def set_mode(self, mode: str, focal_px: float | None = None, fov_deg: float | None = None) -> None:
        if focal_px is not None:
            self.focal_spin.setValue(focal_px)
        if fov_deg is not None:
            self.fov_spin.setValue(fov_deg)
        self.buttons.get(mode, self.buttons["auto"]).setChecked(True)

    def options(self) -> dict:
        """SessionOptions fields: camera_mode, focal, fov_deg, camera_profile, auto_profile."""
        mode = self.mode()
        profile = self.profile() if mode not in ("focal", "fov") else "auto"
        return {"camera_mode": "ortho" if mode == "ortho" else "perspective",
                "focal": f"{self.focal_spin.value():g}" if mode == "focal" else "auto",
                "fov_deg": float(self.fov_spin.value()) if mode == "fov" else None,
                "camera_profile": None if profile in ("auto", "none") else profile,
                "auto_profile": profile != "none"}

    def save_settings(self, s: QSettings) -> None:
        s.setValue("camera/mode", self.mode())
        s.setValue("camera/focal_px", self.focal_spin.value())
        s.setValue("camera/fov_deg", self.fov_spin.value())
        s.setValue("camera/profile", self.profile())

    def restore_settings(self, s: QSettings) -> None:
        self.set_mode(s.value("camera/mode", "auto"), float(s.value("camera/focal_px", 600.0)),
                      float(s.value("camera/fov_deg", 60.0)))
        self.set_profile(str(s.value("camera/profile", "auto") or "auto"))


class OverlayPanel(QGroupBox):
    """Overlay layers, opacity and mirror view."""

    styleChanged = Signal(object)  # OverlayStyle

    def __init__(self, parent=None):
        super().__init__("Overlay", parent)
        self.shaded = QCheckBox("Shaded mesh")
        self.wireframe = QCheckBox("Wireframe")
        self.detected = QCheckBox("Detected landmarks")
        self.detected.setToolTip("MediaPipe's 478 landmarks (red)")
        self.fitted = QCheckBox("Fitted landmarks")
        self.fitted.setToolTip("The model's landmark points, projected with the estimated camera (cyan)")
        self.mirror = QCheckBox("Mirror view (selfie)")
        self.mirror.setToolTip("Flip the picture left-right for display only (recordings are not mirrored)")
        self.undistort = QCheckBox("Show the video undistorted")
        self.undistort.setToolTip("With a calibrated lens (a camera profile with distortion): show the video as an "
                                  "ideal pinhole camera sees it, with the overlay as the tracker fits it. Off: the raw "
                                  "video, with the overlay distorted to match it")
        self.undistort.setEnabled(False)
        self.lens_note = QLabel("No lens distortion in this session's camera profile.")
        self.lens_note.setWordWrap(True)
        self.lens_note.setStyleSheet("color: gray")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setToolTip("Opacity of the shaded mesh")
        defaults = OverlayStyle()
        self.shaded.setChecked(defaults.shaded)
        self.wireframe.setChecked(defaults.wireframe)
        self.detected.setChecked(defaults.detected_landmarks)
        self.fitted.setChecked(defaults.fitted_landmarks)
        self.mirror.setChecked(defaults.mirror)
        self.undistort.setChecked(defaults.undistort_video)
        self.opacity.setValue(round(defaults.opacity * 100))
        form = QFormLayout(self)
        grid = QGridLayout()
        grid.addWidget(self.shaded, 0, 0)
        grid.addWidget(self.wireframe, 0, 1)
        grid.addWidget(self.detected, 1, 0)
        grid.addWidget(self.fitted, 1, 1)
        form.addRow(grid)
        form.addRow("Opacity", self.opacity)
        form.addRow(self.mirror)
        form.addRow(self.undistort)
        form.addRow(self.lens_note)
        for box in (self.shaded, self.wireframe, self.detected, self.fitted, self.mirror, self.undistort):
            box.toggled.connect(self._emit)
        self.opacity.valueChanged.connect(self._emit)

    def style(self) -> OverlayStyle:
        return OverlayStyle(shaded=self.shaded.isChecked(), wireframe=self.wireframe.isChecked(),
                            detected_landmarks=self.detected.isChecked(), fitted_landmarks=self.fitted.isChecked(),
                            opacity=self.opacity.value() / 100.0, mirror=self.mirror.isChecked(),
                            undistort_video=self.undistort.isChecked())

    def set_lens(self, description: str | None) -> None:
        """``description`` of the session's calibrated lens (enables the undistort toggle), or None."""
        self.undistort.setEnabled(description is not None)
        self.lens_note.setText(f"Lens: {description}. The overlay is distorted to match the video unless it is "
                               "shown undistorted." if description else
                               "No lens distortion in this session's camera profile.")

    def set_style(self, style: OverlayStyle) -> None:
        widgets = (self.shaded, self.wireframe, self.detected, self.fitted, self.mirror, self.undistort, self.opacity)
        for w in widgets:
            w.blockSignals(True)
        self.shaded.setChecked(style.shaded)
        self.wireframe.setChecked(style.wireframe)
        self.detected.setChecked(style.detected_landmarks)
        self.fitted.setChecked(style.fitted_landmarks)
        self.mirror.setChecked(style.mirror)
        self.undistort.setChecked(style.undistort_video)
        self.opacity.setValue(round(style.opacity * 100))
        for w in widgets:
            w.blockSignals(False)
        self._emit()

    def _emit(self, *_args) -> None:
        self.styleChanged.emit(self.style())

    def save_settings(self, s: QSettings) -> None:
        st = self.style()
        for key in ("shaded", "wireframe", "detected_landmarks", "fitted_landmarks", "mirror", "undistort_video",
                    "opacity"):
            s.setValue(f"overlay/{key}", getattr(st, key))

    def restore_settings(self, s: QSettings) -> None:
        d = OverlayStyle()
        flag = lambda key: str(s.value(f"overlay/{key}", getattr(d, key))).lower() in ("true", "1")  # noqa: E731
        self.set_style(OverlayStyle(shaded=flag("shaded"), wireframe=flag("wireframe"),
                                    detected_landmarks=flag("detected_landmarks"),
                                    fitted_landmarks=flag("fitted_landmarks"), mirror=flag("mirror"),
                                    undistort_video=flag("undistort_video"),
                                    opacity=float(s.value("overlay/opacity", d.opacity))))


class RecordPanel(QGroupBox):
    """Record start/stop (button and Ctrl+R), output folder, elapsed time and frames; export afterwards."""

    recordToggled = Signal(bool)
    exportRequested = Signal(str, str)  # recording path, format: obj | ply | npz | gltf | flame-npz
    SHORTCUT = QKeySequence("Ctrl+R")

    def __init__(self, parent=None):
        super().__init__("Record", parent)
        self.button = QPushButton("● Record")
        self.button.setCheckable(True)
        self.button.setToolTip(f"Start / stop recording ({self.SHORTCUT.toString()})")
        self.button.toggled.connect(self._on_toggled)
        self.folder_edit = QLineEdit(str(Path.home()))
        self.folder_edit.setToolTip("Recordings are written here as flamecam_<date>_<time>.fcrec")
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        self.status = QLabel("Not recording")
        self.last_label = QLabel("")
        self.last_label.setWordWrap(True)
        self.last_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the last recording: meshes (OBJ / PLY), arrays (.npz), a glTF take for "
                                      "Blender, or FLAME parameters for smplx")
        menu = QMenu(self.export_button)
        for fmt, text in (("obj", "OBJ meshes (one per frame)…"), ("ply", "PLY meshes (one per frame)…"),
                          ("npz", "NumPy arrays (.npz)…"), ("gltf", "glTF take for Blender (.glb)…"),
                          ("flame-npz", "FLAME parameters for smplx (.npz)…")):
            menu.addAction(text, lambda f=fmt: self.exportRequested.emit(self.last_path or "", f))
        self.export_button.setMenu(menu)
        self.export_button.setEnabled(False)
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("Folder"))
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        last_row = QHBoxLayout()
        last_row.addWidget(self.last_label, 1)
        last_row.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.button)
        layout.addLayout(folder_row)
        layout.addWidget(self.status)
        layout.addLayout(last_row)
        self.last_path: str | None = None

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for recordings", self.folder_edit.text())
        if path:
            self.folder_edit.setText(path)

    def _on_toggled(self, on: bool) -> None:
        self.recordToggled.emit(on)

    def folder(self) -> str:
        return self.folder_edit.text().strip() or str(Path.home())

    def set_recording(self, on: bool) -> None:
        """Reflect the recorder's real state without emitting ``recordToggled``."""
        self.button.blockSignals(True)
        self.button.setChecked(on)
        self.button.setText("■ Stop recording" if on else "● Record")
        self.button.blockSignals(False)

    def show_progress(self, elapsed_s: float, frames: int) -> None:
        minutes, seconds = divmod(elapsed_s, 60)
        self.status.setText(f"<span style='color:#f28b82'>●</span> REC {int(minutes):02d}:{seconds:04.1f} — "
                            f"{frames} frames")

    def show_finished(self, path: str, frames: int, message: str = "") -> None:
        self.last_path = path
        self.status.setText(message or "Not recording")
        self.last_label.setText(f"Last: {Path(path).name} ({frames} frames)")
        self.last_label.setToolTip(path)
        self.export_button.setEnabled(frames > 0)

    def save_settings(self, s: QSettings) -> None:
        s.setValue("record/folder", self.folder())

    def restore_settings(self, s: QSettings) -> None:
        folder = s.value("record/folder")
        if folder:
            self.folder_edit.setText(folder)
