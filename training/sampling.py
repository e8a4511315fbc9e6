"""Random head-model coefficients and cameras for regressor training (Camera3DMM's recipe).

Every sample is drawn from numpy's ``Generator`` so a seed reproduces it exactly:

* identity ``N(0, 1)·identity_scale`` per component;
* sparse expressions: some samples neutral, the rest a few active components (``[0, 1]`` weights
  for ARKit-style models, ``N(0, σ)`` with a decaying σ for PCA expressions such as FLAME's);
* jaw opening for articulated models (FLAME's jaw joint);
* head rotation (yaw, pitch, roll) mostly within ±0.25 rad with a tail to ±0.6 rad;
* the camera: focal length 480-3000 px at 512² (a margin around the 600-2400 px evaluation
  range), log-spaced with **more samples at short focal lengths**; the head-centre distance ∝
  focal (``f/2000`` m at 512², i.e. 0.3-1.2 m over 600-2400 px) times a jitter towards smaller
  faces; the face anywhere in the frame; principal points near the centre for most samples and
  far off-centre for the rest (frames that are crops of a larger image), so a network cannot
  assume that the face or the principal point is centred;
* a few image sizes and aspect ratios (focal lengths scale with the shorter side).

Camera placement uses ``core.camera`` (one implementation of each formula).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from core import camera

# (width, height, probability)
DEFAULT_IMAGE_SIZES = ((512, 512, 0.6), (640, 480, 0.3), (480, 640, 0.1))
FACE_HALF_WIDTH_M = 0.085  # half the width of a face (ear to ear ~ 0.15-0.17 m) ...
FACE_HALF_HEIGHT_M = 0.12  # ... and half its height (chin to hairline), for keeping it in frame


@dataclass(frozen=True)
class SamplingConfig:
    """Distributions of the training samples (see module docstring)."""

    image_sizes: tuple = DEFAULT_IMAGE_SIZES
    focal_range_512: tuple[float, float] = (480.0, 3000.0)  # px at 512² (scaled by min(W, H)/512)
    short_focal_power: float = 1.4  # log f = log f_min + u**p · log(f_max/f_min): p > 1 favours short lenses
    metres_per_focal_px: float = 1.0 / 2000.0  # Camera3DMM: distance = f/2000 m at 512²
    distance_jitter: tuple[float, float] = (0.9, 1.7)  # log-uniform factor on that distance (smaller faces)
    principal_sigma: float = 0.015  # near-centre principal points: σ as a fraction of the image size
    offcentre_fraction: float = 0.2  # samples whose frame is a crop: principal point far off-centre ...
    offcentre_range: float = 0.3  # ... uniform within ± this fraction of the image size
    rotation_core_rad: float = 0.25
    rotation_tail_rad: float = 0.6
    rotation_tail_prob: float = 0.2
    identity_scale: float = 1.0
    neutral_prob: float = 0.2  # samples with no expression at all
    active_expressions: float = 2.0  # mean number of active expressions otherwise
    pca_expression_sigma: float = 0.8  # unbounded (PCA) expressions: σ of the first component
    jaw_open_mean_rad: float = 0.08
    jaw_open_sigma_rad: float = 0.12
    jaw_open_max_rad: float = 0.45

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SamplingConfig":
        data = dict(data)
        data["image_sizes"] = tuple(tuple(s) for s in data.get("image_sizes", DEFAULT_IMAGE_SIZES))
        for key in ("focal_range_512", "distance_jitter"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def expressions_bounded(head) -> bool:
    """ARKit-style expression weights live in [0, 1] (as the tracker assumes); PCA ones are unbounded."""
    return head.kind in {"ict", "builtin"} or bool(head.expression_names)


def has_jaw(head) -> bool:
    return head.is_articulated and head.has_joint("jaw")


@dataclass
class Samples:
    """A batch of ground truths (numpy, float32 unless noted). N samples."""

    image_size: np.ndarray  # (N, 2) int32 width, height
    intrinsics: np.ndarray  # (N, 4) fx, fy, cx, cy
    shape: np.ndarray  # (N, S)
    expr: np.ndarray  # (N, E)
    jaw_pose: np.ndarray  # (N, 3)
    rotation: np.ndarray  # (N, 3) axis-angle, model space
    center_cam: np.ndarray  # (N, 3) camera-space head centre (metres)
    translation: np.ndarray  # (N, 3) camera-space position of the model origin
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_size)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"image_size": self.image_size, "intrinsics": self.intrinsics, "shape": self.shape, "expr": self.expr,
                "jaw_pose": self.jaw_pose, "rotation": self.rotation, "center_cam": self.center_cam,
                "translation": self.translation}


def euler_to_axis_angle(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Radians about model y (yaw), x (pitch), z (roll), R = Ry·Rx·Rz -> (N, 3) axis-angle."""
    def about(axis: int, angle: np.ndarray) -> torch.Tensor:
        aa = torch.zeros(len(angle), 3, dtype=torch.float64)
        aa[:, axis] = torch.as_tensor(angle, dtype=torch.float64)
        return camera.axis_angle_to_matrix(aa)

    rot = about(1, yaw) @ about(0, pitch) @ about(2, roll)
    return camera.matrix_to_axis_angle(rot).numpy()


