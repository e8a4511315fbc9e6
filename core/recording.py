"""flamecam recordings (``.fcrec``): one append-only binary file per tracked sequence.

A recording is written incrementally while tracking runs and stays readable whatever happens
to the writer: records are buffered in memory and written + ``fsync``-ed at least every
``flush_interval_s`` (1 s by default), so a crash or ``kill -9`` loses at most the last
unflushed second; a full disk raises :class:`RecordingError` saying what is saved, and the
file is cut back to its last complete record. The loader reads records in order and stops
cleanly at the first truncated or corrupt one (the tail a crash leaves), reporting how many
bytes it discarded. ``python -m core.recording --describe`` prints this documentation;
``python -m core.recording REC`` prints a summary of a recording.

File layout (format version 1.0; all integers little-endian)
------------------------------------------------------------

Header, 16 bytes::

    offset  size  field
    0       8     magic  b"\\x89FCREC\\r\\n"  (the 0x89 byte and CR LF catch 7-bit and text-mode copies)
    8       2     uint16 major version (1; a reader refuses a newer major version)
    10      2     uint16 minor version (0; a newer minor only adds record kinds or metadata keys)
    12      4     uint32 CRC-32 (zlib / IEEE 802.3) of bytes 0..11

Then records, back to back, until the end of the file::

    offset  size  field
    0       4     uint32 L, payload length in bytes
    4       1     uint8 record kind (below)
    5       L     payload
    5+L     4     uint32 CRC-32 of bytes 0 .. 5+L-1 of this record (length, kind and payload)

A record whose 9 + L bytes run past the end of the file is a truncated tail; one whose CRC does
not match is corrupt. The reader stops at the first of either and reports the bytes from there
to the end of the file as discarded. Records of an unknown kind with a valid CRC are skipped.

Record kinds:

1. ``META``, always the first record, exactly once. UTF-8 JSON object (strict JSON: non-finite
   numbers are written as null) with the keys of :class:`RecordingMeta`:
   ``schema_version`` (1), ``app_version``, ``model_kind``, ``model_name``, ``model_path``,
   ``model_sha256`` (SHA-256 of the model file, ``HeadModel.source_sha256``), ``num_shape`` (S),
   ``num_expr`` (E), ``expression_names`` (list of E names or null), ``image_width``,
   ``image_height``, ``source`` (free text: camera, file, ...), ``frame_rate_hz`` (nominal, or
   null), ``camera_mode`` ("perspective" | "ortho"), ``focal_mode`` ("fixed", "auto", "profile",
   "metadata", ...), ``focal_prior`` (object or null), ``landmark_count`` (L, 0 when landmarks
   are not stored), ``created_utc`` (ISO 8601), ``extra`` (free-form object), plus two keys that
   make the file self-describing: ``frame_fields``, the per-frame layout as a list of
   ``[name, numpy dtype string, shape]``, and ``enums``, the codes of ``focal_state`` and
   ``tracking_state``.
2. ``IDENTITY``: int64 ``frame_index`` then S float32 ``shape`` coefficients (8 + 4·S bytes).
   The identity applies from that frame index on, until a record with a larger start index; of
   records with the same start index the later one in the file wins (so an identity refined
   after the fact can be written for frames already recorded). Written only when it changes.
   Frames before every identity record get zeros (the mean identity) in ``shape_per_frame``.
3. ``FRAME``: one tracked frame, a packed fixed-size struct (numpy structured dtype
   :func:`frame_dtype`, no padding; 126 + 4·E + 8·L bytes)::

       offset        type          field
       0             int64         frame_index        index of the source frame
       8             float64       timestamp_s        source time in seconds
       16            float32[E]    expr               expression coefficients
       16+4E         float32[3]    jaw_pose           axis-angle (FLAME jaw joint)
       28+4E         float32[3]    neck_pose          axis-angle (FLAME neck joint)
       40+4E         float32[6]    eyes_pose          axis-angle, left eye then right eye
       64+4E         float32[3]    rotation           head rotation, axis-angle about the model origin
       76+4E         float32[3]    translation        metres, camera space (OpenCV axes):
                                                      X_cam = diag(1,-1,-1)·posed + translation
       88+4E         float32 x4    fx, fy, cx, cy     intrinsics in pixels (pixel i covers [i, i+1))
       104+4E        float32       rho_per_m          pseudo-perspective ρ = 1/Z0 (0 in ortho mode)
       108+4E        float32       focal_sigma_px     1σ uncertainty of the focal length
       112+4E        float32       fit_error_px       landmark fit error (NaN without a fit)
       116+4E        float32       confidence         in [0, 1]
       120+4E        float32       scale_px_per_m     ortho mode's weak-perspective scale, else NaN
       124+4E        uint8         focal_state        0 fixed, 1 not_observable, 2 estimating, 3 converged
       125+4E        uint8         tracking_state     0 tracking, 1 lost, 2 reacquired, 3 no_face
       126+4E        float32[L,2]  landmarks_px       detected landmarks (x, y) in pixels, NaN when
                                                      no face; present only when L > 0

   (The total is 126 + 4·E + 8·L bytes.) Pose names and conventions are FLAME's / flamecam's:
   the layer poses neck, jaw and eyes by LBS, rotates the head by ``rotation`` about the model
   origin, and ``core.camera.model_to_camera`` places it with ``translation``.
4. ``END``: UTF-8 JSON summary written by ``close()``: frame and identity counts, first/last
   frame index and timestamp, ``closed_utc``, ``ended_by`` and the caller's own keys. Its
   absence means the writer did not close (crash, kill, full disk): the loader reports
   ``complete=False``.

The reader memory-maps the file, checks each record's CRC, joins the frame payloads and views
them through the structured dtype (10,000 frames with landmarks, ~41 MB, load in well under a
second). A file still being written can be loaded: the reader gets every flushed record.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import errno
import json
import math
import mmap
import os
import struct
import sys
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.constants import FOCAL_STATES, NUM_LANDMARKS, TRACKING_STATES  # state codes are the index

MAGIC = b"\x89FCREC\r\n"
VERSION_MAJOR, VERSION_MINOR = 1, 0
SCHEMA_VERSION = 1
SUFFIX = ".fcrec"
HEADER = struct.Struct("<8sHHI")  # magic, major, minor, crc32 of the first 12 bytes
RECORD_HEAD = struct.Struct("<IB")  # payload length, kind
RECORD_CRC = struct.Struct("<I")
RECORD_OVERHEAD = RECORD_HEAD.size + RECORD_CRC.size  # 9 bytes
MAX_PAYLOAD = 1 << 30  # a larger length field can only be damage

KIND_META, KIND_IDENTITY, KIND_FRAME, KIND_END = 1, 2, 3, 4
KIND_NAMES = {KIND_META: "metadata", KIND_IDENTITY: "identity", KIND_FRAME: "frame", KIND_END: "end"}

CAMERA_MODES = ("perspective", "ortho")
DEFAULT_LANDMARK_COUNT = NUM_LANDMARKS

# Per-frame vectors and scalars (the float32 ones) in file order; see the layout table above.
_VECTOR_FIELDS = (("jaw_pose", 3), ("neck_pose", 3), ("eyes_pose", 6), ("rotation", 3), ("translation", 3))
_SCALAR_FIELDS = ("fx", "fy", "cx", "cy", "rho_per_m", "focal_sigma_px", "fit_error_px", "confidence", "scale_px_per_m")
FRAME_FIELD_NAMES = ("frame_index", "timestamp_s", "expr", *(n for n, _ in _VECTOR_FIELDS), *_SCALAR_FIELDS,
                     "focal_state", "tracking_state")
_ALLOWED_DTYPES = {"<i8", "<f8", "<f4", "|u1", "<i4", "<u4", "<i2", "<u2", "|i1"}


class RecordingError(RuntimeError):
    """Writing a recording failed (full disk, unwritable path, existing file); says what is saved."""

    def __init__(self, message: str, path: Path | None = None, frames_saved: int = 0, frames_lost: int = 0,
                 os_errno: int | None = None):
        super().__init__(message)
        self.path, self.frames_saved, self.frames_lost, self.errno = path, frames_saved, frames_lost, os_errno


class RecordingFormatError(ValueError):
    """A file that is not a readable flamecam recording (wrong magic, newer version, no metadata)."""


# --- metadata and frames ----------------------------------------------------------------------------


def _app_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return "unknown"
    try:
        return version("flamecam")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class RecordingMeta:
    """What a recording was made with; written first, as JSON (see the module docstring)."""

    model_kind: str
    model_name: str
    model_path: str
    model_sha256: str
    num_shape: int
    num_expr: int
    image_width: int
    image_height: int
    expression_names: list[str] | None = None
    source: str = ""
    frame_rate_hz: float | None = None
    camera_mode: str = "perspective"
    focal_mode: str = "auto"  # fixed | auto | profile | metadata | ...
    focal_prior: dict[str, Any] | None = None  # e.g. {"focal_px": 900, "sigma_rel": 0.5, "source": "default"}
    landmark_count: int = DEFAULT_LANDMARK_COUNT  # landmarks stored per frame; 0 stores none
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    app_version: str = field(default_factory=_app_version)
    created_utc: str = field(default_factory=_utc_now)

    @classmethod
    def for_model(cls, head, model_path: str | Path, image_width: int, image_height: int,
                  num_shape: int | None = None, num_expr: int | None = None, **kwargs) -> "RecordingMeta":
        """Metadata for a :class:`core.head_model.HeadModel` loaded from ``model_path`` ("builtin" kept as is).

        ``num_shape``/``num_expr`` default to the model's counts (a tracker may use fewer).
        """
        path = str(model_path) if str(model_path) == "builtin" else str(Path(model_path).resolve())
        num_expr = head.num_expr if num_expr is None else num_expr
        names = head.expression_names[:num_expr] if head.expression_names is not None else None
        return cls(model_kind=head.kind, model_name=head.name, model_path=path, model_sha256=head.source_sha256,
                   num_shape=head.num_shape if num_shape is None else num_shape, num_expr=num_expr,
                   image_width=image_width, image_height=image_height, expression_names=names, **kwargs)

    def validate(self) -> None:
        problems = []
        if self.num_shape < 0 or self.num_expr < 0 or self.landmark_count < 0:
            problems.append(f"negative counts (num_shape {self.num_shape}, num_expr {self.num_expr}, "
                            f"landmark_count {self.landmark_count})")
        if self.expression_names is not None and len(self.expression_names) != self.num_expr:
            problems.append(f"{len(self.expression_names)} expression_names for num_expr {self.num_expr}")
        if self.camera_mode not in CAMERA_MODES:
            problems.append(f"camera_mode {self.camera_mode!r} is not one of {CAMERA_MODES}")
        if self.image_width <= 0 or self.image_height <= 0:
            problems.append(f"image size {self.image_width}x{self.image_height}")
        if problems:
            raise ValueError("invalid recording metadata: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["frame_fields"] = [[name, dt.str, list(shape)] for name, dt, shape in _dtype_fields(
            frame_dtype(self.num_expr, self.landmark_count))]
        out["enums"] = {"focal_state": list(FOCAL_STATES), "tracking_state": list(TRACKING_STATES)}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RecordingMeta":
        """Known keys only (a newer writer may add keys; the raw dict stays in ``Recording.meta_dict``)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def frame_dtype(num_expr: int, landmark_count: int) -> np.dtype:
    """The packed structured dtype of a FRAME payload (see the layout table in the module docstring)."""
    spec = [("frame_index", "<i8"), ("timestamp_s", "<f8"), ("expr", "<f4", (num_expr,))]
    spec += [(name, "<f4", (n,)) for name, n in _VECTOR_FIELDS]
    spec += [(name, "<f4") for name in _SCALAR_FIELDS]
    spec += [("focal_state", "u1"), ("tracking_state", "u1")]
    if landmark_count:
        spec.append(("landmarks_px", "<f4", (landmark_count, 2)))
    return np.dtype(spec)


