"""A recording as one animated glTF 2.0 file (``.glb`` or ``.gltf``), written with pygltflib.

What the file holds (every value comes from the recording and its head model):

* **The mesh** with the identity baked in: ``v_template + shapedirs·β`` with β the recording's
  last identity (``Recording.shape``; a take whose identity was refined mid-take gets a note, and
  frames recorded under an earlier identity are shown with the last one). Smooth normals of that
  neutral mesh; vertex colours (``COLOR_0``) when the model has an albedo. A take of several
  **segments** (shot cuts, other people: ``core.segments``) keeps the model's mean head as the mesh
  and gives each segment its identity as one more morph target, ``identity_segment_K`` (β of the
  segment's last frame), weight 1 in that segment's frames and 0 elsewhere; for articulated models
  the joints follow it (they are animated per frame anyway, below).
* **Morph targets**: the expression basis (one target per expression coefficient, named by the
  model's expression names in ``mesh.extras.targetNames``, which Blender uses for its shape keys)
  and, for articulated models, the pose correctives (``posedirs``: 9 per non-root joint, weight
  ``R_j - I`` element by element, smplx's layout). The ``weights`` channel carries them per frame,
  so the mesh equals flamecam's LBS exactly (up to float32). Each target is scaled to the take's
  range so every weight lies in [0, 1] (Blender clamps shape keys; see :func:`morph_ranges`):
  ``coefficient = offset + weight · scale`` with both in ``mesh.extras.flamecam``.
* **A skin** for articulated (FLAME-like) models: one node per joint (``global``, ``neck``, ``jaw``,
  ``left_eye``, ``right_eye``), inverse bind matrices at the identity's joints. Joint rotations
  are the recorded poses; the joint translations are animated too, because FLAME regresses its
  joints from the *expressed* template (``J_j`` moves with the expression): with ``J^b`` the bind
  joints and ``p`` the parent, joint ``j`` gets ``t_j = J_j - J^b_p + R_j (J^b_j - J_j)``, which
  makes ``world_j · IBM_j`` equal LBS's ``G_j · T(-J_j)``.
* **The head transform** per frame. The glTF world is the camera's OpenGL frame: the camera node
  sits at the origin unrotated (glTF cameras look down -Z with +Y up), and flamecam's OpenCV
  camera space maps to it by ``diag(1, -1, -1)``. Since ``X_cam = diag(1,-1,-1)·R·posed + t``,
  the world position is ``R·posed + diag(1,-1,-1)·t``: the head node (the root joint for
  articulated models) gets rotation ``R`` and translation ``(t_x, -t_y, -t_z)``, and model axes
  (+Y up, +Z out of the face) are glTF's own, so the head stands upright in any viewer.
* **The camera**: a perspective camera with ``aspectRatio = W/H`` and ``yfov = 2·atan(H / 2 fy)``
  of the final frame's focal length, animated per frame through ``KHR_animation_pointer``
  (``/cameras/0/perspective/yfov``; Blender 4.2+ imports it as the lens curve; viewers without the
  extension keep the constant). glTF has no principal point and no separate ``fx``: the exact
  per-frame ``fx, fy, cx, cy`` (pixels, pixel i covering [i, i+1)) are in the camera's
  ``extras.flamecam`` with the image size; an off-centre principal point maps to Blender's lens
  shift ``shift_x = (W/2 - cx) / max(W, H)``, ``shift_y = (cy - H/2) / max(W, H)``.
* **Frames without a pose** (non-finite parameters: no face, lost before the first fit) hide the
  mesh: the head (root) node's scale channel is 0 there with STEP interpolation, 1 elsewhere;
  their other channels repeat the nearest posed frame so nothing interpolates through garbage.
* **Times**: ``frame_index / frame_rate_hz`` (video frame k at k/fps; Blender places keys at
  time × scene fps, so video frame k lands on Blender frame k); without a frame rate, the
  recording's timestamps from the first frame.

Node layout: ``camera`` (camera 0, at the origin) · rigid models: ``head`` (mesh, TRS, weights) ·
articulated models: the mesh node (mesh + skin, identity transform, as glTF requires of skinned
meshes) and the joint hierarchy whose root carries the head transform.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pygltflib as gl

from core.camera import axis_angle_to_matrix, axis_angle_to_quaternion_xyzw, matrix_to_quaternion_xyzw
from core.export import finite_frames, write_atomic
from core.head_model import HeadModel
from core.recording import Recording

GLTF_SUFFIXES = (".glb", ".gltf")
YFOV_POINTER = "/cameras/0/perspective/yfov"
MAX_INFLUENCES = 8  # two JOINTS_n / WEIGHTS_n sets
AXES_CV_TO_GL = np.array([1.0, -1.0, -1.0])  # OpenCV camera axes -> the glTF camera's (OpenGL) axes
POSE_JOINTS = {"neck": ("neck_pose", 0), "jaw": ("jaw_pose", 0), "left_eye": ("eyes_pose", 0),
               "right_eye": ("eyes_pose", 3)}  # joint name -> (recording array, first column)

_FLOAT, _UBYTE, _USHORT, _UINT = gl.FLOAT, gl.UNSIGNED_BYTE, gl.UNSIGNED_SHORT, gl.UNSIGNED_INT
_TYPES = {1: gl.SCALAR, 2: gl.VEC2, 3: gl.VEC3, 4: gl.VEC4, 16: gl.MAT4}
_DTYPES = {_FLOAT: "<f4", _UBYTE: "u1", _USHORT: "<u2", _UINT: "<u4"}


@dataclass
class GltfExportResult:
    path: Path
    frames: int
    hidden_frame_indices: list[int] = field(default_factory=list)  # no pose: mesh scaled to 0
    notes: list[str] = field(default_factory=list)
    size_bytes: int = 0


def sign_continuous(quats: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions with signs flipped so consecutive ones are in the same hemisphere (no
    360° spins when a viewer interpolates between keys)."""
    out = quats.copy()
    for i in range(1, len(out)):
        if np.dot(out[i], out[i - 1]) < 0:
            out[i] = -out[i]
    return out


