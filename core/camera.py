"""Camera models and camera math: the single home of every projection and placement formula.

Array-agnostic: each function takes numpy arrays or torch tensors (batched over any leading
dimensions ``...``) and returns the same kind, so the tracker and training (torch), and the
calibration, renderer, viewer and exporters (numpy) share one implementation. Plain Python
numbers count as numpy. torch is imported only when a tensor is passed, so the GUI and other
numpy callers never load it through this module.

Conventions (used everywhere in flamecam):

* **Model space** (head models): metres, +x to the subject's left, +y up, +z out of the face.
* **Camera space**: OpenCV, metres, +x right, +y down, +z forward (depth). A head with zero
  rotation faces the camera: ``X_cam = F @ (R @ X_model) + t`` with the axis flip
  ``F = diag(AXIS_FLIP) = diag(1, -1, -1)`` (its own inverse).
* **Pixels**: pixel ``i`` covers ``[i, i+1)``, so the image centre is ``(W/2, H/2)``; this
  matches MediaPipe's normalised coordinates times the image size and OpenGL rasterisation.
  OpenCV puts pixel centres on integers: :func:`opencv_camera_matrix` and
  :func:`intrinsics_from_opencv` convert (±0.5 on the principal point).
* **Intrinsics** are ``(..., 4) = (fx, fy, cx, cy)`` in pixels.
* **Head centre**: a model-space point between the eyes (``HeadModel.head_center``); its depth
  ``Z0`` defines ``ρ = 1/Z0`` and the placement helpers below.

Pseudo-perspective (Chong & Nakajima 2026): with ``x, y, z`` a posed model point relative to
the head centre, in camera axes, ``u = (S·x + o) / (1 + ρ·z) + c``. Matching it to perspective
with the head centre at ``(X0, Y0, Z0)`` gives ``S = f/Z0``, ``ρ = 1/Z0`` and ``o = S·X0``;
``ρ = 0`` is weak perspective (orthographic with scale).
"""
from __future__ import annotations

import numpy as np

# Diagonal of the model -> camera axis change: model +y up / +z out of the face become OpenCV's
# +y down / +z forward.
AXIS_FLIP = (1.0, -1.0, -1.0)


# --- array plumbing ------------------------------------------------------------------------


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _xp(*arrays):
    """The array module of the first torch tensor among ``arrays`` (torch), else numpy."""
    for a in arrays:
        if _is_torch(a):
            import torch  # noqa: PLC0415

            return torch
    return np


def _as_array(x, like=None):
    """``x`` as an array of ``like``'s kind, dtype and device (numpy float64 without ``like``)."""
    if like is not None and _is_torch(like):
        import torch  # noqa: PLC0415

        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if _is_torch(x):
        return x
    return np.asarray(x, dtype=np.float64 if like is None else np.result_type(like, np.float32))


def _stack(xp, parts, axis=-1):
    return xp.stack(parts, axis) if xp is np else xp.stack(parts, dim=axis)


def _cat(xp, parts, axis=-1):
    return xp.concatenate(parts, axis) if xp is np else xp.cat(parts, dim=axis)


def _unbind(x):
    return [x[..., i] for i in range(x.shape[-1])]


def _transpose(m):
    return m.swapaxes(-1, -2) if isinstance(m, np.ndarray) else m.transpose(-1, -2)


def axis_flip(like=None):
    """(3,) the axis flip as an array of ``like``'s kind (numpy float64 by default)."""
    return _as_array(AXIS_FLIP, like)


def axes_model_to_camera(like=None):
    """(3, 3) ``diag(AXIS_FLIP)`` as an array of ``like``'s kind."""
    xp = _xp(like)
    flip = axis_flip(like)
    return xp.diag(flip)


def flip_axes(points):
    """Model axes <-> camera axes (the flip is its own inverse). (..., 3) -> (..., 3)."""
    return points * axis_flip(points)


# --- rotations ---------------------------------------------------------------------------


