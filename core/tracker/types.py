"""The tracker's inputs and outputs: options, per-frame priors, focal beliefs and the frame result."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

# One-Euro (min cutoff Hz, beta per unit of speed) per output signal: the head centre (m), the
# rotation (rad), expressions and joint poses. Slow cutoffs keep a still head still; beta opens
# the filter at typical speeds (0.1 m/s, 1 rad/s) so fast motion does not lag.
ONE_EURO = {"center": (0.4, 40.0), "rotation": (0.8, 4.0), "expr": (1.5, 2.0), "jaw": (1.5, 4.0), "eyes": (1.5, 4.0)}


@dataclass(frozen=True)
class FocalPrior:
    """A belief about the focal length: log-normal with ``sigma_rel`` ≈ relative 1σ (of log f).

    ``source`` names the kind of evidence (default | device_class | camera_table | metadata |
    regressor | profile | user | fused); ``detail`` says it for people, e.g. "EXIF (Galaxy S24 FE,
    23 mm eq.)". ``parts``: for a fused belief, each piece of evidence (its ``detail``) and its
    share of the belief's precision (shares sum to 1).
    """

    focal_px: float
    sigma_rel: float
    source: str = "default"
    detail: str = ""
    parts: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        return self.detail or self.source

    @property
    def shares(self) -> tuple[tuple[str, float], ...]:
        """(label, share) of every piece of evidence in this belief."""
        return self.parts or ((self.label, 1.0),)


def describe_shares(shares: tuple[tuple[str, float], ...], min_share: float = 0.02) -> str:
    """'EXIF (Galaxy S24 FE, 23 mm eq.) 91% + landmarks 9%' (pieces under ``min_share`` left out)."""
    kept = [(name, share) for name, share in shares if share >= min_share] or list(shares[:1])
    if len(kept) == 1:
        return kept[0][0]
    return " + ".join(f"{name} {share:.0%}" for name, share in kept)


def fuse_focal_priors(priors) -> FocalPrior:
    """Independent pieces of evidence combined in log f (a product of log-normals): the precision-
    weighted mean, σ = (Σ 1/σᵢ²)^-1/2, and each piece's share of the precision (a fused input's own
    parts are carried through). One prior is returned as it is."""
    priors = [p for p in priors if p is not None]
    if not priors:
        raise ValueError("no focal-length evidence to fuse")
    if len(priors) == 1:
        return priors[0]
    precision = [1.0 / max(p.sigma_rel, 1e-6) ** 2 for p in priors]
    total = sum(precision)
    log_f = sum(w * math.log(p.focal_px) for w, p in zip(precision, priors)) / total
    parts: dict[str, float] = {}
    for w, p in zip(precision, priors):
        for name, share in p.shares:
            parts[name] = parts.get(name, 0.0) + share * w / total
    ordered = tuple(sorted(parts.items(), key=lambda kv: -kv[1]))
    return FocalPrior(math.exp(log_f), math.sqrt(1.0 / total), "fused", describe_shares(ordered), ordered)


def default_focal_prior(width: int, height: int) -> FocalPrior:
    """A broad prior: ~53° field of view across the longer side (a typical webcam or phone), with a
    log-normal σ of 0.7 (1σ: 0.5x-2x; 2σ: 0.25x-4x)."""
    return FocalPrior(focal_px=1.0 * max(width, height), sigma_rel=0.7, source="default",
                      detail="no camera information")


@dataclass(frozen=True)
class FramePrior:
    """One frame's predictions (e.g. the regressor's); any field may be None.

    The head's placement is given in image terms (where the head centre projects and the image
    scale ``S = f/Z0``) so that the tracker places it with its own camera; ``translation`` is for
    priors that know it outright (tests, ground truth). ``focal`` is the sequence-level belief of
    the prior's source so far, fused by the tracker with its other evidence.
    """

    rotation: np.ndarray | None = None  # (3,) axis-angle, model space
    head_center_px: np.ndarray | None = None  # (2,) where the head centre projects
    scale_px_per_m: float | None = None  # S = f/Z0 at the head centre
    translation: np.ndarray | None = None  # (3,) metres, camera space
    expr: np.ndarray | None = None
    jaw_pose: np.ndarray | None = None
    focal: FocalPrior | None = None

    @property
    def has_pose(self) -> bool:
        return self.rotation is not None and (self.translation is not None or (
            self.head_center_px is not None and self.scale_px_per_m is not None))


@dataclass(frozen=True)
class TrackerOptions:
    camera_mode: Literal["perspective", "ortho"] = "perspective"
    focal_px: float | None = None  # fixed focal length; None estimates it ("auto")
    focal_prior: FocalPrior | None = None  # prior for auto mode (None: default_focal_prior)
    principal_px: tuple[float, float] | None = None  # None: image centre
    pixel_aspect: float = 1.0  # fy / fx, fixed (1 for square pixels; from a calibration otherwise)
    estimate_identity: bool = True
    iterations: int = 3
    # Per-frame 1σ of a landmark coordinate as a fraction of the face's size (the geometric mean of its
    # landmarks' bounding box sides): the 1.5 px the tracker was tuned with, on the ~290 px faces of the
    # 512² accuracy benchmark (ICT head). Relative, because MediaPipe works in a face crop of fixed
    # size: the fit is then the same at any image size.
    landmark_sigma_rel: float = 0.0052
    huber_sigmas: float = 2.0
    effective_landmarks: float = 20.0  # independent landmarks the correlated bias leaves
    expr_sigma: float | None = None  # prior σ of expressions (None: 0.6 for [0,1] weights, 1.5 otherwise)
    temporal_rot_sigma: float = 0.15  # rad: prior pulling towards the previous frame
    temporal_trans_sigma_m: float = 0.03
    temporal_expr_sigma: float = 0.5
    max_keyframes: int = 24
    refine_every: int = 8  # frames between joint refinements (when keyframes changed)
    refine_iterations: int = 2
    # ρ error that MediaPipe's correlated landmark bias alone causes (measured with benchmarks/accuracy.py:
    # landmark-only focal estimates land near 550-700 px whatever the truth, on 512² frames).
    rho_bias_sigma_per_m: float = 1.5
    focal_observable_sigma: float = 0.25  # posterior relative σ above which the state is "not_observable"
    focal_converged_sigma: float = 0.08
    # Per-frame time the joint refinement may fill after the frame's own fit (in a pipelined engine only
    # until the next frame's landmarks are due: Tracker.step(next_frame_in_s=)).
    frame_budget_ms: float = 7.0
    # Offline and reproducible (flamecam batch): exactly this many refinement units per frame instead of
    # the time budget, so the result does not depend on the machine's speed or load. None: the budget.
    refine_units_per_frame: int | None = None
    smoothing: bool = True  # One-Euro on outputs (parameters per signal in ONE_EURO)
    reinit_after_s: float = 0.5  # re-initialise the pose after losing the face this long
    initial_identity_iterations: int = 8
    # Prior on the identity's absolute size from the iris diameter (11.7 ± 0.5 mm; core.tracker.iris).
    iris_ruler: bool = False
    identity_follow_rate: float = 0.15  # fraction of an identity update applied per frame
    keep_history: bool = False  # keep every frame's observation for refine_sequence() (offline --refine)
    device: str = "cpu"


@dataclass(frozen=True)
class TrackResult:
    """One frame's tracking output (numpy; the type the UI and the recorder consume).

    Frames without a fitted face (``tracking_state`` no_face, lost, other_faces) have NaN pose
    fields (expr, rotation, translation, joint poses, ρ, fitted landmarks): consumers that skip
    non-finite frames draw nothing for them. Identity and intrinsics stay those of the segment.
    """

    frame_index: int
    timestamp_s: float
    tracking_state: str
    shape: np.ndarray  # (S,)
    expr: np.ndarray  # (E,)
    rotation: np.ndarray  # (3,) axis-angle, model space
    translation: np.ndarray  # (3,) metres, camera space
    neck_pose: np.ndarray  # (3,)
    jaw_pose: np.ndarray  # (3,)
    eyes_pose: np.ndarray  # (6,)
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy
    rho_per_m: float
    focal_sigma_px: float
    focal_state: str
    fit_error_px: float
    confidence: float
    landmarks_px: np.ndarray  # (478, 2) detected, NaN without a face
    fitted_landmarks_px: np.ndarray  # (478, 2) projected embedded points, NaN where not embedded
    shape_version: int  # increments when the shared identity changes
    camera_mode: str = "perspective"
    scale_px_per_m: float = float("nan")  # ortho mode: weak-perspective scale
    # What the focal length rests on: (evidence, share) with the landmark data's share as "landmarks".
    focal_evidence: tuple[tuple[str, float], ...] = ()
    # The segment (one person, one camera set-up: core.segments) this frame belongs to; its first
    # frame also carries the core.segments.SegmentStart saying why it started.
    segment_id: int = 0
    segment_start: object | None = None

    @property
    def focal_px(self) -> float:
        return float(self.intrinsics[0])
