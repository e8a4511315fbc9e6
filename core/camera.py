"""Camera models: full perspective, weak perspective and pseudo-perspective (rho).

One implementation of each formula, shared by the tracker, the renderer, training and
the benchmarks. Pure torch functions, batched over any leading dimensions ``...``.

Conventions (used everywhere in flamecam):

* **Model space** (head models): metres, +x to the subject's left, +y up, +z out of the face.
* **Camera space**: OpenCV, metres, +x right, +y down, +z forward (depth). A head with zero
  rotation faces the camera: ``X_cam = AXES_MODEL_TO_CAMERA @ (R @ X_model) + t``.
* **Pixels**: pixel ``i`` covers ``[i, i+1)``, so the image centre is ``(W/2, H/2)``; this
  matches MediaPipe's normalised coordinates times the image size and OpenGL rasterisation.
  OpenCV calibrations put pixel centres on integers: add 0.5 to their ``cx, cy``.
* **Intrinsics** are a tensor ``(..., 4) = (fx, fy, cx, cy)`` in pixels.

Pseudo-perspective (Chong & Nakajima 2026): with ``x, y, z`` a posed model point relative to
the head centre, in camera axes, ``u = (S·x + o) / (1 + ρ·z) + c``. Matching it to perspective
with the head centre at ``(X0, Y0, Z0)`` gives ``S = f/Z0``, ``ρ = 1/Z0`` and ``o = S·X0``;
``ρ = 0`` is weak perspective (orthographic with scale).
"""
from __future__ import annotations

import torch
from smplx.lbs import batch_rodrigues

# Flips model +y up / +z out of the face into OpenCV's +y down / +z forward.
AXES_MODEL_TO_CAMERA = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


def _axes(like: torch.Tensor) -> torch.Tensor:
    return AXES_MODEL_TO_CAMERA.to(dtype=like.dtype, device=like.device)