def skew(v):
    """(..., 3) -> (..., 3, 3) cross-product matrices ``[v]x``."""
    xp = _xp(v)
    x, y, z = _unbind(v)
    zero = x * 0
    rows = [zero, -z, y, z, zero, -x, -y, x, zero]
    return _stack(xp, rows).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(axis_angle):
    """Rodrigues. axis_angle: (..., 3) radians -> (..., 3, 3); exact and smooth near zero."""
    xp = _xp(axis_angle)
    aa = _as_array(axis_angle) if xp is np else axis_angle
    theta2 = (aa * aa).sum(-1)[..., None, None]
    small = theta2 < 1e-12
    safe2 = xp.where(small, xp.ones_like(theta2), theta2)
    safe = xp.sqrt(safe2)
    a = xp.where(small, 1 - theta2 / 6, xp.sin(safe) / safe)  # sin θ / θ
    b = xp.where(small, 0.5 - theta2 / 24, (1 - xp.cos(safe)) / safe2)  # (1 - cos θ) / θ²
    k = skew(aa)
    eye = xp.eye(3, dtype=k.dtype) if xp is np else xp.eye(3, dtype=k.dtype, device=k.device)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(rotation):
    """Inverse of :func:`axis_angle_to_matrix`. rotation: (..., 3, 3) -> (..., 3), angle in [0, π].

    Goes through a unit quaternion (Shepperd's best-conditioned candidate), accurate near 0 and π.
    """
    xp = _xp(rotation)
    m = _as_array(rotation) if xp is np else rotation
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = _stack(xp, [
        _stack(xp, [1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]]),
        _stack(xp, [m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                    m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]]),
        _stack(xp, [m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                    1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]]),
        _stack(xp, [m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                    1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]]),
    ], -2)  # (..., 4, 4): row k is 4·q_k·q (w, x, y, z)
    diag = _stack(xp, [1 + trace, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                       1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]])
    best = diag.argmax(-1)
    if xp is np:
        quat = np.take_along_axis(cands, best[..., None, None].repeat(4, -1), -2)[..., 0, :]
        quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    else:
        quat = xp.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
        quat = quat / quat.norm(dim=-1, keepdim=True)
    quat = xp.where(quat[..., :1] < 0, -quat, quat)  # w >= 0 -> angle in [0, π]
    vec = quat[..., 1:]
    sin_half = xp.sqrt((vec * vec).sum(-1))[..., None]
    angle = 2 * xp.arctan2(sin_half, quat[..., :1])
    # angle/sin(angle/2) -> 2 as the angle -> 0
    safe = xp.where(sin_half > 1e-7, sin_half, xp.ones_like(sin_half))
    factor = xp.where(sin_half > 1e-7, angle / safe, 2 * xp.ones_like(angle))
    return vec * factor


def euler_to_axis_angle(yaw_rad, pitch_rad, roll_rad):
    """Head angles about model y (yaw), x (pitch), z (roll), ``R = Ry·Rx·Rz`` -> (..., 3) axis-angle.
    Each angle: a scalar or (...,) radians (numpy or torch)."""
    xp = _xp(yaw_rad, pitch_rad, roll_rad)
    angles = [_as_array(a) if xp is np else a for a in (yaw_rad, pitch_rad, roll_rad)]
    like = angles[0]
    zero = like * 0

    def about(axis: int, angle):
        parts = [zero, zero, zero]
        parts[axis] = angle
        return axis_angle_to_matrix(_stack(xp, parts))

    return matrix_to_axis_angle(about(1, angles[0]) @ about(0, angles[1]) @ about(2, angles[2]))


def axis_angle_to_quaternion_xyzw(axis_angle):
    """(..., 3) axis-angle (radians) -> (..., 4) unit quaternion (x, y, z, w): glTF's and Unity's order.
    ``sin(θ/2)/θ`` as ``0.5·sinc(θ/2π)`` stays exact near θ = 0."""
    xp = _xp(axis_angle)
    aa = _as_array(axis_angle) if xp is np else axis_angle
    angle = xp.sqrt((aa * aa).sum(-1))[..., None]
    return _cat(xp, [aa * 0.5 * xp.sinc(angle / (2 * np.pi)), xp.cos(angle / 2)])


