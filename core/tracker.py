"""Online perspective tracker: per-frame landmark fitting, identity and focal length shared.

Per frame, a few Gauss-Newton (Levenberg-Marquardt) iterations minimise a robust (Huber)
landmark reprojection loss over head rotation and translation, expression and (articulated
models) jaw and eye poses, warm-started from the previous frame or from a per-frame prior
(the regressor). Jacobians are analytic for rotation, translation, expression, identity and
focal length; jaw/eye columns come from one batched forward pass of finite differences. The
landmark fast path evaluates only the embedded landmark points.

Identity (``shape``) and intrinsics (focal length; principal point at the image centre unless
given) are shared by the whole sequence. Keyframes chosen for pose diversity accumulate
evidence; a joint refinement over them (Schur complement: shared parameters after eliminating
each keyframe's own) updates the shared values beside the per-frame loop, Pixel3DMM-style.

Focal length from landmarks alone is weakly observable: MediaPipe's landmarks carry ~2 px of
slow, pose-linked bias while a 3 % focal change moves them by only 0.03-0.1 px. So the data
term of the joint refinement is weighted as if only ``effective_landmarks`` landmarks were
independent (the bias is correlated), the focal estimate is a MAP under a log-normal prior
(default, regressor, camera profile or metadata), its uncertainty comes from the same
posterior, and the state reads ``not_observable`` until the data alone pin it down. A focal
change rescales the camera-space head about the camera centre (projection of the head centre
and its image scale unchanged), so the overlay does not jump.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from core import camera
from core.embedding import LandmarkEmbedding
from core.filters import OneEuroFilter
from core.head_model import HeadModel, HeadModelLayer
from core.landmarks import NUM_LANDMARKS

FocalState = Literal["fixed", "not_observable", "estimating", "converged"]
TrackingState = Literal["tracking", "lost", "reacquired", "no_face"]
FOCAL_STATES: tuple[str, ...] = ("fixed", "not_observable", "estimating", "converged")
TRACKING_STATES: tuple[str, ...] = ("tracking", "lost", "reacquired", "no_face")
IRIS_IDS = np.arange(468, 478)
# One-Euro (min cutoff Hz, beta per unit of speed) per output signal: the head centre (m), the
# rotation (rad), expressions and joint poses. Slow cutoffs keep a still head still; beta opens
# the filter at typical speeds (0.1 m/s, 1 rad/s) so fast motion does not lag.
ONE_EURO = {"center": (0.4, 40.0), "rotation": (0.8, 4.0), "expr": (1.5, 2.0), "jaw": (1.5, 4.0), "eyes": (1.5, 4.0)}


def default_focal_prior(width: int, height: int) -> "FocalPrior":
    """A broad prior: ~53° field of view across the longer side (a typical webcam or phone), with a
    log-normal σ of 0.7 (1σ: 0.5x-2x; 2σ: 0.25x-4x)."""
    return FocalPrior(focal_px=1.0 * max(width, height), sigma_rel=0.7, source="default")


@dataclass(frozen=True)
class FocalPrior:
    """A belief about the focal length: log-normal with ``sigma_rel`` ≈ relative 1σ."""

    focal_px: float
    sigma_rel: float
    source: str = "default"  # default | regressor | profile | metadata | user


@dataclass(frozen=True)
class FramePrior:
    """Per-frame predictions (e.g. from the regressor); any field may be None."""

    rotation: np.ndarray | None = None  # (3,) axis-angle
    translation: np.ndarray | None = None  # (3,) metres, camera space
    expr: np.ndarray | None = None
    jaw_pose: np.ndarray | None = None
    shape: np.ndarray | None = None
    focal: FocalPrior | None = None


@dataclass(frozen=True)
class TrackerOptions:
    camera_mode: Literal["perspective", "ortho"] = "perspective"
    focal_px: float | None = None  # fixed focal length; None estimates it ("auto")
    focal_prior: FocalPrior | None = None  # prior for auto mode (None: default_focal_prior)
    principal_px: tuple[float, float] | None = None  # None: image centre
    pixel_aspect: float = 1.0  # fy / fx, fixed (1 for square pixels; from a calibration otherwise)
    estimate_identity: bool = True
    iterations: int = 3
    landmark_sigma_px: float = 1.5  # per-frame noise scale of a landmark coordinate
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
    frame_budget_ms: float = 7.0  # per-frame time the joint refinement may fill after the frame's own fit
    smoothing: bool = True  # One-Euro on outputs (parameters per signal in ONE_EURO)
    reinit_after_s: float = 0.5  # re-initialise the pose after losing the face this long
    initial_identity_iterations: int = 8
    identity_follow_rate: float = 0.15  # fraction of an identity update applied per frame
    keep_history: bool = False  # keep every frame's observation for refine_sequence() (offline --refine)
    device: str = "cpu"


@dataclass(frozen=True)
class TrackResult:
    """One frame's tracking output (numpy; the type the UI and the recorder consume)."""

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

    @property
    def focal_px(self) -> float:
        return float(self.intrinsics[0])


def _average_states(states: list["_State"]) -> "_State":
    """Mean of per-frame states (rotations averaged and projected back onto SO(3))."""
    if len(states) == 1:
        return states[0]
    out = states[0].clone()
    for name in ("trans", "expr", "jaw", "eyes", "log_scale", "offset"):
        setattr(out, name, torch.stack([getattr(s, name) for s in states]).mean(0))
    u, _, vh = torch.linalg.svd(torch.stack([s.rot for s in states]).mean(0))
    out.rot = u @ torch.diag(torch.stack([u.new_ones(()), u.new_ones(()), torch.det(u @ vh)])) @ vh
    return out


# --- the landmark fast path ------------------------------------------------------------------


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


# --- small math ----------------------------------------------------------------------------------


def _rows_times_bases(m: torch.Tensor, bases_by_axis: torch.Tensor) -> torch.Tensor:
    """Per-landmark (2, 3) rows times (3, n) bases. m: (L, 2, 3); bases_by_axis: (3, L, n) -> (L, 2, n)."""
    return (m[..., 0, None] * bases_by_axis[0, :, None] + m[..., 1, None] * bases_by_axis[1, :, None]
            + m[..., 2, None] * bases_by_axis[2, :, None])


