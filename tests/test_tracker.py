"""Tracker on exact projected landmarks (no landmarker bias): recovers pose, identity and focal.

Every test runs on the built-in head model (what a fresh clone has) and again on the ICT head
from ../shared when it is there."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import camera
from core.embedding import LandmarkEmbedding
from core.head_model import HeadModelLayer
from core.synthetic import SyntheticOptions, Trajectory
from core.tracker import FocalPrior, Tracker, TrackerOptions
from tests.fixtures_flame import flame_like_arrays, write_flame_pickle


def vertex_embedding(head, seed: int = 1) -> tuple[LandmarkEmbedding, np.ndarray]:
    """478 'landmarks' on random face vertices (exact surface points, one vertex each)."""
    rng = np.random.default_rng(seed)
    face = head.regions.get("face", np.arange(head.num_vertices))
    if len(face) < 478:  # the built-in head's face region is MediaPipe's 468 points: take the whole surface
        hidden = [head.regions.get(k, []) for k in ("left_eyeball", "right_eyeball", "mouth_interior")]
        face = np.setdiff1d(np.arange(head.num_vertices), np.concatenate(hidden).astype(int))
    picks = rng.choice(face, 478, replace=False)
    face_idx = np.full(478, -1)
    bary = np.zeros((478, 3), np.float32)
    for i, v in enumerate(picks):
        f = np.flatnonzero((head.faces == v).any(1))[0]
        face_idx[i] = f
        bary[i, list(head.faces[f]).index(v)] = 1
    return LandmarkEmbedding(face_idx, bary, face_idx >= 0, np.zeros(478, np.float32)), picks


class ExactLandmarks:
    """Projects a head along a synthetic trajectory at the embedded points, with optional noise."""

    def __init__(self, head, opts: SyntheticOptions, noise_px: float = 0.0, seed: int = 0):
        self.head, self.traj = head, Trajectory(opts, head)
        self.emb, picks = vertex_embedding(head)
        self.layer = HeadModelLayer(head, picks)
        self.rng = np.random.default_rng(seed)
        self.noise = noise_px

    def frame(self, i: int):
        gt = self.traj.at(i)
        t = lambda a: torch.as_tensor(a)[None]  # noqa: E731
        verts = self.layer(t(gt.shape), t(gt.expr), t(gt.rotation), t(gt.neck_pose), t(gt.jaw_pose), t(gt.eyes_pose))
        uv = camera.project_perspective(camera.model_to_camera(verts, t(gt.translation)), torch.as_tensor(gt.intrinsics))
        return uv[0].numpy() + self.rng.normal(0, self.noise, (478, 2)), gt


def run(head, opts: SyntheticOptions, topts: TrackerOptions, frames: int, noise: float = 0.3):
    src = ExactLandmarks(head, opts, noise)
    tracker = Tracker(head, src.emb, (opts.width, opts.height), topts)
    out = []
    for i in range(frames):
        uv, gt = src.frame(i)
        out.append((tracker.step(uv, i / opts.fps, i), gt))
    tracker.refine_shared(3)
    return tracker, out


@pytest.fixture(scope="module", params=["builtin", "ict"])
def head(request):
    """The model a test tracks: the built-in one always, the ICT head when ../shared has it."""
    return request.getfixturevalue("builtin_model" if request.param == "builtin" else "ict_model")


@pytest.fixture(scope="module")
def flame_fixture_model(tmp_path_factory):
    from core.model_io import load_head_model

    path = tmp_path_factory.mktemp("flame") / "flame_like.pkl"
    write_flame_pickle(path, flame_like_arrays(n_vert=900, seed=3))
    return load_head_model(path)


def _rotation_error_deg(a: np.ndarray, b: np.ndarray) -> float:
    ra = camera.axis_angle_to_matrix(torch.as_tensor(a, dtype=torch.float64))
    rb = camera.axis_angle_to_matrix(torch.as_tensor(b, dtype=torch.float64))
    return float(torch.rad2deg(camera.matrix_to_axis_angle(ra.T @ rb).norm()))


def test_fixed_focal_recovers_pose_and_expression(head):
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=60)
    _, out = run(head, opts, TrackerOptions(focal_px=900.0, smoothing=False), 60)
    res, gt = out[-1]
    assert res.tracking_state == "tracking"
    assert res.fit_error_px < 1.5  # noise 0.3 px; the rest is identity the prior keeps near the mean
    active = gt.expr > 0.3
    assert active.any() and np.abs(res.expr[active] - gt.expr[active]).max() < 0.25
    assert _rotation_error_deg(res.rotation, gt.rotation) < 1.0
    center = camera.model_to_camera(torch.as_tensor(head.head_center, dtype=torch.float64)[None],
                                    torch.as_tensor(res.translation),
                                    torch.as_tensor(res.rotation))[0].numpy()
    # Depth trades off against head size (identity); 5 % at a known focal length.
    assert np.linalg.norm(center - gt.head_center_cam) < 0.05 * gt.head_center_cam[2]
    assert abs(res.rho_per_m - gt.rho_per_m) < 0.05 * gt.rho_per_m
    assert res.focal_state == "fixed" and res.focal_px == 900.0


@pytest.mark.parametrize("focal", [600.0, 1800.0])
def test_auto_focal_converges_on_unbiased_landmarks(head, focal):
    """Without landmark bias the perspective cue is enough: the estimate approaches the truth
    from a wrong prior, and its σ covers the remaining error."""
    opts = SyntheticOptions(width=512, height=512, focal=focal, frames=150)
    prior = FocalPrior(focal_px=1000.0, sigma_rel=0.5)
    # These landmarks carry no MediaPipe bias, so the bias floor on ρ is set near zero.
    tracker, out = run(head, opts, TrackerOptions(focal_prior=prior, rho_bias_sigma_per_m=0.05), 150)
    res = out[-1][0]
    err = abs(tracker.focal_px - focal) / focal
    assert res.focal_state in ("estimating", "converged")
    assert err < 0.08, f"focal {tracker.focal_px:.0f} vs {focal}"
    assert err < 3 * tracker.focal_sigma_rel + 0.02


def test_focal_not_observable_without_pose_diversity(head):
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=40, still=10.0)  # head never moves
    tracker, out = run(head, opts, TrackerOptions(), 40)
    assert out[-1][0].focal_state == "not_observable"
    assert tracker.focal_px == pytest.approx(tracker.focal_prior.focal_px)


def test_unobservable_focal_follows_an_updated_prior_without_moving_the_mesh(head):
    """A prior that moves (the regressor's running estimate) moves the focal at once while the data
    cannot weigh in, with the head's depth rescaled: the head centre stays on its pixel."""
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=12, still=10.0)  # no pose diversity
    tracker, _ = run(head, opts, TrackerOptions(focal_prior=FocalPrior(2000.0, 0.3)), 12)
    assert tracker.focal_state == "not_observable" and tracker.keyframes
    while tracker.shared.advance():  # a prior change waits for a running online refinement
        pass
    centre = tracker.problem.center_cam
    c_before = centre(tracker.state)
    kf_before = [centre(kf.state)[2] for kf in tracker.keyframes]
    tracker.set_focal_prior(FocalPrior(1000.0, 0.25, source="regressor"))
    assert tracker.focal_px == pytest.approx(1000.0) and tracker.focal_sigma_rel == pytest.approx(0.25)
    c_after = centre(tracker.state)
    assert float(c_after[2] / c_before[2]) == pytest.approx(0.5, rel=1e-5)  # depth scaled with f
    np.testing.assert_allclose((1000.0 * c_after[:2] / c_after[2]).numpy(),  # the same pixel
                               (2000.0 * c_before[:2] / c_before[2]).numpy(), atol=1e-6)
    for kf, z in zip(tracker.keyframes, kf_before):  # the stored keyframes follow too
        assert float(centre(kf.state)[2] / z) == pytest.approx(0.5, rel=1e-5)
    # and a refinement while still not observable keeps the focal at the prior
    tracker.refine_shared(1)
    assert tracker.focal_state == "not_observable" and tracker.focal_px == pytest.approx(1000.0, rel=1e-6)


