"""The model-agnostic camera/pose network: MediaPipe's output -> focal length (with σ), head pose, placement.

No head-model coefficients: one network serves every head model of human size. Camera3DMM's
layout (a shared MLP trunk, separate heads for the camera, the rotation and the placement). The
path from raw detections to decoded full-image outputs is one module, exported to ONNX as is, so
inference and training cannot drift apart.

**Inputs are scale-free**: the landmarks in the square crop around them (``core.camera.crop_points``
into [-1, 1]), the crop's placement relative to the image in units of the image's long side, the
image aspect and the 52 blendshapes; never an absolute pixel size. Scaling the landmarks and the
image size by ``s`` therefore leaves every network output unchanged, and the decoded focal length
(``exp(log f/long) · long side``), head-centre projection and image scale scale by ``s`` exactly.

**Outputs**: ``log(f / long side)`` and its per-frame σ (Gaussian NLL), the head rotation (6D,
model space), the head centre's projection in crop units and the image scale ``S = f/Z0`` in crop
units. Decoding: focal px, head centre px, ``Z0 = f/S``, the camera-space head centre with the
principal point at the image centre, ``ρ = 1/Z0``. The head centre is each model's
``head.head_center`` (between the eyes), so a translation follows for any head model
(``core.camera_regressor.translation_for``).

**Mirror symmetry** (:class:`SymmetricCameraNet`, what is exported): the network runs on the input
and on its mirror image (x -> W - x, left/right landmarks and blendshapes swapped) and averages
the two, mapped back: the focal length of a mirrored frame equals the original's to float precision.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from core import camera
from core.constants import NUM_BLENDSHAPES, NUM_LANDMARKS
from training.model import _mlp, crop_features, jittered_crop_box, rotation_6d_to_matrix

NUM_PLACEMENT = 6
LOG_SIGMA_RANGE = (-4.0, 1.5)  # per-frame log σ of log f is clamped to this (σ 0.018 .. 4.5)
MIRROR_AXES = torch.tensor([-1.0, 1.0, 1.0])  # x -> -x in model and camera space alike


@dataclass(frozen=True)
class CameraNetConfig:
    hidden: int = 384
    trunk_layers: int = 3
    head_hidden: int = 192
    dropout: float = 0.0  # after each trunk layer (training only)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def num_inputs(self) -> int:
        return NUM_LANDMARKS * 2 + NUM_BLENDSHAPES + NUM_PLACEMENT


def landmark_mirror_permutation(canonical_xyz: np.ndarray) -> np.ndarray:
    """Index ``p`` such that landmark ``p[i]`` is the mirror image of landmark ``i`` (478,).

    canonical_xyz: (468, 3) MediaPipe's canonical face (model axes, symmetric about x = 0; the
    built-in model's first 468 vertices). The irises (468-477, centre then contour at +x, +y, -x,
    -y, see ``core.builtin_model``) swap eyes and their ±x contour points.
    """
    pts = np.asarray(canonical_xyz, np.float64)[:468]
    mirrored = pts * [-1.0, 1.0, 1.0]
    perm = ((mirrored[:, None, :] - pts[None]) ** 2).sum(-1).argmin(1)
    if not (perm[perm] == np.arange(468)).all():
        raise ValueError("the canonical face is not mirror-symmetric")
    iris = np.array([473, 476, 475, 474, 477, 468, 471, 470, 469, 472])
    return np.concatenate([perm, iris]).astype(np.int64)


def blendshape_mirror_permutation(names: tuple[str, ...]) -> np.ndarray:
    """Index ``p`` such that blendshape ``p[i]`` is the mirror of ``i`` (Left <-> Right, directions too)."""
    index = {n: i for i, n in enumerate(names)}

    def swap(name: str) -> str:
        if name.endswith("Left"):
            return name[:-4] + "Right"
        if name.endswith("Right"):
            return name[:-5] + "Left"
        return name

    return np.array([index[swap(n)] for n in names], np.int64)


class CameraNet(nn.Module):
    """One pass, no mirroring. All tensors float32, batch first."""

    def __init__(self, config: CameraNetConfig = CameraNetConfig()):
        super().__init__()
        self.config = c = config
        self.register_buffer("in_mean", torch.zeros(c.num_inputs))
        self.register_buffer("in_std", torch.ones(c.num_inputs))
        # log(f/long) and log(S) in crop units are predicted standardised.
        self.register_buffer("out_mean", torch.tensor([math.log(1.2), math.log(20.0)]))
        self.register_buffer("out_std", torch.tensor([0.8, 0.5]))
        trunk: list[nn.Module] = []
        for i in range(c.trunk_layers):
            trunk += [nn.Linear(c.num_inputs if i == 0 else c.hidden, c.hidden), nn.SiLU()]
            if c.dropout > 0:
                trunk.append(nn.Dropout(c.dropout))
        self.trunk = nn.Sequential(*trunk)
        h = c.head_hidden
        self.focal_head = _mlp([c.hidden, h, h, 2])  # log f/long (standardised), log σ
        self.rotation_head = _mlp([c.hidden, h, 6])
        self.placement_head = _mlp([c.hidden, h, 3])  # head centre (crop units), log S (standardised)
        with torch.no_grad():
            for head in (self.focal_head, self.rotation_head, self.placement_head):
                head[-1].weight.mul_(0.1)
                head[-1].bias.zero_()
            self.rotation_head[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
            self.focal_head[-1].bias[1] = math.log(0.3)

    @staticmethod
    def features(landmarks_px: torch.Tensor, blendshapes: torch.Tensor, image_size: torch.Tensor,
                 box: torch.Tensor) -> torch.Tensor:
        """(B, num_inputs) raw features; invariant to scaling landmarks and image size together."""
        return crop_features(landmarks_px, blendshapes, image_size, box, absolute_size=False)

    @staticmethod
    def crop_box(landmarks_px: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 4) square box; jitter (B, 3): centre shift in box sides and log size factor (training)."""
        return jittered_crop_box(landmarks_px, jitter)

    def raw(self, landmarks_px, blendshapes, image_size, jitter=None) -> dict[str, torch.Tensor]:
        """Network outputs in crop units (before decoding to pixels)."""
        box = self.crop_box(landmarks_px, jitter)
        x = (self.features(landmarks_px, blendshapes, image_size, box) - self.in_mean) / self.in_std
        z = self.trunk(x)
        foc = self.focal_head(z)
        place = self.placement_head(z)
        return {"crop_box": box,
                "log_focal_rel": self.out_mean[0] + self.out_std[0] * foc[:, 0],
                "log_focal_sigma": foc[:, 1].clamp(*LOG_SIGMA_RANGE).exp(),
                "rot6d": self.rotation_head(z),
                "head_center_crop": place[:, :2],
                "log_scale_crop": self.out_mean[1] + self.out_std[1] * place[:, 2]}

    def forward(self, landmarks_px, blendshapes, image_size, jitter=None) -> dict[str, torch.Tensor]:
        return decode(self.raw(landmarks_px, blendshapes, image_size, jitter), image_size)