def _small_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve a small dense system; LAPACK through numpy is faster than torch's for n < ~200 on a CPU."""
    if a.device.type != "cpu":
        return torch.linalg.solve(a, b)
    return torch.from_numpy(np.linalg.solve(a.numpy(), b.numpy()))


def _exp_so3(delta: torch.Tensor) -> torch.Tensor:
    return camera.axis_angle_to_matrix(delta)


@dataclass
class _State:
    """Per-frame unknowns (torch float64). Perspective uses ``trans``; ortho ``log_scale``/``offset``."""

    rot: torch.Tensor  # (3, 3) model-space head rotation R
    trans: torch.Tensor  # (3,)
    expr: torch.Tensor  # (E,)
    jaw: torch.Tensor  # (3,)
    eyes: torch.Tensor  # (6,)
    log_scale: torch.Tensor  # () ortho: log pixels per metre
    offset: torch.Tensor  # (2,) ortho: pixels

    def clone(self) -> "_State":
        return _State(*(getattr(self, f).clone() for f in ("rot", "trans", "expr", "jaw", "eyes", "log_scale", "offset")))


@dataclass
class _Keyframe:
    frame_index: int
    uv: torch.Tensor  # (L, 2)
    weight: torch.Tensor  # (L,)
    state: _State
    bin: tuple[int, int]
    fit_px: float


@dataclass
class _Normal:
    """Normal equations of one frame: local block, coupling to shared parameters, gradients."""

    h_local: torch.Tensor
    h_cross: torch.Tensor | None
    h_shared: torch.Tensor | None
    g_local: torch.Tensor
    g_shared: torch.Tensor | None
    cost: float