def matrix_to_quaternion_xyzw(rotation):
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w)."""
    return axis_angle_to_quaternion_xyzw(matrix_to_axis_angle(rotation))


def rotation_model_to_camera(rotation_aa):
    """(..., 3) head rotation -> (..., 3, 3) full model-to-camera rotation ``F @ R`` (with the axis flip)."""
    rot = axis_angle_to_matrix(rotation_aa)
    return axis_flip(rot)[:, None] * rot


# --- rigid placement ----------------------------------------------------------------------


def model_to_camera(points_model, translation_m, rotation_aa=None):
    """Place model-space points in camera space: ``X_cam = F @ (R @ X) + t``.

    points_model: (..., N, 3) metres (already posed by the head model, or rotated here by
    ``rotation_aa``: (..., 3)); translation_m: (..., 3) camera-space position of the model
    origin. Returns (..., N, 3).
    """
    pts = points_model
    if rotation_aa is not None:
        pts = pts @ _transpose(axis_angle_to_matrix(rotation_aa))
    return flip_axes(pts) + translation_m[..., None, :]


def head_center_cam(head_center_model, rotation_matrix, translation_m):
    """Camera-space head centre ``F @ (R @ c) + t``. head_center_model: (3,); rotation_matrix:
    (..., 3, 3) model-space head rotation R; translation_m: (..., 3) -> (..., 3)."""
    c = _as_array(head_center_model, rotation_matrix)
    return flip_axes((rotation_matrix @ c[..., None])[..., 0]) + translation_m


def translation_for_center(head_center_model, rotation_matrix, center_cam):
    """Camera-space translation placing the head centre at ``center_cam`` (inverse of
    :func:`head_center_cam`). head_center_model: (3,); rotation_matrix: (..., 3, 3); center_cam:
    (..., 3) -> (..., 3)."""
    c = _as_array(head_center_model, rotation_matrix)
    return center_cam - flip_axes((rotation_matrix @ c[..., None])[..., 0])


def rho_from_depth(depth_m):
    """ρ = 1/Z0 (1/m) for a camera-to-head distance Z0 in metres."""
    return 1.0 / _as_array(depth_m) if not _is_torch(depth_m) else 1.0 / depth_m


# --- intrinsics ---------------------------------------------------------------------------


def intrinsics_matrix(intrinsics):
    """(..., 4) (fx, fy, cx, cy) -> (..., 3, 3) K (flamecam's pixel convention)."""
    xp = _xp(intrinsics)
    intr = _as_array(intrinsics) if xp is np else intrinsics
    fx, fy, cx, cy = _unbind(intr)
    zero, one = fx * 0, fx * 0 + 1
    return _stack(xp, [fx, zero, cx, zero, fy, cy, zero, zero, one]).reshape(*intr.shape[:-1], 3, 3)


def intrinsics_from_matrix(k_matrix):
    """(..., 3, 3) K -> (..., 4) (fx, fy, cx, cy). Skew is ignored."""
    xp = _xp(k_matrix)
    k = _as_array(k_matrix) if xp is np else k_matrix
    return _stack(xp, [k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2]])


def opencv_camera_matrix(intrinsics):
    """flamecam (..., 4) intrinsics -> OpenCV's (..., 3, 3) K (pixel centres on integers: c - 0.5)."""
    k = intrinsics_matrix(intrinsics)
    k[..., 0, 2] -= 0.5
    k[..., 1, 2] -= 0.5
    return k


def intrinsics_from_opencv(k_matrix):
    """OpenCV's (..., 3, 3) K -> flamecam (..., 4) (fx, fy, cx + 0.5, cy + 0.5; skew ignored)."""
    intr = intrinsics_from_matrix(k_matrix)
    intr[..., 2:] += 0.5
    return intr


def default_intrinsics(focal_px, width: int, height: int):
    """Square pixels, principal point at the image centre. focal_px: scalar or (...,) -> (..., 4)."""
    xp = _xp(focal_px)
    f = _as_array(focal_px) if xp is np else focal_px
    return _stack(xp, [f, f, f * 0 + width / 2.0, f * 0 + height / 2.0])


