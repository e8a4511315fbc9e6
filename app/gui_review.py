"""Opening a take in the app: a recorded ``.fcrec`` reviewed over its video, with the timeline,
plots, stepping, scrubbing and export.

File → Open take (Ctrl+Shift+O) or dropping a ``.fcrec`` on the window calls
:meth:`ReviewControl.open_take`. The take's source video is found from the path in its metadata,
or asked for when it moved (a file or image folder of the take's frame size with at least its
frames; another one is refused with the reason and asked for again). A take of a camera, or one
whose video is not given, shows its mesh on a neutral background. Tracking stops while a take is
open; Start (F5) tracks again.

A :class:`ReviewThread` plays the video under a :class:`core.transport.Transport` (bound to the
timeline by ``app.gui_transport``) and turns each frame into a frame result with the recorded
parameters and the mesh posed by ``core.export`` off the GUI thread (``core.review.TakeFrames``):
the view draws it with the recorded intrinsics, like a tracked frame. The plots show the whole
take by video time; the Record panel's Export button exports the take.
"""
from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog

from app.gui_worker import StoppableThread
from core.sources import close_quietly


@dataclass(frozen=True)
class ReviewInfo:
    """What a take is shown with (sent once, before its first frame)."""

    model: object  # core.pipeline.ModelInfo, or None when the take's model cannot be loaded
    lens_remap: object  # core.distortion.LensRemap of a calibrated lens, or None
    video: str  # the video's path, or "" (a neutral background)
    model_problem: str = ""  # why there is no mesh, if there is none


class ReviewThread(StoppableThread):
    """Plays a take (see the module docstring); ``transport`` takes the commands."""

    started_on = Signal(object)  # ReviewInfo
    frameReady = Signal(object)  # core.pipeline.FrameResult
    failed = Signal(str)
    transportChanged = Signal(object)  # core.transport.TransportState
    runFinished = Signal(object)

    def __init__(self, rec, source, parent=None):
        super().__init__("flamecam-review", parent)
        from core.transport import Transport  # noqa: PLC0415

        self.rec, self.source = rec, source  # source: the opened video, or a core.review.BlankSource
        self.transport = Transport(playing=False)
        self.transport.add_listener(self.transportChanged.emit)

    def run(self) -> None:
        from core.review import TakeFrames, take_lens_remap  # noqa: PLC0415
        from core.transport import PlaybackReader  # noqa: PLC0415

        ended_by = "stopped"
        try:
            head, problem = self._model()
            take = TakeFrames(self.rec, head)
            self.started_on.emit(ReviewInfo(take.model_info, take_lens_remap(self.rec),
                                            "" if getattr(self.source, "is_blank", False) else self.source.name,
                                            problem))
            for frame, generation, cut in PlaybackReader(self.source, self.transport, self._stop):
                if self.transport.is_current(generation):
                    self.frameReady.emit(take.result(frame, cut))
        except BaseException as exc:  # noqa: BLE001  (nothing may escape a QThread)
            ended_by = "failed"
            traceback.print_exc(file=sys.stderr)
            self.failed.emit(f"Showing the take stopped by an unexpected error: {type(exc).__name__}: {exc}")
        finally:
            close_quietly(self.source)
            self.runFinished.emit({"ended_by": ended_by})

    def _model(self):
        """(HeadModel or None, why not)."""
        from core.export import ModelMismatchError, resolve_model  # noqa: PLC0415
        from core.model_io import ModelFileError  # noqa: PLC0415

        try:
            return resolve_model(self.rec), ""
        except (ModelFileError, ModelMismatchError, OSError, ValueError) as exc:
            return None, f"The take's mesh cannot be drawn: {exc}"


