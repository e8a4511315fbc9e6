"""The .fcrec byte layout: constants, metadata, the per-frame record and its dtype (see ``core.recording``)."""
from __future__ import annotations

import datetime as _dt
import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from core.constants import FOCAL_STATES, NUM_LANDMARKS, TRACKING_STATES  # state codes are the index

MAGIC = b"\x89FCREC\r\n"
VERSION_MAJOR, VERSION_MINOR = 1, 1  # 1.1 added SEGMENT records
SCHEMA_VERSION = 1
SUFFIX = ".fcrec"
HEADER = struct.Struct("<8sHHI")  # magic, major, minor, crc32 of the first 12 bytes
RECORD_HEAD = struct.Struct("<IB")  # payload length, kind
RECORD_CRC = struct.Struct("<I")
RECORD_OVERHEAD = RECORD_HEAD.size + RECORD_CRC.size  # 9 bytes
MAX_PAYLOAD = 1 << 30  # a larger length field can only be damage

KIND_META, KIND_IDENTITY, KIND_FRAME, KIND_END, KIND_SEGMENT = 1, 2, 3, 4, 5
KIND_NAMES = {KIND_META: "metadata", KIND_IDENTITY: "identity", KIND_FRAME: "frame", KIND_END: "end",
              KIND_SEGMENT: "segment"}

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