def animation_times_s(rec: Recording) -> np.ndarray:
    """(N,) seconds: ``frame_index / frame_rate_hz``, else timestamps from the first frame."""
    rate = rec.meta.frame_rate_hz
    if rate and math.isfinite(rate) and rate > 0:
        times = rec.frame_index.astype(np.float64) / rate
    else:
        times = rec.timestamp_s.astype(np.float64) - float(rec.timestamp_s[0])
    if len(times) > 1 and not (np.diff(times) > 0).all():
        raise ValueError(f"{rec.path}: frame times do not increase (repeated frame indices?); a glTF animation "
                         "needs increasing key times")
    return times


def hold_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace rows where ``valid`` is False by the previous valid row (the first valid one before it)."""
    idx = np.where(valid, np.arange(len(valid)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.flatnonzero(valid)[0])
    return values[idx]


class _Blob:
    """One binary buffer with 4-byte aligned views, and the accessors describing it."""

    def __init__(self, gltf: gl.GLTF2):
        self.gltf, self.data = gltf, bytearray()

    def accessor(self, array: np.ndarray, component: int = _FLOAT, target: int | None = None,
                 min_max: bool = False, normalized: bool = False) -> int:
        """Add ``array`` (count, k) or (count,) as an accessor; returns its index."""
        arr = np.ascontiguousarray(array, dtype=_DTYPES[component])
        count = arr.shape[0]
        width = 1 if arr.ndim == 1 else int(np.prod(arr.shape[1:]))
        offset = len(self.data)
        self.data += arr.tobytes()
        self.data += b"\0" * (-len(self.data) % 4)
        view = gl.BufferView(buffer=0, byteOffset=offset, byteLength=arr.nbytes, target=target)
        self.gltf.bufferViews.append(view)
        acc = gl.Accessor(bufferView=len(self.gltf.bufferViews) - 1, componentType=component, count=count,
                          type=_TYPES[width], normalized=normalized or None)
        if min_max:
            flat = arr.reshape(count, width)
            acc.min, acc.max = flat.min(0).tolist(), flat.max(0).tolist()
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1


def morph_ranges(coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, T) morph coefficients -> per-target offset (T,), scale (T,) and (N, T) weights in [0, 1].

    ``coefficient = offset + weight · scale`` with the range spanning the take and 0. Why: Blender
    clamps a shape key to its slider range (0..1 unless widened) and its glTF importer widens the
    range from the first key and the rest weights only, so raw coefficients (often -3..3) would be
    cut. The base mesh moves by ``Σ offset·target`` and the mesh's rest weights ``-offset/scale``
    give back the neutral face.
    """
    low = np.minimum(coeffs.min(0), 0.0)
    span = np.maximum(coeffs.max(0), 0.0) - low
    span = np.where(span > 0, span, 1.0)
    return low, span, np.clip((coeffs - low) / span, 0.0, 1.0)