def decode(raw: dict[str, torch.Tensor], image_size: torch.Tensor) -> dict[str, torch.Tensor]:
    """Crop-unit outputs -> full-image ones (principal point at the image centre)."""
    box = raw["crop_box"]
    side = box[:, 2]
    longer = image_size.amax(1)
    out = dict(raw)
    rot = raw.get("rotation_matrix")
    if rot is None:
        rot = rotation_6d_to_matrix(raw["rot6d"])
    out["rotation_matrix"] = rot
    out["rotation"] = camera.matrix_to_axis_angle(rot)
    out["focal_px"] = torch.exp(raw["log_focal_rel"]) * longer
    out["head_center_px"] = camera.uncrop_points(raw["head_center_crop"][:, None, :] + 1.0, box, (2, 2))[:, 0]
    out["scale_px_per_m"] = torch.exp(raw["log_scale_crop"]) * side / 2.0
    depth = out["focal_px"] / out["scale_px_per_m"]
    principal = 0.5 * image_size
    xy = (out["head_center_px"] - principal) / out["focal_px"][:, None] * depth[:, None]
    out["distance_m"] = depth
    out["center_cam"] = torch.cat([xy, depth[:, None]], 1)
    out["rho_per_m"] = 1.0 / depth
    return out


def mirror_inputs(landmarks_px: torch.Tensor, blendshapes: torch.Tensor, image_size: torch.Tensor,
                  landmark_perm: torch.Tensor, blend_perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The detections of the mirrored image (x -> W - x; left and right swapped)."""
    pts = landmarks_px[:, landmark_perm]
    pts = torch.stack([image_size[:, None, 0] - pts[..., 0], pts[..., 1]], -1)
    return pts, blendshapes[:, blend_perm]


def mirror_rotation(rotation_matrix: torch.Tensor) -> torch.Tensor:
    """The head rotation seen in a mirror: M R M with M = diag(-1, 1, 1). (..., 3, 3)."""
    m = MIRROR_AXES.to(rotation_matrix)
    return rotation_matrix * m[:, None] * m[None, :]


class SymmetricCameraNet(nn.Module):
    """The exported model: :class:`CameraNet` on the input and its mirror image, averaged."""

    def __init__(self, net: CameraNet, landmark_perm: np.ndarray, blend_perm: np.ndarray):
        super().__init__()
        self.net = net
        self.register_buffer("landmark_perm", torch.as_tensor(landmark_perm, dtype=torch.long))
        self.register_buffer("blend_perm", torch.as_tensor(blend_perm, dtype=torch.long))

    def forward(self, landmarks_px, blendshapes, image_size) -> dict[str, torch.Tensor]:
        n = landmarks_px.shape[0]
        mpts, mblend = mirror_inputs(landmarks_px, blendshapes, image_size, self.landmark_perm, self.blend_perm)
        raw = self.net.raw(torch.cat([landmarks_px, mpts]), torch.cat([blendshapes, mblend]),
                           torch.cat([image_size, image_size]))
        a = {k: v[:n] for k, v in raw.items()}
        b = {k: v[n:] for k, v in raw.items()}
        rot_a = rotation_6d_to_matrix(a["rot6d"])
        rot_b = mirror_rotation(rotation_6d_to_matrix(b["rot6d"]))
        mean_rot = 0.5 * (rot_a + rot_b)
        flip = MIRROR_AXES[:2].to(landmarks_px)
        fused = {
            "crop_box": a["crop_box"],  # the mirrored box is the same square, mirrored
            "log_focal_rel": 0.5 * (a["log_focal_rel"] + b["log_focal_rel"]),
            "log_focal_sigma": torch.exp(0.5 * (torch.log(a["log_focal_sigma"]) + torch.log(b["log_focal_sigma"]))),
            "rotation_matrix": rotation_6d_to_matrix(torch.cat([mean_rot[..., 0], mean_rot[..., 1]], -1)),
            "head_center_crop": 0.5 * (a["head_center_crop"] + b["head_center_crop"] * flip),
            "log_scale_crop": 0.5 * (a["log_scale_crop"] + b["log_scale_crop"]),
        }
        return decode(fused, image_size)


ONNX_INPUTS = ("landmarks_px", "blendshapes", "image_size")
ONNX_OUTPUTS = ("focal_px", "log_focal_sigma", "rotation", "rotation_matrix", "head_center_px", "scale_px_per_m",
                "distance_m", "center_cam", "rho_per_m", "crop_box", "log_focal_rel")


class ExportWrapper(nn.Module):
    def __init__(self, net: SymmetricCameraNet):
        super().__init__()
        self.net = net

    def forward(self, landmarks_px, blendshapes, image_size):
        out = self.net(landmarks_px, blendshapes, image_size)
        return tuple(out[name] for name in ONNX_OUTPUTS)
