"""What a sequence shares: the identity and the focal length, estimated over pose-diverse keyframes.

Keyframes chosen for pose diversity accumulate evidence; a joint refinement over them (Schur
complement: the shared unknowns after eliminating each keyframe's own) updates identity and
focal length beside the per-frame loop, Pixel3DMM-style, in slices the online loop runs between
frames (:meth:`SharedEstimator.advance`).

Focal length from landmarks alone is weakly observable: MediaPipe's landmarks carry ~2 px of
slow, pose-linked bias while a 3 % focal change moves them by only 0.03-0.1 px. So the data term
is weighted as if only ``effective_landmarks`` landmarks were independent (the bias is
correlated), the focal estimate is a MAP under a log-normal prior (the fused evidence: default,
profile, metadata, camera table, regressor), its uncertainty comes from the same posterior, and
the state reads ``not_observable`` until the data alone pin it down. A focal change rescales the
camera-space head about the camera centre (``FrameProblem.rescale_for_focal``), so the overlay
does not jump: the estimator rescales its keyframes and calls ``on_focal_change(ratio)`` for the
caller's live state.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from core.tracker.iris import IrisRuler
from core.tracker.residuals import FrameProblem, FrameState, Observation
from core.tracker.types import FocalPrior


# The live identity takes a step once it moves a landmark by this much (m): at most ~0.3 px even
# for a head-mounted camera 10 cm away (f = 600 px), and the frames re-shape their landmarks a few
# times per identity update instead of every frame.
IDENTITY_STEP_M = 5e-5


@dataclass
class Keyframe:
    frame_index: int
    obs: Observation
    state: FrameState
    bin: tuple[int, int]
    fit_px: float


def pose_bin(state: FrameState) -> tuple[int, int]:
    """(yaw, pitch) bin of a head pose: 8° yaw and 10° pitch cells of where the face points."""
    fwd = state.rot[:, 2]  # R @ (0, 0, 1)
    yaw = math.degrees(math.atan2(float(fwd[0]), float(fwd[2])))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, float(fwd[1])))))
    return int(round(yaw / 8.0)), int(round(pitch / 10.0))


class SharedEstimator:
    """Identity and focal length of one sequence (see module docstring).

    ``focal_px``: a fixed focal length, or None to estimate it under ``focal_prior``.
    ``on_focal_change(ratio)``: called after every focal change with f_new / f_old, so the owner
    rescales the state it holds (the estimator rescales its keyframes itself).
    """

    def __init__(self, problem: FrameProblem, image_size: tuple[int, int], focal_px: float | None,
                 focal_prior: FocalPrior, on_focal_change: Callable[[float], None] = lambda ratio: None):
        self.problem = problem
        self.head, self.options, self.kw = problem.head, problem.options, problem.kw
        self.width, self.height = image_size
        self.focal_fixed = focal_px is not None
        self.focal_prior = focal_prior
        self.log_focal = torch.tensor(math.log(focal_px if self.focal_fixed else focal_prior.focal_px), **self.kw)
        self.focal_sigma_rel = 0.0 if self.focal_fixed else focal_prior.sigma_rel
        self.focal_state: str = "fixed" if self.focal_fixed else self.state_for(focal_prior.sigma_rel)
        # What the focal length rests on: (evidence, share of the posterior precision).
        self.focal_evidence: tuple[tuple[str, float], ...] = (
            (("given", 1.0),) if self.focal_fixed else focal_prior.shares)
        self.on_focal_change = on_focal_change
        self.shape = torch.zeros(self.head.num_shape, **self.kw)  # the refinement's identity estimate
        # The identity frames are fitted and reported with: it follows ``shape`` gradually, so an
        # identity update never pops the mesh (its depth is re-solved a little each frame).
        self.shape_live = self.shape  # tensors are replaced, never changed in place
        self._shape_follow = self.shape_live  # where the live identity is heading (see follow_shape)
        self._shape_dirs_flat = problem.model.shapedirs.reshape(3 * problem.model.num_landmarks, -1)  # (3L, S)
        self.shape_version = 0
        self.keyframes: list[Keyframe] = []
        self.keyframes_changed = False
        self._recent_fits: deque[float] = deque(maxlen=30)
        self._job: Iterator | None = None  # a running joint refinement, advanced a unit at a time
        self._data_weighed = False  # the landmark data have entered the focal posterior
        # The iris diameter as a prior on the identity's absolute size (core.tracker.iris).
        self.iris = (IrisRuler(problem.model) if self.options.iris_ruler and IrisRuler.available(problem.model)
                     else None)
        self._data_focal: tuple[float, float] | None = None  # the data's own (ψ, var ψ) at the last step

    # -- focal length --------------------------------------------------------------------------

    @property
    def focal_px(self) -> float:
        return float(torch.exp(self.log_focal))

    @property
    def refining(self) -> bool:
        return self._job is not None

    def state_for(self, sigma_rel: float) -> str:
        """The focal state a relative 1σ earns, whatever the evidence: ``converged`` under
        ``focal_converged_sigma``, ``estimating`` under ``focal_observable_sigma``, else ``not_observable``."""
        o = self.options
        return ("converged" if sigma_rel < o.focal_converged_sigma else
                "estimating" if sigma_rel < o.focal_observable_sigma else "not_observable")

    def set_prior(self, prior: FocalPrior) -> None:
        """Use a new prior. While the data have not weighed in (no keyframes yet, or too little pose
        diversity and no refinement running) the focal follows the prior at once, depth rescaled so
        the mesh does not jump; otherwise the estimate moves at the next refinement."""
        if self.focal_fixed:
            return
        self.focal_prior = prior
        if not self.keyframes or (not self._data_weighed and self._job is None):
            self.set_focal(math.log(prior.focal_px))
            self.focal_sigma_rel = prior.sigma_rel
            self.focal_state = self.state_for(prior.sigma_rel)
            self.focal_evidence = prior.shares

    def set_focal(self, log_f: float, keyframes: list[Keyframe] | None = None) -> None:
        """Change the focal length, rescaling ``keyframes`` (default: all) and, through
        ``on_focal_change``, the owner's live state, so every projection stays put."""
        previous = float(self.log_focal)
        self.log_focal = torch.tensor(log_f, **self.kw)
        ratio = math.exp(log_f - previous)
        for kf in (self.keyframes if keyframes is None else keyframes):
            kf.state = kf.state.clone()  # a running refinement may hold the old states
            self.problem.rescale_for_focal(kf.state, ratio)
        self.on_focal_change(ratio)

    def landmark_focal_evidence(self) -> FocalPrior | None:
        """What the landmark data alone said about the focal length at the last refinement (bias floor
        included), as a log-normal belief; None before they weighed in or with a fixed focal length."""
        if self.focal_fixed or not self._data_weighed or self._data_focal is None:
            return None
        psi, var = self._data_focal
        if not (psi > 0 and math.isfinite(var) and var > 0):
            return None
        return FocalPrior(1.0 / psi, math.sqrt(var) / psi, "landmarks", "landmarks (earlier person in this shot)")

    # -- identity ------------------------------------------------------------------------------

    def follow_shape(self, rate: float | None = None) -> None:
        """Move the live identity towards the estimate (a fraction per frame; 1 jumps).

        The fraction is followed every frame, but the live identity only takes it once it moves
        a landmark by ``IDENTITY_STEP_M`` (or the follow has arrived): each new identity costs the
        frames re-shaping their landmarks (for articulated models a forward pass more per frame)
        and re-sends the shape to stream listeners, while a twentieth of a millimetre is not seen."""
        if not len(self.shape):  # a model without identity components
            return
        gap = self.shape - self._shape_follow
        arrived = rate == 1.0 or float(gap.abs().max()) <= 1e-4
        self._shape_follow = self.shape if arrived else self._shape_follow + (
            self.options.identity_follow_rate if rate is None else rate) * gap
        if self._shape_follow is self.shape_live:
            return
        step = self._shape_follow - self.shape_live
        if arrived and not bool(step.any()):
            self._shape_follow = self.shape_live
            return
        if arrived or float((self._shape_dirs_flat @ step).view(-1, 3).norm(dim=-1).max()) >= IDENTITY_STEP_M:
            self.shape_live = self._shape_follow
            self.shape_version += 1

    # -- keyframes -----------------------------------------------------------------------------

    def consider_keyframe(self, frame_index: int, obs: Observation, fit_px: float, state: FrameState) -> None:
        """Keep a frame as a keyframe if it adds a new pose (or a better neutral view of a known one)."""
        if self.focal_fixed and not self.options.estimate_identity:
            return
        # Skip mis-tracked frames: those fitting much worse than the recent ones (model error
        # such as ortho at close range raises every frame's error alike, so the test is relative).
        fit_sigmas = fit_px / obs.noise_px  # in units of the frame's landmark noise: the same at any image size
        self._recent_fits.append(fit_sigmas)
        if fit_sigmas > 2.0 * float(np.median(self._recent_fits)) + 1.0:
            return
        key = pose_bin(state)
        same = [k for k in self.keyframes if k.bin == key]
        neutral = float(state.expr.abs().mean()) < 0.15
        if same:
            old = same[0]
            if not (neutral and fit_px < 0.9 * old.fit_px):
                return
            self.keyframes.remove(old)
        elif len(self.keyframes) >= self.options.max_keyframes:
            worst = max(self.keyframes, key=lambda k: k.fit_px)
            self.keyframes.remove(worst)
        self.keyframes.append(Keyframe(frame_index, obs, state.clone(), key, fit_px))
        self.keyframes_changed = True

    # -- joint refinement ----------------------------------------------------------------------

    def shared_vector(self, only: list[str] | None = None) -> tuple[list[str], torch.Tensor]:
        """Names of the shared unknowns estimated here, and their current values."""
        names, parts = [], []
        if self.options.estimate_identity:
            names.append("shape")
            parts.append(self.shape)
        if not self.focal_fixed and not self.problem.ortho:
            names.append("focal")
            parts.append(torch.exp(-self.log_focal)[None])  # ψ = 1/f
        if only is not None:
            parts = [p for n, p in zip(names, parts) if n in only]
            names = [n for n in names if n in only]
        return names, torch.cat(parts) if parts else torch.zeros(0, **self.kw)

    def data_inflation(self) -> float:
        """How much wider than a frame's landmark noise the shared fit takes the data: correlated landmark
        bias, weighed as if only ``effective_landmarks`` landmarks were independent."""
        n = max(self.problem.model.num_landmarks, 1)
        return math.sqrt(n / min(self.options.effective_landmarks, n))

    def refine(self, iterations: int = 2, frames: list[Keyframe] | None = None) -> None:
        """Joint refinement of identity and focal over keyframes (or ``frames``), run to completion."""
        for _ in self.refine_steps(iterations, frames):
            pass

    def start_refinement(self) -> None:
        self._job = self.refine_steps(self.options.refine_iterations)
        self.keyframes_changed = False

    def advance(self) -> bool:
        """Run one unit of the running refinement; False once it has finished (or none runs)."""
        if self._job is None:
            return False
        try:
            next(self._job)
            return True
        except StopIteration:
            self._job = None
            return False

    def refine_steps(self, iterations: int, frames: list[Keyframe] | None = None):
        """Schur-complement Levenberg-Marquardt on the shared unknowns, as a generator that yields
        after each keyframe's work so the online loop can run it in time slices between frames.

        Identity and the keyframes' own unknowns take joint LM steps. The focal length (ψ = 1/f)
        moves first, in closed form: the data's marginal information about ψ (identity
        eliminated) is a Gaussian whose variance gets the landmark-bias floor added
        (``rho_bias_sigma_per_m``), then it is combined with the prior. A step that only the
        data's bias would justify is therefore damped by the prior, and the reported σ says so.
        """
        frames = list(self.keyframes if frames is None else frames)
        names, values = self.shared_vector()
        if not frames or not names:
            return
        problem = self.problem
        inflate = self.data_inflation()
        n_shape = self.head.num_shape if "shape" in names else 0
        eye = lambda n: torch.eye(n, **self.kw)  # noqa: E731
        lam = 1e-3
        for _iteration in range(iterations):
            s_mat = torch.zeros(len(values), len(values), **self.kw)
            s_grad = torch.zeros(len(values), **self.kw)
            normals = []
            for kf in frames:
                ne = problem.normal_equations(kf.obs, kf.state, self.shape, self.log_focal, None, tuple(names),
                                              inflate)
                h_inv = torch.linalg.inv(ne.h_local + 1e-9 * eye(len(ne.h_local)))
                s_mat = s_mat + ne.h_shared - ne.h_cross.T @ h_inv @ ne.h_cross
                s_grad = s_grad + ne.g_shared - ne.h_cross.T @ h_inv @ ne.g_local
                normals.append(ne)
                yield
            if n_shape:
                prior_h, prior_g, _ = self.identity_prior(self.shape)
                s_mat[:n_shape, :n_shape] += prior_h
                s_grad[:n_shape] += prior_g
            d_focal = torch.zeros(1 if "focal" in names else 0, **self.kw)
            if "focal" in names:
                d_focal = self._focal_step(s_mat, s_grad, n_shape, frames)
                if float(d_focal.abs()) > 0:
                    psi = torch.exp(-self.log_focal) + d_focal[0]
                    longest = max(self.width, self.height)  # keep f within [0.2, 50] image sizes
                    psi = psi.clamp(1.0 / (50 * longest), 1.0 / (0.2 * longest))
                    self.set_focal(float(-torch.log(psi)), frames)
            cost = self.identity_prior(self.shape)[2] if n_shape else 0.0
            for kf in frames:
                cost += problem.cost(kf.obs, kf.state, self.shape, self.log_focal, None, inflate, remember=False)
            yield
            if not n_shape:
                continue
            for _attempt in range(4):  # Levenberg-Marquardt on everything: damp until the cost drops
                # Reduced system for identity with damped keyframe blocks (ψ already moved).
                a_ss = prior_h.clone()
                g_s = prior_g.clone()
                inverses = []
                for ne in normals:
                    h_inv = torch.linalg.inv(ne.h_local + lam * torch.diag(ne.h_local.diagonal())
                                             + 1e-9 * eye(len(ne.h_local)))
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
                    kf.state = problem.apply(kf.state, -h_inv @ (ne.g_local + ne.h_cross @ d_shared))
                new_cost = self.identity_prior(self.shape)[2]
                for kf in frames:
                    new_cost += problem.cost(kf.obs, kf.state, self.shape, self.log_focal, None, inflate,
                                             remember=False)
                yield
                if new_cost <= cost:
                    lam = max(lam / 5, 1e-6)
                    break
                self.shape, states = old
                for kf, st in zip(frames, states):
                    kf.state = st
                lam *= 10

    def identity_prior(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Gauss-Newton terms of the identity's priors at ``shape`` (S,): Hessian (S, S), gradient (S,)
        and cost. N(0, 1) per coefficient and, with ``iris_ruler``, the iris diameter row."""
        hess, grad, cost = torch.eye(len(shape), **self.kw), shape.clone(), float((shape ** 2).sum())
        if self.iris is not None:
            r, jac = self.iris.residual(shape)
            hess, grad, cost = hess + jac.T @ jac, grad + jac.T @ r, cost + float((r ** 2).sum())
        return hess, grad, cost

    def _focal_step(self, s_mat: torch.Tensor, s_grad: torch.Tensor, n_shape: int,
                    frames: list[Keyframe]) -> torch.Tensor:
        """Closed-form ψ update from the data's marginal (identity eliminated) plus the bias floor
        and the prior; also updates the focal uncertainty and state. Returns δψ, shape (1,)."""
        psi = float(torch.exp(-self.log_focal))
        info, grad = float(s_mat[-1, -1]), float(s_grad[-1])
        if n_shape:
            solve = torch.linalg.solve(s_mat[:n_shape, :n_shape], torch.stack([s_mat[:n_shape, -1], s_grad[:n_shape]], 1))
            info -= float(s_mat[-1, :n_shape] @ solve[:, 0])
            grad -= float(s_mat[-1, :n_shape] @ solve[:, 1])
        rho = float(np.mean([float(self.problem.rho(k.state)) for k in (self.keyframes or frames)]))
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
        if len(frames) < 3 or len(yaw_bins) < 3:
            # Too little pose diversity to weigh the data at all: the posterior is the prior; go to
            # it (it may have moved since, e.g. the regressor's).
            self._data_weighed = False
            self.focal_sigma_rel = sigma_p
            self.focal_state = self.state_for(sigma_p)
            self.focal_evidence = self.focal_prior.shares
            step = float(np.clip(math.log(self.focal_prior.focal_px * psi), -0.5, 0.5))
            return torch.tensor([psi * (math.exp(-step) - 1)], **self.kw)
        self._data_weighed = True
        self._data_focal = (psi_data, var_data)
        self.focal_state = self.state_for(self.focal_sigma_rel)
        data_share = w_data / (w_data + w_prior)
        self.focal_evidence = tuple(sorted(
            [(name, share * (1.0 - data_share)) for name, share in self.focal_prior.shares]
            + [("landmarks", data_share)], key=lambda kv: -kv[1]))
        step = float(np.clip(math.log(max(psi_post, 1e-12) / psi), -0.5, 0.5))  # |Δ log ψ| <= 0.5 per step
        return torch.tensor([psi * (math.exp(step) - 1)], **self.kw)
