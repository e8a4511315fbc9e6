"""The landmark fast path: MediaPipe's landmarks as points on the head model's surface.

Only the embedded landmark points are evaluated (not the whole mesh): linear identity and
expression bases blended at the landmarks' barycentric coordinates, plus, for articulated models,
smplx's LBS on the few vertices the landmarks touch. Float64 torch on the tracker's device.
"""
from __future__ import annotations

import numpy as np
import torch

from core.constants import NUM_LANDMARKS, NUM_SURFACE_LANDMARKS
from core.embedding import LandmarkEmbedding
from core.head_model import HeadModel, HeadModelLayer

IRIS_IDS = np.arange(NUM_SURFACE_LANDMARKS, NUM_LANDMARKS)


class LandmarkModel:
    """Model-space landmark points with linear identity/expression bases (torch, float64)."""

    def __init__(self, head: HeadModel, embedding: LandmarkEmbedding, device: str = "cpu"):
        self.head = head
        self.device = torch.device(device)
        kw = dict(dtype=torch.float64, device=self.device)
        self.ids = np.flatnonzero(embedding.valid)  # which of the 478 landmarks are used
        self.base_weight = torch.as_tensor(embedding.weights()[self.ids], **kw)  # from embedding consistency
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
            mix = np.zeros((len(self.ids), len(uniq)))
            np.add.at(mix, (np.repeat(np.arange(len(self.ids)), 3), inverse.ravel()), weights.ravel())
            self.mix = torch.as_tensor(mix, **kw)  # (L, U)

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
        return torch.einsum("lu,buc->blc", self.mix, verts)
