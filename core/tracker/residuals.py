"""One frame's landmark residuals, their Jacobians and the per-frame Levenberg-Marquardt solve.

:class:`FrameProblem` holds what a frame's objective depends on besides the unknowns: the
landmark model, the fixed parts of the camera (principal point, pixel aspect, perspective or
weak perspective), expression bounds and prior widths. Its methods are pure functions of their
arguments: the per-frame unknowns (:class:`FrameState`), the shared identity ``shape`` and the
shared ``log_focal`` are always passed in, so each Jacobian can be checked against finite
differences (``tests/test_tracker_residuals.py``) and the shared-parameter refinement
(``core.tracker.shared``) and the online loop (``core.tracker.online``) evaluate the same objective.

The objective of one frame: a robust (Huber) reprojection loss of the landmarks MediaPipe would
report (surface points plus its ρ-dependent bias model), Gaussian priors on expressions and joint
poses, and a temporal prior towards the previous frame. Jacobians are analytic for rotation
(right perturbation), translation, expression, identity and the focal length, and for the jaw
and eye poses of articulated models (``core.tracker.articulation``: the derivative of smplx's
LBS, which stays the forward pass). For articulated models the expression and identity columns
are those of the unposed landmarks (exact at zero joint pose, a Gauss-Newton approximation
otherwise; the objective itself is always the posed one).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from core import camera
from core.head_model import HeadModel
from core.tracker.landmark_model import LandmarkModel
from core.tracker.types import TrackerOptions


@dataclass
class FrameState:
    """Per-frame unknowns (torch float64). Perspective uses ``trans``; ortho ``log_scale``/``offset``."""

    rot: torch.Tensor  # (3, 3) model-space head rotation R
    trans: torch.Tensor  # (3,)
    expr: torch.Tensor  # (E,)
    jaw: torch.Tensor  # (3,)
    eyes: torch.Tensor  # (6,)
    log_scale: torch.Tensor  # () ortho: log pixels per metre
    offset: torch.Tensor  # (2,) ortho: pixels

    def clone(self) -> "FrameState":
        return FrameState(*(getattr(self, f).clone() for f in ("rot", "trans", "expr", "jaw", "eyes", "log_scale",
                                                                "offset")))


@dataclass(frozen=True)
class Observation:
    """One frame's detected landmarks as the fit sees them.

    ``noise_px``: the 1σ of a landmark coordinate in this frame. MediaPipe finds landmarks in a crop
    resampled to a fixed size, so its noise scales with the face's size in the image: σ is a fixed
    fraction of the face's size (``TrackerOptions.landmark_sigma_rel``), which keeps every fit, and the
    focal length it implies, the same when the image is resized.
    """

    uv: torch.Tensor  # (L, 2) pixels (0 where missing)
    weight: torch.Tensor  # (L,) per-landmark weight (0 where missing)
    noise_px: float


def face_size_px(uv: np.ndarray, weight: np.ndarray) -> float:
    """The size (px) of the face: the geometric mean of the sides of the bounding box of the
    landmarks that count (stable under head turns, which shrink one side only). uv: (L, 2); weight: (L,)."""
    pts = uv[weight > 0]
    if len(pts) < 2:
        return float("nan")
    extent = np.maximum(pts.max(0) - pts.min(0), 1e-6)
    return float(np.sqrt(extent[0] * extent[1]))


@dataclass
class NormalEquations:
    """Normal equations of one frame: local block, coupling to shared parameters, gradients."""

    h_local: torch.Tensor
    h_cross: torch.Tensor | None
    h_shared: torch.Tensor | None
    g_local: torch.Tensor
    g_shared: torch.Tensor | None
    cost: float


def average_states(states: list[FrameState]) -> FrameState:
    """Mean of per-frame states (rotations averaged and projected back onto SO(3))."""
    if len(states) == 1:
        return states[0]
    out = states[0].clone()
    for name in ("trans", "expr", "jaw", "eyes", "log_scale", "offset"):
        setattr(out, name, torch.stack([getattr(s, name) for s in states]).mean(0))
    u, _, vh = torch.linalg.svd(torch.stack([s.rot for s in states]).mean(0))
    out.rot = u @ torch.diag(torch.stack([u.new_ones(()), u.new_ones(()), torch.det(u @ vh)])) @ vh
    return out


# A Gauss-Newton step of a frame keeps the jaw/eye Jacobian columns of the last state they were
# computed at while no joint turned by more than this (rad) and no landmark vertex of the rest pose
# (identity and expression) moved by more than this (m) since: the columns then change by well under
# a percent, every step is still judged by its exact cost, and they cost as much as the rest.
ARTICULATION_REUSE_RAD = 0.01
ARTICULATION_REUSE_REST_M = 5e-4
# A frame's solve stops once a step lowers the cost by less than this fraction of it.
STEP_PAYS = 1e-3
# Identities whose posed landmark vertices are remembered: the frames' live identity, the joint
# refinement's estimate and the trial step it judges (with two, every trial step evicted the live one
# and the frame after a refinement unit posed its landmarks again).
POSED_IDENTITIES = 3


def rows_times_bases(m: torch.Tensor, bases_by_axis: torch.Tensor) -> torch.Tensor:
    """Per-landmark (2, 3) rows times (3, n) bases. m: (L, 2, 3); bases_by_axis: (3, L, n) -> (L, 2, n)."""
    return (m[..., 0, None] * bases_by_axis[0, :, None] + m[..., 1, None] * bases_by_axis[1, :, None]
            + m[..., 2, None] * bases_by_axis[2, :, None])


def values_key(*tensors: torch.Tensor) -> bytes:
    """The tensors' values as bytes, a cache key that an in-place change invalidates (one copy to
    the host on a GPU, where each small copy waits for the device)."""
    if tensors[0].device.type == "cpu":
        return b"".join(t.detach().numpy().tobytes() for t in tensors)
    return torch.cat([t.detach().reshape(-1) for t in tensors]).cpu().numpy().tobytes()


def weighted_gram(jw: torch.Tensor, jac: torch.Tensor, single_precision: bool = False) -> torch.Tensor:
    """JᵀWJ (n, n) from WJ and J (m, n), in J's dtype; ``single_precision``: the products in float32
    (about half the time of float64 on a CPU, ~1e-7 relative error)."""
    if not single_precision or jac.dtype == torch.float32:
        return jw.T @ jac
    return (jw.float().T @ jac.float()).to(jac.dtype)


def small_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve a small dense system; LAPACK through numpy is faster than torch's for n < ~200 on a CPU."""
    if a.device.type != "cpu":
        return torch.linalg.solve(a, b)
    return torch.from_numpy(np.linalg.solve(a.numpy(), b.numpy()))