def focal_to_fov_deg(focal_px, size_px: float):
    """Field of view (degrees) across ``size_px`` pixels for a focal length in pixels."""
    xp = _xp(focal_px)
    f = _as_array(focal_px) if xp is np else focal_px
    return xp.rad2deg(2 * xp.arctan((size_px / 2.0) / f))


def fov_deg_to_focal(fov_deg, size_px: float):
    """Inverse of :func:`focal_to_fov_deg`."""
    xp = _xp(fov_deg)
    fov = _as_array(fov_deg) if xp is np else fov_deg
    return (size_px / 2.0) / xp.tan(xp.deg2rad(fov) / 2)


def resize_intrinsics(intrinsics, scale_x: float, scale_y: float | None = None):
    """Intrinsics after resizing the image by (scale_x, scale_y). (..., 4) -> (..., 4)."""
    scale_y = scale_x if scale_y is None else scale_y
    intr = _as_array(intrinsics) if not _is_torch(intrinsics) else intrinsics
    return intr * _as_array([scale_x, scale_y, scale_x, scale_y], intr)


def crop_intrinsics(intrinsics, box, out_size: tuple[int, int]):
    """Intrinsics of the crop ``box`` resampled to ``out_size``.

    intrinsics: (..., 4); box: (..., 4) = (x0, y0, width, height) in pixels of the full image;
    out_size: (W, H) of the crop image. Returns (..., 4). :func:`uncrop_intrinsics` inverts it.
    """
    xp = _xp(intrinsics, box)
    x0, y0, w, h = _unbind(box)
    sx, sy = out_size[0] / w, out_size[1] / h
    fx, fy, cx, cy = _unbind(intrinsics)
    return _stack(xp, [fx * sx, fy * sy, (cx - x0) * sx, (cy - y0) * sy])


def uncrop_intrinsics(crop_intr, box, out_size: tuple[int, int]):
    """Full-image intrinsics from those of a crop (inverse of :func:`crop_intrinsics`)."""
    xp = _xp(crop_intr, box)
    x0, y0, w, h = _unbind(box)
    sx, sy = out_size[0] / w, out_size[1] / h
    fx, fy, cx, cy = _unbind(crop_intr)
    return _stack(xp, [fx / sx, fy / sy, cx / sx + x0, cy / sy + y0])


def _crop_scale(box, out_size):
    xp = _xp(box)
    return _stack(xp, [out_size[0] / box[..., 2], out_size[1] / box[..., 3]])


def crop_points(points_px, box, out_size: tuple[int, int]):
    """Pixel coordinates (..., N, 2) of the full image -> those of the crop (see :func:`crop_intrinsics`)."""
    return (points_px - box[..., None, :2]) * _crop_scale(box, out_size)[..., None, :]


def uncrop_points(points_px, box, out_size: tuple[int, int]):
    """Inverse of :func:`crop_points`."""
    return points_px / _crop_scale(box, out_size)[..., None, :] + box[..., None, :2]


# --- projections --------------------------------------------------------------------------


def project_perspective(points_cam, intrinsics):
    """Pinhole projection ``u = fx·X/Z + cx``. points_cam: (..., N, 3); intrinsics: (..., 4) -> (..., N, 2)."""
    xp = _xp(points_cam, intrinsics)
    intr = _as_array(intrinsics, points_cam)
    fx, fy, cx, cy = (v[..., None] for v in _unbind(intr))
    z = points_cam[..., 2]
    return _stack(xp, [fx * points_cam[..., 0] / z + cx, fy * points_cam[..., 1] / z + cy])


def pixels_to_rays(points_px, intrinsics):
    """Normalised image coordinates ``((u - cx)/fx, (v - cy)/fy)``: the ray through each pixel at
    depth 1. points_px: (..., N, 2); intrinsics: (..., 4) -> (..., N, 2)."""
    xp = _xp(points_px, intrinsics)
    intr = _as_array(intrinsics, points_px)
    fx, fy, cx, cy = (v[..., None] for v in _unbind(intr))
    return _stack(xp, [(points_px[..., 0] - cx) / fx, (points_px[..., 1] - cy) / fy])


