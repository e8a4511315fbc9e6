"""Export a recording (``core.recording``) as per-frame meshes: OBJ (text) or binary PLY.

Vertices come from the recording's head model: ``HeadModelLayer`` (shape in effect at the frame,
expression, neck/jaw/eyes poses, head rotation about the model origin), then for
``space="camera"`` ``core.camera.model_to_camera`` with the frame's translation (OpenCV camera
axes, metres: the mesh lines up with the video through ``fx, fy, cx, cy``). ``space="model"``
keeps model axes (+y up, +z out of the face) with the head rotation applied but no translation.

The model file must be the one the recording was made with: its SHA-256 is compared with the
recording's ``model_sha256`` (:func:`resolve_model`). Frames whose parameters are not finite
(e.g. written as NaN while no face was seen) are skipped and counted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from core.camera import model_to_camera
from core.head_model import HeadModel, HeadModelLayer
from core.recording import Recording

SPACES = ("camera", "model")
MESH_FORMATS = ("obj", "ply")


class ModelMismatchError(ValueError):
    """The model file is not the one the recording was made with."""


def resolve_model(rec: Recording, model_path: str | Path | None = None, force: bool = False) -> HeadModel:
    """Load the recording's head model (or ``model_path``) with the recorded coefficient counts.

    Raises ``core.model_io.ModelFileError`` when it cannot be loaded and :class:`ModelMismatchError`
    when its SHA-256 differs from the recording's (unless ``force``).
    """
    from core.model_io import ModelFileError, load_head_model  # noqa: PLC0415

    meta = rec.meta
    source = str(model_path) if model_path is not None else meta.model_path
    if not source:
        raise ModelFileError(f"{rec.path} names no model file; pass the model with --model PATH")
    if model_path is None and source != "builtin" and not Path(source).exists():
        raise ModelFileError(f"the recording's model file {source} is not there any more; pass its new location "
                             "with --model PATH")
    try:
        head = load_head_model(source, num_shape=meta.num_shape, num_expr=meta.num_expr)
    except ImportError as exc:  # the built-in model's module or its assets are missing
        raise ModelFileError(f"cannot load the model {source!r} ({exc}); pass a model file with --model PATH") from exc
    if meta.model_sha256 and head.source_sha256 != meta.model_sha256 and not force:
        raise ModelMismatchError(
            f"model {source} (SHA-256 {head.source_sha256[:16] or 'unknown'}…) is not the model {meta.model_name} "
            f"the recording was made with (SHA-256 {meta.model_sha256[:16]}…); the meshes would be wrong. "
            "Pass the right file with --model PATH, or --force to export anyway")
    return head


def finite_frames(rec: Recording) -> np.ndarray:
    """(N,) bool: frames whose mesh parameters are all finite."""
    parts = [rec.expr, rec.rotation, rec.translation, rec.jaw_pose, rec.neck_pose, rec.eyes_pose, rec.shape_per_frame]
    ok = np.ones(len(rec), bool)
    for arr in parts:
        ok &= np.isfinite(arr.reshape(len(rec), -1)).all(1)
    return ok


def mesh_batches(rec: Recording, head: HeadModel, space: str = "camera", batch_size: int = 64,
                 positions: np.ndarray | None = None, device: str | torch.device | None = None,
                 layer: HeadModelLayer | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (positions (B,), vertices (B, V, 3) float32) for the frames at ``positions`` (default: all).

    One batched forward pass per ``batch_size`` frames, on CUDA when available. ``layer``: the
    head's ``HeadModelLayer`` on ``device``, built once by a caller that poses a few frames at a time.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, not {space!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    layer = layer if layer is not None else HeadModelLayer(head, device=device)
    positions = np.arange(len(rec)) if positions is None else np.asarray(positions)

    def tensor(arr, idx):
        return torch.as_tensor(np.ascontiguousarray(arr[idx]), dtype=torch.float32, device=device)

    with torch.no_grad():
        for start in range(0, len(positions), batch_size):
            idx = positions[start:start + batch_size]
            verts = layer(tensor(rec.shape_per_frame, idx), tensor(rec.expr, idx), rotation=tensor(rec.rotation, idx),
                          neck_pose=tensor(rec.neck_pose, idx), jaw_pose=tensor(rec.jaw_pose, idx),
                          eyes_pose=tensor(rec.eyes_pose, idx))
            if space == "camera":
                verts = model_to_camera(verts, tensor(rec.translation, idx))
            yield idx, verts.cpu().numpy().astype(np.float32, copy=False)


# --- mesh files --------------------------------------------------------------------------------------


def obj_faces_text(faces: np.ndarray) -> str:
    """The ``f`` lines of an OBJ (1-based), built once per export."""
    f = np.asarray(faces, np.int64) + 1
    return ("f %d %d %d\n" * len(f)) % tuple(f.ravel().tolist())


def write_obj(path: str | Path, verts: np.ndarray, faces: np.ndarray | str, comment: str = "") -> None:
    """Text OBJ: ``v x y z`` (6 decimals: micrometres) then the faces. ``faces`` may be pre-built text."""
    verts = np.asarray(verts, np.float64)
    face_text = faces if isinstance(faces, str) else obj_faces_text(faces)
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    body = ("v %.6f %.6f %.6f\n" * len(verts)) % tuple(verts.ravel().tolist())
    _write_atomic(path, (head + body + face_text).encode("ascii"))


_PLY_FACE = np.dtype([("count", "u1"), ("index", "<i4", (3,))])


def ply_faces_bytes(faces: np.ndarray) -> bytes:
    rows = np.zeros(len(faces), _PLY_FACE)
    rows["count"] = 3
    rows["index"] = np.asarray(faces, np.int64)
    return rows.tobytes()


def write_ply(path: str | Path, verts: np.ndarray, faces: np.ndarray | bytes, comment: str = "") -> None:
    """Binary little-endian PLY: float32 x, y, z vertices and uchar-count int32-index triangles."""
    face_bytes = faces if isinstance(faces, bytes) else ply_faces_bytes(faces)
    num_faces = len(face_bytes) // _PLY_FACE.itemsize
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {line}" for line in comment.splitlines()]
    lines += [f"element vertex {len(verts)}", "property float x", "property float y", "property float z",
              f"element face {num_faces}", "property list uchar int vertex_indices", "end_header"]
    header = ("\n".join(lines) + "\n").encode("ascii")
    _write_atomic(path, header + np.ascontiguousarray(verts, "<f4").tobytes() + face_bytes)


def _write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary name then rename: an interrupted export never leaves a half mesh."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def mesh_file_name(frame_index: int, fmt: str) -> str:
    return f"frame_{int(frame_index):06d}.{fmt}"


@dataclass
class ExportResult:
    paths: list[Path] = field(default_factory=list)
    skipped_frame_indices: list[int] = field(default_factory=list)  # non-finite parameters


def export_meshes(rec: Recording, head: HeadModel, out_dir: str | Path, fmt: str = "obj", space: str = "camera",
                  batch_size: int = 64, overwrite: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Write ``out_dir/frame_NNNNNN.{obj,ply}`` for every frame with finite parameters.

    Refuses (FileExistsError) when any target file exists unless ``overwrite``; ``ValueError`` when
    frame indices repeat (file names would collide).
    """
    if fmt not in MESH_FORMATS:
        raise ValueError(f"format must be one of {MESH_FORMATS}, not {fmt!r}")
    if len(np.unique(rec.frame_index)) != len(rec):
        raise ValueError(f"{rec.path}: frame indices repeat, so per-frame file names would collide")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = finite_frames(rec)
    result = ExportResult(skipped_frame_indices=rec.frame_index[~ok].tolist())
    positions = np.flatnonzero(ok)
    targets = {int(p): out_dir / mesh_file_name(rec.frame_index[p], fmt) for p in positions}
    if not overwrite:
        existing = [p for p in targets.values() if p.exists()]
        if existing:
            raise FileExistsError(f"{len(existing)} files would be overwritten in {out_dir} (e.g. {existing[0].name}); "
                                  "choose an empty folder or pass --overwrite")
    faces = obj_faces_text(head.faces) if fmt == "obj" else ply_faces_bytes(head.faces)
    writer = write_obj if fmt == "obj" else write_ply
    for idx, verts in mesh_batches(rec, head, space, batch_size, positions):
        for p, v in zip(idx.tolist(), verts):
            comment = (f"flamecam frame {int(rec.frame_index[p])} t={float(rec.timestamp_s[p]):.6f}s space={space} "
                       f"model={rec.meta.model_name}")
            writer(targets[p], v, faces, comment)
            result.paths.append(targets[p])
        if progress is not None:
            progress(len(result.paths), len(positions))
    return result