def test_focal_change_does_not_move_projection(head):
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=20)
    tracker, _ = run(head, opts, TrackerOptions(focal_px=None), 20)
    state = tracker.state

    def project(points_model):
        cam = camera.flip_axes(points_model @ state.rot.T) + state.trans
        return camera.project_perspective(cam, torch.as_tensor(tracker.intrinsics()))

    evaluate = lambda: tracker.problem.evaluate(state, tracker.shape, tracker.log_focal, False)[0]  # noqa: E731
    center = tracker.model.head_center[None]
    before, centre_before = evaluate(), project(center)
    naive_trans = state.trans.clone()
    tracker.shared.set_focal(float(tracker.log_focal) + 0.2)  # +22 %
    after, centre_after = evaluate(), project(center)
    assert (centre_after - centre_before).norm() < 1e-6  # the head centre stays exactly where it was
    state.trans, rescaled = naive_trans, state.trans
    naive = evaluate()  # same focal change without the depth re-solve
    state.trans = rescaled
    moved, naive_moved = (after - before).norm(dim=-1).max(), (naive - before).norm(dim=-1).max()
    assert moved < 0.2 * naive_moved, (float(moved), float(naive_moved))


def test_ortho_reports_rho_zero_and_fits_worse_up_close(head):
    opts = SyntheticOptions(width=512, height=512, focal=600, frames=40)
    _, persp = run(head, opts, TrackerOptions(focal_px=600.0), 40)
    _, ortho = run(head, opts, TrackerOptions(focal_px=600.0, camera_mode="ortho"), 40)
    assert all(r.rho_per_m == 0.0 for r, _ in ortho)
    assert np.mean([r.fit_error_px for r, _ in ortho[20:]]) > 2 * np.mean([r.fit_error_px for r, _ in persp[20:]])