class ReviewControl(QObject):
    """Opening and showing takes for a :class:`app.gui.GuiController` (see the module docstring)."""

    def __init__(self, controller):
        super().__init__(controller)
        self.controller = controller
        self.window = controller.window
        self.thread: ReviewThread | None = None
        self.rec = None  # the open take (core.recording.Recording)
        self.info: ReviewInfo | None = None
        self.latest = None  # newest FrameResult shown
        self.frames_shown = 0
        self._frames_in_take: set[int] = set()
        self._id = 0

    @property
    def open(self) -> bool:
        return self.thread is not None

    def open_take(self, path: str, video: str | None = None, ask: bool = True) -> bool:
        """Show the take at ``path`` (stops tracking). ``video``: its video, instead of finding it (or
        asking, with ``ask``); without one the take shows on a neutral background. False when the
        take cannot be read."""
        from core.recording import RecordingFormatError, load  # noqa: PLC0415

        w = self.window
        try:
            rec = load(path)
        except (RecordingFormatError, OSError) as exc:
            w.show_message(f"Cannot open the take {path}: {exc}", "error")
            return False
        if len(rec) == 0:
            w.show_message(f"{path} holds no frames to show.", "warning")
            return False
        source, note = self._video_source(rec, video, ask)
        self.controller.stop()
        self.close()
        self._start(rec, source, note)
        return True

    def _video_source(self, rec, video: str | None, ask: bool):
        """(an opened seekable source for the take, a sentence for the user)."""
        from core.review import (BlankSource, is_recorded_from_file, locate_video, open_take_video,  # noqa: PLC0415
                                 take_fps, take_frame_count)
        from core.sources import SourceError  # noqa: PLC0415

        candidate = video if video is not None else locate_video(rec)
        problem = ""
        while True:
            if candidate is not None:
                try:
                    return open_take_video(rec, candidate), ""
                except SourceError as exc:
                    problem = f"{exc}. "
            if video is not None or not ask or not is_recorded_from_file(rec):
                break
            where = Path(str(rec.meta.source)).name or "its video"
            candidate, _ = QFileDialog.getOpenFileName(
                self.window, f"Where is {where}? (the take's video; cancel to show the mesh alone)",
                str(Path(rec.path).parent), "Videos and images (*.*)")
            candidate = candidate or None
            if candidate is None:
                break
        blank = BlankSource((rec.meta.image_width, rec.meta.image_height), take_frame_count(rec), take_fps(rec))
        if is_recorded_from_file(rec):
            note = (f"{problem}The take's video {rec.meta.source} is not there, so its mesh is shown on a neutral "
                    "background; open the take again to point to the video.")
        else:
            note = f"The take was tracked from {rec.meta.source or 'a camera'}: its mesh is shown on a neutral background."
        return blank, note

    def _start(self, rec, source, note: str) -> None:
        from core.review import take_fps, take_frame_count  # noqa: PLC0415
        from ui.frame_series import FrameSeries  # noqa: PLC0415

        w = self.window
        self._id += 1
        thread = ReviewThread(rec, source)
        thread.session_id = self._id
        thread.started_on.connect(self._on_started)
        thread.frameReady.connect(self._on_frame)
        thread.failed.connect(self._on_failed)
        playback = self.controller.transport_control
        thread.transportChanged.connect(playback.on_state)
        self.thread, self.rec, self.info, self.latest, self.frames_shown = thread, rec, None, None, 0
        self._frames_in_take = set(rec.frame_index.tolist())
        num_frames, fps = take_frame_count(rec), take_fps(rec)
        series = FrameSeries(num_frames, fps)
        nan = float("nan")
        series.load(rec.frame_index, t_s=rec.timestamp_s, focal_px=rec.fx, focal_sigma_px=rec.focal_sigma_px,
                    focal_state=rec.focal_state, rho_per_m=rec.rho_per_m,
                    fps=[nan] * len(rec), latency_ms=[nan] * len(rec))
        w.plots.clear()
        playback.bind(thread, num_frames, fps, key=str(Path(rec.path).resolve()), kind="take", series=series)
        w.timeline.strip.set_states(rec.frame_index, rec.tracking_state, rec.focal_state,
                                    getattr(rec, "segment_id", None))
        playback.prepare(thread.transport, playback.key)
        if thread.transport.state().generation == 0:
            thread.transport.seek(int(rec.frame_index[0]))  # open at the take's first frame
        self.controller.choose_recording(str(rec.path))  # Export exports the take
        w.view.clear()
        w.set_intrinsics(None)
        w.setWindowTitle(f"flamecam — take {Path(rec.path).name}")
        w.set_status(device="take", fps="–", latency="–", state="opening the take", model="…")
        if note:
            w.show_message(note, "info")
        thread.start()

    def close(self) -> None:
        """Stop showing the take (its thread is joined)."""
        thread, self.thread = self.thread, None
        if thread is None:
            return
        if self.controller.transport_control.player is thread:
            self.controller.transport_control.unbind()
        thread.shutdown()
        self.controller.retire(thread)
        self.rec = None

    def _current(self) -> bool:
        sender, thread = self.sender(), self.thread
        return sender is not None and thread is not None and getattr(sender, "session_id", None) == thread.session_id

    def _on_started(self, info: ReviewInfo) -> None:
        if not self._current():
            return
        self.info = info
        w = self.window
        w.view.set_model(info.model)
        w.view.set_lens(info.lens_remap)
        meta = self.rec.meta
        w.set_status(model=f"model: {meta.model_name}", state="take")
        w.stack.setCurrentWidget(w.view)
        if info.model_problem:
            w.show_message(info.model_problem, "warning")

    def _on_frame(self, result) -> None:
        if not self._current():
            return
        self.latest = result
        self.frames_shown += 1
        self.window.view.show_result(result)
        self.controller.transport_control.on_result(result)
        in_take = result.frame.index in self._frames_in_take
        state = result.track.tracking_state.replace("_", " ") if in_take else "not in the take"
        self.window.set_status(state=state)

    def _on_failed(self, message: str) -> None:
        if self._current():
            self.window.show_message(message, "error")