def backproject(points_px, depth_m, intrinsics):
    """Camera-space points at the given depths along the pixels' rays (inverse of
    :func:`project_perspective`). points_px: (..., N, 2); depth_m: (..., N); intrinsics: (..., 4)
    -> (..., N, 3)."""
    xp = _xp(points_px, depth_m, intrinsics)
    rays = pixels_to_rays(points_px, intrinsics)
    depth = _as_array(depth_m, rays)
    return _cat(xp, [rays * depth[..., None], depth[..., None]])


def project_weak_perspective(points_rel, scale, offset_px, principal_px):
    """Orthographic projection with scale: ``u = S·x + o + c``.

    points_rel: (..., N, 3) posed points relative to the head centre, camera axes;
    scale: (..., 2) pixels per metre (Sx, Sy); offset_px, principal_px: (..., 2). -> (..., N, 2).
    """
    return points_rel[..., :2] * scale[..., None, :] + (offset_px + principal_px)[..., None, :]


def project_pseudo_perspective(points_rel, scale, rho_per_m, offset_px, principal_px):
    """Pseudo-perspective ``u = (S·x + o) / (1 + ρ·z) + c`` (Chong & Nakajima 2026).

    points_rel: (..., N, 3) as in :func:`project_weak_perspective`; rho_per_m: (...,) in 1/m.
    ρ = 0 reduces exactly to weak perspective.
    """
    denom = 1 + rho_per_m[..., None, None] * points_rel[..., 2:3]
    return (points_rel[..., :2] * scale[..., None, :] + offset_px[..., None, :]) / denom + principal_px[..., None, :]


def perspective_to_pseudo(intrinsics, center_cam) -> dict:
    """Pseudo-perspective parameters equal to a perspective camera.

    intrinsics: (..., 4); center_cam: (..., 3) camera-space head centre (X0, Y0, Z0).
    Returns scale (..., 2) = f/Z0, rho_per_m (...,) = 1/Z0, offset_px (..., 2) = S·(X0, Y0),
    principal_px (..., 2).
    """
    focal, principal = intrinsics[..., :2], intrinsics[..., 2:]
    depth = center_cam[..., 2:3]
    scale = focal / depth
    return {"scale": scale, "rho_per_m": 1.0 / depth[..., 0], "offset_px": scale * center_cam[..., :2],
            "principal_px": principal}


def pseudo_to_perspective(scale, rho_per_m, offset_px, principal_px):
    """Inverse of :func:`perspective_to_pseudo` for ρ > 0 -> (intrinsics (..., 4), center_cam (..., 3))."""
    xp = _xp(scale, rho_per_m, offset_px, principal_px)
    depth = 1.0 / rho_per_m
    focal = scale * depth[..., None]
    center_xy = offset_px / scale
    return _cat(xp, [focal, principal_px]), _cat(xp, [center_xy, depth[..., None]])


def opengl_projection(intrinsics, width: int, height: int, near_m: float = 0.01, far_m: float = 100.0,
                      first_row_is_top: bool = True) -> np.ndarray:
    """OpenGL clip matrix for OpenCV camera-space points, exactly matching :func:`project_perspective`.

    intrinsics: (4,) -> (4, 4) numpy float32, row-major (transpose before uploading to column-major
    GL). ``first_row_is_top``: framebuffer row 0 (what ``glReadPixels`` returns first) holds image
    row 0, right for offscreen read-back; pass False when drawing to a window, whose row 0 is at the
    bottom. Either way the winding of front faces flips with the sign, so the renderer does not cull.
    """
    fx, fy, cx, cy = (float(v) for v in (intrinsics.tolist() if hasattr(intrinsics, "tolist") else intrinsics))
    a = (far_m + near_m) / (far_m - near_m)
    b = -2 * far_m * near_m / (far_m - near_m)
    sign = 1.0 if first_row_is_top else -1.0
    return np.array([
        [2 * fx / width, 0.0, 2 * cx / width - 1, 0.0],
        [0.0, sign * 2 * fy / height, sign * (2 * cy / height - 1), 0.0],
        [0.0, 0.0, a, b],
        [0.0, 0.0, 1.0, 0.0],
    ], dtype=np.float32)