def test_lost_and_reacquired(head):
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=30)
    src = ExactLandmarks(head, opts)
    tracker = Tracker(head, src.emb, (512, 512), TrackerOptions(focal_px=900.0))
    assert tracker.step(None, 0.0, 0).tracking_state == "no_face"
    for i in range(1, 10):
        tracker.step(src.frame(i)[0], i / 30, i)
    last = tracker.step(src.frame(10)[0], 10 / 30, 10)
    lost = tracker.step(None, 11 / 30, 11)
    assert lost.tracking_state == "lost"
    other = tracker.step(None, 12 / 30, 12, other_faces=True)
    assert other.tracking_state == "other_faces"
    for absent in (lost, other):  # no pose: consumers that skip non-finite frames draw nothing
        for name in ("rotation", "translation", "expr", "jaw_pose", "neck_pose", "eyes_pose", "fitted_landmarks_px"):
            assert np.isnan(getattr(absent, name)).all(), name
        assert np.isnan(absent.rho_per_m) and absent.confidence == 0.0
        # what belongs to the segment stays: identity and camera
        np.testing.assert_array_equal(absent.shape, last.shape)
        np.testing.assert_array_equal(absent.intrinsics, last.intrinsics)
    back = tracker.step(src.frame(13)[0], 13 / 30, 13)
    assert back.tracking_state == "reacquired"
    assert back.fit_error_px < 1.2 * last.fit_error_px + 0.2  # as good as before the loss (the state was kept)
    assert np.isfinite(back.rotation).all()


def refinement_units_per_frame(head, next_frame_in_s, frames: int = 64) -> list[int]:
    """Joint-refinement units each frame ran, with an unlimited time budget and ``next_frame_in_s``
    saying when the next frame is due (as the pipelined engine does)."""
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=frames)
    src = ExactLandmarks(head, opts, noise_px=0.5)
    tracker = Tracker(head, src.emb, (512, 512), TrackerOptions(frame_budget_ms=1e6))
    counts, advance = [0], tracker.shared.advance

    def counted():
        more = advance()
        counts[-1] += more  # a unit that found the refinement finished did none
        return more

    tracker.shared.advance = counted
    for i in range(frames):
        counts.append(0)
        tracker.step(src.frame(i)[0], i / 30, i, next_frame_in_s=next_frame_in_s)
    return counts[1:]


def test_the_joint_refinement_fills_only_the_time_until_the_next_frame(head):
    """A frame already waiting leaves the refinement its minimum (a unit every fourth frame), so an
    engine that runs flat out is not held back; with time to spare it runs as the budget allows."""
    waiting = refinement_units_per_frame(head, lambda: 0.0)
    spare = refinement_units_per_frame(head, lambda: 10.0)
    assert max(spare) > 1  # time to spare: many units in a frame
    assert max(waiting) == 1 and sum(waiting) >= 4  # the refinement still moves on ...
    ran = [i for i, n in enumerate(waiting) if n]
    assert all(b - a >= 4 for a, b in zip(ran, ran[1:]))  # ... but only every fourth frame
    assert sum(waiting) < sum(spare)