def _dtype_fields(dtype: np.dtype):
    for name in dtype.names:
        sub = dtype.fields[name][0]
        base, shape = (sub.base, sub.shape) if sub.subdtype is not None else (sub, ())
        yield name, base, shape


def _state_code(value, names: tuple[str, ...], label: str) -> int:
    if isinstance(value, str):
        if value not in names:
            raise ValueError(f"{label} {value!r} is not one of {names}")
        return names.index(value)
    code = int(value)
    if not 0 <= code < len(names):
        raise ValueError(f"{label} code {code} is outside 0..{len(names) - 1} ({names})")
    return code


@dataclass
class FrameRecord:
    """One tracked frame as the recorder stores it (numpy arrays or anything ``np.asarray`` takes).

    Missing joint poses are zero; unknown scalars NaN. States are names (``FOCAL_STATES``,
    ``TRACKING_STATES``) or their codes. ``landmarks_px`` (L, 2) or None (no face: stored as NaN).
    """

    frame_index: int
    timestamp_s: float
    expr: np.ndarray  # (E,)
    rotation: np.ndarray  # (3,) axis-angle about the model origin
    translation: np.ndarray  # (3,) metres, camera space
    fx: float
    fy: float
    cx: float
    cy: float
    jaw_pose: np.ndarray | None = None  # (3,)
    neck_pose: np.ndarray | None = None  # (3,)
    eyes_pose: np.ndarray | None = None  # (6,) left then right
    rho_per_m: float = math.nan
    focal_sigma_px: float = math.nan
    focal_state: str | int = "fixed"
    fit_error_px: float = math.nan
    confidence: float = math.nan
    tracking_state: str | int = "tracking"
    scale_px_per_m: float = math.nan
    landmarks_px: np.ndarray | None = None  # (L, 2) pixels

    @classmethod
    def from_track_result(cls, result) -> "FrameRecord":
        """From a ``core.tracker.TrackResult`` (duck-typed: no tracker import here)."""
        fx, fy, cx, cy = (float(v) for v in np.asarray(result.intrinsics).reshape(4))
        return cls(frame_index=int(result.frame_index), timestamp_s=float(result.timestamp_s), expr=result.expr,
                   rotation=result.rotation, translation=result.translation, fx=fx, fy=fy, cx=cx, cy=cy,
                   jaw_pose=result.jaw_pose, neck_pose=result.neck_pose, eyes_pose=result.eyes_pose,
                   rho_per_m=float(result.rho_per_m), focal_sigma_px=float(result.focal_sigma_px),
                   focal_state=result.focal_state, fit_error_px=float(result.fit_error_px),
                   confidence=float(result.confidence), tracking_state=result.tracking_state,
                   scale_px_per_m=float(getattr(result, "scale_px_per_m", math.nan)),
                   landmarks_px=result.landmarks_px)