def _skin_influences(lbs_weights: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """(V, J) weights -> JOINTS_n (V, 4) uint8 and WEIGHTS_n (V, 4) float32 sets; True if truncated."""
    num_v, num_j = lbs_weights.shape
    keep = min(num_j, MAX_INFLUENCES)
    order = np.argsort(-lbs_weights, axis=1, kind="stable")[:, :keep]
    weights = np.take_along_axis(lbs_weights, order, 1).astype(np.float64)
    weights = np.where(weights > 0, weights, 0.0)
    weights /= weights.sum(1, keepdims=True)
    order = np.where(weights > 0, order, 0)  # unused slots: joint 0 with weight 0
    slots = -(-keep // 4) * 4
    joints_all = np.zeros((num_v, slots), np.uint8)
    weights_all = np.zeros((num_v, slots), np.float32)
    joints_all[:, :keep], weights_all[:, :keep] = order, weights
    return ([joints_all[:, i:i + 4] for i in range(0, slots, 4)],
            [weights_all[:, i:i + 4] for i in range(0, slots, 4)], num_j > MAX_INFLUENCES)


def _pose_rotations(rec: Recording, joint_names: tuple[str, ...]) -> np.ndarray:
    """(N, J, 3, 3) joint rotations in the order of ``joint_names`` (the root and unknown joints: I)."""
    aa = np.zeros((len(rec), len(joint_names), 3))
    for j, name in enumerate(joint_names):
        if j > 0 and name in POSE_JOINTS:
            array, col = POSE_JOINTS[name]
            aa[:, j] = getattr(rec, array)[:, col:col + 3]
    return axis_angle_to_matrix(np.asarray(aa, np.float64))


def export_gltf(rec: Recording, head: HeadModel, target: str | Path, overwrite: bool = False,
                progress: Callable[[int, int], None] | None = None) -> GltfExportResult:
    """Write ``rec`` as an animated glTF (``.glb`` binary or ``.gltf`` with an embedded buffer).

    ``head`` must be the recording's model with its coefficient counts (``core.export.resolve_model``).
    Raises ValueError (bad suffix, no posed frame, non-increasing times) and FileExistsError.
    """
    from core.render import vertex_normals  # noqa: PLC0415  (moderngl: only when exporting)

    target = Path(target)
    if target.suffix.lower() not in GLTF_SUFFIXES:
        suffix = target.suffix or "(no suffix)"
        raise ValueError(f"{target}: a glTF file ends in .glb (binary) or .gltf, not {suffix!r}")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose another name or pass --overwrite")
    valid = finite_frames(rec)
    if not valid.any():
        raise ValueError(f"{rec.path}: no frame has a pose (no face in the whole take); nothing to animate")
    steps = 4
    report = progress or (lambda done, total: None)
    result = GltfExportResult(path=target, frames=len(rec), hidden_frame_indices=rec.frame_index[~valid].tolist())
    segment_ids = rec.segment_ids
    per_segment = len(segment_ids) > 1
    if per_segment:
        result.notes.append(f"the take has {len(segment_ids)} segments (shot cuts or other people); each has its "
                            "own identity, as the morph targets identity_segment_K (its last estimate)")
    elif len(rec.identity_frame_index) > 1 and not np.allclose(rec.identity_shape, rec.identity_shape[-1]):
        result.notes.append(
            f"the identity changed {len(rec.identity_frame_index) - 1} times during the take; the glTF mesh uses the "
            f"last one (from frame {int(rec.identity_frame_index[-1])}) for every frame")
    if rec.meta.camera_mode == "ortho":
        result.notes.append("the take was tracked with an orthographic camera; the glTF camera is a perspective "
                            "one with the recorded focal length, so the overlay only approximates the video")
    times = animation_times_s(rec)
    expr = hold_nearest(rec.expr.astype(np.float64), valid)
    rotation = hold_nearest(rec.rotation.astype(np.float64), valid)
    translation_gl = hold_nearest(rec.translation.astype(np.float64), valid) * AXES_CV_TO_GL

    num_shape, num_expr = rec.shape.shape[0], expr.shape[1]
    shape = np.zeros(num_shape) if per_segment else rec.shape.astype(np.float64)
    shapedirs = head.shapedirs[:, :, :num_shape].astype(np.float64)
    v_shaped = head.v_template.astype(np.float64) + np.einsum("vcs,s->vc", shapedirs, shape)
    targets = [head.exprdirs[:, :, k] for k in range(num_expr)]
    names = (list(head.expression_names[:num_expr]) if head.expression_names
             else [f"expr_{k:03d}" for k in range(num_expr)])
    weights = [expr]
    identity_offsets = None  # (K, V, 3) each segment's identity, when the take has several
    if per_segment:
        betas = rec.segment_shape()
        identity_offsets = np.stack([np.einsum("vcs,s->vc", shapedirs, betas[k].astype(np.float64))
                                     for k in segment_ids])
        targets += list(identity_offsets)
        names += [f"identity_segment_{k}" for k in segment_ids]
        weights.append((rec.segment_id[:, None] == np.array(segment_ids)[None]).astype(np.float64))

    gltf = gl.GLTF2(asset=gl.Asset(generator="flamecam", version="2.0"), scene=0)
    blob = _Blob(gltf)
    articulated = head.is_articulated
    if articulated:
        joint_names = tuple(head.joint_names)
        rots = _pose_rotations(rec, joint_names)  # (N, J, 3, 3)
        rots = np.where(valid[:, None, None, None], rots, hold_nearest(rots, valid))
        num_pose = head.posedirs.shape[0]
        pose_dirs = head.posedirs.reshape(num_pose, head.num_vertices, 3)
        targets += [pose_dirs[k] for k in range(num_pose)]
        names += [f"pose_{joint_names[1 + k // 9]}_{k % 9}" for k in range(num_pose)]
        weights.append((rots[:, 1:] - np.eye(3)).reshape(len(rec), -1))  # smplx's pose_feature
        j_reg = head.j_regressor.astype(np.float64)
        joints_bind = j_reg @ v_shaped  # (J, 3)
        joints_expr = np.einsum("jv,vce->jce", j_reg, head.exprdirs[:, :, :num_expr])
        joints = joints_bind + np.einsum("jce,ne->njc", joints_expr, expr)  # (N, J, 3)
        if identity_offsets is not None:  # each frame's joints regressed from its segment's identity
            joints_identity = np.einsum("jv,kvc->kjc", j_reg, identity_offsets)  # (K, J, 3)
            joints = joints + joints_identity[np.searchsorted(np.array(segment_ids), rec.segment_id)]
    coeffs = np.concatenate(weights, 1)  # (N, T): the model's own coefficient of each target
    offset, scale, weights = morph_ranges(coeffs)
    report(1, steps)

    # --- mesh -----------------------------------------------------------------------------------
    normals = vertex_normals(v_shaped.astype(np.float32), head.faces)
    positions = (v_shaped + sum(o * t for o, t in zip(offset, targets) if o)).astype(np.float32)
    bad = ~(np.abs(np.linalg.norm(normals, axis=1) - 1) < 1e-3)
    normals[bad] = (0.0, 0.0, 1.0)  # vertices on no triangle
    attributes = gl.Attributes(POSITION=blob.accessor(positions, target=gl.ARRAY_BUFFER, min_max=True),
                               NORMAL=blob.accessor(normals, target=gl.ARRAY_BUFFER))
    if head.vertex_rgb is not None:
        attributes.COLOR_0 = blob.accessor(np.clip(head.vertex_rgb, 0, 1), target=gl.ARRAY_BUFFER)
    notes_skin = False
    if articulated:
        joint_sets, weight_sets, notes_skin = _skin_influences(head.lbs_weights.astype(np.float64))
        for i, (js, ws) in enumerate(zip(joint_sets, weight_sets)):
            setattr(attributes, f"JOINTS_{i}", blob.accessor(js, _UBYTE, gl.ARRAY_BUFFER))
            setattr(attributes, f"WEIGHTS_{i}", blob.accessor(ws, target=gl.ARRAY_BUFFER))
    if notes_skin:
        result.notes.append(f"vertices keep their {MAX_INFLUENCES} strongest joint weights (of "
                            f"{head.lbs_weights.shape[1]}), renormalised")
    index_type = _USHORT if head.num_vertices <= 65535 else _UINT
    indices = blob.accessor(np.asarray(head.faces).reshape(-1), index_type, gl.ELEMENT_ARRAY_BUFFER)
    morph = [gl.Attributes(POSITION=blob.accessor((t * k).astype(np.float32), target=gl.ARRAY_BUFFER, min_max=True))
             for t, k in zip(targets, scale)]
    gltf.materials.append(gl.Material(
        name="skin", doubleSided=True,
        pbrMetallicRoughness=gl.PbrMetallicRoughness(baseColorFactor=[0.8, 0.8, 0.8, 1.0], metallicFactor=0.0,
                                                     roughnessFactor=0.7)))
    gltf.meshes.append(gl.Mesh(name=head.name, primitives=[gl.Primitive(
        attributes=attributes, indices=indices, material=0, targets=morph, mode=gl.TRIANGLES)],
        weights=(-offset / scale).tolist(),  # the neutral face
        extras={"targetNames": names, "flamecam": {
            "coefficient": "offset + weight * scale, per target (the model's expression coefficient; for pose_* "
                           "targets the element of R_joint - I)",
            "offset": offset.tolist(), "scale": scale.tolist()}}))
    report(2, steps)

    # --- nodes ----------------------------------------------------------------------------------
    first = int(np.flatnonzero(valid)[0])
    quat = sign_continuous(axis_angle_to_quaternion_xyzw(rotation))
    gltf.cameras.append(_camera(rec, valid))
    gltf.nodes.append(gl.Node(name="camera", camera=0))
    scene_nodes = [0]
    anim = gl.Animation(name="take", samplers=[], channels=[])
    time_acc = blob.accessor(times.astype(np.float32), min_max=True)
    scale = np.where(valid, 1.0, 0.0)[:, None].repeat(3, 1)

    def channel(node: int | None, path: str, values: np.ndarray, interpolation: str = "LINEAR",
                pointer: str | None = None) -> None:
        anim.samplers.append(gl.AnimationSampler(input=time_acc, output=blob.accessor(values.astype(np.float32)),
                                                 interpolation=interpolation))
        tgt = gl.AnimationChannelTarget(node=node, path=path)
        if pointer is not None:
            tgt.extensions = {"KHR_animation_pointer": {"pointer": pointer}}
        anim.channels.append(gl.AnimationChannel(sampler=len(anim.samplers) - 1, target=tgt))

    if not articulated:
        gltf.nodes.append(gl.Node(name="head", mesh=0, translation=translation_gl[first].tolist(),
                                  rotation=quat[first].tolist()))
        head_node = mesh_node = 1
        scene_nodes.append(head_node)
        channel(head_node, "translation", translation_gl)
        channel(head_node, "rotation", quat)
    else:
        parents = head.parents
        base = len(gltf.nodes)
        mesh_node = base + len(joint_names)
        for j, name in enumerate(joint_names):
            children = [base + k for k in range(len(joint_names)) if parents[k] == j]
            local = joints_bind[j] - (joints_bind[parents[j]] if j > 0 else 0.0)
            gltf.nodes.append(gl.Node(name=name, translation=local.tolist(), children=children))
        head_node = base
        # root: world = H·T(J^b_0); joint j: T(J_j - J^b_p + R_j (J^b_j - J_j))·R_j (module docstring)
        root_rot = axis_angle_to_matrix(np.asarray(rotation, np.float64))
        root_t = np.einsum("nij,j->ni", root_rot, joints_bind[0]) + translation_gl
        gltf.nodes[head_node].translation = root_t[first].tolist()
        gltf.nodes[head_node].rotation = quat[first].tolist()
        channel(head_node, "translation", root_t)
        channel(head_node, "rotation", quat)
        for j in range(1, len(joint_names)):
            p = parents[j]
            t_local = (joints[:, j] - joints_bind[p]
                       + np.einsum("nik,nk->ni", rots[:, j], joints_bind[j] - joints[:, j]))
            channel(base + j, "translation", t_local)
            q = sign_continuous(matrix_to_quaternion_xyzw(rots[:, j]))
            channel(base + j, "rotation", q)
        ibm = np.tile(np.eye(4), (len(joint_names), 1, 1))
        ibm[:, :3, 3] = -joints_bind
        gltf.skins.append(gl.Skin(name="skeleton", joints=list(range(base, base + len(joint_names))), skeleton=base,
                                  inverseBindMatrices=blob.accessor(ibm.transpose(0, 2, 1).reshape(-1, 16))))
        gltf.nodes.append(gl.Node(name=head.name, mesh=0, skin=0))
        scene_nodes += [head_node, mesh_node]
    channel(head_node, "scale", scale, interpolation="STEP")
    channel(mesh_node, "weights", weights.reshape(-1))
    fy = rec.fy.astype(np.float64)
    yfov = 2 * np.arctan(rec.meta.image_height / (2 * hold_nearest(fy, np.isfinite(fy) & (fy > 0))))
    channel(None, "pointer", yfov, pointer=YFOV_POINTER)
    gltf.extensionsUsed = ["KHR_animation_pointer"]
    gltf.animations.append(anim)
    gltf.scenes.append(gl.Scene(name=Path(str(rec.path)).stem, nodes=scene_nodes))
    gltf.extras = {"flamecam": _scene_extras(rec, valid, times)}
    report(3, steps)

    data = bytes(blob.data)
    gltf.buffers.append(gl.Buffer(byteLength=len(data)))
    if target.suffix.lower() == ".glb":
        gltf.set_binary_blob(data)
        payload = b"".join(gltf.save_to_bytes())
    else:
        gltf.set_binary_blob(data)
        gltf.convert_buffers(gl.BufferFormat.DATAURI)
        payload = gltf.to_json(separators=(",", ":"), indent=None).encode("utf-8")
    write_atomic(target, payload)
    result.size_bytes = len(payload)
    report(4, steps)
    return result


def _camera(rec: Recording, valid: np.ndarray) -> gl.Camera:
    width, height = rec.meta.image_width, rec.meta.image_height
    with_focal = np.flatnonzero(valid & np.isfinite(rec.fy) & (rec.fy > 0))
    if not with_focal.size:
        raise ValueError(f"{rec.path}: no posed frame has a focal length; the glTF camera needs one")
    fy_final = float(rec.fy[with_focal[-1]])
    extras = {"flamecam": {
        "image_size_px": [width, height],
        "yfov_from": "fy of the last posed frame; animated per frame by KHR_animation_pointer",
        "intrinsics_px": {name: _json_floats(getattr(rec, name)) for name in ("fx", "fy", "cx", "cy")},
        "convention": "pixel i covers [i, i+1); glTF has no principal point: in Blender set the lens shift "
                      "shift_x = (W/2 - cx) / max(W, H), shift_y = (cy - H/2) / max(W, H)",
    }}
    return gl.Camera(name="camera", type="perspective", extras=extras,
                     perspective=gl.Perspective(aspectRatio=width / height, yfov=2 * math.atan(height / (2 * fy_final)),
                                                znear=0.01, zfar=100.0))


def _json_floats(values: np.ndarray) -> list[float | None]:
    """Strict JSON: non-finite values as null."""
    return [v if math.isfinite(v) else None for v in np.asarray(values, np.float64).tolist()]


def _scene_extras(rec: Recording, valid: np.ndarray, times: np.ndarray) -> dict:
    meta = rec.meta
    return {
        "recording": str(rec.path), "model_name": meta.model_name, "model_kind": meta.model_kind,
        "model_sha256": meta.model_sha256, "frame_rate_hz": meta.frame_rate_hz,
        "image_size_px": [meta.image_width, meta.image_height],
        "frame_index": rec.frame_index.tolist(), "time_s": [round(t, 6) for t in times.tolist()],
        "hidden_frame_index": rec.frame_index[~valid].tolist(),
        "world": "the camera's OpenGL frame: camera at the origin looking down -Z, +Y up; flamecam camera "
                 "space (OpenCV) = diag(1, -1, -1) · world",
    }
