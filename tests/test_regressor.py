"""The per-frame regressor: training (type-2 data), ONNX export vs torch, lookup and caching,
the tracker's prior, and the type-1 generator's resumable, seeded shards. Fast: tiny data and nets."""
from __future__ import annotations

import argparse
import cv2
import json
import os
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.embedding import identity_embedding
from core.landmarks import FaceObservation, LandmarkResult
from core.regressor import (NO_REGRESSOR_MESSAGE, Regressor, RegressorError, RegressorPrior,
                            find_regressor, install, landmark_crop_box, load_regressor)
from training.losses import Geometry
from training.synth import LandmarkNoiseModel, LandmarkProjector, SyntheticBatches
from training.train import TrainConfig, build_net, example_inputs, export_onnx, fit, input_statistics, to_tensors, train_regressor

TINY = dict(hidden=48, trunk_layers=2, head_hidden=32, batch_size=48, warmup_steps=5, val_every=10**6, workers=1,
            threads=1)


@pytest.fixture(scope="module")
def builtin_setup(builtin_model):
    embedding = identity_embedding(builtin_model.faces)
    projector = LandmarkProjector(builtin_model, embedding)
    noise = LandmarkNoiseModel.default(projector.valid, builtin_model.num_expr)
    return builtin_model, embedding, projector, noise


def synthetic_data(head, projector, noise, n_train: int = 256, n_seq: int = 6, frames: int = 5, seed: int = 1) -> dict:
    """Type-1-shaped arrays from type-2 batches (validation: 'sequences' sharing identity and camera)."""
    batches = SyntheticBatches(head, projector, noise, seed=seed)
    train = batches(n_train)
    val_parts = []
    for s in range(n_seq):
        seq = batches(frames)
        for key in ("shape", "intrinsics", "image_size"):
            seq[key] = np.repeat(seq[key][:1], frames, 0)
        clean = projector(seq["shape"], seq["expr"], seq["jaw_pose"], seq["rotation"], seq["translation"],
                          seq["center_cam"], seq["intrinsics"])
        rng = np.random.default_rng(s)
        seq["landmarks_px"], seq["blendshapes"] = noise.sample(clean, seq["rotation"], seq["center_cam"],
                                                               seq["intrinsics"], seq["expr"], seq["jaw_pose"], rng)
        seq["sequence"] = np.full(frames, s)
        seq["frame"] = np.arange(frames)
        val_parts.append(seq)
    val = {k: np.concatenate([p[k] for p in val_parts]) for k in val_parts[0]}
    summary = {"samples": n_train, "with_face": n_train, "shards": 0, "key": "synthetic", "split": "train", "folder": ""}
    return {"train": train, "val": val, "noise": noise, "projector": projector, "timings": {},
            "summaries": {"train": summary, "val": {**summary, "samples": n_seq * frames, "split": "val"}},
            "specs": {"train": {}, "val": {}}}


def test_crop_box_is_square_and_contains_the_landmarks():
    pts = torch.tensor([[[10.0, 20.0], [110.0, 60.0], [50.0, 40.0]]])
    box = landmark_crop_box(pts)
    assert box.shape == (1, 4)
    x0, y0, w, h = box[0].tolist()
    assert w == h == pytest.approx(125.0)  # longer side 100 plus the 25 % margin
    assert (x0 + w / 2, y0 + h / 2) == pytest.approx((60.0, 40.0))


