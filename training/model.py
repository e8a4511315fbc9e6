"""The regressor network: MediaPipe's landmarks and blendshapes -> head-model coefficients and camera.

Camera3DMM's layout: a shared trunk and separate heads for shape (identity), expression, pose
(rotation, jaw) and camera. The whole path from raw detections to full-image outputs is one
module, exported to ONNX as is, so inference and training cannot drift apart:

1. the square crop box around the landmarks (``core.regressor.landmark_crop_box``), optionally
   jittered in training;
2. landmarks to crop coordinates in [-1, 1] (``core.camera.crop_points``), plus the crop's
   placement in the image: where the image centre (the default principal point) lies in crop
   coordinates, the box size and centre relative to the image, and the image aspect;
3. the MLP trunk and heads (inputs standardised with statistics of the training data);
4. decoding: focal length and principal point in crop units mapped back to the image with
   ``core.camera.uncrop_intrinsics``; the head centre's projection and the image scale
   ``S = f/Z0`` give the distance ``Z0``, the head centre in camera space, the translation and
   ``ρ = 1/Z0`` (the pseudo-perspective parametrisation: the face's size fixes ``S`` well, the
   focal length is the hard part and ``Z0`` follows from both).

``camera_mode="ortho"`` is the ablation's orthographic regressor: the camera head predicts only
the weak-perspective scale and the head centre's projection (no focal length, ρ = 0).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from core import camera
from core.regressor import landmark_crop_box

from core.constants import NUM_BLENDSHAPES, NUM_LANDMARKS
PRINCIPAL_UNIT = 0.05  # the principal-point head predicts offsets from the image centre in units of 5 % of the image


@dataclass(frozen=True)
class NetConfig:
    num_shape: int
    num_expr: int
    has_jaw: bool
    expr_bounded: bool
    camera_mode: str = "perspective"  # perspective | ortho
    hidden: int = 384
    trunk_layers: int = 3
    head_hidden: int = 192

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def num_inputs(self) -> int:
        return NUM_LANDMARKS * 2 + NUM_BLENDSHAPES + 7


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Zhou et al.'s continuous 6D rotation: two 3-vectors, Gram-Schmidt. (..., 6) -> (..., 3, 3) (columns)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / a2.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b3 = torch.linalg.cross(b1, b2)
    return torch.stack([b1, b2, b3], -1)


def jittered_crop_box(landmarks_px: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 4) square box around the landmarks (``core.regressor.landmark_crop_box``); jitter (B, 3):
    centre shift in box sides and log size factor (training)."""
    box = landmark_crop_box(landmarks_px)
    if jitter is None:
        return box
    side = box[:, 2:3] * torch.exp(jitter[:, 2:3])
    centre = box[:, :2] + 0.5 * box[:, 2:3] + jitter[:, :2] * box[:, 2:3]
    return torch.cat([centre - 0.5 * side, side, side], 1)


