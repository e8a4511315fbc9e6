"""Camera3DMM's losses for the regressor, in crop units (scale-free, like the network's inputs).

* parameter L2 per head: identity, expression, jaw, rotation (Frobenius distance of matrices);
* camera (eq. 7-8): the **asymmetric focal loss** on log f (``focal_underestimate_weight`` = 3×
  when the focal length is underestimated), the distance t_z (= Z0, log), the principal point,
  the head centre's projection and the image scale S = f/Z0;
* the global term (eq. 3): the embedded landmarks and a set of face vertices projected with the
  predicted parameters and camera against the ground truth's projection, plus the camera-space
  vertex error relative to the head centre (shape and pose in 3D);
* regularisers: identity towards the mean, expressions inside their range.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from core import camera
from core.head_model import HeadModelLayer


@dataclass(frozen=True)
class LossWeights:
    shape: float = 0.2
    expr: float = 1.0
    jaw: float = 10.0
    rotation: float = 5.0
    focal: float = 10.0
    focal_underestimate_weight: float = 3.0  # Camera3DMM eq. 7
    depth: float = 5.0
    principal: float = 1.0
    center: float = 20.0
    scale: float = 10.0
    landmarks_2d: float = 50.0  # per crop unit (1 unit = half the crop box)
    vertices_2d: float = 50.0
    vertices_3d: float = 30.0  # per metre... of camera-space error relative to the head centre (x100: cm)
    shape_prior: float = 1e-3
    expr_range: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def huber(x: torch.Tensor, beta: float) -> torch.Tensor:
    a = x.abs()
    return torch.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)


class Geometry(torch.nn.Module):
    """Embedded landmark points and a face-vertex subset of a head model (float32, differentiable).

    Rigid models are linear in their coefficients: the points are one matrix product (the cost of
    the global loss term); articulated ones go through ``HeadModelLayer`` (smplx LBS)."""

    def __init__(self, head, embedding, num_vertices: int = 150, num_landmarks: int = 120, seed: int = 0):
        super().__init__()
        face = head.regions.get("face", np.arange(head.num_vertices))
        rng = np.random.default_rng(seed)
        verts = np.sort(rng.choice(face, min(num_vertices, len(face)), replace=False))
        lmk_ids, lmk_w = embedding.vertex_weights(head.faces)  # (L, 3)
        keep = np.sort(rng.choice(len(lmk_ids), min(num_landmarks, len(lmk_ids)), replace=False))
        lmk_ids, lmk_w = lmk_ids[keep], lmk_w[keep]  # a fixed subset keeps the loss cheap
        self.num_vertices = len(verts)
        self.articulated = head.is_articulated
        self.register_buffer("head_center", torch.as_tensor(head.head_center, dtype=torch.float32))
        if self.articulated:
            uniq, inverse = np.unique(np.concatenate([verts, lmk_ids.ravel()]), return_inverse=True)
            self.layer = HeadModelLayer(head, uniq)
            self.register_buffer("vertex_index", torch.as_tensor(inverse[: len(verts)]))
            self.register_buffer("landmark_index", torch.as_tensor(inverse[len(verts):].reshape(-1, 3)))
            self.register_buffer("landmark_weight", torch.as_tensor(lmk_w, dtype=torch.float32))
        else:
            dirs = np.concatenate([head.shapedirs, head.exprdirs], axis=2).astype(np.float64)  # (V, 3, K)
            blend = lambda a: np.einsum("lk,lk...->l...", lmk_w.astype(np.float64), a[lmk_ids])  # noqa: E731
            base = np.concatenate([head.v_template[verts], blend(head.v_template.astype(np.float64))])  # (N, 3)
            basis = np.concatenate([dirs[verts], blend(dirs)])  # (N, 3, K)
            self.register_buffer("base", torch.as_tensor(base.reshape(-1), dtype=torch.float32))
            self.register_buffer("basis", torch.as_tensor(basis.reshape(-1, basis.shape[2]).T.copy(),
                                                          dtype=torch.float32))  # (K, N*3)
            self.num_shape, self.num_expr = head.num_shape, head.num_expr

    def model_points(self, shape, expr, jaw) -> tuple[torch.Tensor, torch.Tensor]:
        """Unrotated model-space (vertices (B, V, 3), landmarks (B, L, 3))."""
        if self.articulated:
            pts = self.layer(shape, expr, None, None, jaw, None)
            lmk = (pts[:, self.landmark_index] * self.landmark_weight[None, ..., None]).sum(2)
            return pts[:, self.vertex_index], lmk
        pts = (self.base + torch.cat([shape, expr], 1) @ self.basis).reshape(len(shape), -1, 3)
        return pts[:, : self.num_vertices], pts[:, self.num_vertices:]


def _camera_points(points: torch.Tensor, rot_matrix: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    return camera.flip_axes(points @ rot_matrix.transpose(-1, -2)) + translation[:, None, :]


def ground_truth(batch: dict[str, torch.Tensor], box: torch.Tensor) -> dict[str, torch.Tensor]:
    """Camera targets in crop units for a batch of ground truths and the crop boxes used."""
    intr = batch["intrinsics"]
    crop_intr = camera.crop_intrinsics(intr, box, (2, 2))
    center_px = camera.project_perspective(batch["center_cam"][:, None, :], intr)
    depth = batch["center_cam"][:, 2]
    return {"log_focal_crop": torch.log(crop_intr[:, 0]), "principal_crop": crop_intr[:, 2:] - 1.0,
            "head_center_crop": camera.crop_points(center_px, box, (2, 2))[:, 0] - 1.0,
            "log_scale_crop": torch.log(crop_intr[:, 0] / depth), "log_depth": torch.log(depth),
            "rotation_matrix": camera.axis_angle_to_matrix(batch["rotation"])}


def regressor_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], geometry: Geometry,
                   weights: LossWeights, camera_mode: str = "perspective") -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its terms (floats, for logging)."""
    box = out["crop_box"]
    gt = ground_truth(batch, box)
    terms: dict[str, torch.Tensor] = {}
    w = weights
    terms["shape"] = w.shape * ((out["shape"] - batch["shape"]) ** 2).mean()
    if out["expr"].shape[1]:
        terms["expr"] = w.expr * ((out["expr_raw"] - batch["expr"]) ** 2).mean()
    if geometry.articulated:
        terms["jaw"] = w.jaw * ((out["jaw_pose"] - batch["jaw_pose"]) ** 2).mean()
    terms["rotation"] = w.rotation * ((out["rotation_matrix"] - gt["rotation_matrix"]) ** 2).sum((1, 2)).mean()
    terms["center"] = w.center * huber(out["head_center_crop"] - gt["head_center_crop"], 0.01).sum(1).mean()
    terms["scale"] = w.scale * huber(out["log_scale_crop"] - gt["log_scale_crop"], 0.02).mean()
    if camera_mode == "perspective":
        d = out["log_focal_crop"] - gt["log_focal_crop"]
        asym = torch.where(d < 0, torch.full_like(d, w.focal_underestimate_weight), torch.ones_like(d))
        terms["focal"] = w.focal * (asym * huber(d, 0.05)).mean()
        terms["depth"] = w.depth * huber(torch.log(1.0 / out["rho_per_m"]) - gt["log_depth"], 0.05).mean()
        terms["principal"] = w.principal * huber(out["principal_crop"] - gt["principal_crop"], 0.05).sum(1).mean()
    # The global term: projections of landmarks and vertices, and camera-space geometry.
    verts_gt, lmk_gt = geometry.model_points(batch["shape"], batch["expr"], batch["jaw_pose"])
    verts_p, lmk_p = geometry.model_points(out["shape"], out["expr"], out["jaw_pose"])
    pts_gt = _camera_points(torch.cat([verts_gt, lmk_gt], 1), gt["rotation_matrix"], batch["translation"])
    uv_gt = camera.crop_points(camera.project_perspective(pts_gt, batch["intrinsics"]), box, (2, 2)) - 1.0
    pts_p_model = torch.cat([verts_p, lmk_p], 1)
    if camera_mode == "perspective":
        pts_p = _camera_points(pts_p_model, out["rotation_matrix"], out["translation"])
        uv_p = camera.crop_points(camera.project_perspective(pts_p, out["intrinsics"]), box, (2, 2)) - 1.0
        rel_p = pts_p - out["center_cam"][:, None, :]
    else:
        rel_p = _camera_points(pts_p_model - geometry.head_center, out["rotation_matrix"], torch.zeros_like(pts_gt[:, 0]))
        uv_p = rel_p[..., :2] * torch.exp(out["log_scale_crop"])[:, None, None] + out["head_center_crop"][:, None, :]
    nv = verts_gt.shape[1]
    dist2d = (uv_p - uv_gt).norm(dim=-1)
    terms["vertices_2d"] = w.vertices_2d * dist2d[:, :nv].mean()
    terms["landmarks_2d"] = w.landmarks_2d * dist2d[:, nv:].mean()
    rel_gt = pts_gt - batch["center_cam"][:, None, :]
    terms["vertices_3d"] = w.vertices_3d * (rel_p[:, :nv] - rel_gt[:, :nv]).norm(dim=-1).mean()
    terms["shape_prior"] = w.shape_prior * (out["shape"] ** 2).mean()
    if out["expr_raw"].shape[1]:
        terms["expr_range"] = w.expr_range * ((out["expr_raw"] - out["expr"]) ** 2).mean()
    total = sum(terms.values())
    return total, {k: float(v.detach()) for k, v in terms.items()}
