"""The online tracker: per frame, fit the landmarks; between frames, refine what the sequence shares.

Per frame, a few Gauss-Newton (Levenberg-Marquardt) iterations (``core.tracker.residuals``)
minimise a robust landmark reprojection loss over head rotation and translation, expression and
(articulated models) jaw and eye poses, warm-started from the previous frame or from the frame's
prior (the regressor's :class:`FramePrior`, an explicit input of :meth:`Tracker.step`).

Identity and intrinsics (focal length; principal point at the image centre unless given) are
shared by the whole sequence (``core.tracker.shared``): keyframes, a joint refinement run in
time slices after each frame's own fit, and the focal posterior under the fused prior. The
frame's ``FramePrior.focal`` (the regressor's sequence belief so far) updates that prior.

The online state machine: initialise (from the prior, else PnP on the mean identity), track,
report frames without the face with NaN pose fields (the last state is kept inside to continue
from), re-initialise after ``reinit_after_s``; One-Euro smoothing of the outputs; results packed
as :class:`TrackResult` (numpy). :meth:`Tracker.start_segment` begins a new segment (another
person, or a shot cut: ``core.segments``): identity reset, and the focal length too after a cut.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from core import camera
from core.constants import NUM_LANDMARKS
from core.embedding import LandmarkEmbedding
from core.filters import OneEuroFilter
from core.head_model import HeadModel
from core.tracker.landmark_model import LandmarkModel
from core.tracker.residuals import FrameProblem, FrameState, Observation, average_states, face_size_px
from core.tracker.shared import Keyframe, SharedEstimator
from core.tracker.types import (ONE_EURO, FocalPrior, FramePrior, TrackerOptions, TrackResult, default_focal_prior,
                                fuse_focal_priors)


class Tracker:
    """Track one face through a sequence. ``step()`` per frame; ``refine_sequence()`` offline."""

    def __init__(self, head: HeadModel, embedding: LandmarkEmbedding, image_size: tuple[int, int],
                 options: TrackerOptions = TrackerOptions()):
        self.head, self.options = head, options
        self.width, self.height = image_size
        self.model = LandmarkModel(head, embedding, options.device)
        self.dev = self.model.device
        self.kw = dict(dtype=torch.float64, device=self.dev)
        cx, cy = options.principal_px or (self.width / 2, self.height / 2)
        self.problem = FrameProblem(head, self.model, options, torch.tensor([cx, cy], **self.kw))
        self.ortho = self.problem.ortho
        # The session's evidence (metadata, camera table, device class, ...): fused with each new
        # belief a frame's prior brings (the regressor's), never replaced by it.
        self.static_prior = options.focal_prior or default_focal_prior(self.width, self.height)
        self.shared = SharedEstimator(self.problem, image_size, options.focal_px, self.static_prior,
                                      on_focal_change=self._rescale_live_state)
        self.state: FrameState | None = None
        self.last_seen_s: float | None = None
        self._frames_since_refine = 0
        self._filters = {k: OneEuroFilter(*params) for k, params in ONE_EURO.items()}
        self._last_result: TrackResult | None = None
        self._last_prior_focal: FocalPrior | None = None
        self._temporal_scale = 1.0
        self._frame_dt = 1 / 30.0  # running typical interval between fitted frames (s)
        self._lost_since_fit = False  # a no-face frame came after the last fit
        self.history: list[Keyframe] = []
        self._history_meta: dict[int, tuple[float, np.ndarray, str]] = {}
        self._unit_s = 0.002  # running mean duration of one refinement unit
        self._starved = 0  # frames in a row without a refinement unit
        self.last_refinement_s = 0.0  # what the last step gave the joint refinement (it fills spare time)
        self.segment_id = 0
        self._segment_start = None  # a core.segments.SegmentStart for the segment's first result
        self._history_shared: dict[int, SharedEstimator] = {}  # keep_history: each segment's estimator

    # -- the shared estimate, for readers ------------------------------------------------------

    @property
    def focal_fixed(self) -> bool:
        return self.shared.focal_fixed

    @property
    def focal_px(self) -> float:
        return self.shared.focal_px

    @property
    def log_focal(self) -> torch.Tensor:
        return self.shared.log_focal

    @property
    def focal_prior(self) -> FocalPrior:
        return self.shared.focal_prior

    @property
    def focal_sigma_rel(self) -> float:
        return self.shared.focal_sigma_rel

    @property
    def focal_state(self) -> str:
        return self.shared.focal_state

    @property
    def shape(self) -> torch.Tensor:
        return self.shared.shape

    @property
    def keyframes(self) -> list[Keyframe]:
        return self.shared.keyframes

    def intrinsics(self) -> np.ndarray:
        f = self.options.focal_px if self.focal_fixed else self.focal_px
        return np.array([f, f * self.options.pixel_aspect, float(self.problem.principal[0]),
                         float(self.problem.principal[1])])

    def set_focal_prior(self, prior: FocalPrior) -> None:
        """Use a new focal prior (see :meth:`SharedEstimator.set_prior`)."""
        self.shared.set_prior(prior)

    def reset_pose(self) -> None:
        """Start the per-frame pose afresh at the next frame (a cut in the footage, e.g. a seek in a
        file): it is initialised again (from its prior, else PnP) and the output smoothing restarts,
        while identity and focal length, estimates shared by the whole footage, are kept."""
        self.state = None
        self.last_seen_s = None
        self._last_result = None  # a frame without a face after the cut shows no old pose
        self._lost_since_fit = False
        for f in self._filters.values():
            f.reset()

    def _rescale_live_state(self, ratio: float) -> None:
        if self.state is not None:
            self.problem.rescale_for_focal(self.state, ratio)

    # -- segments ----------------------------------------------------------------------------

    def start_segment(self, start) -> None:
        """Begin a new segment (a ``core.segments.SegmentStart``): forget the pose and the identity;
        after a shot cut (``start.reset_focal``) also the focal length, which goes back to the
        session's evidence. For another person in the same shot the focal length is kept: what the
        landmarks said about it so far joins the session's evidence as one more piece."""
        if self.options.keep_history:
            self._history_shared[self.segment_id] = self.shared
        carried = None if start.reset_focal else self.shared.landmark_focal_evidence()
        if carried is not None:
            self.static_prior = fuse_focal_priors([self.static_prior, carried])
        elif start.reset_focal:
            self.static_prior = self.options.focal_prior or default_focal_prior(self.width, self.height)
        self._last_prior_focal = None
        focal_px = self.options.focal_px
        keep_f = None if (start.reset_focal or self.focal_fixed) else self.focal_px
        version = self.shared.shape_version
        self.shared = SharedEstimator(self.problem, (self.width, self.height), focal_px, self.static_prior,
                                      on_focal_change=self._rescale_live_state)
        self.shared.shape_version = version + 1  # the identity changed (back to the mean)
        if keep_f is not None:  # continuity: the new person starts at the focal length in use
            self.shared.set_focal(math.log(keep_f))
        self.state = None
        self.last_seen_s = None
        self._frames_since_refine = 0
        for f in self._filters.values():
            f.reset()
        self._last_result = None
        self._lost_since_fit = False
        self._temporal_scale = 1.0
        self.segment_id = int(start.segment_id)
        self._segment_start = start

    # -- per frame ---------------------------------------------------------------------------

    def needs_pose_prior(self, timestamp_s: float) -> bool:
        """Whether a frame at ``timestamp_s`` would be initialised from its prior's pose (the first
        frame of a segment, or after the face was lost longer than ``reinit_after_s``); otherwise
        only the prior's focal belief is used."""
        return self.state is None or (self.last_seen_s is not None
                                      and timestamp_s - self.last_seen_s > self.options.reinit_after_s)

    def step(self, landmarks_px: np.ndarray | None, timestamp_s: float, frame_index: int,
             prior: FramePrior | None = None, presence: np.ndarray | None = None,
             other_faces: bool = False, next_frame_in_s: Callable[[], float] | None = None) -> TrackResult:
        """Fit one frame. landmarks_px: (478, 2) detections or None when the tracked face is not in
        view (``other_faces``: other faces are); ``prior``: this frame's predictions (initialisation,
        re-acquisition, the focal belief); ``next_frame_in_s``: seconds until the next frame's landmarks
        are expected (0: waiting now; a pipelined engine): the joint refinement only fills that time."""
        self.last_refinement_s = 0.0  # also for a frame without a face, which refines nothing
        if prior is not None and prior.focal is not None and prior.focal != self._last_prior_focal:
            self._last_prior_focal = prior.focal
            self.shared.set_prior(fuse_focal_priors([self.static_prior, prior.focal]))
        if landmarks_px is None:
            # The state stays inside (to continue from when the face is back); the result has no pose.
            self._lost_since_fit = self.state is not None
            state = "no_face" if self._last_result is None else "other_faces" if other_faces else "lost"
            return self._result(frame_index, timestamp_s, state, None, float("nan"), 0.0)
        step_start = time.perf_counter()
        obs = self._observation(landmarks_px, presence)
        lost_for = None if self.last_seen_s is None else timestamp_s - self.last_seen_s
        reacquired = self.state is not None and self._lost_since_fit
        self._lost_since_fit = False
        if lost_for is not None and not reacquired and lost_for > 0:  # typical interval between fitted frames
            self._frame_dt = 0.9 * self._frame_dt + 0.1 * min(lost_for, 1.0)
        if self.needs_pose_prior(timestamp_s):
            self.state = self._initial_state(obs, prior)
            for f in self._filters.values():
                f.reset()
        previous = self.state.clone()
        # The temporal prior loosens with the time since the last fitted frame (after a loss).
        self._temporal_scale = 1.0 if lost_for is None else max(1.0, lost_for / self._frame_dt)
        # The live identity takes its step towards the refinement's estimate before the fit, so that a
        # frame is fitted, measured and reported with one identity (and its result reuses the fit's
        # projection instead of projecting the landmarks again).
        self.shared.follow_shape()
        self.state, _ = self._solve(obs, self.state, previous, self.options.iterations)
        self.last_seen_s = timestamp_s
        fit = self._fit_error(obs, self.state)
        shared = self.shared
        first = not shared.keyframes and self._last_result is None
        shared.consider_keyframe(frame_index, obs, fit, self.state)
        if first and shared.keyframes and self.options.estimate_identity:
            # Pixel3DMM-style start: fit the identity to the first frame before tracking on, so the
            # online refinement only has small corrections left (a one-off cost of ~0.1 s).
            shared.refine(self.options.initial_identity_iterations)
            shared.follow_shape(1.0)
            self.state, _ = self._solve(obs, self.state, None, self.options.iterations)
            fit = self._fit_error(obs, self.state)
            shared.keyframes_changed = False
        self._frames_since_refine += 1
        if not shared.refining and shared.keyframes_changed and self._frames_since_refine >= self.options.refine_every:
            shared.start_refinement()
            self._frames_since_refine = 0
        if shared.refining:
            refine_start = time.perf_counter()
            self._advance_refinement(step_start, next_frame_in_s)
            self.last_refinement_s = time.perf_counter() - refine_start
        tracking = "reacquired" if reacquired else "tracking"
        self._last_result = self._result(frame_index, timestamp_s, tracking, landmarks_px, fit,
                                         self.problem.confidence(fit, obs))
        if self.options.keep_history:
            self.history.append(Keyframe(frame_index, obs, self.state.clone(), (0, 0), fit))
            self._history_meta[frame_index] = (timestamp_s, np.asarray(landmarks_px, np.float64), tracking,
                                               self.segment_id)
        return self._last_result

    def _solve(self, obs: Observation, state: FrameState, previous: FrameState | None, iterations: int,
               shape: torch.Tensor | None = None) -> tuple[FrameState, float]:
        shape = self.shared.shape_live if shape is None else shape
        return self.problem.solve(obs, state, shape, self.log_focal, previous, iterations, self._temporal_scale)

    def _fit_error(self, obs: Observation, state: FrameState) -> float:
        return self.problem.fit_error(obs, state, self.shared.shape_live, self.log_focal)

    def _advance_refinement(self, step_start: float, next_frame_in_s: Callable[[], float] | None = None) -> None:
        """Run units of the joint refinement in the frame's spare time: a unit is only started if its
        typical duration still fits the time budget and ends before the next frame is expected (the
        refinement fills idle time and never holds back an engine that runs flat out), and at least
        one runs every few frames; or exactly ``refine_units_per_frame`` units: reproducible whatever
        the machine's load."""
        if self.options.refine_units_per_frame is not None:
            for _ in range(self.options.refine_units_per_frame):
                if not self.shared.advance():
                    return
            return
        budget = self.options.frame_budget_ms / 1000
        ran = 0
        while True:
            elapsed = time.perf_counter() - step_start
            busy = (elapsed + self._unit_s > budget
                    or (next_frame_in_s is not None and self._unit_s > next_frame_in_s()))
            if busy and (ran or self._starved < 3):
                self._starved += ran == 0
                return
            t0 = time.perf_counter()
            if not self.shared.advance():
                return
            self._unit_s = 0.8 * self._unit_s + 0.2 * (time.perf_counter() - t0)
            ran += 1
            self._starved = 0

    def refine_shared(self, iterations: int = 2, frames: list[Keyframe] | None = None) -> None:
        """Joint refinement of identity and focal over keyframes, run to completion."""
        self.shared.refine(iterations, frames)

    def refine_sequence(self, rounds: int = 3, batch: int = 48, seed: int = 0,
                        smoothness: float = 0.3) -> list[TrackResult]:
        """Offline global refinement of everything tracked so far (needs ``keep_history``).

        Pixel3DMM-style: alternate (a) the shared identity/focal update over a random batch of
        frames plus the keyframes and (b) sweeps re-solving each frame with the shared values
        fixed and a smoothness prior pulling it towards its neighbours (the online temporal prior's
        σ times ``smoothness``). Returns one result per
        tracked frame (unfiltered: the smoothness term replaces the online One-Euro filter).
        """
        if not self.history:
            return []
        live = (self.shared, self.segment_id, self.state)
        segments = sorted({meta[3] for meta in self._history_meta.values()})
        results = []
        try:
            for segment in segments:  # each segment has its own identity and focal length
                self.shared = self._history_shared.get(segment, live[0])
                self.segment_id = segment
                frames = [kf for kf in self.history if self._history_meta[kf.frame_index][3] == segment]
                results += self._refine_frames(frames, rounds, batch, seed, smoothness)
        finally:
            self.shared, self.segment_id, self.state = live
        return results

    def _refine_frames(self, frames: list[Keyframe], rounds: int, batch: int, seed: int,
                       smoothness: float) -> list[TrackResult]:
        rng = np.random.default_rng(seed)
        self._temporal_scale = smoothness
        for _ in range(rounds):
            pick = rng.choice(len(frames), size=min(batch, len(frames)), replace=False)
            # A random batch plus the frames chosen as keyframes online (each observation once).
            key_ids = {k.frame_index for k in self.keyframes}
            chosen = sorted(set(pick.tolist()) | {i for i, f in enumerate(frames) if f.frame_index in key_ids})
            self.shared.refine(2, [frames[i] for i in chosen])
            self.shared.follow_shape(1.0)
            for _sweep in range(2):
                for i, kf in enumerate(frames):
                    neighbours = [frames[j].state for j in (i - 1, i + 1) if 0 <= j < len(frames)]
                    kf.state, _ = self._solve(kf.obs, kf.state, average_states(neighbours) if neighbours else None, 2)
        results = []
        for kf in frames:
            timestamp_s, landmarks_px, tracking, _segment = self._history_meta[kf.frame_index]
            self.state = kf.state
            fit = self._fit_error(kf.obs, kf.state)
            results.append(self._result(kf.frame_index, timestamp_s, tracking, landmarks_px, fit,
                                        self.problem.confidence(fit, kf.obs), smooth=False))
        return results

    # -- observations and initialisation -----------------------------------------------------

    def _observation(self, landmarks_px: np.ndarray, presence: np.ndarray | None) -> Observation:
        # In numpy, then to the device once: a few whole-array operations on 478 points.
        uv = np.asarray(landmarks_px, np.float64)[self.model.ids]
        weight = self.model.base_weight.copy()
        if presence is not None:
            weight *= np.clip(np.asarray(presence, np.float64)[self.model.ids], 0.05, 1.0)
        missing = ~np.isfinite(uv).all(1)
        weight[missing] = 0.0
        uv[missing] = 0.0
        size = face_size_px(uv, weight)
        noise = self.options.landmark_sigma_rel * size if math.isfinite(size) and size > 0 else 1.0
        return Observation(torch.as_tensor(uv, **self.kw), torch.as_tensor(weight, **self.kw), noise)

    def _prior_translation(self, prior: FramePrior, rot: np.ndarray) -> np.ndarray:
        """Camera-space translation of a prior's pose placed with this tracker's own camera: depth
        ``Z0 = f/S``, the head centre on the ray through ``head_center_px``."""
        if prior.translation is not None:
            return np.asarray(prior.translation, np.float64)
        intr = self.intrinsics()
        depth = intr[0] / float(prior.scale_px_per_m)
        centre = camera.backproject(np.asarray(prior.head_center_px, np.float64)[None], np.array([depth]), intr)[0]
        return camera.translation_for_center(self.head.head_center, rot, centre)

    def _initial_state(self, obs: Observation, prior: FramePrior | None) -> FrameState:
        import cv2  # noqa: PLC0415

        E = self.head.num_expr
        kw = self.kw
        zeros = lambda n: torch.zeros(n, **kw)  # noqa: E731
        expr = zeros(E) if prior is None or prior.expr is None else torch.as_tensor(prior.expr, **kw)
        jaw = zeros(3)
        if prior is not None and prior.jaw_pose is not None and self.problem.offsets.get("jaw") is not None:
            jaw = torch.as_tensor(prior.jaw_pose, **kw)
        if prior is not None and prior.has_pose:
            rot_np = camera.axis_angle_to_matrix(np.asarray(prior.rotation, np.float64))
            rot = torch.as_tensor(rot_np, **kw)
            trans = torch.as_tensor(self._prior_translation(prior, rot_np), **kw)
        else:
            pts = self.model.points(self.shared.shape_live[None], zeros(E)[None])[0].cpu().numpy()
            use = (obs.weight > 0).cpu().numpy()
            k_matrix = camera.intrinsics_matrix(self.intrinsics())
            ok, rvec, tvec = cv2.solvePnP(pts[use], obs.uv.cpu().numpy()[use], k_matrix, None, flags=cv2.SOLVEPNP_SQPNP)
            if not ok:
                raise RuntimeError("could not initialise the head pose from the landmarks (PnP failed)")
            rot_cam = torch.as_tensor(cv2.Rodrigues(rvec)[0], **kw)
            rot = self.problem.flip[:, None] * rot_cam  # R_cam = F @ R, F its own inverse
            trans = torch.as_tensor(tvec.ravel(), **kw)
        center = camera.head_center_cam(self.model.head_center, rot, trans)
        scale = self.focal_px / center[2]
        state = FrameState(rot, trans, expr.clamp(*self.problem.expr_bounds) if self.problem.expr_bounds else expr,
                           jaw, zeros(6), torch.log(scale), scale * center[:2])
        state, _ = self._solve(obs, state, None, 6)
        return state

    # -- results ------------------------------------------------------------------------------------

    def _result(self, frame_index, timestamp_s, tracking_state, landmarks_px, fit_px, confidence,
                smooth: bool = True) -> TrackResult:
        E = self.head.num_expr
        nan2 = np.full((NUM_LANDMARKS, 2), np.nan)
        intr = self.intrinsics()
        sigma_px = self.focal_px * self.focal_sigma_rel
        shape_live = self.shared.shape_live
        segment = dict(segment_id=self.segment_id, segment_start=self._segment_start)
        self._segment_start = None  # only the segment's first result carries it
        if self.state is None or landmarks_px is None:  # no fitted face in this frame: no pose
            n3 = np.full(3, np.nan)
            return TrackResult(frame_index, timestamp_s, tracking_state, shape_live.cpu().numpy().copy(),
                               np.full(E, np.nan), n3, n3.copy(), n3.copy(), n3.copy(), np.full(6, np.nan), intr,
                               float("nan"), sigma_px, self.focal_state, float("nan"), 0.0, nan2, nan2.copy(),
                               self.shared.shape_version, self.options.camera_mode,
                               focal_evidence=self.shared.focal_evidence, **segment)
        import cv2  # noqa: PLC0415

        st = self.state
        # Outputs in numpy (cv2.Rodrigues): a handful of small torch ops per value costs more here.
        rot = st.rot.detach().cpu().numpy()
        head_center = self.head.head_center.astype(np.float64)
        rotation = cv2.Rodrigues(rot)[0].ravel()
        if self.ortho:
            scale = float(torch.exp(st.log_scale))
            depth = self.focal_px / scale  # the depth a camera of the nominal focal would need
            offset = st.offset.detach().cpu().numpy()
            center_cam = np.array([offset[0] / scale, offset[1] / scale, depth])
            translation = camera.translation_for_center(head_center, rot, center_cam)
            rho = 0.0  # weak perspective assumes ρ = 0
        else:
            scale = float("nan")
            translation = st.trans.detach().cpu().numpy()
            center_cam = camera.head_center_cam(head_center, rot, translation)
            rho = float(camera.rho_from_depth(center_cam[2]))
        values = {"rotation": rotation, "center": center_cam, "expr": st.expr.detach().cpu().numpy(),
                  "jaw": st.jaw.detach().cpu().numpy(), "eyes": st.eyes.detach().cpu().numpy()}
        if smooth and self.options.smoothing and tracking_state in ("tracking", "reacquired"):
            # Filter the head centre, not the translation: the translation of a rotation about the
            # origin carries the rotation too, and filtering both would make the head wobble.
            values = {k: self._filters[k](v, timestamp_s) for k, v in values.items()}
            translation = camera.translation_for_center(head_center, cv2.Rodrigues(values["rotation"])[0],
                                                        values["center"])
        values["translation"] = translation
        fitted = nan2.copy()
        uv, _, _ = self.problem.evaluate(st, shape_live, self.log_focal, False)
        fitted[self.model.ids] = uv.cpu().numpy()
        detected = np.asarray(landmarks_px, np.float64)
        return TrackResult(
            frame_index=frame_index, timestamp_s=timestamp_s, tracking_state=tracking_state,
            shape=shape_live.cpu().numpy().copy(), expr=values["expr"], rotation=values["rotation"],
            translation=values["translation"], neck_pose=np.zeros(3), jaw_pose=values["jaw"], eyes_pose=values["eyes"],
            intrinsics=intr, rho_per_m=rho, focal_sigma_px=sigma_px, focal_state=self.focal_state,
            fit_error_px=fit_px, confidence=confidence, landmarks_px=detected, fitted_landmarks_px=fitted,
            shape_version=self.shared.shape_version, camera_mode=self.options.camera_mode, scale_px_per_m=scale,
            focal_evidence=self.shared.focal_evidence, **segment)