def test_tiny_training_lowers_the_loss_and_onnx_matches_torch(builtin_setup, tmp_path):
    head, embedding, projector, noise = builtin_setup
    torch.manual_seed(0)
    config = TrainConfig(steps=60, lr=3e-3, **TINY)
    data = synthetic_data(head, projector, noise)
    net = build_net(head, config)
    train = to_tensors(data["train"])
    input_statistics(net, train)
    geometry = Geometry(head, embedding, num_vertices=100)
    history = fit(net, geometry, train, SyntheticBatches(head, projector, noise, seed=3), config, log=lambda _: None)
    first = np.mean([h["loss"] for h in history[:10]])
    last = np.mean([h["loss"] for h in history[-10:]])
    assert last < 0.6 * first, (first, last)
    check = export_onnx(net, tmp_path / "tiny.onnx", {k: v[:16] for k, v in to_tensors(data["val"]).items()})
    assert check["max_diff"] <= 1e-4, check  # |ORT - torch| / max(1, |torch|)
    # Random, face-like inputs elsewhere in the image, through ONNX Runtime vs torch.
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    inputs = example_inputs(5, seed=4)
    got = session.run(["intrinsics", "translation", "shape"], {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        want = net(inputs["landmarks_px"], inputs["blendshapes"], inputs["image_size"])
    for value, name in zip(got, ["intrinsics", "translation", "shape"]):
        np.testing.assert_allclose(value, want[name].numpy(), rtol=1e-4, atol=1e-4)  # pixels: relative, metres: 0.1 mm


@pytest.fixture(scope="module")
def trained(builtin_setup, tmp_path_factory):
    """A tiny regressor through the whole job (type-1 data replaced by type-2 arrays): ONNX + record."""
    head, embedding, projector, noise = builtin_setup
    out = tmp_path_factory.mktemp("regressor") / "tiny.onnx"
    config = TrainConfig(steps=30, lr=3e-3, **TINY)
    record = train_regressor(head, embedding, "builtin", out, config, command="pytest tiny", log=lambda _: None,
                             data=synthetic_data(head, projector, noise))
    return out, record


def test_the_job_writes_onnx_and_its_record(trained, builtin_model):
    out, record = trained
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["model"]["sha256"] == builtin_model.source_sha256
    assert saved["command"] == "pytest tiny" and saved["seed"] == 0
    assert saved["onnx_check"]["max_diff"] <= 1e-4
    cal = saved["focal_calibration"]
    sigmas = [s for _, s in cal["sigma_by_frames"]]
    assert sigmas == sorted(sigmas, reverse=True) and all(s > 0 for s in sigmas)
    for key in ("focal_median_rel_err", "rho_median_abs_err", "vertex_mm", "landmark_px"):
        assert np.isfinite(saved["metrics"][key])


def test_inference_matches_the_record_and_gives_a_consistent_camera(trained, builtin_setup):
    out, _ = trained
    head, _, projector, noise = builtin_setup
    reg = Regressor(out, threads=1)
    reg.check_model(head)
    sample = SyntheticBatches(head, projector, noise, seed=9)(1)
    pred = reg.predict(sample["landmarks_px"][0], sample["blendshapes"][0], tuple(sample["image_size"][0]))
    assert pred.shape.shape == (head.num_shape,) and pred.expr.shape == (head.num_expr,)
    assert pred.intrinsics[0] > 0 and pred.rho_per_m == pytest.approx(1.0 / pred.center_cam[2], rel=1e-5)
    # The head centre projects where the network says, and the translation places it there.
    centre, translation = pred.placement(pred.intrinsics)
    np.testing.assert_allclose(centre, pred.center_cam, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(translation, pred.translation, rtol=1e-4, atol=1e-5)
    assert pred.scale_px_per_m == pytest.approx(pred.focal_px / pred.center_cam[2], rel=1e-4)


def test_lookup_order_explicit_cache_resources_none(trained, builtin_model, monkeypatch, tmp_path):
    out, _ = trained
    import core.regressor as regmod

    monkeypatch.setattr(regmod, "BUILTIN_REGRESSOR", tmp_path / "absent.onnx")
    foreign = SimpleNamespace(kind="flame", source_sha256="f" * 64, name="other", num_shape=3, num_expr=2)
    assert find_regressor(foreign) == (None, "none")
    reg, message = load_regressor(foreign)
    assert reg is None and message == NO_REGRESSOR_MESSAGE
    # resources/ for the built-in model (only when its record names this very model file)
    monkeypatch.setattr(regmod, "BUILTIN_REGRESSOR", out)
    assert find_regressor(builtin_model) == (out, "built-in")
    # the cache (per model hash) wins over resources/
    cached = install(out)
    assert cached.name == f"{builtin_model.source_sha256}-perspective.onnx" and cached.with_suffix(".json").exists()
    assert find_regressor(builtin_model) == (cached, "cache")
    reg, message = load_regressor(builtin_model)
    assert reg is not None and "cache" in message
    again, _ = load_regressor(builtin_model)
    assert again is reg  # loaded once per file and model hash
    # an explicit path wins over both, and one made for another model is refused with the reason
    assert find_regressor(builtin_model, explicit=out) == (out, "given")
    with pytest.raises(RegressorError, match="another model file"):
        load_regressor(replace(builtin_model, source_sha256="0" * 64), explicit=out)
    cached.unlink()
    cached.with_suffix(".json").unlink()


def test_a_file_without_its_record_is_refused(trained, tmp_path):
    out, _ = trained
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(out.read_bytes())
    with pytest.raises(RegressorError, match="record"):
        Regressor(lonely)


def test_the_tracker_takes_the_regressor_prior(trained, builtin_setup):
    from core.tracker import Tracker, TrackerOptions, fuse_focal_priors

    out, _ = trained
    head, embedding, projector, noise = builtin_setup
    sample = SyntheticBatches(head, projector, noise, seed=11)(1)
    size = tuple(int(v) for v in sample["image_size"][0])
    tracker = Tracker(head, embedding, size, TrackerOptions(smoothing=False))
    from core.camera_regressor import CameraRegressor

    prior_fn = RegressorPrior(Regressor(out), CameraRegressor(), update_every=2)
    face = FaceObservation(sample["landmarks_px"][0], np.zeros(478, np.float32), np.ones(478, np.float32),
                           sample["blendshapes"][0], np.zeros(4, np.float32))
    frame_prior = prior_fn(LandmarkResult(0, size, face, 1))
    # The focal belief is the camera regressor's (honest σ, any model); the pose and expression the model's own.
    assert frame_prior.focal.source == "regressor" and "camera regressor" in frame_prior.focal.detail
    assert frame_prior.focal.focal_px == pytest.approx(prior_fn.focal.estimate().focal_px, rel=1e-12)
    assert frame_prior.focal.sigma_rel == pytest.approx(prior_fn.focal.estimate().log_sigma, rel=1e-12)
    np.testing.assert_allclose(frame_prior.rotation, prior_fn.last.rotation)
    assert frame_prior.expr is not None and len(frame_prior.expr) == head.num_expr
    assert frame_prior.has_pose and frame_prior.scale_px_per_m > 0
    assert tracker.focal_prior.source == "default"  # the prior is an input of step(), nothing changes before
    assert tracker.needs_pose_prior(0.0)  # nothing to continue from: the prior's pose places the head
    result = tracker.step(sample["landmarks_px"][0], 0.0, 0, prior=frame_prior)
    # Fused with the tracker's own prior, never replacing it; the data have not weighed in yet.
    assert tracker.focal_prior == fuse_focal_priors([tracker.static_prior, frame_prior.focal])
    assert dict(tracker.focal_prior.shares)[frame_prior.focal.detail] > 0.3
    assert tracker.focal_px == pytest.approx(tracker.focal_prior.focal_px, rel=1e-6)
    assert result.focal_evidence == tracker.focal_prior.shares
    assert result.tracking_state == "tracking" and np.isfinite(result.rho_per_m) and result.translation[2] > 0
    # The pose was placed from the prior's head-centre pixel and image scale with the tracker's own camera.
    centre = result.translation + np.array([1.0, -1.0, -1.0]) * (
        cv2.Rodrigues(result.rotation)[0] @ head.head_center.astype(np.float64))
    assert result.focal_px / centre[2] == pytest.approx(frame_prior.scale_px_per_m, rel=0.15)
    assert prior_fn(LandmarkResult(1, size, None, 0)) is None  # no face: no prior
    prior_fn(LandmarkResult(2, size, face, 1))
    assert prior_fn.focal.estimate().frames == 2
    prior_fn.reset()  # a shot cut: the belief starts again from the next frame alone
    assert prior_fn(LandmarkResult(3, size, face, 1)).focal.detail == "camera regressor (1 frames)"
    # Tracking from the previous frame, the tracker needs no pose: the networks run on every
    # focal_stride-th frame only, for the focal belief, which every frame's prior still carries.
    assert not tracker.needs_pose_prior(0.1)
    assert tracker.needs_pose_prior(0.1 + tracker.options.reinit_after_s)  # lost that long: placed anew
    calls = []
    predict = prior_fn.camera.predict
    prior_fn.camera.predict = lambda *args, **kw: (calls.append(1), predict(*args, **kw))[1]
    skipped = [prior_fn(LandmarkResult(4 + i, size, face, 1), pose_needed=False) for i in range(3 * prior_fn.focal_stride)]
    assert len(calls) == 3 and prior_fn.focal.estimate().frames == 4
    assert all(not p.has_pose and p.expr is None and p.focal is not None for p in skipped)
    assert prior_fn(LandmarkResult(20, size, face, 1), pose_needed=True).has_pose and len(calls) == 4


def test_a_model_without_a_regressor_still_tracks_and_says_so(tmp_path):
    from core.model_io import load_head_model
    from core.session import SessionOptions, load_regressor_prior
    from tests.fixtures_flame import flame_like_arrays, write_flame_pickle

    path = tmp_path / "flame_like.pkl"
    write_flame_pickle(path, flame_like_arrays(n_vert=300, seed=2))
    head = load_head_model(path)
    messages = []
    prior_fn, message = load_regressor_prior(head, SessionOptions(model=str(path)), estimate_focal=True,
                                             log=messages.append)
    # No coefficient regressor for this model: the shipped camera regressor still gives pose and focal belief.
    assert prior_fn is not None and prior_fn.regressor is None and prior_fn.camera is not None
    assert prior_fn.estimate_focal
    assert "no coefficient regressor for this model" in message and "camera regressor" in message
    assert any(message in m for m in messages), messages
    none, message = load_regressor_prior(head, SessionOptions(model=str(path), regressor="none"), estimate_focal=True,
                                         log=messages.append)
    assert none is None and "--regressor none" in message  # landmarks alone


def test_the_session_uses_a_given_regressor_in_its_pipeline(trained, builtin_setup):
    from core.session import SessionError, SessionOptions, build_session

    out, _ = trained
    source = SimpleNamespace(size=(512, 512), name="test", fps=30.0, num_frames=None, is_live=False, close=lambda: None)
    messages = []
    session = build_session(SessionOptions(regressor=str(out)), source=source, log=messages.append)
    assert isinstance(session.regressor_prior, RegressorPrior) and str(out) in session.regressor_message
    assert session.pipeline.prior_fn is session.regressor_prior and session.regressor_prior.estimate_focal
    assert session.recording_meta().extra["regressor"] == session.regressor_message
    with pytest.raises(SessionError, match="not found") as err:  # a bad explicit file is bad input, with the reason
        build_session(SessionOptions(regressor=str(out.with_name("missing.onnx"))), source=source, log=messages.append)
    assert err.value.bad_input


def test_articulated_models_get_a_jaw_head(tmp_path):
    from core.model_io import load_head_model
    from tests.fixtures_flame import flame_like_arrays, write_flame_pickle

    path = tmp_path / "flame_like.pkl"
    write_flame_pickle(path, flame_like_arrays(n_vert=400, seed=5))
    head = load_head_model(path)
    embedding = identity_embedding(head.faces, 478) if head.num_vertices >= 478 else identity_embedding(head.faces, 200)
    projector = LandmarkProjector(head, embedding)
    noise = LandmarkNoiseModel.default(projector.valid, head.num_expr)
    batch = SyntheticBatches(head, projector, noise, seed=0)(32)
    assert np.isfinite(batch["landmarks_px"]).all()  # landmarks the embedding lacks are filled in
    assert (batch["jaw_pose"][:, 0] >= 0).all() and batch["jaw_pose"][:, 0].max() > 0
    config = TrainConfig(steps=4, **TINY)
    net = build_net(head, config)
    data = to_tensors(batch)
    input_statistics(net, data)
    history = fit(net, Geometry(head, embedding, num_vertices=50), data, SyntheticBatches(head, projector, noise),
                  config, log=lambda _: None)
    assert net.config.has_jaw and np.isfinite(history[-1]["jaw"])


def test_generator_shards_are_seeded_and_resumable(builtin_model, tmp_path):
    from training.generate import DatasetSpec, dataset_dir, generate, load_dataset, shard_path

    spec = DatasetSpec(model="builtin", model_sha256=builtin_model.source_sha256, split="train", num_samples=6,
                       shard_size=3, crop_px=16)
    directory = generate(spec, workers=1, root=tmp_path)
    assert directory == dataset_dir(spec, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["complete"] and set(manifest["shards"]) == {"0", "1"}
    data = load_dataset(spec, tmp_path, found_only=False)
    assert data["landmarks_px"].shape == (6, 478, 2) and data["crop"].shape == (6, 16, 16, 3)
    assert data["found"].mean() >= 0.5  # the landmarker sees most rendered faces
    found = data["found"]
    assert np.isfinite(data["landmarks_px"][found]).all() and (data["blendshapes"][found].max(1) > 0).all()
    # Resumable: finished shards are kept; a lost one is redone identically (seeded per shard).
    first = shard_path(directory, 0)
    mtime = first.stat().st_mtime_ns
    second = shard_path(directory, 1)
    before = dict(np.load(second))
    second.unlink()
    generate(spec, workers=1, root=tmp_path)
    assert first.stat().st_mtime_ns == mtime
    after = dict(np.load(second))
    for key in ("shape", "intrinsics", "rotation", "landmarks_px", "blendshapes"):
        np.testing.assert_array_equal(before[key], after[key])
    # More samples extend the same seeded stream.
    bigger = generate(replace(spec, num_samples=9), workers=1, root=tmp_path)
    assert bigger == directory and shard_path(directory, 2).exists() and first.stat().st_mtime_ns == mtime


def test_cli_refuses_bad_output_and_third_party_weights_in_the_repo(tmp_path, capsys):
    from app.cmd_train_regressor import REPO, run

    def args(**kw):
        base = dict(output=str(tmp_path / "x.onnx"), model="builtin", steps=None, device="cpu", seed=0,
                    camera="perspective", samples=None, val_sequences=None, workers=1, threads=None, batch_size=None,
                    embedding=None, landmarker=None, data_dir=None, no_install=True, overwrite=False)
        return argparse.Namespace(**{**base, **kw})

    assert run(args(output=str(tmp_path / "x.pt"))) == 2
    assert ".onnx" in capsys.readouterr().err
    (tmp_path / "exists.onnx").write_bytes(b"")
    assert run(args(output=str(tmp_path / "exists.onnx"))) == 2
    assert "exists" in capsys.readouterr().err
    assert run(args(steps=0)) == 2
    from core.regressor import RESOURCES

    assert RESOURCES.parent == REPO
    ict = os.environ.get("FLAMECAM_ICT", str(REPO.parent / "shared" / "data" / "ict_facekit_head.npz"))
    if os.path.exists(ict):
        assert run(args(model=ict, output=str(REPO / "resources" / "ict_regressor.onnx"))) == 2
        assert "must not go into the repository" in capsys.readouterr().err
        assert not (REPO / "resources" / "ict_regressor.onnx").exists()


def test_an_orthographic_regressor_initialises_the_weak_perspective_tracker(builtin_setup, tmp_path):
    from core.tracker import Tracker, TrackerOptions

    head, embedding, projector, noise = builtin_setup
    out = tmp_path / "ortho.onnx"
    config = TrainConfig(steps=20, camera_mode="ortho", **TINY)
    record = train_regressor(head, embedding, "builtin", out, config, command="pytest ortho", log=lambda _: None,
                             data=synthetic_data(head, projector, noise, n_train=128, n_seq=3, frames=3))
    assert record["camera_mode"] == "ortho" and record["focal_calibration"] is None
    reg = Regressor(out)
    assert reg.camera_mode == "ortho" and "intrinsics" not in reg.output_names
    sample = SyntheticBatches(head, projector, noise, seed=5)(1)
    size = tuple(int(v) for v in sample["image_size"][0])
    pred = reg.predict(sample["landmarks_px"][0], sample["blendshapes"][0], size)
    assert pred.intrinsics is None and pred.rho_per_m is None and pred.scale_px_per_m > 0
    tracker = Tracker(head, embedding, size, TrackerOptions(camera_mode="ortho", focal_px=1000.0, smoothing=False))
    prior_fn = RegressorPrior(reg)
    face = FaceObservation(sample["landmarks_px"][0], np.zeros(478, np.float32), np.ones(478, np.float32),
                           sample["blendshapes"][0], np.zeros(4, np.float32))
    frame_prior = prior_fn(LandmarkResult(0, size, face, 1))
    assert frame_prior.focal is None  # ortho: no focal to give
    # the head sits where a 1000 px camera sees it at the predicted scale: Z0 = f/S
    centre, _ = pred.placement(tracker.intrinsics())
    assert centre[2] == pytest.approx(1000.0 / pred.scale_px_per_m)
    result = tracker.step(sample["landmarks_px"][0], 0.0, 0, prior=frame_prior)
    assert result.camera_mode == "ortho" and result.tracking_state == "tracking"
    assert tracker.focal_prior.source != "regressor"


def test_training_is_deterministic_for_a_seed(builtin_setup):
    head, embedding, projector, noise = builtin_setup
    data = to_tensors(synthetic_data(head, projector, noise, n_train=96, n_seq=1, frames=2)["train"])

    def run(seed: int):
        torch.manual_seed(seed)
        config = TrainConfig(steps=6, seed=seed, pretrain_fraction=0.5, **TINY)
        net = build_net(head, config)
        input_statistics(net, data)
        history = fit(net, Geometry(head, embedding, num_vertices=50), data,
                      SyntheticBatches(head, projector, noise, seed=seed), config, log=lambda _: None)
        return [h["loss"] for h in history], torch.cat([p.detach().flatten() for p in net.parameters()])

    loss_a, weights_a = run(3)
    loss_b, weights_b = run(3)
    loss_c, _ = run(4)
    assert loss_a == loss_b and torch.equal(weights_a, weights_b)
    assert loss_a != loss_c