# --- JSON ---------------------------------------------------------------------------------------------


def _jsonable(value):
    """numpy values to Python, non-finite floats to None (strict JSON other languages can read)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _json_bytes(obj: dict) -> bytes:
    return json.dumps(_jsonable(obj), allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _record(kind: int, payload: bytes) -> bytes:
    head = RECORD_HEAD.pack(len(payload), kind)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + payload + RECORD_CRC.pack(crc)


def _header() -> bytes:
    first = struct.pack("<8sHH", MAGIC, VERSION_MAJOR, VERSION_MINOR)
    return first + struct.pack("<I", zlib.crc32(first))


# --- writer -------------------------------------------------------------------------------------------


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
        _fsync_dir(self.path.parent)  # make the new directory entry itself durable
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
        """A ``core.tracker.TrackResult``: its identity (when changed) then the frame."""
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


def _fsync_dir(folder: Path) -> None:
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


@dataclass
class Recording:
    """A loaded recording: per-frame arrays stacked over N frames (see the module docstring)."""

    path: Path
    meta: RecordingMeta
    meta_dict: dict[str, Any]
    frame_index: np.ndarray  # (N,) int64
    timestamp_s: np.ndarray  # (N,) float64
    expr: np.ndarray  # (N, E) float32
    jaw_pose: np.ndarray  # (N, 3)
    neck_pose: np.ndarray  # (N, 3)
    eyes_pose: np.ndarray  # (N, 6)
    rotation: np.ndarray  # (N, 3)
    translation: np.ndarray  # (N, 3) metres, camera space
    fx: np.ndarray  # (N,)
    fy: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    rho_per_m: np.ndarray
    focal_sigma_px: np.ndarray
    fit_error_px: np.ndarray
    confidence: np.ndarray
    scale_px_per_m: np.ndarray
    focal_state: np.ndarray  # (N,) uint8 codes into FOCAL_STATES
    tracking_state: np.ndarray  # (N,) uint8 codes into TRACKING_STATES
    landmarks_px: np.ndarray | None  # (N, L, 2) float32, or None when not stored
    shape: np.ndarray  # (S,) the last identity in the file (zeros if none)
    shape_per_frame: np.ndarray  # (N, S) identity in effect at each frame (zeros before the first)
    identity_frame_index: np.ndarray  # (K,) start frame of each identity record, file order
    identity_shape: np.ndarray  # (K, S)
    complete: bool  # the END record was read: the writer closed normally
    discarded_bytes: int  # bytes after the last good record (truncated or corrupt tail)
    stop_reason: str  # why reading stopped early, or why the run did ("" when neither)
    summary: dict[str, Any] | None
    skipped_records: int = 0  # records of unknown kinds (written by a newer minor version)

    PER_FRAME = ("frame_index", "timestamp_s", "expr", "jaw_pose", "neck_pose", "eyes_pose", "rotation",
                 "translation", "fx", "fy", "cx", "cy", "rho_per_m", "focal_sigma_px", "fit_error_px", "confidence",
                 "scale_px_per_m", "focal_state", "tracking_state", "landmarks_px", "shape_per_frame")

    @property
    def interrupted(self) -> bool:
        """The run that wrote this file was stopped by Ctrl+C or SIGTERM (the file itself is intact)."""
        return self.summary is not None and self.summary.get("ended_by") == "interrupted"

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    @property
    def intrinsics(self) -> np.ndarray:
        """(N, 4) fx, fy, cx, cy."""
        return np.stack([self.fx, self.fy, self.cx, self.cy], -1)

    def focal_state_names(self) -> list[str]:
        return [FOCAL_STATES[c] if c < len(FOCAL_STATES) else str(c) for c in self.focal_state.tolist()]

    def tracking_state_names(self) -> list[str]:
        return [TRACKING_STATES[c] if c < len(TRACKING_STATES) else str(c) for c in self.tracking_state.tolist()]

    def select(self, mask_or_positions) -> "Recording":
        """A recording of some frames (boolean mask or positions); identity records are kept whole."""
        sel = {name: getattr(self, name)[mask_or_positions] for name in self.PER_FRAME
               if getattr(self, name) is not None}
        return replace(self, **sel)

    def frame_range(self, start: int | None = None, stop: int | None = None) -> "Recording":
        """Frames with ``start <= frame_index < stop`` (either bound may be None)."""
        mask = np.ones(len(self), bool)
        if start is not None:
            mask &= self.frame_index >= start
        if stop is not None:
            mask &= self.frame_index < stop
        return self.select(mask)

    def frame(self, i: int) -> FrameRecord:
        """Frame at position ``i`` as a :class:`FrameRecord` (e.g. to re-process or re-write it)."""
        return FrameRecord(
            frame_index=int(self.frame_index[i]), timestamp_s=float(self.timestamp_s[i]), expr=self.expr[i],
            rotation=self.rotation[i], translation=self.translation[i], fx=float(self.fx[i]), fy=float(self.fy[i]),
            cx=float(self.cx[i]), cy=float(self.cy[i]), jaw_pose=self.jaw_pose[i], neck_pose=self.neck_pose[i],
            eyes_pose=self.eyes_pose[i], rho_per_m=float(self.rho_per_m[i]),
            focal_sigma_px=float(self.focal_sigma_px[i]), focal_state=int(self.focal_state[i]),
            fit_error_px=float(self.fit_error_px[i]), confidence=float(self.confidence[i]),
            tracking_state=int(self.tracking_state[i]), scale_px_per_m=float(self.scale_px_per_m[i]),
            landmarks_px=None if self.landmarks_px is None else self.landmarks_px[i])

    def to_npz(self, path: str | Path, compress: bool = True) -> None:
        """One .npz with the per-frame arrays under the same names, plus identities and JSON metadata."""
        arrays = {name: getattr(self, name) for name in self.PER_FRAME if getattr(self, name) is not None}
        arrays.update(shape=self.shape, identity_frame_index=self.identity_frame_index,
                      identity_shape=self.identity_shape, meta_json=np.array(json.dumps(_jsonable(self.meta_dict))),
                      summary_json=np.array(json.dumps(_jsonable(self.summary))), complete=np.array(self.complete),
                      discarded_bytes=np.array(self.discarded_bytes))
        if self.meta.expression_names is not None:
            arrays["expression_names"] = np.array(self.meta.expression_names, dtype=str)
        save = np.savez_compressed if compress else np.savez
        with open(path, "wb") as fh:  # a handle: np.savez would append ".npz" to another suffix
            save(fh, **arrays)

    def describe(self) -> str:
        m = self.meta
        duration = float(self.timestamp_s[-1] - self.timestamp_s[0]) if len(self) else 0.0
        lines = [
            f"{self.path}: {len(self)} frames, {duration:.2f} s, "
            + ("complete" if self.complete else "INCOMPLETE (the writer did not close: crash, kill or full disk)")
            + (" (the run was interrupted)" if self.interrupted else ""),
            f"  model: {m.model_kind} {m.model_name} ({m.model_path}, sha256 {m.model_sha256[:12] or '?'}), "
            f"{m.num_shape} shape / {m.num_expr} expression coefficients",
            f"  image {m.image_width}x{m.image_height}, source {m.source or '?'}, camera {m.camera_mode}, "
            f"focal {m.focal_mode}, {m.landmark_count} landmarks stored per frame",
            f"  identity records: {len(self.identity_frame_index)}; written by flamecam {m.app_version} at {m.created_utc}",
        ]
        if self.discarded_bytes:
            lines.append(f"  discarded {self.discarded_bytes} bytes at the end: {self.stop_reason}")
        return "\n".join(lines)


def _open_bytes(path: Path):
    """(buffer, closer): the file memory-mapped read-only, or read whole where mmap is not possible."""
    fh = open(path, "rb")
    try:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return b"", fh.close
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            data = fh.read()
            fh.close()
            return data, lambda: None

        def closer():
            try:
                mm.close()
            except BufferError:  # a view is still referenced (an exception's traceback); GC unmaps it
                pass
            fh.close()
        return mm, closer
    except BaseException:
        fh.close()
        raise


def load(path: str | Path) -> Recording:
    """Read a recording, stopping cleanly at a truncated or corrupt tail.

    Raises :class:`RecordingFormatError` only when nothing usable is there (not a recording, a newer
    major version, damaged metadata) and ``OSError`` when the file cannot be read at all.
    """
    path = Path(path)
    if path.is_dir():
        raise RecordingFormatError(f"{path} is a folder, not a recording file ({SUFFIX})")
    buf, closer = _open_bytes(path)
    try:
        return _parse(path, buf)
    finally:
        closer()


def _parse(path: Path, buf) -> Recording:
    size = len(buf)
    if size < HEADER.size:
        raise RecordingFormatError(f"{path}: {size} bytes, too short to be a flamecam recording "
                                   "(the writer may have been killed while creating it)")
    magic, major, minor, crc = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise RecordingFormatError(f"{path}: not a flamecam recording (wrong magic bytes)")
    if zlib.crc32(bytes(buf[:12])) != crc:
        raise RecordingFormatError(f"{path}: the file header is damaged")
    if major > VERSION_MAJOR:
        raise RecordingFormatError(f"{path}: written by a newer flamecam (format {major}.{minor}); upgrade flamecam")
    view = memoryview(buf)
    pos, stop_reason = HEADER.size, ""
    meta_dict: dict | None = None
    dtype: np.dtype | None = None
    frames: list[memoryview] = []
    identities: list[tuple[int, bytes]] = []
    summary = None
    skipped = 0
    try:
        while pos < size:
            if size - pos < RECORD_OVERHEAD:
                stop_reason = f"truncated record at byte {pos} (the tail a crash or kill leaves)"
                break
            length, kind = RECORD_HEAD.unpack_from(buf, pos)
            end = pos + RECORD_HEAD.size + length
            if length > MAX_PAYLOAD:
                stop_reason = f"corrupt record at byte {pos} (impossible length {length})"
                break
            if end + RECORD_CRC.size > size:
                stop_reason = (f"record at byte {pos} runs past the end of the file (a truncated tail, as a crash "
                               "or kill leaves, or a damaged length field)")
                break
            (stored_crc,) = RECORD_CRC.unpack_from(buf, end)
            if zlib.crc32(view[pos:end]) != stored_crc:
                stop_reason = f"corrupt record at byte {pos} (CRC mismatch)"
                break
            payload = view[pos + RECORD_HEAD.size:end]
            if meta_dict is None:
                if kind != KIND_META:
                    raise RecordingFormatError(f"{path}: the first record is not the metadata")
                meta_dict, dtype = _parse_meta(path, payload)
            elif kind == KIND_FRAME:
                if length != dtype.itemsize:
                    stop_reason = (f"corrupt frame record at byte {pos} ({length} bytes, the layout has "
                                   f"{dtype.itemsize})")
                    break
                frames.append(payload)
            elif kind == KIND_IDENTITY:
                if length != 8 + 4 * int(meta_dict["num_shape"]):
                    stop_reason = f"corrupt identity record at byte {pos} ({length} bytes)"
                    break
                identities.append((struct.unpack_from("<q", payload)[0], bytes(payload[8:])))
            elif kind == KIND_END:
                summary = json.loads(bytes(payload).decode("utf-8"))
                pos = end + RECORD_CRC.size
                if pos < size:
                    stop_reason = f"unexpected data after the end record at byte {pos}"
                break
            elif kind == KIND_META:
                stop_reason = f"corrupt file: a second metadata record at byte {pos}"
                break
            else:
                skipped += 1
            pos = end + RECORD_CRC.size
        if meta_dict is None:
            raise RecordingFormatError(f"{path}: the metadata record is missing or damaged ({stop_reason or 'empty'}); "
                                       "nothing can be read")
        table = np.frombuffer(b"".join(frames), dtype=dtype) if frames else np.zeros(0, dtype)
    finally:  # drop every view of the mapped file so it can be unmapped
        payload = None  # noqa: F841
        frames.clear()
        view.release()
    return _assemble(path, meta_dict, table, identities, summary, pos, size, stop_reason, skipped)


def _parse_meta(path: Path, payload) -> tuple[dict, np.dtype]:
    try:
        meta = json.loads(bytes(payload).decode("utf-8"))
        fields_spec = meta["frame_fields"]
        spec = []
        for name, dt, shape in fields_spec:
            if np.dtype(dt).str not in _ALLOWED_DTYPES:
                raise ValueError(f"field {name} has unsupported type {dt}")
            spec.append((str(name), np.dtype(dt), tuple(int(s) for s in shape)))
        dtype = np.dtype(spec)
        missing = [n for n in FRAME_FIELD_NAMES if n not in dtype.names]
        if missing:
            raise ValueError(f"frame layout lacks {', '.join(missing)}")
        int(meta["num_shape"])
        RecordingMeta.from_dict(meta)  # every required key is there
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise RecordingFormatError(f"{path}: unreadable metadata ({exc})") from exc
    return meta, dtype


def _assemble(path, meta_dict, table, identities, summary, pos, size, stop_reason, skipped) -> Recording:
    meta = RecordingMeta.from_dict(meta_dict)
    n, num_shape = len(table), int(meta_dict["num_shape"])
    arrays = {name: np.ascontiguousarray(table[name]) for name in table.dtype.names}
    # Stored landmarks come back as (N, L, 2); a file without them gives None.
    landmarks = arrays.pop("landmarks_px", None)
    id_start = np.array([s for s, _ in identities], dtype=np.int64)
    id_shape = (np.stack([np.frombuffer(b, "<f4") for _, b in identities]).astype(np.float32)
                if identities else np.zeros((0, num_shape), np.float32))
    shape_per_frame = np.zeros((n, num_shape), np.float32)
    if identities:
        order = np.argsort(id_start, kind="stable")  # equal starts keep file order: the later one wins
        starts = id_start[order]
        pick = np.searchsorted(starts, arrays["frame_index"], side="right") - 1
        has = pick >= 0
        shape_per_frame[has] = id_shape[order][pick[has]]
    known = {f.name for f in fields(Recording)}
    per_frame = {k: v for k, v in arrays.items() if k in known}
    if not stop_reason and summary is not None and summary.get("ended_by") == "interrupted":
        stop_reason = "the run was interrupted (Ctrl+C or SIGTERM); the file is intact up to there"
    return Recording(
        path=path, meta=meta, meta_dict=meta_dict, **per_frame, landmarks_px=landmarks,
        shape=id_shape[-1].copy() if identities else np.zeros(num_shape, np.float32),
        shape_per_frame=shape_per_frame, identity_frame_index=id_start, identity_shape=id_shape,
        complete=summary is not None and pos == size, discarded_bytes=size - pos, stop_reason=stop_reason,
        summary=summary, skipped_records=skipped)


def scan_records(path: str | Path) -> list[tuple[int, int, int]]:
    """(offset, kind, payload length) of every well-formed record, in order (for tools and tests)."""
    out = []
    with open(path, "rb") as fh:
        data = fh.read()
    pos = HEADER.size
    while pos + RECORD_OVERHEAD <= len(data):
        length, kind = RECORD_HEAD.unpack_from(data, pos)
        end = pos + RECORD_HEAD.size + length
        if end + RECORD_CRC.size > len(data) or zlib.crc32(data[pos:end]) != RECORD_CRC.unpack_from(data, end)[0]:
            break
        out.append((pos, kind, length))
        pos = end + RECORD_CRC.size
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.recording", description="flamecam recording files (.fcrec)")
    parser.add_argument("recording", nargs="?", help="print a summary of this recording")
    parser.add_argument("--describe", action="store_true", help="print the file format documentation")
    args = parser.parse_args(argv)
    if args.describe:
        print(__doc__)
        return 0
    if not args.recording:
        parser.print_help()
        return 0
    try:
        print(load(args.recording).describe())
    except (OSError, RecordingFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
