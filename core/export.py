"""Export a recording (``core.recording``): per-frame meshes (OBJ text or binary PLY), one .npz of its
arrays, one animated glTF (``core.export_gltf``) or a FLAME-parameter .npz for smplx.

:func:`export_recording` is the one entry point the CLI (``flamecam export``) and the app's export
thread both call: it loads the recording, resolves its model, writes the chosen format and returns
an :class:`ExportResult` with a one-line summary and notes; bad input raises
:class:`ExportInputError` (one actionable line), a cancel request :class:`ExportCancelled`, and
write failures ``OSError``.

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

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from core.camera import model_to_camera
from core.head_model import FLAME_JOINT_NAMES, HeadModel, HeadModelLayer, flame_translation
from core.recording import Recording

SPACES = ("camera", "model")
MESH_FORMATS = ("obj", "ply")
FORMATS = ("obj", "ply", "npz", "gltf", "flame-npz")  # what export_recording writes
# The keyword arguments of smplx.FLAME.forward, in its order.
FLAME_NPZ_KEYS = ("betas", "expression", "global_orient", "neck_pose", "jaw_pose", "leye_pose", "reye_pose", "transl")


class ModelMismatchError(ValueError):
    """The model file is not the one the recording was made with."""


class ExportInputError(ValueError):
    """Bad input for an export (missing or unreadable recording, wrong model, existing target, ...)."""


class ExportCancelled(Exception):
    """The ``cancel`` callback of :func:`export_recording` asked to stop; files written so far are complete."""


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
    write_atomic(path, (head + body + face_text).encode("ascii"))


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
    write_atomic(path, header + np.ascontiguousarray(verts, "<f4").tobytes() + face_bytes)


def write_atomic(path: str | Path, data: bytes) -> None:
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
    notes: list[str] = field(default_factory=list)  # things the user should know (incomplete take, ...)
    summary: str = ""  # e.g. "11 OBJ meshes (camera space) to out/"


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


# --- smplx FLAME parameters ------------------------------------------------------------------------------


def flame_arrays(rec: Recording, head: HeadModel) -> dict[str, np.ndarray]:
    """The recording as ``smplx.FLAME`` inputs (float32, one row per frame) plus the camera.

    ``betas`` (N, S) is the identity in effect at each frame, ``expression`` (N, E), poses (N, 3)
    axis-angle, ``transl`` (N, 3) from :func:`core.head_model.flame_translation`, so that
    ``FLAME(**those).vertices · diag(1, -1, -1)`` are flamecam's camera-space vertices. Also
    ``intrinsics`` (N, 4) fx, fy, cx, cy in pixels, ``image_size`` (W, H), ``frame_rate_hz`` (NaN
    when unknown), ``frame_index``, ``timestamp_s``, ``valid`` (False: no pose, rows are NaN) and
    ``segment_id`` (N,) (segments: shot cuts or other people, each with its own ``betas``).
    Raises ValueError for models that are not FLAME-articulated.
    """
    if not head.is_articulated or tuple(head.joint_names) != FLAME_JOINT_NAMES:
        kind = "articulated" if head.is_articulated else "rigid"
        raise ValueError(f"--flame-npz writes smplx.FLAME parameters, which need a FLAME model (joints "
                         f"{', '.join(FLAME_JOINT_NAMES)}); {head.name} is a {kind} {head.kind} model: "
                         "use --gltf, --obj, --ply or --npz instead")
    rotation = rec.rotation.astype(np.float64)
    betas = rec.shape_per_frame.astype(np.float64)
    transl = flame_translation(head, rotation, rec.translation.astype(np.float64), betas, rec.expr.astype(np.float64))
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    rate = rec.meta.frame_rate_hz
    return {
        "betas": f32(betas), "expression": f32(rec.expr), "global_orient": f32(rotation),
        "neck_pose": f32(rec.neck_pose), "jaw_pose": f32(rec.jaw_pose), "leye_pose": f32(rec.eyes_pose[:, :3]),
        "reye_pose": f32(rec.eyes_pose[:, 3:]), "transl": f32(transl),
        "intrinsics": np.stack([rec.fx, rec.fy, rec.cx, rec.cy], -1).astype(np.float32),
        "image_size": np.array([rec.meta.image_width, rec.meta.image_height], np.int64),
        "frame_rate_hz": np.array(rate if rate else np.nan, np.float64),
        "frame_index": rec.frame_index.copy(), "timestamp_s": rec.timestamp_s.copy(), "valid": finite_frames(rec),
        "segment_id": rec.segment_id.astype(np.int32),
    }


# --- one entry point for the CLI and the app -------------------------------------------------------------


def export_recording(recording: str | Path | Recording, fmt: str, target: str | Path, *,
                     model_path: str | Path | None = None, force: bool = False, space: str = "camera",
                     frames: tuple[int | None, int | None] | None = None, batch_size: int = 64,
                     overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
                     cancel: Callable[[], bool] | None = None) -> ExportResult:
    """Export ``recording`` (a path or a loaded :class:`Recording`) as ``fmt`` (one of :data:`FORMATS`).

    obj / ply: ``target`` is a folder of per-frame meshes in ``space``; npz: every array of the
    recording; gltf: one ``.glb`` / ``.gltf`` (``core.export_gltf``); flame-npz: :func:`flame_arrays`.
    ``frames`` = (start, stop) keeps frames with ``start <= frame_index < stop``. ``progress(done,
    total)`` is called as work proceeds; ``cancel()`` returning True stops at the next step
    (:class:`ExportCancelled`).
    """
    from core.model_io import ModelFileError  # noqa: PLC0415
    from core.recording import RecordingFormatError, load  # noqa: PLC0415

    if fmt not in FORMATS:
        raise ExportInputError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if batch_size < 1:
        raise ExportInputError("--batch-size must be at least 1")

    def step(done: int, total: int) -> None:
        if cancel is not None and cancel():
            raise ExportCancelled(f"export to {target} cancelled; the files written so far are complete")
        if progress is not None:
            progress(done, total)

    if isinstance(recording, Recording):
        rec = recording
    else:
        try:
            rec = load(recording)
        except FileNotFoundError:
            raise ExportInputError(f"recording not found: {recording}") from None
        except (RecordingFormatError, OSError) as exc:
            raise ExportInputError(str(exc)) from exc
    result = ExportResult()
    if not rec.complete:
        result.notes.append(f"{rec.path} is incomplete (the writer did not close); exporting the {len(rec)} readable "
                            "frames" + (f", {rec.discarded_bytes} bytes discarded: {rec.stop_reason}"
                                        if rec.discarded_bytes else ""))
    if frames is not None:
        rec = rec.frame_range(*frames)
    if len(rec) == 0:
        raise ExportInputError(f"no frames to export in {rec.path}" + (" in the chosen frame range" if frames else ""))
    target = Path(target)
    file_target = fmt in ("npz", "gltf", "flame-npz")
    if file_target and target.exists() and not overwrite:
        raise ExportInputError(f"{target} exists; choose another name or pass --overwrite")
    step(0, 1)
    if fmt == "npz":
        rec.to_npz(target)
        result.paths.append(target)
        result.summary = f"{len(rec)} frames to {target}"
        step(1, 1)
        return result
    try:
        head = resolve_model(rec, model_path, force=force)
    except (ModelFileError, ModelMismatchError) as exc:
        raise ExportInputError(str(exc)) from exc
    try:
        if fmt == "flame-npz":
            arrays = flame_arrays(rec, head)
            buffer = io.BytesIO()  # written whole by write_atomic: never a half file under the final name
            np.savez(buffer, **arrays)
            write_atomic(target, buffer.getvalue())
            result.paths.append(target)
            result.skipped_frame_indices = rec.frame_index[~arrays["valid"]].tolist()
            result.summary = f"{len(rec)} frames of smplx FLAME parameters to {target}"
        elif fmt == "gltf":
            from core.export_gltf import export_gltf  # noqa: PLC0415

            gltf = export_gltf(rec, head, target, overwrite=overwrite, progress=step)
            result.paths.append(target)
            result.notes += gltf.notes
            result.skipped_frame_indices = gltf.hidden_frame_indices
            result.summary = f"{len(rec)} frames to {target} ({gltf.size_bytes / 1e6:.1f} MB)"
            if gltf.hidden_frame_indices:
                result.notes.append(f"{len(gltf.hidden_frame_indices)} frames without a pose hide the mesh (scale 0), "
                                    f"e.g. frame {gltf.hidden_frame_indices[0]}")
        else:
            meshes = export_meshes(rec, head, target, fmt=fmt, space=space, batch_size=batch_size,
                                   overwrite=overwrite, progress=step)
            result.paths, result.skipped_frame_indices = meshes.paths, meshes.skipped_frame_indices
            result.summary = f"{len(meshes.paths)} {fmt.upper()} meshes ({space} space) to {target}"
            if meshes.skipped_frame_indices:
                result.notes.append(f"skipped {len(meshes.skipped_frame_indices)} frames with non-finite parameters "
                                    f"(e.g. frame {meshes.skipped_frame_indices[0]})")
    except (FileExistsError, ValueError) as exc:
        raise ExportInputError(str(exc)) from exc
    return result
