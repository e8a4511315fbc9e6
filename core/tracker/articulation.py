"""Derivatives of smplx's linear blend skinning with respect to joint poses (axis-angle).

smplx's ``lbs`` stays the forward pass; this module only differentiates it, exactly, for the
tracker's jaw and eye columns. In smplx's terms, with joint rotations ``R_j = exp([θ_j]x)``:

    p_u = s_u + Σ_{j ≥ 1} P_uj · vec(R_j - I)            (pose-corrective blend shapes)
    v_u = Σ_m w_um · A_m(p_u),   A_m(x) = Rw_m (x - J_m) + Jw_m

where ``s_u`` is the vertex with identity and expression, ``w`` the skinning weights, ``Rw_m``
and ``Jw_m`` joint m's world rotation and posed position (the kinematic chain), ``J_m`` its rest
position. The pose θ_k of joint k moves a vertex in two ways:

* its correctives: ``Σ_m w_um Rw_m · P_uk · vec(∂R_k/∂θ_k)``;
* the chain: every joint m in k's subtree turns about Jw_k. With ``∂R/∂θ_i = [J(θ) e_i]x R``
  (``J`` the left Jacobian of SO(3)), ``∂A_m(p)/∂θ_k,i = g_i × (A_m(p) - Jw_k)`` where
  ``g_i = Rw_parent(k) J(θ_k) e_i``, so the chain term is ``-[y_uk]x G_k`` with
  ``y_uk = Σ_{m in subtree(k)} w_um (A_m(p_u) - Jw_k)`` and ``G_k = Rw_parent(k) J(θ_k)``.

Pure functions (torch; the per-joint 3x3 algebra in numpy); ``tests/test_tracker_residuals.py``
checks them against central differences through smplx's ``lbs``.
"""
from __future__ import annotations

import numpy as np
import torch

from core.camera import skew


def so3_left_jacobian(axis_angle):
    """Left Jacobian of SO(3): ``exp(θ + δ) ≈ exp([J(θ) δ]x) exp(θ)``. axis_angle: (..., 3) -> (..., 3, 3),
    numpy or torch.

    ``J = I + (1 - cos a)/a² [θ]x + (a - sin a)/a³ [θ]x²`` with a = |θ|; series below a = 1e-4.
    """
    xp = np if isinstance(axis_angle, np.ndarray) else torch
    theta2 = (axis_angle * axis_angle).sum(-1)[..., None, None]
    small = theta2 < 1e-8
    safe2 = xp.where(small, xp.ones_like(theta2), theta2)
    safe = xp.sqrt(safe2)
    b = xp.where(small, 0.5 - theta2 / 24, (1 - xp.cos(safe)) / safe2)
    c = xp.where(small, 1.0 / 6 - theta2 / 120, (safe - xp.sin(safe)) / (safe2 * safe))
    k = skew(axis_angle)
    eye = np.eye(3) if xp is np else torch.eye(3, dtype=k.dtype, device=k.device)
    return eye + b * k + c * (k @ k)


def rotation_derivatives(left_jacobian, rotation):
    """∂R/∂θ_i = [J e_i]x R of ``R = exp([θ]x)``, J = :func:`so3_left_jacobian` (θ).
    left_jacobian, rotation: (K, 3, 3) numpy or torch -> (K, 3 (i), 3, 3)."""
    return skew(left_jacobian.swapaxes(-1, -2)) @ rotation[:, None]