def crop_features(landmarks_px: torch.Tensor, blendshapes: torch.Tensor, image_size: torch.Tensor, box: torch.Tensor,
                  absolute_size: bool) -> torch.Tensor:
    """(B, F) raw input features: the landmarks in the crop, the blendshapes, and the crop's placement in
    the image (the image centre in crop units, box size and centre relative to the image, the aspect).
    ``absolute_size`` adds log(long side / 512); without it, scaling landmarks and image size together
    leaves the features unchanged (the camera regressor)."""
    pts = camera.crop_points(landmarks_px, box, (2, 2)) - 1.0
    image_centre = 0.5 * image_size
    centre_in_crop = camera.crop_points(image_centre[:, None, :], box, (2, 2))[:, 0] - 1.0
    longer = image_size.amax(1, keepdim=True)
    box_centre = box[:, :2] + 0.5 * box[:, 2:]
    placement = [centre_in_crop / 4.0, torch.log(box[:, 2:3] / longer), (box_centre - image_centre) / longer,
                 torch.log(image_size[:, :1] / image_size[:, 1:2])]
    if absolute_size:
        placement.append(torch.log(longer / 512.0))
    return torch.cat([pts.flatten(1), blendshapes, torch.cat(placement, 1)], 1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RegressorNet(nn.Module):
    """Raw detections -> decoded outputs (see module docstring). All tensors float32, batch first."""

    def __init__(self, config: NetConfig, head_center: torch.Tensor):
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("head_center", torch.as_tensor(head_center, dtype=torch.float32).reshape(3))
        self.register_buffer("in_mean", torch.zeros(c.num_inputs))
        self.register_buffer("in_std", torch.ones(c.num_inputs))
        # Camera outputs are predicted standardised: log focal and log scale in crop units.
        self.register_buffer("cam_mean", torch.tensor([math.log(9.0), math.log(20.0)]))
        self.register_buffer("cam_std", torch.tensor([0.5, 0.5]))
        trunk = [c.num_inputs] + [c.hidden] * c.trunk_layers
        self.trunk = nn.Sequential(_mlp(trunk), nn.SiLU())
        h = c.head_hidden
        self.shape_head = _mlp([c.hidden, h, c.num_shape])
        self.expr_head = _mlp([c.hidden, h, c.num_expr])
        self.pose_head = _mlp([c.hidden, h, 6 + (3 if c.has_jaw else 0)])
        self.camera_head = _mlp([c.hidden, h, 6 if c.camera_mode == "perspective" else 3])
        with torch.no_grad():  # start at the identity rotation and mean camera
            self.pose_head[-1].weight.mul_(0.1)
            self.pose_head[-1].bias.zero_()
            self.pose_head[-1].bias[:6] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            self.camera_head[-1].weight.mul_(0.1)
            self.camera_head[-1].bias.zero_()

    # -- inputs -----------------------------------------------------------------------------------

    def crop_box(self, landmarks_px: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 4) box; jitter (B, 3): centre shift in box sides and log size factor (training)."""
        return jittered_crop_box(landmarks_px, jitter)

    def features(self, landmarks_px: torch.Tensor, blendshapes: torch.Tensor, image_size: torch.Tensor,
                 box: torch.Tensor) -> torch.Tensor:
        """(B, num_inputs) raw (unstandardised) input features, with the image's absolute size."""
        return crop_features(landmarks_px, blendshapes, image_size, box, absolute_size=True)

    # -- forward ----------------------------------------------------------------------------------

    def forward(self, landmarks_px: torch.Tensor, blendshapes: torch.Tensor, image_size: torch.Tensor,
                jitter: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """landmarks_px (B, 478, 2), blendshapes (B, 52), image_size (B, 2) = (W, H) -> outputs dict."""
        box = self.crop_box(landmarks_px, jitter)
        x = (self.features(landmarks_px, blendshapes, image_size, box) - self.in_mean) / self.in_std
        z = self.trunk(x)
        out: dict[str, torch.Tensor] = {"crop_box": box}
        out["shape"] = self.shape_head(z)
        expr = self.expr_head(z)
        out["expr_raw"] = expr
        out["expr"] = expr.clamp(0.0, 1.0) if self.config.expr_bounded else expr
        pose = self.pose_head(z)
        out["rotation_matrix"] = rotation_6d_to_matrix(pose[:, :6])
        out["rotation"] = camera.matrix_to_axis_angle(out["rotation_matrix"])
        out["jaw_pose"] = pose[:, 6:9] if self.config.has_jaw else torch.zeros_like(pose[:, :3])
        cam = self.camera_head(z)
        side = box[:, 2]
        if self.config.camera_mode == "perspective":
            log_f_crop = self.cam_mean[0] + self.cam_std[0] * cam[:, 0]
            log_s_crop = self.cam_mean[1] + self.cam_std[1] * cam[:, 5]
            centre_crop = cam[:, 3:5]
        else:
            log_f_crop = None
            log_s_crop = self.cam_mean[1] + self.cam_std[1] * cam[:, 2]
            centre_crop = cam[:, :2]
        out["log_scale_crop"] = log_s_crop
        out["head_center_crop"] = centre_crop
        out["head_center_px"] = camera.uncrop_points(centre_crop[:, None, :] + 1.0, box, (2, 2))[:, 0]
        out["scale_px_per_m"] = torch.exp(log_s_crop) * side / 2.0
        if log_f_crop is not None:
            longer = image_size.amax(1, keepdim=True)
            principal = 0.5 * image_size + cam[:, 1:3] * PRINCIPAL_UNIT * longer
            principal_crop = camera.crop_points(principal[:, None, :], box, (2, 2))[:, 0]
            f_crop = torch.exp(log_f_crop)
            crop_intr = torch.stack([f_crop, f_crop, principal_crop[:, 0], principal_crop[:, 1]], 1)
            intr = camera.uncrop_intrinsics(crop_intr, box, (2, 2))
            depth = torch.exp(log_f_crop - log_s_crop)  # Z0 = f/S (crop units cancel)
            xy = (out["head_center_px"] - intr[:, 2:]) / intr[:, :2] * depth[:, None]
            center_cam = torch.cat([xy, depth[:, None]], 1)
            out["log_focal_crop"] = log_f_crop
            out["principal_crop"] = principal_crop - 1.0
            out["intrinsics"] = intr
            out["center_cam"] = center_cam
            out["translation"] = camera.translation_for_center(self.head_center, out["rotation_matrix"], center_cam)
            out["rho_per_m"] = 1.0 / depth
        return out


# Outputs the ONNX file carries, in order (perspective; ortho drops the last five).
ONNX_INPUTS = ("landmarks_px", "blendshapes", "image_size")
ONNX_OUTPUTS = ("shape", "expr", "jaw_pose", "rotation", "rotation_matrix", "head_center_px", "scale_px_per_m",
                "crop_box", "intrinsics", "center_cam", "translation", "rho_per_m")
ORTHO_OUTPUTS = ONNX_OUTPUTS[:8]


class ExportWrapper(nn.Module):
    """The network with a fixed output tuple for ONNX export."""

    def __init__(self, net: RegressorNet):
        super().__init__()
        self.net = net
        self.names = ONNX_OUTPUTS if net.config.camera_mode == "perspective" else ORTHO_OUTPUTS

    def forward(self, landmarks_px, blendshapes, image_size):
        out = self.net(landmarks_px, blendshapes, image_size)
        return tuple(out[name] for name in self.names)
