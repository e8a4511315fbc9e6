"""Writing recordings: append-only, fsync-ed at least every second, readable after a crash (see ``core.recording``)."""
from __future__ import annotations

import errno
import os
import struct
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from core.recording.format import (FOCAL_STATES, KIND_END, KIND_FRAME, KIND_IDENTITY, KIND_META, KIND_SEGMENT,
                                   TRACKING_STATES,
                                   FrameRecord, RecordingError, RecordingMeta, _header, _json_bytes, _record,
                                   _SCALAR_FIELDS, _state_code, _utc_now, _VECTOR_FIELDS, frame_dtype)


class RecordingWriter:
    """Append-only writer: records are buffered and written + fsync-ed every ``flush_interval_s``.

    ``flush_interval_s=None`` flushes only on :meth:`flush`, :meth:`close` or when the buffer
    exceeds ``max_buffer_bytes``; 0 flushes after every record. The file is created at its final
    path (a kill leaves it readable) and an existing file is refused unless ``overwrite=True``.
    Thread-safe (one lock). Any OS error raises :class:`RecordingError`; the writer then stops.
    """

    def __init__(self, path: str | Path, meta: RecordingMeta, flush_interval_s: float | None = 1.0,
                 overwrite: bool = False, max_buffer_bytes: int = 16 << 20,
                 clock: Callable[[], float] = time.monotonic):
        meta.validate()
        self.path = Path(path)
        self.meta = meta
        self.flush_interval_s = flush_interval_s
        self.max_buffer_bytes = max_buffer_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self._dtype = frame_dtype(meta.num_expr, meta.landmark_count)
        self._pending = bytearray()
        self._pending_frames: list[tuple[int, float]] = []  # (frame_index, timestamp_s) not yet durable
        self._pending_identities = 0
        self._durable_size = 0
        self._frames_flushed = 0
        self._identities_flushed = 0
        self._last_flushed: tuple[int, float] | None = None
        self._first_frame: tuple[int, float] | None = None
        self._last_identity: np.ndarray | None = None
        self._segment_id = 0  # the segment frames are in (0 until a SEGMENT record says otherwise)
        self._segments_written = 0
        self._failed: RecordingError | None = None
        self._closed = False
        self._fd: int | None = None
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0) | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            self._fd = os.open(self.path, flags, 0o666)
        except FileExistsError:
            raise RecordingError(f"{self.path} already exists; choose another file name (or pass overwrite=True "
                                 "to replace it)", self.path) from None
        except OSError as exc:
            raise RecordingError(f"cannot create the recording {self.path}: {exc.strerror or exc}", self.path,
                                 os_errno=exc.errno) from exc
        self._pending += _header() + _record(KIND_META, _json_bytes(meta.to_dict()))
        try:
            self.flush()
        except RecordingError:
            if not overwrite:  # we created it and nothing usable is in it
                try:
                    self.path.unlink()
                except OSError:
                    pass
            raise
        fsync_dir(self.path.parent)  # make the new directory entry itself durable
        self._last_sync = self._clock()

    # -- state ------------------------------------------------------------------------------------

    @property
    def frames_written(self) -> int:
        """Frames accepted so far (flushed or still buffered)."""
        return self._frames_flushed + len(self._pending_frames)

    @property
    def frames_flushed(self) -> int:
        """Frames written and fsync-ed: these survive a crash or kill."""
        return self._frames_flushed

    @property
    def bytes_flushed(self) -> int:
        return self._durable_size

    @property
    def closed(self) -> bool:
        return self._closed

    # -- writing ----------------------------------------------------------------------------------

    def write_identity(self, frame_index: int, shape) -> bool:
        """Record the identity in effect from ``frame_index`` on; False (nothing written) when unchanged."""
        values = np.asarray(shape, dtype=np.float32).reshape(-1)
        if values.size != self.meta.num_shape:
            raise ValueError(f"shape has {values.size} coefficients, the recording stores {self.meta.num_shape}")
        with self._lock:
            self._check_writable()
            if self._last_identity is not None and np.array_equal(values, self._last_identity, equal_nan=True):
                return False
            self._last_identity = values.copy()
            self._pending += _record(KIND_IDENTITY, struct.pack("<q", int(frame_index)) + values.astype("<f4").tobytes())
            self._pending_identities += 1
            self._maybe_flush()
        return True

    def write_segment(self, start: dict) -> None:
        """Start a segment (``core.segments.SegmentStart.to_dict()``: segment_id, frame_index, kind, ...)
        from its ``frame_index`` on; write it before that frame."""
        if "segment_id" not in start or "frame_index" not in start:
            raise ValueError("a segment record needs segment_id and frame_index")
        with self._lock:
            self._check_writable()
            self._pending += _record(KIND_SEGMENT, _json_bytes(start))
            self._segment_id = int(start["segment_id"])
            self._segments_written += 1
            self._maybe_flush()

    def write_frame(self, frame: FrameRecord) -> None:
        payload = self._encode(frame)
        with self._lock:
            self._check_writable()
            self._pending += _record(KIND_FRAME, payload)
            self._pending_frames.append((int(frame.frame_index), float(frame.timestamp_s)))
            if self._first_frame is None:
                self._first_frame = self._pending_frames[-1]
            self._maybe_flush()

    def write_track_result(self, result) -> None:
        """A ``core.tracker.TrackResult``: its segment (when a new one starts), its identity (when
        changed), then the frame."""
        start = getattr(result, "segment_start", None)
        segment_id = int(getattr(result, "segment_id", 0))
        if start is not None and (segment_id != self._segment_id or not self._segments_written):
            self.write_segment(start.to_dict() if hasattr(start, "to_dict") else dict(start))
        elif segment_id != self._segment_id:  # a result without its start: say at least where it begins
            self.write_segment({"segment_id": segment_id, "frame_index": int(result.frame_index),
                                "timestamp_s": float(result.timestamp_s), "kind": "unknown", "reason": ""})
        self.write_identity(int(result.frame_index), result.shape)
        self.write_frame(FrameRecord.from_track_result(result))

    def _encode(self, frame: FrameRecord) -> bytes:
        rec = np.zeros((), dtype=self._dtype)
        rec["frame_index"] = int(frame.frame_index)
        rec["timestamp_s"] = float(frame.timestamp_s)
        vectors = {"expr": (frame.expr, self.meta.num_expr),
                   **{name: (getattr(frame, name), n) for name, n in _VECTOR_FIELDS}}
        for name, (value, n) in vectors.items():
            if value is None:
                if name in ("expr", "rotation", "translation"):
                    raise ValueError(f"frame {frame.frame_index}: {name} is required")
                continue  # zeros: an unposed joint
            arr = np.asarray(value, dtype=np.float32).reshape(-1)
            if arr.size != n:
                raise ValueError(f"frame {frame.frame_index}: {name} has {arr.size} values, the recording stores {n}")
            rec[name] = arr
        for name in _SCALAR_FIELDS:
            rec[name] = float(getattr(frame, name))
        rec["focal_state"] = _state_code(frame.focal_state, FOCAL_STATES, "focal_state")
        rec["tracking_state"] = _state_code(frame.tracking_state, TRACKING_STATES, "tracking_state")
        count = self.meta.landmark_count
        if count:
            if frame.landmarks_px is None:
                rec["landmarks_px"] = np.nan
            else:
                lmk = np.asarray(frame.landmarks_px, dtype=np.float32)
                if lmk.shape != (count, 2):
                    raise ValueError(f"frame {frame.frame_index}: landmarks_px has shape {lmk.shape}, "
                                     f"the recording stores ({count}, 2)")
                rec["landmarks_px"] = lmk
        return rec.tobytes()

    def _maybe_flush(self) -> None:
        due = self.flush_interval_s is not None and self._clock() - self._last_sync >= self.flush_interval_s
        if due or len(self._pending) >= self.max_buffer_bytes:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered and fsync it. Raises :class:`RecordingError` on any OS error."""
        with self._lock:
            self._check_writable()
            if self._pending:
                data, self._pending = self._pending, bytearray()  # a fresh buffer: `data` may stay exported
                try:
                    self._write_all(data)
                    self._raw_fsync()
                except OSError as exc:
                    self._fail(exc)
                self._durable_size += len(data)
                if self._pending_frames:
                    self._frames_flushed += len(self._pending_frames)
                    self._last_flushed = self._pending_frames[-1]
                    self._pending_frames.clear()
                self._identities_flushed += self._pending_identities
                self._pending_identities = 0
            self._last_sync = self._clock()

    def close(self, summary: dict | None = None) -> None:
        """Write the END record (with ``summary``), flush and close. Idempotent; quiet after a failure."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._failed is None:
                    end = {"frame_count": self.frames_written,
                           "identity_count": self._identities_flushed + self._pending_identities,
                           "segment_count": max(self._segments_written, 1),
                           "first_frame_index": None, "last_frame_index": None,
                           "first_timestamp_s": None, "last_timestamp_s": None,
                           "closed_utc": _utc_now(), "ended_by": "close"}
                    last = self._pending_frames[-1] if self._pending_frames else self._last_flushed
                    if self._first_frame is not None:
                        end.update(first_frame_index=self._first_frame[0], first_timestamp_s=self._first_frame[1],
                                   last_frame_index=last[0], last_timestamp_s=last[1])
                    end.update(summary or {})
                    self._pending += _record(KIND_END, _json_bytes(end))
                    self.flush()
            finally:
                self._close_fd()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or self._failed is not None:
            self.close()
        else:  # the caller's code failed: keep everything and say so in the summary
            self.close({"ended_by": "exception", "error": f"{exc_type.__name__}: {exc}"})
        return False

    def __del__(self):  # a writer dropped without close(): save the buffer, leave the file incomplete
        try:
            if not self._closed and self._fd is not None:
                if self._failed is None and self._pending:
                    self.flush()
                self._close_fd()
        except Exception:  # noqa: BLE001  never raise from a finaliser
            pass

    # -- low level (separate methods so tests can simulate a full disk) ----------------------------

    def _raw_write(self, data: memoryview) -> int:
        return os.write(self._fd, data)

    def _raw_fsync(self) -> None:
        os.fsync(self._fd)

    def _write_all(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view.nbytes:
            written = self._raw_write(view)
            if not written:
                raise OSError(errno.EIO, "write() wrote nothing")
            view = view[written:]

    def _check_writable(self) -> None:
        if self._failed is not None:
            raise RecordingError(f"the recording stopped earlier: {self._failed}", self.path,
                                 self._frames_flushed, os_errno=self._failed.errno)
        if self._closed:
            raise RecordingError(f"{self.path} is closed", self.path, self._frames_flushed)

    def _fail(self, exc: OSError) -> None:
        """Cut the file back to its last durable record, stop, and raise a clear RecordingError."""
        lost = len(self._pending_frames)
        try:
            os.ftruncate(self._fd, self._durable_size)
            os.fsync(self._fd)
        except OSError:
            pass  # the loader discards a partial tail anyway
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            what = "disk full" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        else:
            what = f"write error ({exc.strerror or exc})"
        if self._durable_size == 0:
            saved = "nothing was saved"
        elif self._frames_flushed == 0:
            saved = "only the metadata is saved (no frames yet)"
        else:
            idx, t = self._last_flushed
            saved = (f"{self._frames_flushed} frames up to t={t:.3f} s (frame {idx}) are saved and readable")
        message = f"{what} while writing {self.path}; {saved}"
        if lost:
            message += f"; the last {lost} buffered frames could not be written"
        error = RecordingError(message, self.path, self._frames_flushed, lost, exc.errno)
        self._failed = error
        self._pending = bytearray()
        self._pending_frames.clear()
        self._close_fd()
        raise error from exc

    def _close_fd(self) -> None:
        self._closed = True
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def fsync_dir(folder: Path) -> None:
    """Make a new directory entry (a created or renamed file) in ``folder`` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform (Windows); the data itself is synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reader -------------------------------------------------------------------------------------------