def pose_generators(axis_angles: np.ndarray, rot_mats: np.ndarray, rot_world: np.ndarray, joints: list[int],
                    parents: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The per-joint 3x3 algebra of :func:`lbs_pose_jacobian` (numpy: on a CPU these few tiny
    products cost a third of what torch's per-operation overhead makes them cost).

    axis_angles: (J, 3); rot_mats: (J, 3, 3) local rotations; rot_world: (J, 3, 3) world rotations.
    Returns ``cross`` (K, 9, 3): rows (a, i) of ``[g_i]x`` with g_i = Rw_parent(k) J(θ_k) e_i, so that
    ``cross @ y`` is g_i x y; and ``d_rot`` (K, 3, 9): ∂R_k/∂θ_k,i flattened row-major.
    """
    left = so3_left_jacobian(axis_angles[joints])
    # World rotation of each joint's parent; the root's parent is the model frame (the identity).
    parent_rot = np.stack([rot_world[parents[k]] if parents[k] >= 0 else np.eye(3) for k in joints])
    generators = (parent_rot @ left).swapaxes(-1, -2)  # (K, i, 3)
    cross = skew(generators).transpose(0, 2, 1, 3).reshape(len(joints), 9, 3)
    d_rot = rotation_derivatives(left, rot_mats[joints]).reshape(len(joints), 3, 9)
    return cross, d_rot


def lbs_pose_jacobian(weights_t: torch.Tensor, rest_posed_t: torch.Tensor, transforms: torch.Tensor,
                      posed_joints: torch.Tensor, joints: list[int], parents: list[int], subtree: torch.Tensor,
                      axis_angles: torch.Tensor, rot_mats: torch.Tensor, corrective_dirs: torch.Tensor) -> torch.Tensor:
    """d (skinned vertex) / d (axis-angle pose of each of ``joints``), see the module docstring.

    Vertices run along the last axis (U), so that every step is a matrix product or a long
    vectorised multiply-add (batched 3x3 products over vertices are several times slower on a CPU).

    weights_t: (J, U) skinning weights; rest_posed_t: (3, U) vertices with identity, expression and
    pose correctives, before skinning; transforms: (J, 4, 4) smplx's relative joint transforms A
    (``batch_rigid_transform``); posed_joints: (J, 3); joints: the K differentiated joint indices;
    parents: (J,) with -1 at the root; subtree: (K, J) from :func:`subtree_mask`; axis_angles,
    rot_mats: (J, 3), (J, 3, 3) local poses; corrective_dirs: (K, 3, 9, U) from :func:`corrective_dirs`.
    Returns (K, 3, 3, U): [k, a, i, u] = d v_u[a] / d θ_k[i].
    """
    n_joints, n_vert = len(joints), rest_posed_t.shape[1]
    rot_world = transforms[:, :3, :3]  # (J, 3, 3)
    per_joint = (rot_world.reshape(-1, 3) @ rest_posed_t).view(-1, 3, n_vert) + transforms[:, :3, 3, None]  # A_m(p_u)
    weighted = (weights_t[:, None] * per_joint).view(len(weights_t), -1)  # (J, 3U)
    chain_arm = (subtree @ weighted).view(n_joints, 3, n_vert) \
        - (subtree @ weights_t)[:, None] * posed_joints[joints, :, None]  # y_uk, (K, 3, U)
    small = pose_generators(*(t.detach().cpu().numpy() for t in (axis_angles, rot_mats, rot_world)), joints, parents)
    cross, d_rot = (torch.as_tensor(a, dtype=rot_world.dtype, device=rot_world.device) for a in small)
    chain = (cross @ chain_arm).view(n_joints, 3, 3, n_vert)
    d_rot = d_rot[:, None]  # (K, 1, i, 9)
    d_rest = d_rot @ corrective_dirs  # (K, b, i, U): d p_u[b] / d θ_k[i]
    skin = (rot_world.reshape(-1, 9).T @ weights_t).view(3, 3, n_vert)  # Σ_m w_um Rw_m, (a, b, U)
    corrective = sum(skin[None, :, b, None] * d_rest[:, b, None] for b in range(3))  # (K, a, i, U)
    return chain + corrective


def subtree_mask(parents: list[int], joints: list[int]) -> torch.Tensor:
    """(K, J) float: entry (k, m) is 1 when joint m is ``joints[k]`` or one of its descendants."""
    mask = torch.zeros(len(joints), len(parents), dtype=torch.float64)
    for row, k in enumerate(joints):
        for m in range(len(parents)):
            a = m
            while a >= 0 and a != k:
                a = parents[a]
            mask[row, m] = float(a == k)
    return mask


def corrective_dirs(posedirs: torch.Tensor, num_vertices: int, joints: list[int]) -> torch.Tensor:
    """Pose-corrective directions of ``joints`` at the first ``num_vertices`` vertices, vertices last.

    posedirs: smplx's ((J-1)*9, V*3), rows 9(j-1)..9j-1 are joint j's vec(R_j - I); the root has
    none -> (K, 3, 9, U).
    """
    per_vertex = posedirs.view(len(posedirs), -1, 3)[:, :num_vertices]  # (P, U, 3)
    out = posedirs.new_zeros(len(joints), 9, num_vertices, 3)
    for row, j in enumerate(joints):
        if j > 0:
            out[row] = per_vertex[9 * (j - 1):9 * j]
    return out.permute(0, 3, 1, 2).contiguous()  # (K, 9, U, 3) -> (K, 3, 9, U)
