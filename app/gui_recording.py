"""The app's recorder and exporter: the Record panel wired to the tracking thread, exports in a thread.

:class:`RecordingControl` is the part of :class:`app.gui.GuiController` that starts and stops
recording (the :class:`core.recording.RecordingWriter` lives in the tracking thread, driven by
thread-safe requests), shows the recorder's progress and outcome, and exports a recording
(per-frame OBJ / PLY meshes or one .npz) in an :class:`ExportThread`, off the GUI thread.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtWidgets import QFileDialog

from app.gui_worker import RecordingStatus, default_recording_path


class ExportThread(QThread):
    """Exports a recording (``core.export.export_recording``: meshes, arrays, glTF, ...) off the GUI thread;
    cancellable."""

    progressed = Signal(int, int)
    succeeded = Signal(str)
    failed = Signal(str)

    def __init__(self, recording: str, fmt: str, target: str, parent=None):
        super().__init__(parent)
        self.recording, self.fmt, self.target = recording, fmt, target
        self._cancel = False
        self.setObjectName("flamecam-export")

    def cancel(self) -> None:
        self._cancel = True

    def run(self) -> None:
        from core.export import MESH_FORMATS, ExportCancelled, ExportInputError, export_recording  # noqa: PLC0415

        try:  # a file target was confirmed by the save dialog; mesh folders are never overwritten
            result = export_recording(self.recording, self.fmt, self.target, progress=self.progressed.emit,
                                      cancel=lambda: self._cancel, overwrite=self.fmt not in MESH_FORMATS)
            self.succeeded.emit(" ".join([f"Exported {result.summary}."] + [f"Note: {n}." for n in result.notes]))
        except ExportCancelled as exc:
            self.failed.emit(str(exc).capitalize())
        except ExportInputError as exc:
            self.failed.emit(f"Cannot export {Path(self.recording).name}: {exc}")
        except OSError as exc:
            self.failed.emit(f"Export to {self.target} failed: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001  (nothing may escape a QThread)
            self.failed.emit(f"Export failed: {type(exc).__name__}: {exc}")


class RecordingControl(QObject):
    """Recording and export for a :class:`app.gui.GuiController` (see the module docstring)."""

    def __init__(self, controller):
        super().__init__(controller)
        self.controller = controller
        self.window = controller.window
        self.export_thread: ExportThread | None = None
        self._recording: RecordingStatus | None = None
        self._record_t0 = 0.0
        self.recordings: list[RecordingStatus] = []  # finished ones, newest last

    def set_recording(self, on: bool) -> None:
        """Start (into a new dated file in the record folder) or stop recording."""
        panel = self.window.record_panel
        if on:
            if not self.controller.running:
                panel.set_recording(False)
                self.window.show_message("Start tracking first: recording writes the tracked frames.", "warning")
                return
            folder = Path(panel.folder()).expanduser()
            self.start_recording(default_recording_path(folder))
        elif self.controller.worker is not None:
            self.controller.worker.stop_recording()

    def start_recording(self, path: str | Path, overwrite: bool = False) -> None:
        if self.controller.worker is None:
            raise RuntimeError("no tracking session")
        self.controller.worker.start_recording(path, overwrite=overwrite)
        self.window.record_panel.set_recording(True)
        self.window.record_panel.status.setText(f"Starting to record into {Path(path).name}…")

    def stop_recording(self) -> None:
        if self.controller.worker is not None:
            self.controller.worker.stop_recording()

    def on_recording(self, status: RecordingStatus) -> None:
        panel = self.window.record_panel
        if status.state == "recording":
            if self._recording is None or self._recording.path != status.path:
                self._record_t0 = time.monotonic() - status.elapsed_s
            self._recording = status
            panel.set_recording(True)
            panel.show_progress(status.elapsed_s, status.frames)
            return
        self._recording = None
        self.recordings.append(status)
        panel.set_recording(False)
        if status.state == "failed":
            panel.show_finished(status.path, status.frames_flushed, "Recording failed")
            self.window.show_message(status.message, "error")
        else:
            panel.show_finished(status.path, status.frames)
            self.window.statusBar().showMessage(f"Saved {status.frames} frames to {status.path}", 8000)

    @property
    def recording(self) -> RecordingStatus | None:
        return self._recording

    def show_progress(self) -> None:
        """Refresh the Record panel's clock while recording (the status timer calls it)."""
        if self._recording is not None and self._recording.state == "recording":
            self.window.record_panel.show_progress(time.monotonic() - self._record_t0, self._recording.frames)

    # -- export --------------------------------------------------------------------------------------

    def ask_export(self, recording: str, fmt: str) -> None:
        if not recording:
            return
        rec = Path(recording)
        files = {"npz": ("Export arrays", ".npz", "NumPy arrays (*.npz)"),
                 "gltf": ("Export a glTF take", ".glb", "glTF binary (*.glb);;glTF (*.gltf)"),
                 "flame-npz": ("Export FLAME parameters", "_flame.npz", "smplx FLAME arrays (*.npz)")}
        if fmt in files:
            title, suffix, filters = files[fmt]
            target, _ = QFileDialog.getSaveFileName(self.window, title, str(rec.with_name(rec.stem + suffix)), filters)
        else:
            parent = QFileDialog.getExistingDirectory(self.window, f"Folder for the {fmt.upper()} meshes",
                                                      str(rec.parent))
            target = str(Path(parent) / f"{rec.stem}_{fmt}") if parent else ""
        if target:
            self.export(recording, fmt, target)

    def ask_export_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Choose a recording", self.window.record_panel.folder(),
                                              "flamecam recordings (*.fcrec)")
        if path:
            self.choose_recording(path)

    def choose_recording(self, path: str) -> bool:
        """Make ``path`` the recording the Export button exports (after checking that it reads)."""
        from core.recording import RecordingFormatError, load  # noqa: PLC0415

        try:
            frames = len(load(path))
        except (RecordingFormatError, OSError) as exc:
            self.window.show_message(f"Cannot read the recording {path}: {exc}", "error")
            return False
        self.window.record_panel.show_finished(path, frames, "")
        if frames == 0:
            self.window.show_message(f"{path} holds no frames to export.", "warning")
        return frames > 0

    def export(self, recording: str, fmt: str, target: str) -> ExportThread:
        """Export ``recording`` as ``fmt`` (obj | ply | npz) to ``target`` in a background thread."""
        if self.export_thread is not None and self.export_thread.isRunning():
            self.window.show_message("An export is already running; wait for it to finish.", "warning")
            return self.export_thread
        thread = ExportThread(recording, fmt, target)
        progress = self.window.progress
        thread.progressed.connect(lambda done, total: (progress.setMaximum(total), progress.setValue(done)))
        thread.succeeded.connect(lambda msg: self.window.show_message(msg, "info"))
        thread.failed.connect(lambda msg: self.window.show_message(msg, "error"))
        thread.finished.connect(progress.hide)
        progress.setRange(0, 0)
        progress.show()
        self.export_thread = thread
        thread.start()
        return thread