# --- rotations ---------------------------------------------------------------------------


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues (smplx's implementation). axis_angle: (..., 3) radians -> (..., 3, 3)."""
    flat = axis_angle.reshape(-1, 3)
    return batch_rodrigues(flat).reshape(*axis_angle.shape[:-1], 3, 3)


def matrix_to_axis_angle(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_matrix`. rotation: (..., 3, 3) -> (..., 3), angle in [0, π].

    Goes through a unit quaternion, which stays accurate near 0 and π.
    """
    m = rotation
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate quaternions (Shepperd); keep the best-conditioned one per matrix.
    cands = torch.stack(
        [
            torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
        ],
        -2,
    )  # (..., 4, 4): row k has 4·q_k·q (w, x, y, z)
    diag = torch.stack([1 + trace, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = diag.argmax(-1)
    quat = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)  # w >= 0 -> angle in [0, π]
    sin_half = quat[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, quat[..., :1])
    # angle/sin(angle/2) -> 2 as the angle -> 0
    factor = torch.where(sin_half > 1e-7, angle / sin_half.clamp_min(1e-12), torch.full_like(angle, 2.0))
    return quat[..., 1:] * factor


# --- rigid placement ----------------------------------------------------------------------


def model_to_camera(points_model: torch.Tensor, translation_m: torch.Tensor,
                    rotation_aa: torch.Tensor | None = None) -> torch.Tensor:
    """Place model-space points in camera space: ``X_cam = AXES @ (R @ X) + t``.

    points_model: (..., N, 3) metres (already posed by the head model, or rotated here by
    ``rotation_aa``: (..., 3)); translation_m: (..., 3) camera-space position of the model
    origin. Returns (..., N, 3).
    """
    rot = _axes(points_model)
    if rotation_aa is not None:
        rot = rot @ axis_angle_to_matrix(rotation_aa)
    return points_model @ rot.transpose(-1, -2) + translation_m[..., None, :]


def rotation_model_to_camera(rotation_aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) head rotation -> (..., 3, 3) full model-to-camera rotation (with the axis flip)."""
    return _axes(rotation_aa) @ axis_angle_to_matrix(rotation_aa)


def translation_for_head_center(rotation_aa: torch.Tensor, center_cam: torch.Tensor,
                                head_center_model: torch.Tensor) -> torch.Tensor:
    """Translation placing a head's model-space ``head_center_model`` (3,) at ``center_cam`` (..., 3)
    under rotation ``rotation_aa`` (..., 3): ``t = c - AXES @ R @ h``. -> (..., 3)."""
    rot = rotation_model_to_camera(rotation_aa)
    return center_cam - (rot @ head_center_model.to(rot)[..., None])[..., 0]


# --- intrinsics ---------------------------------------------------------------------------


def intrinsics_matrix(intrinsics: torch.Tensor) -> torch.Tensor:
    """(..., 4) (fx, fy, cx, cy) -> (..., 3, 3) K."""
    fx, fy, cx, cy = intrinsics.unbind(-1)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, zero, cx, zero, fy, cy, zero, zero, one], -1).reshape(*intrinsics.shape[:-1], 3, 3)


def intrinsics_from_matrix(k_matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) K -> (..., 4) (fx, fy, cx, cy). Skew is ignored."""
    return torch.stack([k_matrix[..., 0, 0], k_matrix[..., 1, 1], k_matrix[..., 0, 2], k_matrix[..., 1, 2]], -1)


def default_intrinsics(focal_px: float | torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Square pixels, principal point at the image centre. focal_px: scalar or (...,) -> (..., 4)."""
    f = torch.as_tensor(focal_px, dtype=torch.float32)
    return torch.stack([f, f, torch.full_like(f, width / 2.0), torch.full_like(f, height / 2.0)], -1)


def focal_to_fov_deg(focal_px: torch.Tensor | float, size_px: float) -> torch.Tensor:
    """Field of view (degrees) across ``size_px`` pixels for a focal length in pixels."""
    return torch.rad2deg(2 * torch.atan(torch.as_tensor(size_px / 2.0) / torch.as_tensor(focal_px)))


def fov_deg_to_focal(fov_deg: torch.Tensor | float, size_px: float) -> torch.Tensor:
    """Inverse of :func:`focal_to_fov_deg`."""
    return (size_px / 2.0) / torch.tan(torch.deg2rad(torch.as_tensor(fov_deg, dtype=torch.float64)) / 2)


def resize_intrinsics(intrinsics: torch.Tensor, scale_x: float, scale_y: float | None = None) -> torch.Tensor:
    """Intrinsics after resizing the image by (scale_x, scale_y). (..., 4) -> (..., 4)."""
    scale_y = scale_x if scale_y is None else scale_y
    s = intrinsics.new_tensor([scale_x, scale_y, scale_x, scale_y])
    return intrinsics * s


def crop_intrinsics(intrinsics: torch.Tensor, box: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Intrinsics of the crop ``box`` resampled to ``out_size``.

    intrinsics: (..., 4); box: (..., 4) = (x0, y0, width, height) in pixels of the full image;
    out_size: (W, H) of the crop image. Returns (..., 4). :func:`uncrop_intrinsics` inverts it.
    """
    x0, y0, w, h = box.unbind(-1)
    sx, sy = out_size[0] / w, out_size[1] / h
    fx, fy, cx, cy = intrinsics.unbind(-1)
    return torch.stack([fx * sx, fy * sy, (cx - x0) * sx, (cy - y0) * sy], -1)


def uncrop_intrinsics(crop_intr: torch.Tensor, box: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Full-image intrinsics from those of a crop (inverse of :func:`crop_intrinsics`)."""
    x0, y0, w, h = box.unbind(-1)
    sx, sy = out_size[0] / w, out_size[1] / h
    fx, fy, cx, cy = crop_intr.unbind(-1)
    return torch.stack([fx / sx, fy / sy, cx / sx + x0, cy / sy + y0], -1)


def crop_points(points_px: torch.Tensor, box: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Pixel coordinates (..., N, 2) of the full image -> those of the crop (see :func:`crop_intrinsics`)."""
    scale = torch.stack([out_size[0] / box[..., 2], out_size[1] / box[..., 3]], -1)
    return (points_px - box[..., None, :2]) * scale[..., None, :]


def uncrop_points(points_px: torch.Tensor, box: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`crop_points`."""
    scale = torch.stack([out_size[0] / box[..., 2], out_size[1] / box[..., 3]], -1)
    return points_px / scale[..., None, :] + box[..., None, :2]


# --- projections --------------------------------------------------------------------------


def project_perspective(points_cam: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Pinhole projection ``u = fx·X/Z + cx``. points_cam: (..., N, 3); intrinsics: (..., 4) -> (..., N, 2)."""
    fx, fy, cx, cy = (v[..., None] for v in intrinsics.unbind(-1))
    z = points_cam[..., 2]
    return torch.stack([fx * points_cam[..., 0] / z + cx, fy * points_cam[..., 1] / z + cy], -1)


def project_weak_perspective(points_rel: torch.Tensor, scale: torch.Tensor, offset_px: torch.Tensor,
                             principal_px: torch.Tensor) -> torch.Tensor:
    """Orthographic projection with scale: ``u = S·x + o + c``.

    points_rel: (..., N, 3) posed points relative to the head centre, camera axes;
    scale: (..., 2) pixels per metre (Sx, Sy); offset_px, principal_px: (..., 2). -> (..., N, 2).
    """
    return points_rel[..., :2] * scale[..., None, :] + (offset_px + principal_px)[..., None, :]


def project_pseudo_perspective(points_rel: torch.Tensor, scale: torch.Tensor, rho_per_m: torch.Tensor,
                               offset_px: torch.Tensor, principal_px: torch.Tensor) -> torch.Tensor:
    """Pseudo-perspective ``u = (S·x + o) / (1 + ρ·z) + c`` (Chong & Nakajima 2026).

    points_rel: (..., N, 3) as in :func:`project_weak_perspective`; rho_per_m: (...,) in 1/m.
    ρ = 0 reduces exactly to weak perspective.
    """
    denom = 1 + rho_per_m[..., None, None] * points_rel[..., 2:3]
    return (points_rel[..., :2] * scale[..., None, :] + offset_px[..., None, :]) / denom + principal_px[..., None, :]


def perspective_to_pseudo(intrinsics: torch.Tensor, center_cam: torch.Tensor) -> dict[str, torch.Tensor]:
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


def pseudo_to_perspective(scale: torch.Tensor, rho_per_m: torch.Tensor, offset_px: torch.Tensor,
                          principal_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`perspective_to_pseudo` for ρ > 0 -> (intrinsics (..., 4), center_cam (..., 3))."""
    depth = 1.0 / rho_per_m
    focal = scale * depth[..., None]
    center_xy = offset_px / scale
    return torch.cat([focal, principal_px], -1), torch.cat([center_xy, depth[..., None]], -1)


def rho_from_depth(depth_m: torch.Tensor | float) -> torch.Tensor:
    """ρ = 1/Z0 (1/m) for a camera-to-head distance Z0 in metres."""
    return 1.0 / torch.as_tensor(depth_m)


def opengl_projection(intrinsics: torch.Tensor, width: int, height: int, near_m: float = 0.01,
                      far_m: float = 100.0, first_row_is_top: bool = True) -> torch.Tensor:
    """OpenGL clip matrix for OpenCV camera-space points, exactly matching :func:`project_perspective`.

    intrinsics: (4,) -> (4, 4), row-major (transpose before uploading to column-major GL).
    ``first_row_is_top``: framebuffer row 0 (what ``glReadPixels`` returns first) holds image row 0,
    right for offscreen read-back; pass False when drawing to a window, whose row 0 is at the bottom.
    Either way the winding of front faces flips with the sign, so the renderer does not cull.
    """
    fx, fy, cx, cy = intrinsics.double().tolist()
    a = (far_m + near_m) / (far_m - near_m)
    b = -2 * far_m * near_m / (far_m - near_m)
    sign = 1.0 if first_row_is_top else -1.0
    return torch.tensor([
        [2 * fx / width, 0.0, 2 * cx / width - 1, 0.0],
        [0.0, sign * 2 * fy / height, sign * (2 * cy / height - 1), 0.0],
        [0.0, 0.0, a, b],
        [0.0, 0.0, 1.0, 0.0],
    ], dtype=torch.float32)