def translation_for_center(head, rotation: np.ndarray, center_cam: np.ndarray) -> np.ndarray:
    """Camera-space translation placing the head centre at ``center_cam``. (N, 3), (N, 3) -> (N, 3)."""
    return camera.translation_for_head_center(torch.as_tensor(rotation, dtype=torch.float64),
                                              torch.as_tensor(center_cam, dtype=torch.float64),
                                              torch.as_tensor(head.head_center, dtype=torch.float64)).numpy()


def sample_focal_512(rng: np.random.Generator, n: int, config: SamplingConfig) -> np.ndarray:
    lo, hi = config.focal_range_512
    u = rng.random(n) ** config.short_focal_power
    return np.exp(math.log(lo) + u * math.log(hi / lo))


def _angles(rng: np.random.Generator, n: int, config: SamplingConfig) -> np.ndarray:
    tail = rng.random(n) < config.rotation_tail_prob
    limit = np.where(tail, config.rotation_tail_rad, config.rotation_core_rad)
    return rng.uniform(-1.0, 1.0, n) * limit


def sample_expressions(rng: np.random.Generator, n: int, head, config: SamplingConfig) -> np.ndarray:
    num_expr = head.num_expr
    expr = np.zeros((n, num_expr))
    if num_expr == 0:
        return expr.astype(np.float32)
    active = rng.random(n) >= config.neutral_prob
    if expressions_bounded(head):
        counts = np.where(active, 1 + rng.poisson(max(config.active_expressions - 1, 0.0), n), 0)
        rank = np.argsort(rng.random((n, num_expr)), axis=1).argsort(axis=1)  # a random order per sample
        expr = np.where(rank < counts[:, None], rng.uniform(0.15, 1.0, (n, num_expr)), 0.0)
    else:
        sigma = config.pca_expression_sigma / (1.0 + np.arange(num_expr) / 8.0)
        mask = rng.random((n, num_expr)) < 0.6
        expr = np.where(active[:, None] & mask, rng.standard_normal((n, num_expr)) * sigma, 0.0)
    return expr.astype(np.float32)


def sample(rng: np.random.Generator, n: int, head, config: SamplingConfig = SamplingConfig()) -> Samples:
    """``n`` random ground truths for ``head`` (see the module docstring)."""
    sizes = np.array([(w, h) for w, h, _ in config.image_sizes], np.int32)
    probs = np.array([p for _, _, p in config.image_sizes], np.float64)
    image_size = sizes[rng.choice(len(sizes), n, p=probs / probs.sum())]
    short = image_size.min(1).astype(np.float64)
    longer = image_size.max(1).astype(np.float64)
    f512 = sample_focal_512(rng, n, config)
    focal = f512 * short / 512.0
    lo, hi = config.distance_jitter
    depth = f512 * config.metres_per_focal_px * np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    # Principal point: near the centre, or far off it (a crop of a larger frame).
    offcentre = rng.random(n) < config.offcentre_fraction
    principal = image_size / 2.0 + np.where(
        offcentre[:, None], rng.uniform(-1, 1, (n, 2)) * config.offcentre_range * image_size,
        rng.standard_normal((n, 2)) * config.principal_sigma * longer[:, None])
    # Where the head centre appears: anywhere that keeps the face inside the frame.
    half_face = np.stack([focal * FACE_HALF_WIDTH_M / depth, focal * FACE_HALF_HEIGHT_M / depth], 1)
    room = np.maximum(image_size / 2.0 - 1.1 * half_face, 0.0)
    centre_px = image_size / 2.0 + rng.uniform(-1, 1, (n, 2)) * room
    center_cam = np.concatenate([(centre_px - principal) / focal[:, None] * depth[:, None], depth[:, None]], 1)
    rotation = euler_to_axis_angle(_angles(rng, n, config), _angles(rng, n, config), _angles(rng, n, config))
    shape = rng.standard_normal((n, head.num_shape)) * config.identity_scale
    expr = sample_expressions(rng, n, head, config)
    jaw = np.zeros((n, 3))
    if has_jaw(head):
        jaw[:, 0] = np.clip(rng.normal(config.jaw_open_mean_rad, config.jaw_open_sigma_rad, n), 0.0,
                            config.jaw_open_max_rad)
        jaw[:, 1:] = rng.normal(0.0, 0.02, (n, 2))
    intrinsics = np.stack([focal, focal, principal[:, 0], principal[:, 1]], 1)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return Samples(image_size=image_size.astype(np.int32), intrinsics=f32(intrinsics), shape=f32(shape),
                   expr=f32(expr), jaw_pose=f32(jaw), rotation=f32(rotation), center_cam=f32(center_cam),
                   translation=f32(translation_for_center(head, rotation, center_cam)))