def test_a_frame_without_a_face_reports_no_refinement_time(head):
    """``last_refinement_s`` (what the engine subtracts to judge the tracker's own work) belongs to the
    step that just ran: a frame without a face, which refines nothing, reports 0."""
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=40)
    src = ExactLandmarks(head, opts, noise_px=0.5)
    tracker = Tracker(head, src.emb, (512, 512), TrackerOptions(frame_budget_ms=1e6))
    refined = []
    for i in range(40):
        tracker.step(src.frame(i)[0], i / 30, i)
        refined.append(tracker.last_refinement_s)
        if refined[-1] > 0:
            break
    assert refined[-1] > 0  # a frame that refined says so
    tracker.step(None, 40 / 30, 40)
    assert tracker.last_refinement_s == 0.0


def test_the_live_identity_follows_the_estimate_in_steps_that_move_a_landmark(head):
    """The live identity follows the refinement's estimate a fraction per frame, but takes it only
    in steps that move a landmark by IDENTITY_STEP_M (each new identity costs the frames a re-shaping
    and the stream a shape message), never further behind than that, and arrives exactly."""
    from core.tracker.shared import IDENTITY_STEP_M

    tracker = Tracker(head, vertex_embedding(head)[0], (512, 512), TrackerOptions(focal_px=900.0))
    shared, dirs = tracker.shared, tracker.model.shapedirs
    moved_m = lambda a, b: float((dirs @ (a - b)).norm(dim=-1).max())  # noqa: E731
    shared.shape = torch.as_tensor(np.random.default_rng(0).normal(0, 1.0, head.num_shape))
    rate = tracker.options.identity_follow_rate
    smooth = shared.shape_live.clone()  # where a follow applied at every frame would be
    versions, steps = [shared.shape_version], []
    for _ in range(200):
        before = shared.shape_live
        shared.follow_shape()
        smooth = smooth + rate * (shared.shape - smooth)
        if shared.shape_live is not before:
            steps.append(moved_m(shared.shape_live, before))
            versions.append(shared.shape_version)
        assert moved_m(shared.shape_live, smooth) < IDENTITY_STEP_M + 1e-9
    assert torch.equal(shared.shape_live, shared.shape)  # arrived
    assert versions == list(range(versions[0], versions[0] + len(versions)))  # a version per step
    assert all(step >= IDENTITY_STEP_M for step in steps[:-1])  # only the arrival may be smaller
    assert 3 < len(steps) < 100  # in steps, not at each of the 200 frames
    version = shared.shape_version
    shared.follow_shape()
    assert shared.shape_version == version  # nothing left to follow
    shared.shape = shared.shape + 0.01
    shared.follow_shape(1.0)  # a jump takes the estimate at once, however small
    assert torch.equal(shared.shape_live, shared.shape) and shared.shape_version == version + 1


def test_a_frame_is_fitted_measured_and_reported_with_one_identity(head):
    """While the live identity follows the refinement, each result's fitted landmarks are the
    projection its fit error measures, with the identity it reports (the identity's step comes
    before the frame's fit, not between the fit and the result)."""
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=40)
    src = ExactLandmarks(head, opts, noise_px=0.3)
    tracker = Tracker(head, src.emb, (512, 512), TrackerOptions(refine_units_per_frame=2))
    ids, versions = tracker.model.ids, []
    for i in range(40):
        uv, _ = src.frame(i)
        res = tracker.step(uv, i / 30, i)
        rms = float(np.sqrt(np.mean(np.sum((res.fitted_landmarks_px[ids] - uv[ids]) ** 2, axis=1))))
        assert rms == pytest.approx(res.fit_error_px, rel=1e-9)
        versions.append(res.shape_version)
    assert len(set(versions)) >= 4  # the identity moved while tracking


def test_a_model_without_identity_components_tracks_and_refines(builtin_model):
    """A head model with expressions only (no identity basis) tracks and refines its focal length:
    the identity follow has nothing to follow (it used to fail on the empty vector)."""
    from core.head_model import HeadModel  # noqa: PLC0415

    base = builtin_model
    head = HeadModel(name="no-identity", kind="npz", v_template=base.v_template, faces=base.faces,
                     shapedirs=np.zeros((base.num_vertices, 3, 0), np.float32), exprdirs=base.exprdirs,
                     head_center=base.head_center)
    assert head.num_shape == 0
    tracker, out = run(head, SyntheticOptions(width=512, height=512, focal=900, frames=40), TrackerOptions(), 40)
    assert all(r.tracking_state in ("tracking", "reacquired") for r, _ in out[1:])
    assert out[-1][0].shape.shape == (0,) and out[-1][0].fit_error_px < 2.0


