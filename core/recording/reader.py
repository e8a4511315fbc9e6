"""Reading recordings: CRC-checked records, stopping cleanly at a truncated or corrupt tail (see ``core.recording``)."""
from __future__ import annotations

import json
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.recording.format import (FOCAL_STATES, FRAME_FIELD_NAMES, HEADER, KIND_END, KIND_FRAME, KIND_IDENTITY,
                                   KIND_META, KIND_SEGMENT, MAGIC, MAX_PAYLOAD, RECORD_CRC, RECORD_HEAD, RECORD_OVERHEAD, SUFFIX,
                                   TRACKING_STATES, VERSION_MAJOR, FrameRecord, RecordingFormatError, RecordingMeta,
                                   _ALLOWED_DTYPES, _jsonable)

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
    # Segments (one person, one camera set-up each; SEGMENT records, format 1.1): the segment of each
    # frame (0 for every frame of files without them) and the SEGMENT records' contents in file order.
    segment_id: np.ndarray | None = None  # (N,) int32
    segments: list[dict[str, Any]] | None = None

    PER_FRAME = ("frame_index", "timestamp_s", "expr", "jaw_pose", "neck_pose", "eyes_pose", "rotation",
                 "translation", "fx", "fy", "cx", "cy", "rho_per_m", "focal_sigma_px", "fit_error_px", "confidence",
                 "scale_px_per_m", "focal_state", "tracking_state", "landmarks_px", "shape_per_frame", "segment_id")

    def __post_init__(self):
        if self.segment_id is None:  # built by hand (tests, tools): one segment
            self.segment_id = np.zeros(len(self.frame_index), np.int32)
        if self.segments is None:
            self.segments = []

    @property
    def segment_ids(self) -> list[int]:
        """The segments that have frames here, in order."""
        return sorted({int(v) for v in self.segment_id.tolist()})

    def segment_shape(self) -> dict[int, np.ndarray]:
        """Each segment's identity: the one in effect at its last frame here (the online estimate
        converges over a segment, so its last value is its best). {segment_id: (S,) float32}."""
        out = {}
        for seg in self.segment_ids:
            last = int(np.flatnonzero(self.segment_id == seg)[-1])
            out[seg] = self.shape_per_frame[last].copy()
        return out

    def segment_info(self, segment_id: int) -> dict[str, Any]:
        """The SEGMENT record of a segment (a minimal one for segment 0 of files without records)."""
        for rec in self.segments or ():
            if int(rec.get("segment_id", -1)) == segment_id:
                return rec
        first = np.flatnonzero(self.segment_id == segment_id)
        return {"segment_id": segment_id, "frame_index": int(self.frame_index[first[0]]) if len(first) else 0,
                "kind": "start" if segment_id == 0 else "unknown", "reason": ""}

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
                      segments_json=np.array(json.dumps(_jsonable(self.segments or []))),
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
        if len(self.segment_ids) > 1 or self.segments:
            lines.append(f"  segments: {len(self.segment_ids)}")
            for seg in self.segment_ids:
                info, frames = self.segment_info(seg), self.frame_index[self.segment_id == seg]
                lines.append(f"    {seg}: frames {int(frames[0])}-{int(frames[-1])}, {info.get('kind', '?')}"
                             + (f" ({info['reason']})" if info.get("reason") else ""))
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
    segments: list[dict] = []
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
            elif kind == KIND_SEGMENT:
                try:
                    record = json.loads(bytes(payload).decode("utf-8"))
                    int(record["segment_id"]), int(record["frame_index"])
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    stop_reason = f"corrupt segment record at byte {pos}"
                    break
                segments.append(record)
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
    return _assemble(path, meta_dict, table, identities, summary, pos, size, stop_reason, skipped, segments)


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


def _segment_of_frames(frame_index: np.ndarray, segments: list[dict]) -> np.ndarray:
    """(N,) int32 segment id of each frame: that of the last SEGMENT record starting at or before it
    (file order breaks ties, as for identities); 0 before the first."""
    out = np.zeros(len(frame_index), np.int32)
    if not segments:
        return out
    starts = np.array([int(r["frame_index"]) for r in segments], np.int64)
    ids = np.array([int(r["segment_id"]) for r in segments], np.int32)
    order = np.argsort(starts, kind="stable")
    pick = np.searchsorted(starts[order], frame_index, side="right") - 1
    has = pick >= 0
    out[has] = ids[order][pick[has]]
    return out


def _assemble(path, meta_dict, table, identities, summary, pos, size, stop_reason, skipped,
              segments=()) -> Recording:
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
        summary=summary, skipped_records=skipped,
        segment_id=_segment_of_frames(arrays["frame_index"], list(segments)), segments=list(segments))


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