class Tracker:
    """Track one face through a sequence. ``step()`` per frame; ``refine_sequence()`` offline."""

    def __init__(self, head: HeadModel, embedding: LandmarkEmbedding, image_size: tuple[int, int],
                 options: TrackerOptions = TrackerOptions()):
        self.head, self.options = head, options
        self.width, self.height = image_size
        self.model = LandmarkModel(head, embedding, options.device)
        self.dev = self.model.device
        kw = self.kw = dict(dtype=torch.float64, device=self.dev)
        self.flip = camera.axis_flip(torch.zeros((), **kw))
        self.ortho = options.camera_mode == "ortho"
        cx, cy = options.principal_px or (self.width / 2, self.height / 2)
        self.principal = torch.tensor([cx, cy], **kw)
        self.focal_fixed = options.focal_px is not None
        prior = options.focal_prior or default_focal_prior(self.width, self.height)
        self.focal_prior = prior
        self.log_focal = torch.tensor(math.log(options.focal_px if self.focal_fixed else prior.focal_px), **kw)
        self.focal_sigma_rel = 0.0 if self.focal_fixed else prior.sigma_rel
        self.focal_state: str = "fixed" if self.focal_fixed else "not_observable"
        self.shape = torch.zeros(head.num_shape, **kw)  # the shared identity estimate (refinement's)
        # The identity frames are fitted and reported with: it follows ``shape`` gradually, so an
        # identity update never pops the mesh (its depth is re-solved a little each frame).
        self.shape_live = self.shape.clone()
        self.shape_version = 0
        bounded = head.kind in {"ict", "builtin"} or bool(head.expression_names)
        self.expr_bounds = (0.0, 1.0) if bounded else None
        self.expr_sigma = options.expr_sigma or (0.6 if bounded else 1.5)
        self.state: _State | None = None
        self.last_seen_s: float | None = None
        self.keyframes: list[_Keyframe] = []
        self._frames_since_refine = 0
        self._keyframes_changed = False
        self._filters = {k: OneEuroFilter(*params) for k, params in ONE_EURO.items()}
        self._recent_fits: deque[float] = deque(maxlen=30)
        self._last_result: TrackResult | None = None
        self._temporal_scale = 1.0
        self._frame_dt = 1 / 30.0  # running typical interval between fitted frames (s)
        self._lost_since_fit = False  # a no-face frame came after the last fit
        self.history: list[_Keyframe] = []
        self._history_meta: dict[int, tuple[float, np.ndarray, str]] = {}
        self._block_list: list[tuple[str, int]] | None = None
        self._blocks()
        self._refine_job = None  # a running joint refinement (generator), advanced a slice per frame
        self._unit_s = 0.002  # running mean duration of one refinement unit
        self._starved = 0  # frames in a row without a refinement unit
        self._shaped_for: torch.Tensor | None = None  # cache of template + identity at landmarks

    # -- public ------------------------------------------------------------------------------

    @property
    def focal_px(self) -> float:
        return float(torch.exp(self.log_focal))

    def intrinsics(self) -> np.ndarray:
        f = self.options.focal_px if self.focal_fixed else self.focal_px
        return np.array([f, f * self.options.pixel_aspect, float(self.principal[0]), float(self.principal[1])])

    def set_focal_prior(self, prior: FocalPrior) -> None:
        """Use a new prior (profile, metadata, regressor). While the data say nothing about the focal
        length (no keyframes yet, or not observable) the focal follows the prior at once, depth
        rescaled so the mesh does not jump; otherwise the estimate moves at the next refinement."""
        if self.focal_fixed:
            return
        self.focal_prior = prior
        if not self.keyframes or (self.focal_state == "not_observable" and self._refine_job is None):
            self._set_focal(math.log(prior.focal_px), self.keyframes)
            self.focal_sigma_rel = prior.sigma_rel

    def step(self, landmarks_px: np.ndarray | None, timestamp_s: float, frame_index: int,
             prior: FramePrior | None = None, presence: np.ndarray | None = None) -> TrackResult:
        """Fit one frame. landmarks_px: (478, 2) detections or None when no face was found."""
        if landmarks_px is None:
            self._lost_since_fit = self.state is not None
            if self._last_result is None:
                return self._result(frame_index, timestamp_s, "no_face", None, float("nan"), 0.0)
            # Keep the last state (what the user saw) until the face comes back.
            nan2 = np.full((NUM_LANDMARKS, 2), np.nan)
            return replace(self._last_result, frame_index=frame_index, timestamp_s=timestamp_s,
                           tracking_state="lost", confidence=0.0, fit_error_px=float("nan"), landmarks_px=nan2)
        step_start = time.perf_counter()
        uv, weight = self._observation(landmarks_px, presence)
        lost_for = None if self.last_seen_s is None else timestamp_s - self.last_seen_s
        reacquired = self.state is not None and self._lost_since_fit
        self._lost_since_fit = False
        if lost_for is not None and not reacquired and lost_for > 0:  # typical interval between fitted frames
            self._frame_dt = 0.9 * self._frame_dt + 0.1 * min(lost_for, 1.0)
        if self.state is None or (lost_for is not None and lost_for > self.options.reinit_after_s):
            self.state = self._initial_state(uv, weight, prior)
            for f in self._filters.values():
                f.reset()
        previous = self.state.clone()
        # The temporal prior loosens with the time since the last fitted frame (after a loss).
        self._temporal_scale = 1.0 if lost_for is None else max(1.0, lost_for / self._frame_dt)
        self.state, _ = self._solve_frame(uv, weight, self.state, previous, self.options.iterations)
        self.last_seen_s = timestamp_s
        fit = self._fit_error(uv, self.state)
        first = not self.keyframes and self._last_result is None
        self._consider_keyframe(frame_index, uv, weight, fit)
        if first and self.keyframes and self.options.estimate_identity:
            # Pixel3DMM-style start: fit the identity to the first frame before tracking on, so the
            # online refinement only has small corrections left (a one-off cost of ~0.1 s).
            self.refine_shared(self.options.initial_identity_iterations)
            self._follow_shape(1.0)
            self.state, _ = self._solve_frame(uv, weight, self.state, None, self.options.iterations)
            fit = self._fit_error(uv, self.state)
            self._keyframes_changed = False
        self._frames_since_refine += 1
        if self._refine_job is None and self._keyframes_changed and self._frames_since_refine >= self.options.refine_every:
            self._refine_job = self._refine_steps(self.options.refine_iterations)
            self._keyframes_changed, self._frames_since_refine = False, 0
        if self._refine_job is not None:
            self._advance_refinement(step_start)
        self._follow_shape()
        tracking = "reacquired" if reacquired else "tracking"
        self._last_result = self._result(frame_index, timestamp_s, tracking, landmarks_px, fit, self._confidence(fit, uv))
        if self.options.keep_history:
            self.history.append(_Keyframe(frame_index, uv, weight, self.state.clone(), (0, 0), fit))
            self._history_meta[frame_index] = (timestamp_s, np.asarray(landmarks_px, np.float64), tracking)
        return self._last_result

    def _advance_refinement(self, step_start: float) -> None:
        """Run units of the joint refinement while the frame's time budget allows: a unit is only
        started if its typical duration still fits, and at least one runs every few frames."""
        budget = self.options.frame_budget_ms / 1000
        ran = 0
        while True:
            elapsed = time.perf_counter() - step_start
            if elapsed + self._unit_s > budget and (ran or self._starved < 3):
                self._starved += ran == 0
                return
            t0 = time.perf_counter()
            try:
                next(self._refine_job)
            except StopIteration:
                self._refine_job = None
                return
            self._unit_s = 0.8 * self._unit_s + 0.2 * (time.perf_counter() - t0)
            ran += 1
            self._starved = 0

    def _follow_shape(self, rate: float | None = None) -> None:
        """Move the live identity towards the estimate (a fraction per frame; 1 jumps)."""
        gap = self.shape - self.shape_live
        if float(gap.abs().max()) > 1e-4:
            self.shape_live = self.shape_live + (self.options.identity_follow_rate if rate is None else rate) * gap
            self.shape_version += 1

    def refine_sequence(self, rounds: int = 3, batch: int = 48, seed: int = 0,
                        smoothness: float = 0.3) -> list[TrackResult]:
        """Offline global refinement of everything tracked so far (needs ``keep_history``).

        Pixel3DMM-style: alternate (a) the shared identity/focal update over a random batch of
        frames plus the keyframes and (b) sweeps re-solving each frame with the shared values
        fixed and a smoothness prior pulling it towards its neighbours (the online temporal prior's
        σ times ``smoothness``). Returns one result per
        tracked frame (unfiltered: the smoothness term replaces the online One-Euro filter).
        """
        frames = self.history
        if not frames:
            return []
        rng = np.random.default_rng(seed)
        self._temporal_scale = smoothness
        for _ in range(rounds):
            pick = rng.choice(len(frames), size=min(batch, len(frames)), replace=False)
            # A random batch plus the frames chosen as keyframes online (each observation once).
            key_ids = {k.frame_index for k in self.keyframes}
            chosen = sorted(set(pick.tolist()) | {i for i, f in enumerate(frames) if f.frame_index in key_ids})
            self.refine_shared(2, [frames[i] for i in chosen])
            self._follow_shape(1.0)
            for _sweep in range(2):
                for i, kf in enumerate(frames):
                    neighbours = [frames[j].state for j in (i - 1, i + 1) if 0 <= j < len(frames)]
                    kf.state, _ = self._solve_frame(kf.uv, kf.weight, kf.state, _average_states(neighbours), 2)
        results = []
        for kf in frames:
            timestamp_s, landmarks_px, tracking = self._history_meta[kf.frame_index]
            self.state = kf.state
            fit = self._fit_error(kf.uv, kf.state)
            results.append(self._result(kf.frame_index, timestamp_s, tracking, landmarks_px, fit,
                                        self._confidence(fit, kf.uv), smooth=False))
        return results

    # -- observations and initialisation -----------------------------------------------------

    def _observation(self, landmarks_px: np.ndarray, presence: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        uv = torch.as_tensor(np.asarray(landmarks_px, np.float64)[self.model.ids], **self.kw)
        weight = self.model.base_weight.clone()
        if presence is not None:
            weight = weight * torch.as_tensor(np.clip(presence[self.model.ids], 0.05, 1.0), **self.kw)
        weight = torch.where(torch.isfinite(uv).all(1), weight, torch.zeros_like(weight))
        return torch.nan_to_num(uv), weight

    def _initial_state(self, uv: torch.Tensor, weight: torch.Tensor, prior: FramePrior | None) -> _State:
        import cv2  # noqa: PLC0415

        E = self.head.num_expr
        kw = self.kw
        zeros = lambda n: torch.zeros(n, **kw)  # noqa: E731
        expr = zeros(E) if prior is None or prior.expr is None else torch.as_tensor(prior.expr, **kw)
        if prior is not None and prior.rotation is not None and prior.translation is not None:
            rot = camera.axis_angle_to_matrix(torch.as_tensor(prior.rotation, **kw))
            trans = torch.as_tensor(prior.translation, **kw)
        else:
            pts = self.model.points(self.shape_live[None], zeros(E)[None])[0].cpu().numpy()
            use = (weight > 0).cpu().numpy()
            k_matrix = camera.intrinsics_matrix(torch.as_tensor(self.intrinsics())).numpy()
            ok, rvec, tvec = cv2.solvePnP(pts[use], uv.cpu().numpy()[use], k_matrix, None, flags=cv2.SOLVEPNP_SQPNP)
            if not ok:
                raise RuntimeError("could not initialise the head pose from the landmarks (PnP failed)")
            rot_cam = torch.as_tensor(cv2.Rodrigues(rvec)[0], **kw)
            rot = self.flip[:, None] * rot_cam  # R_cam = diag(flip) @ R
            trans = torch.as_tensor(tvec.ravel(), **kw)
        center = self.flip * (rot @ self.model.head_center) + trans
        scale = self.focal_px / center[2]
        state = _State(rot, trans, expr.clamp(*self.expr_bounds) if self.expr_bounds else expr, zeros(3), zeros(6),
                       torch.log(scale), scale * center[:2])
        state, _ = self._solve_frame(uv, weight, state, None, 6)
        return state

    # -- residuals and Jacobians ---------------------------------------------------------------

    def _blocks(self) -> list[tuple[str, int]]:
        """The per-frame unknowns as (name, width), in column order (fixed for a tracker)."""
        if self._block_list is not None:
            return self._block_list
        blocks = [("rot", 3), ("cam", 3), ("expr", self.head.num_expr)]
        if self.model.articulated and self.head.has_joint("jaw"):
            blocks.append(("jaw", 3))
        if self.model.has_iris:
            blocks.append(("eyes", 6))
        self._block_list = blocks
        self._block_offsets = dict(zip((n for n, _ in blocks), np.cumsum([0] + [w for _, w in blocks])[:-1].tolist()))
        return blocks

    def _state_rho(self, state: _State) -> torch.Tensor:
        """ρ = 1/Z0 of a state (0 in ortho mode, which assumes it)."""
        if self.ortho:
            return torch.zeros((), **self.kw)
        return 1.0 / (self.flip[2] * (state.rot[2] @ self.model.head_center) + state.trans[2])

    def _bias(self, state: _State) -> torch.Tensor:
        """(L, 3) where MediaPipe sees each landmark relative to its surface point, at this ρ."""
        return self.model.bias_offset + self.model.bias_slope * (self._state_rho(state) - self.model.rho_ref)

    def _points(self, state: _State, shape: torch.Tensor, with_jacobian: bool):
        """Unrotated landmark points as MediaPipe would place them (L, 3) and, for articulated
        models, their jaw/eye derivative columns (L, 3, k) by forward differences in one batch."""
        if not self.model.articulated:
            if shape is not self._shaped_for:
                self._shaped = self.model.template + self.model.shapedirs @ shape
                self._shaped_for = shape
            return self._shaped + self.model.exprdirs @ state.expr + self._bias(state), None
        eps = 1e-4
        n_jaw = 3 if self.head.has_joint("jaw") else 0
        n_eyes = 6 if self.model.has_iris else 0
        k = (n_jaw + n_eyes) if with_jacobian else 0
        pose = torch.cat([state.jaw, state.eyes])[None].repeat(1 + k, 1)
        cols = torch.arange(k, device=self.dev) + torch.where(torch.arange(k, device=self.dev) < n_jaw, 0, 3 - n_jaw)
        pose[1 + torch.arange(k, device=self.dev), cols] += eps
        pts_all = self.model.points(shape[None].expand(1 + k, -1), state.expr[None].expand(1 + k, -1),
                                    pose[:, :3], pose[:, 3:])
        pts = pts_all[0]
        art = ((pts_all[1:] - pts) / eps).permute(1, 2, 0) if k else None
        return pts + self._bias(state), art

    def _evaluate(self, state: _State, shape: torch.Tensor, with_jacobian: bool, shared: tuple[str, ...] = ()):
        """Projected landmarks (L, 2) and, on request, Jacobian blocks (L, 2, n) by parameter group."""
        pts, art = self._points(state, shape, with_jacobian)
        flip_rot = self.flip[:, None] * state.rot  # model -> camera rotation
        if self.ortho:
            rel = (pts - self.model.head_center) @ flip_rot.T
            scale = torch.exp(state.log_scale)
            uv = camera.project_weak_perspective(rel, torch.stack([scale, scale]), state.offset, self.principal)
            if not with_jacobian:
                return uv, None, None
            zero = torch.zeros_like(rel[:, 0])
            dudx = torch.stack([zero + scale, zero, zero, zero, zero + scale, zero], -1).view(-1, 2, 3)
            j_cam = torch.cat([(rel[:, :2] * scale)[..., None], torch.eye(2, **self.kw).expand(len(pts), 2, 2)], -1)
            p_rot = pts - self.model.head_center
        else:
            cam = pts @ flip_rot.T + state.trans
            f = torch.exp(self.log_focal)
            fy = f * self.options.pixel_aspect
            uv = camera.project_perspective(cam, torch.stack([f, fy, self.principal[0], self.principal[1]]))
            if not with_jacobian:
                return uv, None, None
            inv_z = 1.0 / cam[:, 2]
            fz, fyz = f * inv_z, fy * inv_z
            zero = torch.zeros_like(fz)
            dudx = torch.stack([fz, zero, -cam[:, 0] * fz * inv_z, zero, fyz, -cam[:, 1] * fyz * inv_z], -1).view(-1, 2, 3)
            p_rot = pts
        m = dudx @ flip_rot  # d uv / d (unrotated model point), (L, 2, 3)
        if not self.ortho:
            # The bias model moves with ρ = 1/Z0: dρ/dt_z = -ρ².
            rho = self._state_rho(state)
            bias_move = m @ self.model.bias_slope[..., None]  # (L, 2, 1) d uv / d ρ
            j_cam = torch.cat([dudx[..., :2], dudx[..., 2:] - rho ** 2 * bias_move], -1)
        # Rotation: right perturbation R <- R exp(δ), d(R exp(δ) p)/dδ = -R [p]x; a row r times
        # -[p]x is the cross product p x r.
        cols = {"rot": torch.linalg.cross(p_rot[:, None, :].expand_as(m), m), "cam": j_cam,
                "expr": _rows_times_bases(m, self.model.exprdirs_by_axis)}
        if art is not None:
            j_art = m @ art
            if self.head.has_joint("jaw"):
                cols["jaw"], j_art = j_art[..., :3], j_art[..., 3:]
            if self.model.has_iris:
                cols["eyes"] = j_art
        shared_cols = None
        if shared:
            shared_cols = {}
            if "shape" in shared:
                shared_cols["shape"] = _rows_times_bases(m, self.model.shapedirs_by_axis)
            if "focal" in shared:
                # d uv / d log f with the head's depth scaled by f (see _rescale_for_focal): the image
                # scale cancels to first order and what is left is the perspective signal.
                # The shared unknown is ψ = 1/f: each frame's ρ = S·ψ, so the perspective signal is
                # about linear in ψ (in log f the likelihood is flat towards long lenses, steep
                # towards short ones, and Gauss-Newton crawls). d/dψ = -f · d/dlog f.
                depth = (flip_rot @ self.model.head_center + state.trans)[2]
                shared_cols["focal"] = (-f * ((uv - self.principal) + dudx[..., 2] * depth)
                                        + f * rho * bias_move[..., 0])[..., None]  # ρ ∝ ψ here
        return uv, cols, shared_cols

    def _robust(self, resid: torch.Tensor, weight: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
        """Huber loss on each landmark's 2D residual: IRLS weights (L,) and the cost.

        cost = Σ weight/σ² · (|r|² if |r| <= k else 2k|r| - k²), whose half-gradient is Jᵀ·W·r with
        these weights, so the normal equations and the cost agree."""
        norm = resid.norm(dim=-1)
        k = self.options.huber_sigmas * self.options.landmark_sigma_px
        inlier = norm <= k
        irls = torch.where(inlier, torch.ones_like(norm), k / norm.clamp_min(1e-9))
        loss = torch.where(inlier, norm ** 2, 2 * k * norm - k ** 2)
        scale = weight / sigma ** 2
        return scale * irls, float((scale * loss).sum())

    def _normal_equations(self, uv_obs, weight, state: _State, shape, previous: _State | None,
                          shared: tuple[str, ...], data_sigma: float) -> _Normal:
        uv, cols, shared_cols = self._evaluate(state, shape, True, shared)
        resid = uv - uv_obs  # (L, 2)
        w, cost = self._robust(resid, weight, data_sigma)  # (L,)
        blocks = self._blocks()
        jac = torch.cat([cols[name] for name, _ in blocks], -1).reshape(-1, sum(w_ for _, w_ in blocks))  # (2L, n)
        w2 = w.repeat_interleave(2)
        r2 = resid.reshape(-1)
        jw = jac * w2[:, None]
        h_local = jw.T @ jac
        g_local = jw.T @ r2
        offsets = self._block_offsets
        diag = torch.zeros(len(g_local), **self.kw)
        grad = torch.zeros(len(g_local), **self.kw)
        for name, first, diff, sigma in self._priors(state, previous):
            sl = slice(offsets[name] + first, offsets[name] + first + len(diff))
            diag[sl] += 1.0 / sigma ** 2
            grad[sl] += diff / sigma ** 2
            cost += float((diff ** 2).sum()) / sigma ** 2
        h_local = h_local + torch.diag(diag)
        g_local = g_local + grad
        fixed = self._active_bounds(state, g_local, offsets["expr"])
        h_cross = h_shared = g_shared = None
        if shared_cols:
            js = torch.cat(list(shared_cols.values()), -1).reshape(len(r2), -1)
            jsw = js * w2[:, None]
            h_cross = jw.T @ js
            h_shared = jsw.T @ js
            g_shared = jsw.T @ r2
            if fixed is not None:
                h_cross[fixed] = 0.0
        if fixed is not None:
            # Expressions held at a bound take no step: a step that is clamped afterwards is not
            # the one Gauss-Newton solved for, and through the coupled unknowns it can raise the cost.
            h_local[fixed] = 0.0
            h_local[:, fixed] = 0.0
            h_local[fixed, fixed] = 1.0
            g_local[fixed] = 0.0
        return _Normal(h_local, h_cross, h_shared, g_local, g_shared, cost)

    def _apply(self, state: _State, delta: torch.Tensor) -> _State:
        new = state.clone()
        start = 0
        for name, width in self._blocks():
            d = delta[start:start + width]
            start += width
            if name == "rot":
                new.rot = state.rot @ _exp_so3(d)
            elif name == "cam":
                if self.ortho:
                    new.log_scale = state.log_scale + d[0]
                    new.offset = state.offset + d[1:]
                else:
                    new.trans = state.trans + d
            elif name == "expr":
                new.expr = state.expr + d
                if self.expr_bounds:
                    new.expr = new.expr.clamp(*self.expr_bounds)
            elif name == "jaw":
                new.jaw = state.jaw + d
            elif name == "eyes":
                new.eyes = state.eyes + d
        return new

    def _active_bounds(self, state: _State, g_local: torch.Tensor, start: int) -> torch.Tensor | None:
        """Local columns of expressions at a bound whose gradient pushes them outwards (or None)."""
        if self.expr_bounds is None:
            return None
        lo, hi = self.expr_bounds
        g = g_local[start:start + len(state.expr)]
        held = ((state.expr <= lo + 1e-9) & (g > 0)) | ((state.expr >= hi - 1e-9) & (g < 0))
        return torch.nonzero(held).flatten() + start if bool(held.any()) else None

    def _priors(self, state: _State, previous: _State | None) -> list[tuple[str, int, torch.Tensor, float]]:
        """Gaussian priors as (block, first column in the block, value - mean, σ)."""
        blocks = {n for n, _ in self._blocks()}
        terms = [("expr", 0, state.expr, self.expr_sigma)]
        if "jaw" in blocks:  # opening (x) is free-ish; sideways and twist stay small
            terms += [("jaw", 0, state.jaw[:1], 0.3), ("jaw", 1, state.jaw[1:], 0.05)]
        if "eyes" in blocks:
            terms.append(("eyes", 0, state.eyes, 0.3))
        if previous is not None:
            scale = self._temporal_scale
            sig_rot, sig_trans, sig_expr = (scale * self.options.temporal_rot_sigma,
                                            scale * self.options.temporal_trans_sigma_m,
                                            scale * self.options.temporal_expr_sigma)
            rel = previous.rot.T @ state.rot  # small: its skew part is the rotation vector (right-perturbation frame)
            d_rot = 0.5 * torch.stack([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]])
            terms.append(("rot", 0, d_rot, sig_rot))
            if self.ortho:
                depth = self.focal_px / float(torch.exp(state.log_scale))
                terms += [("cam", 0, (state.log_scale - previous.log_scale)[None], sig_trans / depth),
                          ("cam", 1, state.offset - previous.offset, sig_trans * self.focal_px / depth)]
            else:
                terms.append(("cam", 0, state.trans - previous.trans, sig_trans))
            terms.append(("expr", 0, state.expr - previous.expr, sig_expr))
        return terms

    def _cost(self, uv_obs, weight, state: _State, shape, previous: _State | None, data_sigma: float) -> float:
        """The objective of :meth:`_normal_equations` without its Jacobians."""
        uv, _, _ = self._evaluate(state, shape, False)
        resid = uv - uv_obs
        _, cost = self._robust(resid, weight, data_sigma)
        return cost + sum(float((d ** 2).sum()) / sg ** 2 for _, _, d, sg in self._priors(state, previous))

    def _solve_frame(self, uv_obs, weight, state: _State, previous: _State | None, iterations: int,
                     shape: torch.Tensor | None = None) -> tuple[_State, float]:
        """Levenberg-Marquardt on one frame's own parameters (shared ones fixed).

        A trial step is first judged by its cost alone; its Jacobian is computed only when the
        step is taken and another iteration follows. Stops early once steps stop paying.
        """
        shape = self.shape_live if shape is None else shape
        sigma = self.options.landmark_sigma_px
        lam = 1e-3
        normal = self._normal_equations(uv_obs, weight, state, shape, previous, (), sigma)
        cost = normal.cost
        for it in range(iterations):
            h = normal.h_local
            delta = -_small_solve(h + lam * torch.diag(h.diagonal()).clamp_min(1e-9), normal.g_local)
            trial = self._apply(state, delta)
            trial_cost = self._cost(uv_obs, weight, trial, shape, previous, sigma)
            if trial_cost <= cost:
                converged = cost - trial_cost < 1e-3 * cost
                state, cost = trial, trial_cost
                lam = max(lam / 5, 1e-6)
                if converged or it == iterations - 1:
                    break
                normal = self._normal_equations(uv_obs, weight, state, shape, previous, (), sigma)
            else:
                lam *= 10
        return state, cost

    def _fit_error(self, uv_obs: torch.Tensor, state: _State) -> float:
        uv, _, _ = self._evaluate(state, self.shape_live, False)
        return float((uv - uv_obs).norm(dim=-1).pow(2).mean().sqrt())

    def _confidence(self, fit_px: float, uv_obs: torch.Tensor) -> float:
        size = float((uv_obs.max(0).values - uv_obs.min(0).values).norm())
        nme = fit_px / max(size, 1.0)
        return float(math.exp(-((nme / 0.02) ** 2)))

    # -- shared identity and focal ----------------------------------------------------------------

    def _pose_bin(self, state: _State) -> tuple[int, int]:
        fwd = state.rot @ torch.tensor([0.0, 0.0, 1.0], **self.kw)  # where the face points
        yaw = math.degrees(math.atan2(float(fwd[0]), float(fwd[2])))
        pitch = math.degrees(math.asin(max(-1.0, min(1.0, float(fwd[1])))))
        return int(round(yaw / 8.0)), int(round(pitch / 10.0))

    def _consider_keyframe(self, frame_index: int, uv, weight, fit_px: float) -> None:
        if self.focal_fixed and not self.options.estimate_identity:
            return
        # Skip mis-tracked frames: those fitting much worse than the recent ones (model error
        # such as ortho at close range raises every frame's error alike, so the test is relative).
        self._recent_fits.append(fit_px)
        if fit_px > 2.0 * float(np.median(self._recent_fits)) + self.options.landmark_sigma_px:
            return
        key = self._pose_bin(self.state)
        same = [k for k in self.keyframes if k.bin == key]
        neutral = float(self.state.expr.abs().mean()) < 0.15
        if same:
            old = same[0]
            if not (neutral and fit_px < 0.9 * old.fit_px):
                return
            self.keyframes.remove(old)
        elif len(self.keyframes) >= self.options.max_keyframes:
            worst = max(self.keyframes, key=lambda k: k.fit_px)
            self.keyframes.remove(worst)
        self.keyframes.append(_Keyframe(frame_index, uv, weight, self.state.clone(), key, fit_px))
        self._keyframes_changed = True

    def _shared_vector(self, only: list[str] | None = None) -> tuple[list[str], torch.Tensor]:
        """Names of the shared unknowns this tracker estimates, and their current values."""
        names, parts = [], []
        if self.options.estimate_identity:
            names.append("shape")
            parts.append(self.shape)
        if not self.focal_fixed and not self.ortho:
            names.append("focal")
            parts.append(torch.exp(-self.log_focal)[None])  # ψ = 1/f
        if only is not None:
            parts = [p for n, p in zip(names, parts) if n in only]
            names = [n for n in names if n in only]
        return names, torch.cat(parts) if parts else torch.zeros(0, **self.kw)

    def _data_sigma_shared(self) -> float:
        # Correlated landmark bias: weigh the data as if only N_eff landmarks were independent.
        n = max(self.model.num_landmarks, 1)
        return self.options.landmark_sigma_px * math.sqrt(n / min(self.options.effective_landmarks, n))

    def refine_shared(self, iterations: int = 2, frames: list[_Keyframe] | None = None) -> None:
        """Joint refinement of identity and focal over keyframes, run to completion."""
        for _ in self._refine_steps(iterations, frames):
            pass

    def _refine_steps(self, iterations: int, frames: list[_Keyframe] | None = None):
        """Schur-complement Levenberg-Marquardt on the shared unknowns, as a generator that yields
        after each keyframe's work so the online loop can run it in time slices between frames.

        Identity and the keyframes' own unknowns take joint LM steps. The focal length (ψ = 1/f)
        moves first, in closed form: the data's marginal information about ψ (identity
        eliminated) is a Gaussian whose variance gets the landmark-bias floor added
        (``rho_bias_sigma_per_m``), then it is combined with the prior. A step that only the
        data's bias would justify is therefore damped by the prior, and the reported σ says so.
        """
        frames = list(self.keyframes if frames is None else frames)
        names, _ = self._shared_vector()
        if not frames or not names:
            return
        sigma = self._data_sigma_shared()
        n_shape = self.head.num_shape if "shape" in names else 0
        lam = 1e-3
        for _iteration in range(iterations):
            s_mat = torch.zeros(len(self._shared_vector(names)[1]), len(self._shared_vector(names)[1]), **self.kw)
            s_grad = torch.zeros(len(s_mat), **self.kw)
            normals = []
            for kf in frames:
                ne = self._normal_equations(kf.uv, kf.weight, kf.state, self.shape, None, tuple(names), sigma)
                h_inv = torch.linalg.inv(ne.h_local + 1e-9 * torch.eye(len(ne.h_local), **self.kw))
                s_mat = s_mat + ne.h_shared - ne.h_cross.T @ h_inv @ ne.h_cross
                s_grad = s_grad + ne.g_shared - ne.h_cross.T @ h_inv @ ne.g_local
                normals.append(ne)
                yield
            if n_shape:
                s_mat[:n_shape, :n_shape] += torch.eye(n_shape, **self.kw)  # identity prior N(0, 1)
                s_grad[:n_shape] += self.shape
            d_focal = torch.zeros(1 if "focal" in names else 0, **self.kw)
            if "focal" in names:
                d_focal = self._focal_step(s_mat, s_grad, n_shape, len(frames))
                if float(d_focal.abs()) > 0:
                    old_log_f = float(self.log_focal)
                    self._apply_shared(["focal"], d_focal)
                    self._rescale_after_focal_change(old_log_f, frames)
            cost = float((self.shape ** 2).sum()) if n_shape else 0.0
            for kf in frames:
                cost += self._cost(kf.uv, kf.weight, kf.state, self.shape, None, sigma)
            yield
            if not n_shape:
                continue
            for _attempt in range(4):  # Levenberg-Marquardt on everything: damp until the cost drops
                # Reduced system for identity with damped keyframe blocks (ψ already moved).
                a_ss = torch.eye(n_shape, **self.kw)
                g_s = self.shape.clone()
                inverses = []
                for ne in normals:
                    h_inv = torch.linalg.inv(ne.h_local + lam * torch.diag(ne.h_local.diagonal())
                                             + 1e-9 * torch.eye(len(ne.h_local), **self.kw))
                    cross_s, cross_f = ne.h_cross[:, :n_shape], ne.h_cross[:, n_shape:]
                    a_ss = a_ss + ne.h_shared[:n_shape, :n_shape] - cross_s.T @ h_inv @ cross_s
                    g_s = g_s + ne.g_shared[:n_shape] + ne.h_shared[:n_shape, n_shape:] @ d_focal \
                        - cross_s.T @ h_inv @ (ne.g_local + cross_f @ d_focal)
                    inverses.append(h_inv)
                d_shape = -torch.linalg.solve(a_ss + lam * torch.diag(a_ss.diagonal()), g_s)
                d_shared = torch.cat([d_shape, d_focal])
                old = (self.shape, [kf.state for kf in frames])
                self.shape = self.shape + d_shape
                for kf, ne, h_inv in zip(frames, normals, inverses):
                    kf.state = self._apply(kf.state, -h_inv @ (ne.g_local + ne.h_cross @ d_shared))
                new_cost = float((self.shape ** 2).sum())
                for kf in frames:
                    new_cost += self._cost(kf.uv, kf.weight, kf.state, self.shape, None, sigma)
                yield
                if new_cost <= cost:
                    lam = max(lam / 5, 1e-6)
                    break
                self.shape, states = old
                for kf, st in zip(frames, states):
                    kf.state = st
                lam *= 10

    def _focal_step(self, s_mat: torch.Tensor, s_grad: torch.Tensor, n_shape: int, num_frames: int) -> torch.Tensor:
        """Closed-form ψ update from the data's marginal (identity eliminated) plus the bias floor
        and the prior; also updates the focal uncertainty and state. Returns δψ, shape (1,)."""
        psi = float(torch.exp(-self.log_focal))
        info, grad = float(s_mat[-1, -1]), float(s_grad[-1])
        if n_shape:
            solve = torch.linalg.solve(s_mat[:n_shape, :n_shape], torch.stack([s_mat[:n_shape, -1], s_grad[:n_shape]], 1))
            info -= float(s_mat[-1, :n_shape] @ solve[:, 0])
            grad -= float(s_mat[-1, :n_shape] @ solve[:, 1])
        rho = float(np.mean([self._rho(k.state) for k in self.keyframes])) if self.keyframes else self._rho(self.state)
        bias_var = (self.options.rho_bias_sigma_per_m * psi / max(rho, 1e-6)) ** 2
        var_data = (1.0 / info if info > 0 else float("inf")) + bias_var
        psi_data = psi - grad / info if info > 0 else psi
        sigma_p = self.focal_prior.sigma_rel
        jac_p = -1.0 / (psi * sigma_p)  # of the prior residual (log f - μ)/σ
        psi_prior = psi - ((float(self.log_focal) - math.log(self.focal_prior.focal_px)) / sigma_p) / jac_p
        w_data, w_prior = 1.0 / var_data, jac_p ** 2
        psi_post = (w_data * psi_data + w_prior * psi_prior) / (w_data + w_prior)
        self.focal_sigma_rel = math.sqrt(1.0 / (w_data + w_prior)) / psi
        yaw_bins = {k.bin[0] for k in self.keyframes}
        if num_frames < 3 or len(yaw_bins) < 3:
            self.focal_state = "not_observable"  # too little pose diversity to weigh the data at all
            self.focal_sigma_rel = sigma_p
            # The posterior is the prior: go to it (it may have moved since, e.g. the regressor's).
            step = float(np.clip(math.log(self.focal_prior.focal_px * psi), -0.5, 0.5))
            return torch.tensor([psi * (math.exp(-step) - 1)], **self.kw)
        o = self.options
        self.focal_state = ("converged" if self.focal_sigma_rel < o.focal_converged_sigma else
                            "estimating" if self.focal_sigma_rel < o.focal_observable_sigma else "not_observable")
        step = float(np.clip(math.log(max(psi_post, 1e-12) / psi), -0.5, 0.5))  # |Δ log ψ| <= 0.5 per step
        return torch.tensor([psi * (math.exp(step) - 1)], **self.kw)

    def _apply_shared(self, names: list[str], delta: torch.Tensor) -> None:
        start = 0
        for name in names:
            if name == "shape":
                self.shape = self.shape + delta[: self.head.num_shape]
                start = self.head.num_shape
            elif name == "focal":
                psi = torch.exp(-self.log_focal) + delta[start]
                longest = max(self.width, self.height)  # keep f within [0.2, 50] image sizes
                self.log_focal = -torch.log(psi.clamp(1.0 / (50 * longest), 1.0 / (0.2 * longest)))

    def _rho(self, state: _State) -> float:
        return 1.0 / float((self.flip * (state.rot @ self.model.head_center) + state.trans)[2])

    def _set_focal(self, log_f: float, keyframes: list[_Keyframe] = ()) -> None:
        """Change the shared focal length, rescaling the current head (and ``keyframes``) so the
        projection stays put."""
        previous = float(self.log_focal)
        self.log_focal = torch.tensor(log_f, **self.kw)
        self._rescale_after_focal_change(previous, keyframes)

    def _rescale_after_focal_change(self, previous_log_focal: float, keyframes) -> None:
        """Rescale these keyframes (copied: a running refinement may hold the old states) and the
        live frame at once, so the next frame starts consistent with the new focal length."""
        for kf in keyframes:
            kf.state = kf.state.clone()
            self._rescale_for_focal(kf.state, previous_log_focal)
        if self.state is not None:
            self._rescale_for_focal(self.state, previous_log_focal)

    def _rescale_for_focal(self, state: _State, previous_log_focal: float) -> None:
        """Scale the head's depth by f'/f, keeping its lateral position: the head centre projects to
        the same pixel and the face keeps its image scale, so a focal update does not make the mesh
        jump; only the perspective distortion changes."""
        ratio = math.exp(float(self.log_focal) - previous_log_focal)
        if self.ortho or ratio == 1.0:
            return
        center_cam = self.flip * (state.rot @ self.model.head_center) + state.trans
        state.trans = state.trans + torch.stack([center_cam[0] * 0, center_cam[1] * 0, center_cam[2] * (ratio - 1)])

    # -- results ------------------------------------------------------------------------------------

    def _result(self, frame_index, timestamp_s, tracking_state, landmarks_px, fit_px, confidence,
                smooth: bool = True) -> TrackResult:
        E = self.head.num_expr
        nan2 = np.full((NUM_LANDMARKS, 2), np.nan)
        intr = self.intrinsics()
        sigma_px = self.focal_px * self.focal_sigma_rel
        if self.state is None:
            z3 = np.zeros(3)
            return TrackResult(frame_index, timestamp_s, tracking_state, self.shape_live.cpu().numpy(), np.zeros(E), z3, z3,
                               z3, z3, np.zeros(6), intr, float("nan"), sigma_px, self.focal_state, float("nan"), 0.0,
                               nan2, nan2, self.shape_version, self.options.camera_mode)
        import cv2  # noqa: PLC0415

        st = self.state
        # Outputs in numpy (cv2.Rodrigues): a handful of small torch ops per value costs more here.
        rot = st.rot.detach().cpu().numpy()
        flip = np.array([1.0, -1.0, -1.0])
        center_model = flip * (rot @ self.head.head_center.astype(np.float64))
        rotation = cv2.Rodrigues(rot)[0].ravel()
        if self.ortho:
            scale = float(torch.exp(st.log_scale))
            depth = self.focal_px / scale  # the depth a camera of the nominal focal would need
            offset = st.offset.detach().cpu().numpy()
            center_cam = np.array([offset[0] / scale, offset[1] / scale, depth])
            translation = center_cam - center_model
            rho = 0.0  # weak perspective assumes ρ = 0
        else:
            scale = float("nan")
            translation = st.trans.detach().cpu().numpy()
            center_cam = center_model + translation
            rho = 1.0 / float(center_cam[2])
        values = {"rotation": rotation, "center": center_cam, "expr": st.expr.detach().cpu().numpy(),
                  "jaw": st.jaw.detach().cpu().numpy(), "eyes": st.eyes.detach().cpu().numpy()}
        if smooth and self.options.smoothing and tracking_state in ("tracking", "reacquired"):
            # Filter the head centre, not the translation: the translation of a rotation about the
            # origin carries the rotation too, and filtering both would make the head wobble.
            values = {k: self._filters[k](v, timestamp_s) for k, v in values.items()}
            rot_cam = flip[:, None] * cv2.Rodrigues(values["rotation"])[0]
            translation = values["center"] - rot_cam @ self.head.head_center.astype(np.float64)
        values["translation"] = translation
        fitted = nan2.copy()
        uv, _, _ = self._evaluate(st, self.shape_live, False)
        fitted[self.model.ids] = uv.cpu().numpy()
        detected = nan2 if landmarks_px is None else np.asarray(landmarks_px, np.float64)
        return TrackResult(
            frame_index=frame_index, timestamp_s=timestamp_s, tracking_state=tracking_state,
            shape=self.shape_live.cpu().numpy().copy(), expr=values["expr"], rotation=values["rotation"],
            translation=values["translation"], neck_pose=np.zeros(3), jaw_pose=values["jaw"], eyes_pose=values["eyes"],
            intrinsics=intr, rho_per_m=rho, focal_sigma_px=sigma_px, focal_state=self.focal_state,
            fit_error_px=fit_px, confidence=confidence, landmarks_px=detected, fitted_landmarks_px=fitted,
            shape_version=self.shape_version, camera_mode=self.options.camera_mode, scale_px_per_m=scale)