def test_no_face_before_the_first_fit_has_no_pose(head):
    tracker = Tracker(head, vertex_embedding(head)[0], (512, 512), TrackerOptions(focal_px=900.0))
    first = tracker.step(None, 0.0, 0)
    assert first.tracking_state == "no_face"
    assert np.isnan(first.rotation).all() and np.isnan(first.translation).all() and np.isnan(first.expr).all()
    assert first.segment_id == 0


def _segment(segment_id: int, frame_index: int, kind: str):
    from core.segments import SegmentStart

    return SegmentStart(segment_id, frame_index, frame_index / 30, kind, kind != "person_change", kind)


def test_segments_reset_identity_and_after_a_cut_the_focal_length(head):
    """A new segment forgets the identity; a shot cut also the focal length (back to the session's
    prior), another person in the same shot keeps it. Each segment then fits its own person."""
    prior = FocalPrior(focal_px=1000.0, sigma_rel=0.5)
    n = 40
    sweep = dict(width=512, height=512, focal=600, frames=n, identity=1.5, still=0.0, yaw=30.0, period=2.0)
    opts_a = SyntheticOptions(seed=1, **sweep)
    opts_b = SyntheticOptions(seed=2, **sweep)
    topts = TrackerOptions(focal_prior=prior, rho_bias_sigma_per_m=0.05, smoothing=False, keep_history=True)
    src_a, src_b = ExactLandmarks(head, opts_a), ExactLandmarks(head, opts_b)
    tracker = Tracker(head, src_a.emb, (512, 512), topts)
    for i in range(n):
        end_a = tracker.step(src_a.frame(i)[0], i / 30, i)
    assert end_a.segment_id == 0 and abs(np.log(end_a.focal_px / 600)) < abs(np.log(1000 / 600)) / 2  # it moved

    tracker.start_segment(_segment(1, n, "person_change"))
    first_b = tracker.step(src_b.frame(0)[0], 2.0, n)
    assert first_b.segment_id == 1 and first_b.segment_start.kind == "person_change"
    assert abs(np.log(first_b.focal_px / end_a.focal_px)) < 0.05  # the focal length is kept
    for i in range(1, n):
        end_b = tracker.step(src_b.frame(i)[0], 2.0 + i / 30, n + i)
    assert end_b.segment_start is None  # only a segment's first result carries its start
    truth_b = src_b.traj.shape
    assert np.linalg.norm(end_b.shape - truth_b) < np.linalg.norm(end_a.shape - truth_b)  # B's own identity

    tracker.start_segment(_segment(2, 2 * n, "scene_cut"))
    first_c = tracker.step(src_a.frame(0)[0], 4.0, 2 * n)
    assert first_c.focal_px == pytest.approx(1000.0, rel=0.25)  # back at the prior: the camera may be another
    # --refine keeps the segments: each refined frame in its own segment, with its own identity
    refined = tracker.refine_sequence(rounds=1, batch=16)
    by_segment = {r.frame_index: r.segment_id for r in refined}
    assert by_segment[n - 1] == 0 and by_segment[n] == 1 and by_segment[2 * n] == 2
    shape_of = {r.segment_id: r.shape for r in refined}
    assert np.linalg.norm(shape_of[1] - truth_b) < np.linalg.norm(shape_of[0] - truth_b)


def test_articulated_model_tracks_jaw(flame_fixture_model):
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=60)
    tracker, out = run(flame_fixture_model, opts, TrackerOptions(focal_px=900.0, smoothing=False), 60, noise=0.0)
    res, gt = out[-1]
    assert res.fit_error_px < 0.5
    assert abs(res.jaw_pose[0] - gt.jaw_pose[0]) < 0.05


def test_offline_refinement_smooths_noisy_tracks(head):
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=45)
    src = ExactLandmarks(head, opts, noise_px=1.0)
    tracker = Tracker(head, src.emb, (512, 512), TrackerOptions(focal_px=900.0, smoothing=False, keep_history=True))
    online, truth = [], []
    for i in range(45):
        uv, gt = src.frame(i)
        online.append(tracker.step(uv, i / 30, i))
        truth.append(gt)
    refined = tracker.refine_sequence()
    assert [r.frame_index for r in refined] == list(range(45))

    def rot_err(results):
        return np.mean([_rotation_error_deg(r.rotation, g.rotation) for r, g in zip(results, truth)][10:])

    assert rot_err(refined) < rot_err(online)
