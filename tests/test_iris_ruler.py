"""The iris ruler (core.tracker.iris): the iris diameter as a prior on the identity's absolute size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import camera
from core.embedding import LandmarkEmbedding, identity_embedding
from core.head_model import HeadModelLayer
from core.synthetic import SyntheticOptions, Trajectory
from core.tracker import LandmarkModel, Tracker, TrackerOptions
from core.tracker.iris import IRIS_DIAMETER_M, IrisRuler, iris_diameter_jacobian, iris_diameter_m, iris_rows
from tests.test_tracker import vertex_embedding

KW = dict(dtype=torch.float64)


def iris_points(radius_m: float, centres=((-0.031, 0.03, 0.09), (0.031, 0.03, 0.09))) -> torch.Tensor:
    """(10, 3): per eye a centre then 4 boundary points at +x, +y, -x, -y (MediaPipe's order)."""
    pts = []
    for c in centres:
        c = torch.tensor(c, **KW)
        pts.append(c)
        for dx, dy in ((1, 0), (0, 1), (-1, 0), (0, -1)):
            pts.append(c + radius_m * torch.tensor([dx, dy, 0.0], **KW))
    return torch.stack(pts)


def test_diameter_of_a_known_iris_is_pose_invariant():
    pts = iris_points(0.0059)
    assert float(iris_diameter_m(pts)) == pytest.approx(0.0118, abs=1e-9)
    rot = camera.axis_angle_to_matrix(torch.tensor([0.3, -0.5, 0.2], **KW))
    moved = pts @ rot.T + torch.tensor([0.1, -0.2, 0.5], **KW)
    assert float(iris_diameter_m(moved)) == pytest.approx(0.0118, abs=1e-9)
    assert iris_diameter_m(torch.stack([pts, 2 * pts])).shape == (2,)  # batched


def test_diameter_jacobian_matches_central_differences():
    gen = torch.Generator().manual_seed(0)
    template = iris_points(0.006) + 0.001 * torch.randn(10, 3, generator=gen, **KW)
    dirs = 0.001 * torch.randn(10, 3, 7, generator=gen, **KW)
    beta = torch.randn(7, generator=gen, **KW)
    jac = iris_diameter_jacobian(template + dirs @ beta, dirs)
    eps = 1e-6
    numeric = torch.stack([(iris_diameter_m(template + dirs @ (beta + eps * e))
                            - iris_diameter_m(template + dirs @ (beta - eps * e))) / (2 * eps)
                           for e in torch.eye(7, **KW)])
    torch.testing.assert_close(jac, numeric, atol=1e-9, rtol=1e-6)


def test_iris_rows_need_all_ten_iris_landmarks():
    ids = np.arange(478)
    np.testing.assert_array_equal(iris_rows(ids), np.arange(468, 478))
    assert iris_rows(np.delete(ids, 470)) is None
    np.testing.assert_array_equal(iris_rows(np.delete(ids, 5)), np.arange(467, 477))


# --- on the ICT head: iris landmarks on its painted iris rims ------------------------------------------


def ict_iris_embedding(head) -> LandmarkEmbedding:
    """Random face vertices for 0-467 and, for 468-477, each eyeball's iris centre and 4 rim vertices
    (the painted iris's outermost vertices at +x, +y, -x, -y), one vertex each."""
    emb, _ = vertex_embedding(head)
    rgb = head.vertex_rgb
    eyes = head.regions["eyeballs"]
    half = len(eyes) // 2
    verts = head.v_template.astype(np.float64)
    picks = []
    # MediaPipe's 468 is the subject's right iris: model -x.
    for eye in sorted((eyes[:half], eyes[half:]), key=lambda e: verts[e, 0].mean()):
        iris = eye[np.all(np.abs(rgb[eye] - [0.3, 0.2, 0.12]) < 0.05, axis=1)]
        pupil = eye[np.all(rgb[eye] < 0.1, axis=1)]
        centre = pupil[np.argmax(verts[pupil, 2])]
        rel = verts[iris, :2] - verts[centre, :2]
        picks.append(centre)
        for direction in ((1, 0), (0, 1), (-1, 0), (0, -1)):
            picks.append(iris[np.argmax(rel @ np.array(direction, np.float64))])
    for lid, v in zip(range(468, 478), picks):
        f = np.flatnonzero((head.faces == v).any(1))[0]
        emb.face_idx[lid] = f
        emb.bary[lid] = 0
        emb.bary[lid, list(head.faces[f]).index(v)] = 1
    emb.valid[:] = emb.face_idx >= 0
    return emb


@pytest.fixture(scope="module")
def ict_iris(ict_model):
    emb = ict_iris_embedding(ict_model)
    return emb, LandmarkModel(ict_model, emb)


def test_ict_iris_is_human_sized_and_moves_with_identity(ict_model, ict_iris):
    _, model = ict_iris
    ruler = IrisRuler(model)
    zero = torch.zeros(ict_model.num_shape, **KW)
    assert 10.5e-3 < ruler.diameter(zero) < 12.5e-3  # the painted iris: 6 mm radius
    _, jac = ruler.residual(zero)
    assert float(jac.norm()) * ruler.sigma_m > 2e-4  # identity changes the iris by > 0.2 mm per unit vector


def test_identity_prior_terms_match_central_differences(ict_model, ict_iris):
    emb, _ = ict_iris
    tracker = Tracker(ict_model, emb, (512, 512), TrackerOptions(iris_ruler=True))
    shared = tracker.shared
    beta = 0.7 * torch.randn(ict_model.num_shape, generator=torch.Generator().manual_seed(1), **KW)
    hess, grad, cost = shared.identity_prior(beta)
    eps = 1e-5
    cols = torch.eye(ict_model.num_shape, **KW)[:12]
    numeric = torch.tensor([(shared.identity_prior(beta + eps * e)[2] - shared.identity_prior(beta - eps * e)[2]) / (4 * eps)
                            for e in cols], **KW)  # half the cost's gradient, as the normal equations hold it
    torch.testing.assert_close(grad[:12], numeric, atol=1e-6, rtol=1e-5)
    r, jac = shared.iris.residual(beta)
    assert cost == pytest.approx(float((beta ** 2).sum() + (r ** 2).sum()))
    torch.testing.assert_close(hess, torch.eye(len(beta), **KW) + jac.T @ jac)


def test_option_toggles_the_prior(ict_model, ict_iris):
    emb, _ = ict_iris
    beta = torch.randn(ict_model.num_shape, generator=torch.Generator().manual_seed(2), **KW)
    off = Tracker(ict_model, emb, (512, 512), TrackerOptions()).shared
    on = Tracker(ict_model, emb, (512, 512), TrackerOptions(iris_ruler=True)).shared
    assert off.iris is None and on.iris is not None
    h_off, g_off, c_off = off.identity_prior(beta)
    torch.testing.assert_close(h_off, torch.eye(len(beta), **KW))
    torch.testing.assert_close(g_off, beta)
    h_on, g_on, c_on = on.identity_prior(beta)
    assert c_on > c_off and not torch.allclose(g_on, g_off)
    # Without the iris embedded the option has nothing to measure with: no prior row.
    no_iris = ict_iris_embedding(ict_model)
    no_iris.valid[470] = False
    assert Tracker(ict_model, no_iris, (512, 512), TrackerOptions(iris_ruler=True)).shared.iris is None


def test_builtin_iris_is_fixed_size_so_the_prior_is_constant(builtin_model):
    emb = identity_embedding(builtin_model.faces)  # the built-in's own: landmark i is vertex i
    ruler = IrisRuler(LandmarkModel(builtin_model, emb))
    beta = torch.randn(builtin_model.num_shape, generator=torch.Generator().manual_seed(3), **KW)
    assert ruler.diameter(beta) == pytest.approx(ruler.diameter(0 * beta), abs=1e-9)
    assert ruler.diameter(beta) == pytest.approx(11.8e-3, abs=0.2e-3)
    assert float(ruler.residual(beta)[1].abs().max()) < 1e-9


def test_iris_ruler_moves_a_larger_persons_size_towards_the_truth(ict_model, ict_iris):
    """Exact landmarks of a person 10 % larger in every dimension than an ICT identity whose iris is
    then a human 11.7 mm, at a known focal length. Landmarks fix the shape but not the size (a
    larger head farther away projects the same), so without the ruler the identity prior keeps the
    size near ICT's mean; with it the iris pulls size and distance towards the truth. Only part of
    the way: ICT's identity prior holds a *pure* change of size (shape kept) to about ±3 % (a 10 %
    larger face needs |Δβ| ≈ 3.4 in its first 30 modes), stiffer than the iris's ±4.3 %."""
    head = ict_model.truncated(num_shape=30)  # fewer identity modes: a faster fit, the same ambiguity
    emb = ict_iris[0]
    ruler = IrisRuler(LandmarkModel(head, emb))
    k = 1.1
    beta = torch.zeros(head.num_shape, **KW)
    for _ in range(4):  # an identity whose iris, once scaled by k, is 11.7 mm
        r, jac = ruler.residual(beta)
        g = jac[0] * ruler.sigma_m
        beta = beta + g * (IRIS_DIAMETER_M / k - ruler.diameter(beta)) / float(g @ g)
    opts = SyntheticOptions(width=512, height=512, focal=900, frames=24, identity=0.0, still=0.2)
    traj = Trajectory(opts, head)
    traj.shape = beta.numpy().astype(np.float32)
    corners, weights = emb.vertex_weights(head.faces)  # one corner of weight 1 per landmark
    layer = HeadModelLayer(head, corners[np.arange(len(corners)), weights.argmax(1)])
    vids = np.flatnonzero(emb.valid)
    face = head.regions["face"]

    def size(shape):
        v = head.v_template[face].astype(np.float64) + head.shapedirs[face].astype(np.float64) @ shape
        return np.sqrt(((v - v.mean(0)) ** 2).sum(1).mean())

    rng = np.random.default_rng(0)
    errors = {}
    for on in (False, True):
        tracker = Tracker(head, emb, (512, 512), TrackerOptions(focal_px=900.0, iris_ruler=on, smoothing=False,
                                                                    frame_budget_ms=1e6))
        for i in range(opts.frames):
            gt = traj.at(i)
            t = lambda a: torch.as_tensor(a)[None]  # noqa: E731
            cam = camera.model_to_camera(layer(t(gt.shape), t(gt.expr), t(gt.rotation)), t(gt.translation))[0]
            centre = torch.as_tensor(gt.head_center_cam, **KW)
            cam = centre + k * (cam - centre)  # the same head k times larger, its centre where it was
            lmk = np.full((478, 2), np.nan)
            lmk[vids] = camera.project_perspective(cam, torch.as_tensor(gt.intrinsics, **KW)).numpy()
            lmk[vids] += rng.normal(0, 0.3, (len(vids), 2))
            tracker.step(lmk, i / opts.fps, i)
        tracker.refine_shared(3)
        scale_err = size(tracker.shared.shape.numpy()) / (k * size(beta.numpy())) - 1
        rho_err = float(tracker.problem.rho(tracker.state)) / gt.rho_per_m - 1
        errors[on] = (scale_err, rho_err)
    (scale_off, rho_off), (scale_on, rho_on) = errors[False], errors[True]
    assert scale_off < -0.07, errors  # the identity prior alone keeps the size near the mean
    assert scale_off + 0.008 < scale_on < 0.0, errors  # measured: -9.4 % -> -7.9 %
    assert rho_on < rho_off, errors  # the distance follows the size (a smaller head is put closer: ρ too large)
