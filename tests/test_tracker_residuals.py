"""The tracker's articulated Jacobians against central differences through smplx's ``lbs``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues, lbs

from core import camera
from core.head_model import HeadModelLayer
from core.tracker import FrameProblem, FrameState, LandmarkModel, TrackerOptions
from core.tracker import articulation
from tests.fixtures_flame import flame_like_arrays, write_flame_pickle
from tests.test_tracker import vertex_embedding

POSE_SCALES = (0.4, 1e-7, 0.0)  # random poses, near zero, zero


@pytest.fixture(scope="module")
def flame_layout_model(tmp_path_factory):
    from core.model_io import load_head_model

    path = tmp_path_factory.mktemp("flame") / "flame_like.pkl"
    write_flame_pickle(path, flame_like_arrays(n_vert=900, seed=3))
    return load_head_model(path)


def relative_error(analytic: torch.Tensor, numeric: torch.Tensor) -> float:
    """The worst column's relative error (columns along the last axis, one per parameter)."""
    cols = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    return float(((cols(analytic) - cols(numeric)).norm(dim=0) / cols(numeric).norm(dim=0)).max())


def central_differences(fn, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """d fn / d x by central differences: (..., len(x))."""
    cols = []
    for i in range(len(x)):
        step = torch.zeros_like(x)
        step[i] = eps
        cols.append((fn(x + step) - fn(x - step)) / (2 * eps))
    return torch.stack(cols, -1)


@pytest.mark.parametrize("scale", POSE_SCALES)
@pytest.mark.parametrize("use_numpy", [False, True])
def test_rotation_derivatives_match_rodrigues(scale, use_numpy):
    theta = torch.as_tensor(np.random.default_rng(0).normal(size=(4, 3)) * scale)
    rot = camera.axis_angle_to_matrix(theta)
    if use_numpy:
        analytic = torch.as_tensor(articulation.rotation_derivatives(
            articulation.so3_left_jacobian(theta.numpy()), rot.numpy()))
    else:
        analytic = articulation.rotation_derivatives(articulation.so3_left_jacobian(theta), rot)  # (K, i, 3, 3)
    for k in range(len(theta)):
        numeric = central_differences(lambda t: camera.axis_angle_to_matrix(t), theta[k])  # (3, 3, i)
        assert relative_error(analytic[k].permute(1, 2, 0), numeric) < 1e-6


@pytest.mark.parametrize("scale", POSE_SCALES)
def test_lbs_pose_jacobian_matches_smplx_lbs(flame_layout_model, scale):
    """Every joint, the root and the neck included (the neck's subtree holds the jaw and the eyes),
    on the whole mesh: pose correctives, skinning and the kinematic chain."""
    head = flame_layout_model
    layer = HeadModelLayer(head, dtype=torch.float64)
    rng = np.random.default_rng(1)
    coeffs = torch.as_tensor(rng.normal(size=(1, head.num_shape + head.num_expr)))
    pose = torch.as_tensor(rng.normal(size=15) * scale)  # global, neck, jaw, left eye, right eye
    n_vert = head.num_vertices

    def verts(p):
        return lbs(coeffs, p[None], layer.v_template, layer.dirs, layer.posedirs, layer.j_regressor, layer.parents,
                   layer.lbs_weights)[0][0, :n_vert]

    joints = [0, 1, 2, 3, 4]
    parents = [int(p) for p in head.parents]
    rot_mats = batch_rodrigues(pose.view(-1, 3))
    v_shaped = layer.v_template + torch.einsum("vcs,s->vc", layer.dirs, coeffs[0])
    posed_joints, transforms = batch_rigid_transform(rot_mats[None], v_shaped[None, n_vert:], layer.parents)
    pose_feature = (rot_mats[1:] - torch.eye(3, dtype=torch.float64)).reshape(-1)
    rest_posed = v_shaped + (pose_feature @ layer.posedirs).view(-1, 3)

    def jacobian(correctives: bool) -> torch.Tensor:
        dirs = articulation.corrective_dirs(layer.posedirs, n_vert, joints)
        cols = articulation.lbs_pose_jacobian(
            layer.lbs_weights[:n_vert].T, rest_posed[:n_vert].T, transforms[0], posed_joints[0], joints, parents,
            articulation.subtree_mask(parents, joints), pose.view(-1, 3), rot_mats,
            dirs if correctives else torch.zeros_like(dirs))  # (K, a, i, V)
        return cols.permute(3, 1, 0, 2).reshape(n_vert, 3, -1)

    numeric = central_differences(verts, pose)  # (V, a, (k, i))
    assert relative_error(jacobian(True), numeric) < 1e-4
    # The correctives matter (at zero pose too: d(R - I)/dθ is not zero there).
    assert relative_error(jacobian(False), numeric) > 1e-3


def frame_problem(head, focal_px: float = 900.0):
    emb, _ = vertex_embedding(head)
    model = LandmarkModel(head, emb)
    principal_px = torch.tensor([256.0, 256.0], dtype=torch.float64)
    return FrameProblem(head, model, TrackerOptions(focal_px=focal_px), principal_px)


def random_state(head, rng, pose_scale: float) -> FrameState:
    f64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    rot = camera.axis_angle_to_matrix(f64(rng.normal(size=3) * 0.3))
    trans = f64([0.01, -0.02, 0.5]) - rot @ f64(head.head_center)
    return FrameState(rot, trans, f64(rng.normal(size=head.num_expr) * 0.5), f64(rng.normal(size=3) * pose_scale),
                      f64(rng.normal(size=6) * pose_scale), f64(0.0), f64([0.0, 0.0]))


def projected_frame(head, seed: int, noise_px: float = 0.0):
    """A frame of the FLAME-layout fixture for solve tests: (shape, log focal, FrameProblem, true
    state, true projection, Observation of it with ``noise_px`` Gaussian noise)."""
    from core.tracker.residuals import Observation  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    shape = torch.as_tensor(rng.normal(size=head.num_shape))
    log_focal = torch.tensor(np.log(900.0), dtype=torch.float64)
    problem = frame_problem(head)
    truth = random_state(head, rng, 0.2)
    target = problem.evaluate(truth, shape, log_focal, False)[0]
    seen = target + torch.as_tensor(rng.normal(0, noise_px, target.shape)) if noise_px else target
    obs = Observation(seen, torch.ones(len(target), dtype=torch.float64), 1.0)
    return shape, log_focal, problem, truth, target, obs


@pytest.mark.parametrize("scale", POSE_SCALES)
def test_frame_problem_jaw_and_eye_columns_match_central_differences(flame_layout_model, scale):
    head = flame_layout_model
    problem = frame_problem(head)
    assert [n for n, _ in problem.blocks][-2:] == ["jaw", "eyes"]
    rng = np.random.default_rng(2)
    shape = torch.as_tensor(rng.normal(size=head.num_shape))
    log_focal = torch.tensor(np.log(900.0), dtype=torch.float64)
    state = random_state(head, rng, scale)
    _, cols, _ = problem.evaluate(state, shape, log_focal, True)
    for name in ("jaw", "eyes"):
        def uv(value, name=name):
            moved = state.clone()
            setattr(moved, name, value)
            return problem.evaluate(moved, shape, log_focal, False)[0]

        numeric = central_differences(uv, getattr(state, name))  # (L, 2, n)
        assert cols[name].shape == numeric.shape
        assert relative_error(cols[name], numeric) < 1e-4


def test_cached_forward_passes_follow_the_state(flame_layout_model):
    """Remembered forward passes are keyed by value: revisiting a state, changing a pose in place
    or switching identities gives what a fresh problem computes."""
    head = flame_layout_model
    problem, fresh = frame_problem(head), frame_problem(head)
    rng = np.random.default_rng(3)
    shapes = [torch.as_tensor(rng.normal(size=head.num_shape)) for _ in range(3)]
    log_focal = torch.tensor(np.log(900.0), dtype=torch.float64)
    states = [random_state(head, rng, 0.3) for _ in range(6)]
    for shape in shapes:
        for state in states + states[::-1]:
            got = problem.evaluate(state, shape, log_focal, True)
            want = fresh.evaluate(state, shape, log_focal, True)
            fresh._posed_cache.clear()
            assert torch.equal(got[0], want[0])
            assert torch.equal(got[1]["jaw"], want[1]["jaw"]) and torch.equal(got[1]["eyes"], want[1]["eyes"])
    state = states[0]
    before = problem.evaluate(state, shapes[0], log_focal, False)[0]
    state.jaw[0] += 0.2  # in place: the remembered pass must not be reused
    after = problem.evaluate(state, shapes[0], log_focal, False)[0]
    assert not torch.allclose(before, after)
    assert torch.equal(after, fresh.evaluate(state, shapes[0], log_focal, False)[0])


def test_the_live_identitys_forward_passes_outlast_the_refinements_trial_identities(flame_layout_model,
                                                                                   monkeypatch):
    """The joint refinement judges a keyframe at its estimate and at a trial step, both new identities:
    the frames' live identity keeps its remembered forward passes meanwhile, and so does the frame's
    remembered projection, which the refinement's cost passes (``remember=False``) leave alone."""
    from core.tracker.residuals import POSED_IDENTITIES, Observation  # noqa: PLC0415

    head = flame_layout_model
    problem = frame_problem(head)
    posed = []
    inner = problem.model.posed_points
    monkeypatch.setattr(problem.model, "posed_points", lambda *a: posed.append(1) or inner(*a))
    rng = np.random.default_rng(8)
    live, estimate = (torch.as_tensor(rng.normal(size=head.num_shape)) for _ in range(2))
    trial = estimate + 0.01  # a new object, as the refinement's LM step makes
    log_focal = torch.tensor(np.log(900.0), dtype=torch.float64)
    frame, keyframe = random_state(head, rng, 0.2), random_state(head, rng, 0.2)
    obs = Observation(torch.zeros(problem.model.num_landmarks, 2, dtype=torch.float64),
                      torch.ones(problem.model.num_landmarks, dtype=torch.float64), 1.0)
    assert POSED_IDENTITIES >= 3
    fitted = problem.evaluate(frame, live, log_focal, False)  # a frame's fit error
    for shape in (estimate, trial, estimate):
        problem.cost(obs, keyframe, shape, log_focal, None, 2.0, remember=False)
    assert len(posed) == 3  # the live identity's pass, then one per refinement identity
    assert problem.evaluate(frame, live, log_focal, False) is fitted  # the frame's result
    problem.evaluate(frame.clone(), live, log_focal, True)  # the next frame's first step: no forward pass
    assert len(posed) == 3
    problem.cost(obs, keyframe, estimate, log_focal, None, 2.0)  # remembered by default: replaces the slot
    assert problem.evaluate(frame, live, log_focal, False) is not fitted


def test_a_frame_solve_reusing_the_joint_columns_reaches_the_exact_jacobians_optimum(flame_layout_model,
                                                                                     monkeypatch):
    """Later Gauss-Newton steps of a frame keep the jaw/eye columns of its first Jacobian while the
    joints and the rest pose move little: the same optimum as recomputing them at every step, with
    fewer of them; the next frame keeps them too while it starts close by."""
    from core.tracker import residuals  # noqa: PLC0415

    head = flame_layout_model
    shape, log_focal, problem, truth, target, obs = projected_frame(head, 5, noise_px=0.3)
    start = truth.clone()
    start.jaw = start.jaw + 0.004  # a frame's motion: the joints turn by a few mrad
    start.expr = start.expr + 0.01
    calls = {}

    def counting(p, name):
        compute = p.model.pose_jacobian

        def counted(posed):
            calls[name] = calls.get(name, 0) + 1
            return compute(posed)
        monkeypatch.setattr(p.model, "pose_jacobian", counted)

    counting(problem, "reused")
    reused, reused_cost = problem.solve(obs, start.clone(), shape, log_focal, None, 4)
    assert calls == {"reused": 1}
    # The next frame starts near where these columns were computed: they carry over; a jaw that opened does not.
    nearby = start.clone()
    nearby.jaw = nearby.jaw + 0.002
    problem.solve(obs, nearby, shape, log_focal, None, 1)
    assert calls == {"reused": 1}
    opened = reused.clone()
    opened.jaw = opened.jaw + torch.tensor([0.05, 0.0, 0.0], dtype=torch.float64)
    problem.solve(obs, opened, shape, log_focal, None, 1)
    assert calls == {"reused": 2}

    exact_problem = frame_problem(head)
    counting(exact_problem, "exact")
    monkeypatch.setattr(residuals, "ARTICULATION_REUSE_RAD", -1.0)  # recompute at every step
    exact, exact_cost = exact_problem.solve(obs, start.clone(), shape, log_focal, None, 4)
    assert calls["exact"] >= 2
    assert reused_cost <= 1.001 * exact_cost
    assert torch.allclose(reused.jaw, exact.jaw, atol=2e-4)
    fit = lambda s: float((problem.evaluate(s, shape, log_focal, False)[0] - target).norm(dim=-1).mean())  # noqa: E731
    assert fit(reused) == pytest.approx(fit(exact), abs=0.01)


def test_a_frame_solve_at_its_optimum_tries_no_step(flame_layout_model, monkeypatch):
    """A step the linear model says would lower the cost by less than STEP_PAYS of it is not tried
    (each try costs a forward pass): at the optimum the solve returns at once, the state unchanged."""
    head = flame_layout_model
    shape, log_focal, problem, truth, _, obs = projected_frame(head, 7)
    optimum, _ = problem.solve(obs, truth.clone(), shape, log_focal, None, 6)  # at the optimum the priors allow
    tried = []
    cost = problem.cost
    monkeypatch.setattr(problem, "cost", lambda *a, **k: tried.append(1) or cost(*a, **k))
    again, _ = problem.solve(obs, optimum, shape, log_focal, None, 3)
    assert tried == [] and again is optimum
    moved = optimum.clone()
    moved.trans = moved.trans + torch.tensor([0.002, 0.0, 0.0], dtype=torch.float64)  # 2 mm off: worth a step
    problem.solve(obs, moved, shape, log_focal, None, 3)
    assert len(tried) >= 1


def test_the_next_frame_at_the_same_state_reuses_its_jacobian(flame_layout_model, builtin_model, monkeypatch):
    """A frame Jacobian (and a projection) depends on the state, not on the landmarks: asked again
    at the same values (the next frame starts where the last one ended) it is not recomputed; a value
    changed in place, another identity or focal length, or shared columns compute afresh, and a
    tracker gives the same results bit for bit as one that recomputes every time."""
    from core.tracker import Tracker  # noqa: PLC0415
    from core.synthetic import SyntheticOptions  # noqa: PLC0415
    from tests.test_tracker import ExactLandmarks  # noqa: PLC0415

    head = flame_layout_model
    problem = frame_problem(head)
    computed = []
    inner = problem._evaluate
    monkeypatch.setattr(problem, "_evaluate", lambda *a, **k: computed.append(1) or inner(*a, **k))
    rng = np.random.default_rng(5)
    shape = torch.as_tensor(rng.normal(size=head.num_shape))
    log_focal = torch.tensor(np.log(900.0), dtype=torch.float64)
    state = random_state(head, rng, 0.2)
    first = problem.evaluate(state, shape, log_focal, True)
    assert problem.evaluate(state.clone(), shape.clone(), log_focal.clone(), True) is first and len(computed) == 1
    state.trans[2] += 0.01  # in place
    moved = problem.evaluate(state, shape, log_focal, True)
    assert len(computed) == 2 and not torch.equal(moved[0], first[0])
    assert torch.equal(moved[1]["rot"], frame_problem(head).evaluate(state, shape, log_focal, True)[1]["rot"])
    problem.evaluate(state, shape + 0.1, log_focal, True)
    problem.evaluate(state, shape, log_focal + 0.1, True)
    problem.evaluate(state, shape, log_focal, True, ("shape",))
    problem.evaluate(state, shape, log_focal, True, ("shape",))
    assert len(computed) == 6
    uv = problem.evaluate(state, shape, log_focal, False)[0]  # the projection alone is remembered too
    assert problem.evaluate(state.clone(), shape, log_focal, False)[0] is uv and len(computed) == 7

    opts = SyntheticOptions(width=512, height=512, focal=900, frames=40)
    src = ExactLandmarks(builtin_model, opts, noise_px=0.5)
    landmarks = [src.frame(i)[0] for i in range(40)]
    recomputing = FrameProblem.evaluate
    runs = []
    for reuse in (True, False):
        if not reuse:
            monkeypatch.setattr(FrameProblem, "evaluate", lambda self, *a, remember=True: self._evaluate(*a))
        tracker = Tracker(builtin_model, src.emb, (512, 512), TrackerOptions(refine_units_per_frame=1))
        runs.append(np.array([np.concatenate([r.rotation, r.translation, r.expr, r.shape, r.intrinsics.ravel()])
                              for r in (tracker.step(uv, i / 30, i) for i, uv in enumerate(landmarks))]))
    monkeypatch.setattr(FrameProblem, "evaluate", recomputing)
    assert np.array_equal(runs[0], runs[1])


def test_a_frame_step_takes_a_single_precision_hessian_and_keeps_the_optimum(flame_layout_model, monkeypatch):
    """A frame's own normal equations multiply JᵀWJ in float32 (the refinement's stay float64): the
    gradient is exact, the Hessian within single precision, and the solve ends at the optimum of
    the float64 Hessian."""
    from core.tracker import residuals  # noqa: PLC0415

    head = flame_layout_model
    shape, log_focal, problem, truth, _, obs = projected_frame(head, 11, noise_px=0.5)
    start = truth.clone()
    start.trans = start.trans + torch.tensor([0.003, -0.002, 0.01], dtype=torch.float64)
    start.expr = start.expr + 0.05

    frame = problem.normal_equations(obs, start, shape, log_focal, None)
    shared = problem.normal_equations(obs, start, shape, log_focal, None, ("shape", "focal"))
    assert frame.h_local.dtype == torch.float64
    assert torch.equal(frame.g_local, shared.g_local)  # the gradient: the same float64 products
    assert not torch.equal(frame.h_local, shared.h_local)  # the frame's Hessian: float32 products ...
    assert float((frame.h_local - shared.h_local).norm() / shared.h_local.norm()) < 1e-6  # ... close to float64

    single, single_cost = problem.solve(obs, start.clone(), shape, log_focal, None, 6)
    exact_gram = residuals.weighted_gram
    monkeypatch.setattr(residuals, "weighted_gram", lambda jw, jac, single_precision=False: exact_gram(jw, jac))
    exact, exact_cost = frame_problem(head).solve(obs, start.clone(), shape, log_focal, None, 6)
    assert single_cost == pytest.approx(exact_cost, rel=1e-6)
    assert torch.allclose(single.trans, exact.trans, atol=1e-6)
    assert torch.allclose(single.expr, exact.expr, atol=1e-4)