class FrameProblem:
    """A frame's objective and its derivatives for one head model and camera set-up (see module docstring)."""

    def __init__(self, head: HeadModel, model: LandmarkModel, options: TrackerOptions, principal_px: torch.Tensor):
        self.head, self.model, self.options = head, model, options
        self.kw = dict(dtype=torch.float64, device=model.device)
        self.flip = camera.axis_flip(torch.zeros((), **self.kw))
        self.ortho = options.camera_mode == "ortho"
        self.principal = principal_px
        bounded = head.kind in {"ict", "builtin"} or bool(head.expression_names)
        self.expr_bounds = (0.0, 1.0) if bounded else None
        self.expr_sigma = options.expr_sigma or (0.6 if bounded else 1.5)
        blocks = [("rot", 3), ("cam", 3), ("expr", head.num_expr)]
        if model.articulated and head.has_joint("jaw"):
            blocks.append(("jaw", 3))
        if model.has_iris:
            blocks.append(("eyes", 6))
        self.blocks: list[tuple[str, int]] = blocks  # the per-frame unknowns as (name, width), in column order
        self.offsets = dict(zip((n for n, _ in blocks), np.cumsum([0] + [w for _, w in blocks])[:-1].tolist()))
        self._shaped_for: torch.Tensor | None = None  # cache of template + identity at the landmarks
        self._shaped: torch.Tensor | None = None
        # Articulated: [(shape, shaped vertices, {(expr, jaw, eyes) bytes: PosedLandmarks})], newest first;
        # room for every keyframe and a frame's own states.
        self._posed_cache: list = []
        self._posed_cache_size = options.max_keyframes + 8
        self._articulation_from = None  # the PosedLandmarks whose Jacobian step_articulation() gave last
        # evaluate()'s last output without and with Jacobians: ((values, articulation), output)
        self._remembered: list = [None, None]
        self._init_priors()

    # -- geometry ------------------------------------------------------------------------------

    def center_cam(self, state: FrameState) -> torch.Tensor:
        """(3,) camera-space head centre of a (perspective) state."""
        return camera.head_center_cam(self.model.head_center, state.rot, state.trans)

    def rho(self, state: FrameState) -> torch.Tensor:
        """ρ = 1/Z0 of a state (0 in ortho mode, which assumes it)."""
        if self.ortho:
            return torch.zeros((), **self.kw)
        return 1.0 / self.center_cam(state)[2]

    def bias(self, state: FrameState) -> torch.Tensor:
        """(L, 3) where MediaPipe sees each landmark relative to its surface point, at this ρ."""
        return self.model.bias_offset + self.model.bias_slope * (self.rho(state) - self.model.rho_ref)

    def points(self, state: FrameState, shape: torch.Tensor, with_jacobian: bool,
               articulation: torch.Tensor | None = None):
        """Unrotated landmark points as MediaPipe would place them (L, 3) and, for articulated
        models, their analytic jaw/eye derivative columns by axis (3, L, k) (``core.tracker.articulation``;
        ``articulation``: these columns, taken as given instead of computed at ``state``)."""
        if not self.model.articulated:
            if shape is not self._shaped_for:
                self._shaped = self.model.template + self.model.shapedirs @ shape
                self._shaped_for = shape
            return self._shaped + self.model.exprdirs @ state.expr + self.bias(state), None
        posed = self._posed_points(state, shape)
        art = None
        if with_jacobian:
            if articulation is not None:
                art = articulation
            else:
                if posed.jacobian is None:
                    posed.jacobian = self.model.pose_jacobian(posed)
                art = posed.jacobian
        return posed.points + self.bias(state), art

    def step_articulation(self, state: FrameState, shape: torch.Tensor) -> torch.Tensor | None:
        """(3, L, k) jaw/eye derivative columns for a Gauss-Newton step from ``state`` (None for rigid
        models): those last computed while within ``ARTICULATION_REUSE_*`` of it, else its own."""
        if not self.model.articulated:
            return None
        posed, last = self._posed_points(state, shape), self._articulation_from
        if (last is not None and last.jacobian is not None
                and float((posed.pose - last.pose).abs().max()) <= ARTICULATION_REUSE_RAD
                and float((posed.v_shaped - last.v_shaped).abs().max()) <= ARTICULATION_REUSE_REST_M):
            return last.jacobian
        if posed.jacobian is None:
            posed.jacobian = self.model.pose_jacobian(posed)
        self._articulation_from = posed
        return posed.jacobian

    def _posed_points(self, state: FrameState, shape: torch.Tensor):
        """The articulated forward pass of a state, remembered (by value) for the recent states of
        the ``POSED_IDENTITIES`` identities used last (the frames' live one, the refinement's estimate
        and its trial step): a step's trial cost, the Jacobian after it, the fit error and the frame
        result share one, and so do the refinement's Jacobian and cost passes over the same keyframes."""
        for i, entry in enumerate(self._posed_cache):
            if entry[0] is shape:
                if i:
                    self._posed_cache.insert(0, self._posed_cache.pop(i))
                _, shaped, posed_by_key = entry
                break
        else:
            shaped, posed_by_key = self.model.shaped_vertices(shape), OrderedDict()
            self._posed_cache.insert(0, (shape, shaped, posed_by_key))
            del self._posed_cache[POSED_IDENTITIES:]
        key = values_key(state.expr, state.jaw, state.eyes)
        posed = posed_by_key.get(key)
        if posed is None:
            posed = posed_by_key[key] = self.model.posed_points(shaped, state.expr, state.jaw, state.eyes)
            if len(posed_by_key) > self._posed_cache_size:
                posed_by_key.popitem(last=False)
        else:
            posed_by_key.move_to_end(key)
        return posed

    def intrinsics(self, log_focal: torch.Tensor) -> torch.Tensor:
        """(4,) fx, fy, cx, cy for a focal length."""
        f = torch.exp(log_focal)
        return torch.stack([f, f * self.options.pixel_aspect, self.principal[0], self.principal[1]])

    # -- residuals and Jacobians ---------------------------------------------------------------

    def evaluate(self, state: FrameState, shape: torch.Tensor, log_focal: torch.Tensor, with_jacobian: bool,
                 shared: tuple[str, ...] = (), articulation: torch.Tensor | None = None, remember: bool = True):
        """Projected landmarks (L, 2) and, on request, Jacobian blocks (L, 2, n) by parameter group
        (``self.blocks``) and by shared parameter (``shape``: identity; ``focal``: ψ = 1/f);
        ``articulation``: see :meth:`points`.

        The last projection and the last frame Jacobian (no shared columns) are remembered with the
        values they were taken at: neither depends on the landmarks, and a frame's solve, its fit
        error, its result and the next frame's first step look at the same final state. The joint
        refinement, which runs between a frame's fit and its result, passes ``remember=False``."""
        if shared or not remember:
            return self._evaluate(state, shape, log_focal, with_jacobian, shared, articulation)
        key = (values_key(state.rot, state.trans, state.expr, state.jaw, state.eyes, state.log_scale, state.offset,
                          shape, log_focal), articulation if with_jacobian else None)
        last = self._remembered[with_jacobian]
        if last is not None and last[0][0] == key[0] and last[0][1] is key[1]:
            return last[1]
        out = self._evaluate(state, shape, log_focal, with_jacobian, (), articulation)
        self._remembered[with_jacobian] = (key, out)
        return out

    def _evaluate(self, state: FrameState, shape: torch.Tensor, log_focal: torch.Tensor, with_jacobian: bool,
                  shared: tuple[str, ...] = (), articulation: torch.Tensor | None = None):
        pts, art = self.points(state, shape, with_jacobian, articulation)
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
            intr = self.intrinsics(log_focal)
            uv = camera.project_perspective(cam, intr)
            if not with_jacobian:
                return uv, None, None
            f, fy = intr[0], intr[1]
            inv_z = 1.0 / cam[:, 2]
            fz, fyz = f * inv_z, fy * inv_z
            zero = torch.zeros_like(fz)
            dudx = torch.stack([fz, zero, -cam[:, 0] * fz * inv_z, zero, fyz, -cam[:, 1] * fyz * inv_z], -1).view(-1, 2, 3)
            p_rot = pts
        m = dudx @ flip_rot  # d uv / d (unrotated model point), (L, 2, 3)
        if not self.ortho:
            # The bias model moves with ρ = 1/Z0: dρ/dt_z = -ρ².
            rho = self.rho(state)
            bias_move = m @ self.model.bias_slope[..., None]  # (L, 2, 1) d uv / d ρ
            j_cam = torch.cat([dudx[..., :2], dudx[..., 2:] - rho ** 2 * bias_move], -1)
        # Rotation: right perturbation R <- R exp(δ), d(R exp(δ) p)/dδ = -R [p]x; a row r times
        # -[p]x is the cross product p x r.
        cols = {"rot": torch.linalg.cross(p_rot[:, None, :].expand_as(m), m), "cam": j_cam,
                "expr": rows_times_bases(m, self.model.exprdirs_by_axis)}
        if art is not None:
            j_art = rows_times_bases(m, art)
            if self.head.has_joint("jaw"):
                cols["jaw"], j_art = j_art[..., :3], j_art[..., 3:]
            if self.model.has_iris:
                cols["eyes"] = j_art
        shared_cols = None
        if shared:
            shared_cols = {}
            if "shape" in shared:
                shared_cols["shape"] = rows_times_bases(m, self.model.shapedirs_by_axis)
            if "focal" in shared:
                # d uv / d log f with the head's depth scaled by f (see rescale_for_focal): the image
                # scale cancels to first order and what is left is the perspective signal.
                # The shared unknown is ψ = 1/f: each frame's ρ = S·ψ, so the perspective signal is
                # about linear in ψ (in log f the likelihood is flat towards long lenses, steep
                # towards short ones, and Gauss-Newton crawls). d/dψ = -f · d/dlog f.
                depth = self.center_cam(state)[2]
                shared_cols["focal"] = (-f * ((uv - self.principal) + dudx[..., 2] * depth)
                                        + f * rho * bias_move[..., 0])[..., None]  # ρ ∝ ψ here
        return uv, cols, shared_cols

    def robust(self, resid: torch.Tensor, obs: Observation, inflate: float = 1.0) -> tuple[torch.Tensor, float]:
        """Huber loss on each landmark's 2D residual: IRLS weights (L,) and the cost.

        cost = Σ weight/σ² · (|r|² if |r| <= k else 2k|r| - k²) with σ = noise · ``inflate`` and the
        Huber threshold k at ``huber_sigmas`` noise σ; its half-gradient is Jᵀ·W·r with these weights,
        so the normal equations and the cost agree."""
        weight, sigma = obs.weight, obs.noise_px * inflate
        norm = resid.norm(dim=-1)
        k = self.options.huber_sigmas * obs.noise_px
        inlier = norm <= k
        irls = torch.where(inlier, torch.ones_like(norm), k / norm.clamp_min(1e-9))
        loss = torch.where(inlier, norm ** 2, 2 * k * norm - k ** 2)
        scale = weight / sigma ** 2
        return scale * irls, float((scale * loss).sum())

    def priors(self, state: FrameState, previous: FrameState | None, log_focal: torch.Tensor,
               temporal_scale: float = 1.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Gaussian priors on the per-frame unknowns as (value - mean, 1/σ²) pairs over every column
        (``self.blocks`` order, precision 0 where a prior says nothing): one on the expressions and
        joint poses, and a temporal one towards ``previous``, loosened by ``temporal_scale`` (e.g.
        after frames without a face). Whole vectors: a handful of tensor operations, not a few per term."""
        parts = [self._no_pose, state.expr] + [getattr(state, name) for name in self._joint_blocks]
        layers = [(torch.cat(parts), self._own_precision)]
        if previous is not None:
            rel = previous.rot.T @ state.rot  # small: its skew part is the rotation vector (right-perturbation frame)
            d_rot = 0.5 * (rel - rel.T)[(2, 0, 1), (1, 2, 0)]
            precision = self._temporal_precision / temporal_scale ** 2
            if self.ortho:
                sig_trans = temporal_scale * self.options.temporal_trans_sigma_m
                focal_px = float(torch.exp(log_focal))
                depth = focal_px / float(torch.exp(state.log_scale))
                d_cam = torch.cat([(state.log_scale - previous.log_scale)[None], state.offset - previous.offset])
                precision = precision.clone()
                precision[3] = (depth / sig_trans) ** 2
                precision[4:6] = (depth / (sig_trans * focal_px)) ** 2
            else:
                d_cam = state.trans - previous.trans
            layers.append((torch.cat([d_rot, d_cam, state.expr - previous.expr, self._no_joints]), precision))
        return layers

    def _init_priors(self) -> None:
        """The constant parts of :meth:`priors` (precisions at ``temporal_scale`` 1, zero fillers)."""
        o, kw = self.options, self.kw
        widths = dict(self.blocks)
        self._joint_blocks = [name for name in ("jaw", "eyes") if name in widths]  # after expr, in column order
        joint_precision = {"jaw": [0.3 ** -2, 0.05 ** -2, 0.05 ** -2],  # opening (x) is free-ish; sideways and
                           "eyes": [0.3 ** -2] * 6}  # twist stay small
        self._own_precision = torch.cat([torch.zeros(6, **kw), torch.full((widths["expr"],), self.expr_sigma ** -2, **kw)]
                                        + [torch.tensor(joint_precision[name], **kw) for name in self._joint_blocks])
        joints = sum(widths[name] for name in self._joint_blocks)
        self._no_pose, self._no_joints = torch.zeros(6, **kw), torch.zeros(joints, **kw)
        self._temporal_precision = torch.cat([
            torch.full((3,), o.temporal_rot_sigma ** -2, **kw), torch.full((3,), o.temporal_trans_sigma_m ** -2, **kw),
            torch.full((widths["expr"],), o.temporal_expr_sigma ** -2, **kw), self._no_joints])

    def normal_equations(self, obs: Observation, state: FrameState, shape, log_focal, previous: FrameState | None,
                         shared: tuple[str, ...] = (), inflate: float = 1.0,
                         temporal_scale: float = 1.0, articulation: torch.Tensor | None = None) -> NormalEquations:
        """Gauss-Newton normal equations of one frame's objective (landmark σ times ``inflate``):
        local block, coupling to the ``shared`` unknowns and gradients (``articulation``: see :meth:`points`)."""
        uv, cols, shared_cols = self.evaluate(state, shape, log_focal, True, shared, articulation)
        resid = uv - obs.uv  # (L, 2)
        w, cost = self.robust(resid, obs, inflate)  # (L,)
        jac = torch.cat([cols[name] for name, _ in self.blocks], -1).reshape(-1, sum(w_ for _, w_ in self.blocks))
        w2 = w.repeat_interleave(2)
        r2 = resid.reshape(-1)
        jw = jac * w2[:, None]
        # A frame's own Hessian only shapes its steps (each is judged by the exact cost, and the optimum
        # is where the gradient, kept in full precision, vanishes); the refinement's enters the shared
        # unknowns' posterior (Schur complement) and stays exact.
        h_local = weighted_gram(jw, jac, single_precision=not shared)
        g_local = jw.T @ r2
        for diff, precision in self.priors(state, previous, log_focal, temporal_scale):
            h_local.diagonal().add_(precision)
            pulled = precision * diff
            g_local = g_local + pulled
            cost += float(pulled @ diff)
        fixed = self.active_bounds(state, g_local)
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
        return NormalEquations(h_local, h_cross, h_shared, g_local, g_shared, cost)

    def apply(self, state: FrameState, delta: torch.Tensor) -> FrameState:
        """A new state moved by ``delta`` (columns in ``self.blocks`` order)."""
        new = state.clone()
        start = 0
        for name, width in self.blocks:
            d = delta[start:start + width]
            start += width
            if name == "rot":
                new.rot = state.rot @ camera.axis_angle_to_matrix(d)
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

    def active_bounds(self, state: FrameState, g_local: torch.Tensor) -> torch.Tensor | None:
        """Local columns of expressions at a bound whose gradient pushes them outwards (or None)."""
        if self.expr_bounds is None:
            return None
        lo, hi = self.expr_bounds
        start = self.offsets["expr"]
        g = g_local[start:start + len(state.expr)]
        held = ((state.expr <= lo + 1e-9) & (g > 0)) | ((state.expr >= hi - 1e-9) & (g < 0))
        return torch.nonzero(held).flatten() + start if bool(held.any()) else None

    def cost(self, obs: Observation, state: FrameState, shape, log_focal, previous: FrameState | None,
             inflate: float = 1.0, temporal_scale: float = 1.0, remember: bool = True) -> float:
        """The objective of :meth:`normal_equations` without its Jacobians (``remember``: see :meth:`evaluate`)."""
        uv, _, _ = self.evaluate(state, shape, log_focal, False, remember=remember)
        _, cost = self.robust(uv - obs.uv, obs, inflate)
        return cost + sum(float(p * d @ d) for d, p in self.priors(state, previous, log_focal, temporal_scale))

    def solve(self, obs: Observation, state: FrameState, shape, log_focal, previous: FrameState | None,
              iterations: int, temporal_scale: float = 1.0) -> tuple[FrameState, float]:
        """Levenberg-Marquardt on one frame's own parameters (shared ones fixed).

        A trial step is first judged by its cost alone; its Jacobian is computed only when the
        step is taken and another iteration follows. Stops early once steps stop paying: a step
        that lowers the cost by less than ``STEP_PAYS`` of it, by its outcome or, before it is
        tried, by the linear model (which Gauss-Newton steps this small follow closely).
        Articulated models reuse the jaw/eye columns while the joints and the rest pose barely
        moved (:meth:`step_articulation`), from step to step and from frame to frame.
        """
        lam = 1e-3
        articulation = self.step_articulation(state, shape)
        normal = self.normal_equations(obs, state, shape, log_focal, previous, (), 1.0, temporal_scale, articulation)
        cost = normal.cost
        for it in range(iterations):
            h = normal.h_local
            delta = -small_solve(h + lam * torch.diag(h.diagonal()).clamp_min(1e-9), normal.g_local)
            predicted = -float(2 * normal.g_local @ delta + delta @ h @ delta)  # cost decrease of the linear model
            if predicted < STEP_PAYS * cost:
                break
            trial = self.apply(state, delta)
            trial_cost = self.cost(obs, trial, shape, log_focal, previous, 1.0, temporal_scale)
            if trial_cost <= cost:
                converged = cost - trial_cost < STEP_PAYS * cost
                state, cost = trial, trial_cost
                lam = max(lam / 5, 1e-6)
                if converged or it == iterations - 1:
                    break
                articulation = self.step_articulation(state, shape)
                normal = self.normal_equations(obs, state, shape, log_focal, previous, (), 1.0, temporal_scale,
                                               articulation)
            else:
                lam *= 10
        return state, cost

    def fit_error(self, obs: Observation, state: FrameState, shape, log_focal) -> float:
        """RMS landmark distance (px) between the fit and the observation."""
        uv, _, _ = self.evaluate(state, shape, log_focal, False)
        return float((uv - obs.uv).norm(dim=-1).pow(2).mean().sqrt())

    def rescale_for_focal(self, state: FrameState, ratio: float) -> None:
        """Scale the head's depth by f'/f = ``ratio``, keeping its lateral position: the head centre
        projects to the same pixel and the face keeps its image scale, so a focal update does not
        make the mesh jump; only the perspective distortion changes."""
        if self.ortho or ratio == 1.0:
            return
        depth = self.center_cam(state)[2]
        state.trans = state.trans + torch.stack([depth * 0, depth * 0, depth * (ratio - 1)])

    def confidence(self, fit_px: float, obs: Observation) -> float:
        """A [0, 1] fit quality from the landmark error relative to the face's size."""
        size = float((obs.uv.max(0).values - obs.uv.min(0).values).norm())
        nme = fit_px / max(size, 1.0)
        return float(math.exp(-((nme / 0.02) ** 2)))
