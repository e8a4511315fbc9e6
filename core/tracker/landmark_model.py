"""The landmark fast path: MediaPipe's landmarks as points on the head model's surface.

Only the embedded landmark points are evaluated (not the whole mesh): linear identity and
expression bases blended at the landmarks' barycentric coordinates, plus, for articulated models,
smplx's LBS on the few vertices the landmarks touch. Float64 torch on the tracker's device.

The articulated per-frame path: :meth:`LandmarkModel.shaped_vertices` once per identity,
:meth:`LandmarkModel.posed_points` (one smplx ``lbs`` call on those vertices, batch 1) per state,
and :meth:`LandmarkModel.pose_jacobian` (``core.tracker.articulation``) when a step needs the
jaw and eye columns, reusing that forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues, lbs

from core.constants import NUM_LANDMARKS, NUM_SURFACE_LANDMARKS
from core.embedding import LandmarkEmbedding
from core.head_model import HeadModel, HeadModelLayer
from core.tracker import articulation

IRIS_IDS = np.arange(NUM_SURFACE_LANDMARKS, NUM_LANDMARKS)


class LandmarkModel:
    """Model-space landmark points with linear identity/expression bases (torch, float64)."""

    def __init__(self, head: HeadModel, embedding: LandmarkEmbedding, device: str = "cpu"):
        self.head = head
        self.device = torch.device(device)
        kw = dict(dtype=torch.float64, device=self.device)
        self.ids = np.flatnonzero(embedding.valid)  # which of the 478 landmarks are used
        self.base_weight = embedding.weights()[self.ids].astype(np.float64)  # (L,) numpy, from embedding consistency
        vids, weights = embedding.vertex_weights(head.faces)
        blend = lambda arr: np.einsum("lk,lk...->l...", weights.astype(np.float64), arr[vids].astype(np.float64))  # noqa: E731
        self.template = torch.as_tensor(blend(head.v_template), **kw)  # (L, 3)
        self.shapedirs = torch.as_tensor(blend(head.shapedirs), **kw)  # (L, 3, S)
        self.exprdirs = torch.as_tensor(blend(head.exprdirs), **kw)  # (L, 3, E)
        # The same bases split by axis, (3, L, n) contiguous: Jacobians are three broadcast
        # multiply-adds instead of L tiny batched matmuls (several times faster on a CPU).
        self.shapedirs_by_axis = self.shapedirs.permute(1, 0, 2).contiguous()
        self.exprdirs_by_axis = self.exprdirs.permute(1, 0, 2).contiguous()
        self.head_center = torch.as_tensor(head.head_center, **kw)
        offset, slope, self.rho_ref = embedding.bias_terms()
        self.bias_offset = torch.as_tensor(offset[self.ids], **kw)  # (L, 3) MediaPipe's bias model
        self.bias_slope = torch.as_tensor(slope[self.ids], **kw)  # (L, 3) per unit of ρ
        self.articulated = head.is_articulated
        self.has_iris = bool(np.isin(IRIS_IDS, self.ids).all()) and head.has_joint("left_eye")
        if self.articulated:
            uniq, inverse = np.unique(vids, return_inverse=True)
            self.layer = HeadModelLayer(head, uniq, device=self.device, dtype=torch.float64)
            self.gather_ids = torch.as_tensor(inverse.reshape(vids.shape), device=self.device)  # (L, 3) into U
            self.gather_weights = torch.as_tensor(weights, **kw)[..., None]  # (L, 3, 1)
            self._init_pose_path()

    def _init_pose_path(self) -> None:
        """Buffers of the per-frame articulated path (:meth:`posed_points`, :meth:`pose_jacobian`)."""
        layer, head = self.layer, self.head
        kw = dict(dtype=torch.float64, device=self.device)
        n_vert, n_shape = layer.num_out, head.num_shape
        self._gather_ids_t = self.gather_ids.T.reshape(-1).contiguous()  # (3L,) corner-major
        self._gather_weights_t = self.gather_weights[..., 0].T.contiguous()  # (3, L)
        self.vertex_shapedirs = layer.dirs[..., :n_shape].contiguous()  # (U+J, 3, S)
        self.vertex_exprdirs = layer.dirs[..., n_shape:].contiguous()  # (U+J, 3, E)
        self.parents = [int(p) for p in head.parents]
        # The joints whose poses the tracker estimates, in its column order (jaw, then the eyes).
        names = (["jaw"] if head.has_joint("jaw") else []) + (["left_eye", "right_eye"] if self.has_iris else [])
        self.pose_joint_names = names
        present = [n for n in names if head.has_joint(n)]
        self._pose_columns = [names.index(n) for n in present]
        self._pose_joints = [head.joint_names.index(n) for n in present]
        n_all = len(layer.v_template)  # the U landmark vertices, then the J joints (virtual vertices)
        self._subtree = articulation.subtree_mask(self.parents, self._pose_joints).to(**kw)  # (K, J)
        self._weights_t = layer.lbs_weights[:n_vert].T.contiguous()  # (J, U)
        posedirs = layer.posedirs.view(len(layer.posedirs), n_all, 3)[:, :n_vert]
        self._vertex_posedirs_t = posedirs.transpose(1, 2).reshape(len(posedirs), -1).contiguous()  # (P, 3U)
        self._corrective_dirs = articulation.corrective_dirs(layer.posedirs, n_vert, self._pose_joints)  # (K, 3, 9, U)
        self._eye3 = torch.eye(3, **kw)
        self._no_coeffs = torch.zeros(1, 0, **kw)
        self._no_dirs = torch.zeros(len(layer.v_template), 3, 0, **kw)

    @property
    def num_landmarks(self) -> int:
        return len(self.ids)

    def points(self, shape: torch.Tensor, expr: torch.Tensor, jaw: torch.Tensor | None = None,
               eyes: torch.Tensor | None = None) -> torch.Tensor:
        """Unrotated model-space landmark points. shape: (B, S); expr: (B, E); jaw (B, 3); eyes (B, 6) -> (B, L, 3)."""
        if not self.articulated:
            return (self.template + torch.einsum("lcs,bs->blc", self.shapedirs, shape)
                    + torch.einsum("lcs,bs->blc", self.exprdirs, expr))
        verts = self.layer(shape, expr, None, None, jaw, eyes)
        return (verts[:, self.gather_ids] * self.gather_weights).sum(2)

    # -- the per-frame articulated path ---------------------------------------------------------

    def shaped_vertices(self, shape: torch.Tensor) -> torch.Tensor:
        """Landmark vertices and joints with an identity (articulated models). shape: (S,) -> (U+J, 3)."""
        return self.layer.v_template + self.vertex_shapedirs @ shape

    def posed_points(self, shaped: torch.Tensor, expr: torch.Tensor, jaw: torch.Tensor,
                     eyes: torch.Tensor) -> "PosedLandmarks":
        """One frame's landmark points through smplx's ``lbs`` (articulated models).

        shaped: (U+J, 3) from :meth:`shaped_vertices`; expr: (E,); jaw: (3,); eyes: (6,).
        """
        layer = self.layer
        v_shaped = shaped + self.vertex_exprdirs @ expr  # (U+J, 3)
        pose = layer.full_pose(jaw.new_zeros(1, 3), None, jaw[None], eyes[None]).view(-1, 3)  # (J, 3)
        rot_mats = batch_rodrigues(pose)
        verts, posed_joints = lbs(self._no_coeffs, rot_mats.view(1, -1, 9), v_shaped, self._no_dirs, layer.posedirs,
                                  layer.j_regressor, layer.parents, layer.lbs_weights, pose2rot=False)
        corners = verts[0].index_select(0, self._gather_ids_t).view(3, -1, 3)  # (corner, L, 3)
        w = self._gather_weights_t[..., None]
        points = corners[0] * w[0] + corners[1] * w[1] + corners[2] * w[2]  # (L, 3)
        return PosedLandmarks(points, v_shaped, pose, rot_mats, posed_joints[0])

    def pose_jacobian(self, posed: "PosedLandmarks") -> torch.Tensor:
        """d landmark point / d pose of :attr:`pose_joint_names` (3 columns each), by axis: (3, L, 3K)."""
        layer, n_vert, n_lmk = self.layer, self.layer.num_out, len(posed.points)
        if not self._pose_joints:
            return posed.points.new_zeros(3, n_lmk, 3 * len(self.pose_joint_names))
        v_shaped = posed.v_shaped
        _, transforms = batch_rigid_transform(posed.rot_mats[None], v_shaped[None, n_vert:], layer.parents)
        pose_feature = (posed.rot_mats[1:] - self._eye3).reshape(-1)
        rest_posed_t = v_shaped[:n_vert].T + (pose_feature @ self._vertex_posedirs_t).view(3, n_vert)
        cols = articulation.lbs_pose_jacobian(self._weights_t, rest_posed_t, transforms[0], posed.posed_joints,
                                              self._pose_joints, self.parents, self._subtree, posed.pose,
                                              posed.rot_mats, self._corrective_dirs)  # (K', 3, 3, U)
        # Vertex-major for the gather (a row gather is several times faster than a column one).
        per_vertex = cols.permute(3, 1, 0, 2).reshape(n_vert, -1)  # (U, (a, k, i))
        corners = per_vertex.index_select(0, self._gather_ids_t).view(3, n_lmk, 3, -1)  # (corner, L, a, (k, i))
        w = self._gather_weights_t[..., None, None]
        cols = (corners[0] * w[0] + corners[1] * w[1] + corners[2] * w[2]).transpose(0, 1)  # (a, L, (k, i))
        if len(self._pose_columns) == len(self.pose_joint_names):
            return cols
        out = cols.new_zeros(3, n_lmk, 3 * len(self.pose_joint_names))
        for j, c in enumerate(self._pose_columns):  # joints the model lacks keep zero columns
            out[..., 3 * c:3 * c + 3] = cols[..., 3 * j:3 * j + 3]
        return out


@dataclass
class PosedLandmarks:
    """A frame's posed landmark points (L, 3) and what :meth:`LandmarkModel.pose_jacobian` reuses."""

    points: torch.Tensor  # (L, 3) unrotated model space
    v_shaped: torch.Tensor  # (U+J, 3) landmark vertices and joints with identity and expression
    pose: torch.Tensor  # (J, 3) axis-angle per joint
    rot_mats: torch.Tensor  # (J, 3, 3)
    posed_joints: torch.Tensor  # (J, 3)
    jacobian: torch.Tensor | None = None  # (3, L, 3K) once :meth:`LandmarkModel.pose_jacobian` was asked
