"""The model-agnostic camera regressor: sampling, network invariances, fusion, runtime and the shipped file."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from core import camera
from core.camera_regressor import (CAMERA_REGRESSOR, CameraPrediction, CameraRegressor, CameraRegressorError,
                                   fuse_focal, translation_for)
from core.landmarks import MEDIAPIPE_BLENDSHAPE_NAMES
from training.camera_model import (CameraNet, blendshape_mirror_permutation, landmark_mirror_permutation,
                                   mirror_inputs)
from training.camera_sampling import FACE_HEIGHT_M, CameraPopulation, draw_cameras, sample_population


def _landmarks_of(head, rotation_aa, center_cam, focal_px, size):
    """Landmarks of the built-in model (its first 478 vertices are MediaPipe's landmarks), projected."""
    rot = torch.as_tensor(rotation_aa, dtype=torch.float64)
    t = camera.translation_for_center(torch.as_tensor(head.head_center, dtype=torch.float64),
                                      camera.axis_angle_to_matrix(rot), torch.as_tensor(center_cam, dtype=torch.float64))
    verts = camera.model_to_camera(torch.as_tensor(head.v_template[:478], dtype=torch.float64), t, rot)
    intr = torch.tensor([focal_px, focal_px, size[0] / 2, size[1] / 2], dtype=torch.float64)
    return camera.project_perspective(verts, intr).numpy()


# --- sampling -----------------------------------------------------------------------------------------


def test_population_covers_every_lens_and_frames_every_face():
    pop = CameraPopulation()
    cams = draw_cameras(np.random.default_rng(0), 2400, pop)
    rel = cams["focal_px"] / cams["image_size"].max(1)
    assert rel.min() >= pop.focal_rel_range[0] - 1e-9 and rel.max() <= pop.focal_rel_range[1] + 1e-9
    counts = np.histogram(np.log(rel), np.linspace(*np.log(pop.focal_rel_range), pop.focal_bins + 1))[0]
    assert counts.min() == counts.max() == 200  # equal strata
    face_px = cams["focal_px"] * FACE_HEIGHT_M / cams["distance_m"]
    assert face_px.min() >= pop.min_face_px and (face_px / cams["image_size"].min(1)).max() <= pop.max_fill
    for k, (name, lo, hi, _) in enumerate(pop.use_cases):  # distances by use case, within their ranges
        d = cams["distance_m"][cams["use_case"] == k]
        assert len(d) and d.min() >= lo and d.max() <= hi, name
    portrait = cams["image_size"][:, 1] > cams["image_size"][:, 0]
    assert 0.1 < portrait.mean() < 0.4
    # A single draw (one sequence's camera) is not stuck in the first stratum.
    single = [draw_cameras(np.random.default_rng(i), 1, pop) for i in range(60)]
    rel1 = np.array([c["focal_px"][0] / c["image_size"][0].max() for c in single])
    assert rel1.min() < 0.6 and rel1.max() > 3.0


def test_samples_put_the_head_centre_where_the_camera_sees_it(builtin_model):
    s = sample_population(np.random.default_rng(1), 50, builtin_model, CameraPopulation())
    rot = camera.rotation_model_to_camera(torch.as_tensor(s.rotation, dtype=torch.float64)).numpy()
    centre = s.translation + np.einsum("nij,j->ni", rot, builtin_model.head_center)
    np.testing.assert_allclose(centre, s.center_cam, atol=1e-5)
    u = s.center_cam[:, :2] / s.center_cam[:, 2:] * s.intrinsics[:, :2] + s.intrinsics[:, 2:]
    assert (u >= 0).all() and (u <= s.image_size).all()
    assert ((0 < s.extra["render_scale"]) & (s.extra["render_scale"] <= 1)).all()


# --- the network -------------------------------------------------------------------------------------


def test_mirror_permutations_are_involutions_that_swap_sides(builtin_model):
    lp = landmark_mirror_permutation(builtin_model.v_template[:468])
    assert (lp[lp] == np.arange(478)).all() and lp[468] == 473 and lp[469] == 476
    v = builtin_model.v_template[:468]
    np.testing.assert_allclose(v[lp[:468]] * [-1, 1, 1], v, atol=1e-6)
    bp = blendshape_mirror_permutation(MEDIAPIPE_BLENDSHAPE_NAMES)
    names = MEDIAPIPE_BLENDSHAPE_NAMES
    assert (bp[bp] == np.arange(52)).all()
    assert names[bp[names.index("eyeBlinkLeft")]] == "eyeBlinkRight" and names[bp[names.index("jawLeft")]] == "jawRight"
    assert names[bp[names.index("jawOpen")]] == "jawOpen"


def test_network_inputs_are_scale_free(builtin_model):
    torch.manual_seed(0)
    net = CameraNet()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    size = torch.tensor([[640.0, 480.0], [1080.0, 1920.0]])
    pts = torch.as_tensor(np.stack([
        _landmarks_of(builtin_model, [0.1, 0.3, 0.0], [0.05, 0.0, 0.6], 600.0, (640, 480)),
        _landmarks_of(builtin_model, [-0.2, -0.1, 0.1], [0.0, 0.1, 1.5], 2500.0, (1080, 1920))]), dtype=torch.float32)
    blend = torch.rand(2, 52)
    with torch.no_grad():
        a = net(pts, blend, size)
        b = net(pts * 3.0, blend, size * 3.0)
    torch.testing.assert_close(b["focal_px"], a["focal_px"] * 3.0, rtol=1e-5, atol=0)
    torch.testing.assert_close(b["log_focal_sigma"], a["log_focal_sigma"], rtol=1e-5, atol=0)
    torch.testing.assert_close(b["head_center_px"], a["head_center_px"] * 3.0, rtol=1e-5, atol=0)
    torch.testing.assert_close(b["distance_m"], a["distance_m"], rtol=1e-5, atol=0)
    # and not invariant to what matters: a wider field of view (same face size) changes the prediction
    perms = (torch.as_tensor(landmark_mirror_permutation(builtin_model.v_template[:468])),
             torch.as_tensor(blendshape_mirror_permutation(MEDIAPIPE_BLENDSHAPE_NAMES)))
    mpts, mblend = mirror_inputs(pts, blend, size, *perms)
    assert not torch.allclose(mpts, pts)


# --- fusion ------------------------------------------------------------------------------------------


def test_fusion_sigma_has_a_correlated_floor():
    rng = np.random.default_rng(0)
    y = math.log(1000.0) + rng.normal(0, 0.2, 60)
    s = np.full(60, 0.2)
    _, sd_indep, n = fuse_focal(y, s, sequence_correlation=0.0, min_sigma=0.0)
    _, sd_floor, _ = fuse_focal(y, s, sequence_correlation=0.0)
    assert sd_floor == 0.03  # never tighter than min_sigma
    _, sd_corr, _ = fuse_focal(y, s, sequence_correlation=0.5)
    _, sd_one, _ = fuse_focal(y[:1], s[:1], sequence_correlation=0.5)
    assert n == 60 and sd_indep == pytest.approx(0.2 / math.sqrt(60))
    assert sd_corr == pytest.approx(0.2 * math.sqrt(0.5 + 0.5 / 60)) and sd_corr > 0.14  # not 1/√N
    assert sd_one == pytest.approx(0.2)  # one frame: its own σ
    # an outlier frame is left out; wide per-frame σ give a wide fused σ
    y2 = np.concatenate([y[:20], [math.log(1000.0) + 3.0]])
    mean, _, used = fuse_focal(y2, np.full(21, 0.2), 0.3)
    assert used == 20 and abs(mean - math.log(1000.0)) < 0.15
    _, wide, _ = fuse_focal(y, np.full(60, 1.0), 0.3)
    assert wide > 0.5


def test_fusion_refuses_nothing_to_fuse():
    with pytest.raises(ValueError):
        fuse_focal(np.array([np.nan]), np.array([0.1]), 0.5)


# --- runtime and the shipped file ---------------------------------------------------------------------


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(CameraRegressorError, match="not found"):
        CameraRegressor(tmp_path / "none.onnx")
    onnx = tmp_path / "x.onnx"
    onnx.write_bytes(b"not onnx")
    with pytest.raises(CameraRegressorError, match="record"):
        CameraRegressor(onnx)
    onnx.with_suffix(".json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CameraRegressorError, match="not a flamecam camera-regressor record"):
        CameraRegressor(onnx)


@pytest.fixture(scope="module")
def shipped():
    if not CAMERA_REGRESSOR.is_file():
        pytest.fail(f"{CAMERA_REGRESSOR} is missing: the camera regressor ships in resources/")
    return CameraRegressor()


def test_shipped_record_holds_calibration_and_provenance(shipped):
    rec = shipped.record
    cal = rec["calibration"]
    assert cal["sigma_scale"] > 0 and 0 <= cal["sequence_correlation"] <= 1
    assert "leave_one_model_out" in rec["metrics"] and rec["command"].startswith("python -m training.train_camera")
    assert "/work/" not in json.dumps(rec) and "/root/" not in json.dumps(rec)  # no machine-specific paths
    assert CAMERA_REGRESSOR.stat().st_size < 8 * 2**20
    assert (CAMERA_REGRESSOR.parent / "camera_regressor_ICT-FaceKit_LICENSE.txt").is_file()


def _frame(builtin_model, size=(1280, 720), focal=1000.0, centre=(0.04, -0.02, 0.7), rot=(0.1, 0.35, 0.05)):
    return _landmarks_of(builtin_model, rot, centre, focal, size), None, size  # None: the record's neutral scores


def test_shipped_network_is_scale_and_mirror_invariant(shipped, builtin_model):
    pts, _, size = _frame(builtin_model)
    blend = shipped.neutral_blendshapes
    a = shipped.predict(pts, blend, size)
    for s in (0.5, 2.0, 3.0):
        b = shipped.predict(pts * s, blend, (size[0] * s, size[1] * s))
        assert b.focal_px == pytest.approx(a.focal_px * s, rel=1e-5)
        assert b.log_focal_sigma == pytest.approx(a.log_focal_sigma, rel=1e-5)
        assert b.distance_m == pytest.approx(a.distance_m, rel=1e-5)
    lp = landmark_mirror_permutation(builtin_model.v_template[:468])
    bp = blendshape_mirror_permutation(MEDIAPIPE_BLENDSHAPE_NAMES)
    mpts = pts[lp].copy()
    mpts[:, 0] = size[0] - mpts[:, 0]
    m = shipped.predict(mpts, blend[bp], size)
    assert m.focal_px == pytest.approx(a.focal_px, rel=0.02)
    np.testing.assert_allclose(m.rotation, a.rotation * [1, -1, -1], atol=0.02)


def test_shipped_prediction_is_consistent_and_places_any_head(shipped, builtin_model, ict_path):
    from core.model_io import load_head_model

    pts, blend, size = _frame(builtin_model)
    p = shipped.predict(pts, blend, size)
    assert isinstance(p, CameraPrediction) and p.log_focal_sigma > 0
    assert p.distance_m == pytest.approx(p.focal_px / p.scale_px_per_m) and p.rho_per_m == pytest.approx(1 / p.distance_m)
    u = p.center_cam[:2] / p.center_cam[2] * p.focal_px + np.array(size) / 2
    np.testing.assert_allclose(u, p.head_center_px, atol=1e-3)
    np.testing.assert_allclose(p.rotation_matrix, camera.axis_angle_to_matrix(torch.tensor(p.rotation)).numpy(),
                               atol=1e-5)
    # A clean projection of the built-in head at 1000 px: the focal length within a few of its σ,
    # the head centre near where it projects.
    assert abs(math.log(p.focal_px / 1000.0)) < 3 * p.log_focal_sigma + 0.05
    true_u = np.array([0.04, -0.02]) / 0.7 * 1000.0 + np.array(size) / 2
    assert np.linalg.norm(p.head_center_px - true_u) < 0.03 * size[0]
    for head in (builtin_model, load_head_model(ict_path)):
        for focal in (None, 2.0 * p.focal_px):
            t = translation_for(head, p, focal)
            rot = camera.rotation_model_to_camera(torch.tensor(p.rotation)).numpy()
            centre = rot @ head.head_center + t
            f = p.focal_px if focal is None else focal
            np.testing.assert_allclose(centre[:2] / centre[2] * f + np.array(size) / 2, p.head_center_px, atol=1e-3)
            assert centre[2] == pytest.approx(f / p.scale_px_per_m, rel=1e-6)


def test_shipped_fusion_of_one_frame_keeps_its_sigma_and_many_frames_do_not_collapse(shipped, builtin_model):
    preds = [shipped.predict(*_frame(builtin_model, rot=(0.05 * i, 0.3 - 0.02 * i, 0.0))) for i in range(20)]
    one = shipped.fuse(preds[:1])
    assert one.log_sigma == pytest.approx(preds[0].log_focal_sigma) and one.frames == 1
    many = shipped.fuse(preds)
    rho = shipped.calibration.sequence_correlation
    assert many.log_sigma >= math.sqrt(rho) * min(p.log_focal_sigma for p in preds) - 1e-9
    with pytest.raises(ValueError, match="different image sizes"):
        shipped.fuse([preds[0], shipped.predict(*_frame(builtin_model, size=(640, 480), focal=500.0))])


def test_generator_stores_full_frame_landmarks_for_shrunk_renders(builtin_model, tmp_path):
    from training.generate import DatasetSpec, generate, load_dataset

    pop = CameraPopulation(long_side_range=(2400.0, 3000.0), focal_rel_range=(0.8, 1.2), focal_bins=1,
                           use_cases=(("webcam", 0.5, 0.7, 1.0),), fill_core=(0.3, 0.5), render_face_px=120.0)
    for split, n in (("train", 4), ("val", 3)):
        spec = DatasetSpec(model="builtin", model_sha256=builtin_model.source_sha256, split=split, num_samples=n,
                           shard_size=n, crop_px=0, sequence_frames=3, cameras=pop.to_dict())
        generate(spec, workers=1, root=tmp_path)
        data = load_dataset(spec, tmp_path)
        assert len(data["found"]) >= n - 1 and (data["render_scale"] < 0.6).all()  # rendered shrunk
        # landmarks are in full-frame pixels: the eyes' midpoint is where the head centre projects
        c, k = data["center_cam"], data["intrinsics"]
        u = c[:, :2] / c[:, 2:] * k[:, :2] + k[:, 2:]
        eyes = 0.5 * (data["landmarks_px"][:, 33] + data["landmarks_px"][:, 263])
        box = data["landmarks_px"].max(1) - data["landmarks_px"].min(1)
        assert (np.linalg.norm(eyes - u, axis=1) < 0.1 * box.max(1)).all()


def test_focal_sequence_fuses_like_fuse_and_restarts_on_a_new_size(shipped, builtin_model):
    from core.camera_regressor import FocalSequence

    seq = FocalSequence(shipped)
    assert seq.estimate() is None
    preds = [shipped.predict(*_frame(builtin_model, rot=(0.0, 0.1 * i - 0.3, 0.0))) for i in range(6)]
    for p in preds:
        seq.add(p)
    want = shipped.fuse(preds)
    got = seq.estimate()
    assert got.focal_px == pytest.approx(want.focal_px) and got.log_sigma == pytest.approx(want.log_sigma)
    seq.add(shipped.predict(*_frame(builtin_model, size=(640, 480), focal=500.0)))
    assert seq.count == 1 and seq.image_size == (640, 480)


def test_predictions_far_outside_the_trained_lenses_are_clamped_and_honestly_wide(shipped, builtin_model):
    lo, hi = shipped.log_focal_rel_limits
    pts, _, size = _frame(builtin_model)
    batch = np.stack([pts, pts * 0.5 + 100.0, pts[:, ::-1] * [1.0, 1.0]])
    sizes = np.array([size, size, size], np.float32)
    for blend in (np.zeros((3, 52), np.float32), np.tile(shipped.neutral_blendshapes, (3, 1))):
        raw = shipped.run(batch, blend, sizes, calibrated=False)
        cal = shipped.run(batch, blend, sizes)
        log_rel_raw = np.log(raw["focal_px"] / size[0]) - shipped.calibration.log_bias
        log_rel = np.log(cal["focal_px"] / size[0])
        assert (log_rel >= lo - 1e-9).all() and (log_rel <= hi + 1e-9).all()
        excess = np.abs(log_rel - log_rel_raw)
        assert (cal["log_focal_sigma"] >= excess).all()
        np.testing.assert_allclose(cal["distance_m"], cal["focal_px"] / cal["scale_px_per_m"], rtol=1e-6)
