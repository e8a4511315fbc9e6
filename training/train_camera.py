"""Train, calibrate and export the model-agnostic camera regressor (``resources/camera_regressor.onnx``).

Steps (``python -m training.train_camera --model builtin --model ICT.npz``):

1. **leave-one-model-out runs**: for each head model, a network trained on the others' renders
   predicts the left-out model's test sequences (and out-of-draw sequences). These predictions
   are the honest stand-in for a face of unknown identity, so they calibrate
2. the per-frame σ scale, the log-focal bias and the sequence floor ``ρ``
   (:func:`calibrate`, used by ``core.camera_regressor.fuse_focal``);
3. the **final network** on all models' renders, exported to ONNX with its JSON record (command,
   seeds, data spec, metrics, calibration) beside it.

Losses: Gaussian NLL on ``log(f/long side)`` with the predicted σ, plus Camera3DMM's asymmetric
term (an under-estimated focal length weighs ``underestimate_weight`` = 3× as much); Frobenius
distance of rotation matrices; head centre in crop units (Huber); log image scale. Training
frames are mirrored at random (the exported network averages each frame with its mirror image).
Data: ``training/camera_data.py`` (make them first).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from core import camera
from core.camera_regressor import RECORD_FORMAT, FocalCalibration, fuse_focal
from core.landmarks import MEDIAPIPE_BLENDSHAPE_NAMES
from training.camera_data import DataPlan, model_name
from training.camera_sampling import CameraPopulation
from training.camera_model import (ONNX_INPUTS, ONNX_OUTPUTS, CameraNet, CameraNetConfig, ExportWrapper,
                                   SymmetricCameraNet, blendshape_mirror_permutation, landmark_mirror_permutation,
                                   mirror_inputs, mirror_rotation)

FOCAL_BINS = (0.35, 0.45, 0.7, 1.0, 1.5, 2.5, 4.0, 6.0, 7.0)  # f / long side, for reports
OOD_FOCAL_BINS = (0.25, 0.35, 1.0, 3.0, 7.0, 12.0)  # out-of-draw lenses are 0.25-12
SEQUENCE_LENGTHS = (1, 5, 15, 30, 60)


@dataclass(frozen=True)
class TrainCameraConfig:
    net: CameraNetConfig = field(default_factory=CameraNetConfig)
    epochs: int = 40
    batch: int = 512
    lr: float = 1.5e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.05
    seed: int = 0
    box_jitter: tuple[float, float] = (0.03, 0.05)  # centre shift (box sides) and log size factor σ
    mirror_prob: float = 0.5
    landmark_noise: float = 0.0  # σ of extra landmark noise, fraction of the crop side
    aspect_jitter: float = 0.0  # σ of log x/y stretch of the landmarks about the face centre (identity variety)
    underestimate_weight: float = 3.0
    w_focal_nll: float = 1.0
    w_focal_asym: float = 1.0
    w_rotation: float = 5.0
    w_center: float = 20.0
    w_scale: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


# --- data --------------------------------------------------------------------------------------------


def load_arrays(model: str, which: str, plan: DataPlan = DataPlan()) -> dict[str, np.ndarray]:
    """One dataset of ``training.camera_data`` (the shards made so far); its spec under ``"spec"``."""
    from core.model_io import load_head_model  # noqa: PLC0415

    from training.camera_data import load  # noqa: PLC0415

    head = load_head_model(None if model == "builtin" else model)
    data, spec = load(model, which, plan)
    data["head_center"] = np.repeat(np.asarray(head.head_center, np.float32)[None], len(data["found"]), 0)
    data["spec"] = spec
    return data


def to_tensors(data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    keys = ("landmarks_px", "blendshapes", "image_size", "intrinsics", "rotation", "center_cam")
    out = {k: torch.as_tensor(np.asarray(data[k]), dtype=torch.float32) for k in keys}
    if "sequence" in data:
        out["sequence"] = torch.as_tensor(np.asarray(data["sequence"]), dtype=torch.long)
        out["frame"] = torch.as_tensor(np.asarray(data["frame"]), dtype=torch.long)
    return out


def concat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = set.intersection(*(set(p) for p in parts))
    return {k: torch.cat([p[k] for p in parts]) for k in keys}


def take(data: dict[str, torch.Tensor], index) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in data.items()}


def head_center_px(data: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 2) true projection of the head centre (with the true principal point)."""
    return camera.project_perspective(data["center_cam"][:, None, :], data["intrinsics"])[:, 0]


def mirrored(data: dict[str, torch.Tensor], perms: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same frames seen in a mirror (ground truths mirrored too)."""
    out = dict(data)
    out["landmarks_px"], out["blendshapes"] = mirror_inputs(data["landmarks_px"], data["blendshapes"],
                                                            data["image_size"], *perms)
    rot = mirror_rotation(camera.axis_angle_to_matrix(data["rotation"]))
    out["rotation"] = camera.matrix_to_axis_angle(rot)
    centre = data["center_cam"].clone()
    centre[:, 0] = -centre[:, 0]
    out["center_cam"] = centre
    intr = data["intrinsics"].clone()
    intr[:, 2] = data["image_size"][:, 0] - intr[:, 2]
    out["intrinsics"] = intr
    return out


def mirror_perms() -> tuple[torch.Tensor, torch.Tensor]:
    from core.model_io import load_head_model  # noqa: PLC0415

    canonical = load_head_model(None).v_template[:468]
    return (torch.as_tensor(landmark_mirror_permutation(canonical)),
            torch.as_tensor(blendshape_mirror_permutation(MEDIAPIPE_BLENDSHAPE_NAMES)))


# --- training ----------------------------------------------------------------------------------------


def targets(data: dict[str, torch.Tensor], box: torch.Tensor) -> dict[str, torch.Tensor]:
    focal = data["intrinsics"][:, 0]
    longer = data["image_size"].amax(1)
    side = box[:, 2]
    centre_crop = camera.crop_points(head_center_px(data)[:, None, :], box, (2, 2))[:, 0] - 1.0
    depth = data["center_cam"][:, 2]
    return {"log_focal_rel": torch.log(focal / longer), "head_center_crop": centre_crop,
            "log_scale_crop": torch.log(focal / depth * 2.0 / side),
            "rotation_matrix": camera.axis_angle_to_matrix(data["rotation"])}


def losses(raw: dict[str, torch.Tensor], gt: dict[str, torch.Tensor], config: TrainCameraConfig) -> dict:
    r = raw["log_focal_rel"] - gt["log_focal_rel"]
    sigma = raw["log_focal_sigma"]
    nll = 0.5 * (r / sigma) ** 2 + torch.log(sigma)
    asym = torch.where(r < 0, config.underestimate_weight, 1.0) * r**2
    rot = (rotation_from(raw) - gt["rotation_matrix"]).pow(2).sum((1, 2))
    d = (raw["head_center_crop"] - gt["head_center_crop"]).abs()
    centre = torch.where(d < 0.02, 0.5 * d * d / 0.02, d - 0.01).sum(1)
    scale = (raw["log_scale_crop"] - gt["log_scale_crop"]) ** 2
    parts = {"focal_nll": nll.mean(), "focal_asym": asym.mean(), "rotation": rot.mean(), "center": centre.mean(),
             "scale": scale.mean()}
    total = (config.w_focal_nll * parts["focal_nll"] + config.w_focal_asym * parts["focal_asym"]
             + config.w_rotation * parts["rotation"] + config.w_center * parts["center"] + config.w_scale * parts["scale"])
    return {"total": total, **{k: float(v.detach()) for k, v in parts.items()}}


def rotation_from(raw: dict[str, torch.Tensor]) -> torch.Tensor:
    from training.model import rotation_6d_to_matrix  # noqa: PLC0415

    return rotation_6d_to_matrix(raw["rot6d"])


def set_statistics(net: CameraNet, data: dict[str, torch.Tensor], perms) -> None:
    with torch.no_grad():
        both = concat([data, mirrored(data, perms)])
        box = net.crop_box(both["landmarks_px"])
        feats = net.features(both["landmarks_px"], both["blendshapes"], both["image_size"], box)
        net.in_mean.copy_(feats.mean(0))
        net.in_std.copy_(feats.std(0).clamp_min(1e-3))
        gt = targets(both, box)
        for i, key in enumerate(("log_focal_rel", "log_scale_crop")):
            net.out_mean[i] = gt[key].mean()
            net.out_std[i] = gt[key].std().clamp_min(1e-3)


def fit(train: dict[str, torch.Tensor], config: TrainCameraConfig, log=print) -> tuple[CameraNet, dict]:
    """Train on ``train`` (a random ``val_fraction`` held out for choosing the best epoch)."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    n = len(train["landmarks_px"])
    order = torch.randperm(n, generator=gen)
    n_val = max(1, int(n * config.val_fraction))
    val, trn = take(train, order[:n_val]), take(train, order[n_val:])
    perms = mirror_perms()
    net = CameraNet(config.net)
    set_statistics(net, trn, perms)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    steps_per_epoch = math.ceil(len(trn["landmarks_px"]) / config.batch)
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.05)
    best, best_state, history = float("inf"), None, []
    t0 = time.time()
    for epoch in range(config.epochs):
        net.train()
        perm = torch.randperm(len(trn["landmarks_px"]), generator=gen)
        sums: dict[str, float] = {}
        for s in range(steps_per_epoch):
            batch = take(trn, perm[s * config.batch:(s + 1) * config.batch])
            flip = torch.rand(len(batch["landmarks_px"]), generator=gen) < config.mirror_prob
            if flip.any():
                mb = mirrored(take(batch, flip), perms)
                batch = concat([take(batch, ~flip), mb])
            m = len(batch["landmarks_px"])
            if config.landmark_noise > 0 or config.aspect_jitter > 0:
                batch = dict(batch)
                pts = batch["landmarks_px"]
                side = net.crop_box(pts)[:, 2:3, None]
                centre = pts.mean(1, keepdim=True)
                stretch = torch.exp(torch.randn(m, 1, 2, generator=gen) * config.aspect_jitter * torch.tensor([0.5, -0.5]))
                batch["landmarks_px"] = ((pts - centre) * stretch + centre
                                         + torch.randn(pts.shape, generator=gen) * config.landmark_noise * side)
            jitter = torch.cat([torch.randn(m, 2, generator=gen) * config.box_jitter[0],
                                torch.randn(m, 1, generator=gen) * config.box_jitter[1]], 1)
            raw = net.raw(batch["landmarks_px"], batch["blendshapes"], batch["image_size"], jitter)
            parts = losses(raw, targets(batch, raw["crop_box"]), config)
            opt.zero_grad()
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
        metrics = evaluate_frames(net, val)
        score = metrics["focal_nll"] + metrics["rotation_deg_median"] / 20.0
        history.append({"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()}, **metrics})
        if score < best:
            best, best_state = score, {k: v.clone() for k, v in net.state_dict().items()}
        if epoch % 5 == 0 or epoch == config.epochs - 1:
            log(f"epoch {epoch:3d} loss {sums['total'] / steps_per_epoch:.3f} val focal median err "
                f"{100 * metrics['focal_median_rel_err']:.1f}% nll {metrics['focal_nll']:.3f} rot "
                f"{metrics['rotation_deg_median']:.2f}° ({time.time() - t0:.0f} s)")
    net.load_state_dict(best_state)
    net.eval()
    return net, {"val": evaluate_frames(net, val), "history_last": history[-1], "epochs": config.epochs,
                 "train_frames": len(trn["landmarks_px"]), "val_frames": n_val, "seconds": time.time() - t0}


@torch.no_grad()
def predict(net: torch.nn.Module, data: dict[str, torch.Tensor], batch: int = 2048) -> dict[str, np.ndarray]:
    net.eval()
    outs = []
    for i in range(0, len(data["landmarks_px"]), batch):
        d = take(data, slice(i, i + batch))
        out = net(d["landmarks_px"], d["blendshapes"], d["image_size"])
        outs.append({k: out[k] for k in ("log_focal_rel", "log_focal_sigma", "rotation_matrix", "head_center_px",
                                          "distance_m")})
    return {k: torch.cat([o[k] for o in outs]).numpy().astype(np.float64) for k in outs[0]}


@torch.no_grad()
def evaluate_frames(net: torch.nn.Module, data: dict[str, torch.Tensor]) -> dict:
    pred = predict(net, data)
    y = torch.log(data["intrinsics"][:, 0] / data["image_size"].amax(1)).numpy()
    r = pred["log_focal_rel"] - y
    s = pred["log_focal_sigma"]
    rot_gt = camera.axis_angle_to_matrix(data["rotation"]).numpy()
    rel = np.einsum("nji,njk->nik", pred["rotation_matrix"], rot_gt)
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return {"focal_median_rel_err": float(np.median(np.abs(np.expm1(r)))),
            "focal_nll": float(np.mean(0.5 * (r / s) ** 2 + np.log(s))),
            "rotation_deg_median": float(np.median(angle))}


# --- calibration and reports --------------------------------------------------------------------------


def prediction_table(pred: dict[str, np.ndarray], data: dict[str, torch.Tensor], label: str) -> dict[str, np.ndarray]:
    """Per-frame truth and raw prediction (uncalibrated) in a flat table for calibration and reports."""
    y = torch.log(data["intrinsics"][:, 0] / data["image_size"].amax(1)).numpy().astype(np.float64)
    rot_gt = camera.axis_angle_to_matrix(data["rotation"]).numpy()
    rel = np.einsum("nji,njk->nik", pred["rotation_matrix"], rot_gt)
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    true_centre_px = head_center_px(data).numpy()
    return {"y": y, "mu": pred["log_focal_rel"], "sigma": pred["log_focal_sigma"],
            "sequence": data["sequence"].numpy() if "sequence" in data else np.arange(len(y)),
            "frame": data["frame"].numpy() if "frame" in data else np.zeros(len(y), int),
            "rotation_err_deg": angle,
            "center_err_rel": np.linalg.norm(pred["head_center_px"] - true_centre_px, axis=1)
            / data["image_size"].amax(1).numpy(),
            "distance_log_err": np.log(pred["distance_m"]) - np.log(data["center_cam"][:, 2].numpy()),
            "label": np.array([label] * len(y))}


def sequence_fusions(table: dict[str, np.ndarray], cal: FocalCalibration, lengths=SEQUENCE_LENGTHS) -> dict:
    """Fused (error, σ) per sequence and length (first N frames of each sequence that has N)."""
    out: dict[int, dict[str, list]] = {n: {"err": [], "sigma": [], "y": []} for n in lengths}
    mu = table["mu"] - cal.log_bias
    sig = np.maximum(table["sigma"] * cal.sigma_scale, cal.min_sigma)
    for key in np.unique(np.char.add(table["label"].astype(str), table["sequence"].astype(str))):
        idx = np.flatnonzero(np.char.add(table["label"].astype(str), table["sequence"].astype(str)) == key)
        idx = idx[np.argsort(table["frame"][idx])]
        for n in lengths:
            if len(idx) < n:
                continue
            sub = idx[:n]
            m, s, _ = fuse_focal(mu[sub], sig[sub], cal.sequence_correlation, cal.min_sigma)
            out[n]["err"].append(m - table["y"][sub[0]])
            out[n]["sigma"].append(s)
            out[n]["y"].append(table["y"][sub[0]])
    return {n: {k: np.asarray(v) for k, v in d.items()} for n, d in out.items()}


def calibrate(table: dict[str, np.ndarray], min_sigma: float = 0.03) -> tuple[FocalCalibration, dict]:
    """Bias, per-frame σ scale and sequence floor ρ from leave-one-model-out predictions.

    σ scale: the smallest that covers 92 % at 2σ and 68 % at 1σ (capped where 1σ would cover 75 %).
    ρ: the smallest in [0, 1] whose fused 60- and 15-frame z-scores meet the same two coverages.
    """
    r = table["mu"] - table["y"]
    bias = float(np.median(r))
    z = np.abs(r - bias) / table["sigma"]
    k1, k2, k75 = float(np.quantile(z, 0.68)), float(np.quantile(z, 0.92)) / 2, float(np.quantile(z, 0.75))
    scale = min(max(k1, k2), k75)
    chosen = 1.0
    for rho in np.linspace(0.0, 1.0, 101):
        cal = FocalCalibration(log_bias=bias, sigma_scale=scale, sequence_correlation=float(rho), min_sigma=min_sigma)
        fused = sequence_fusions(table, cal, lengths=(15, 60))
        zs = np.concatenate([np.abs(f["err"]) / f["sigma"] for f in fused.values() if len(f["err"])])
        if np.quantile(zs, 0.68) <= 1.0 and np.quantile(zs, 0.92) <= 2.0:
            chosen = float(rho)
            break
    cal = FocalCalibration(log_bias=bias, sigma_scale=scale, sequence_correlation=chosen, min_sigma=min_sigma)
    return cal, {"frame_z_quantiles": {"q68": k1, "q75": k75, "q92_half": k2}, "frames": int(len(r))}


def focal_bin_labels(y_log_rel: np.ndarray, bins=FOCAL_BINS) -> np.ndarray:
    return np.digitize(np.exp(y_log_rel), bins) - 1


def report(table: dict[str, np.ndarray], cal: FocalCalibration, bins=FOCAL_BINS) -> dict:
    """Accuracy and coverage per f/long-side bin: one frame and 60-frame fused (calibrated)."""
    mu = table["mu"] - cal.log_bias
    sig = np.maximum(table["sigma"] * cal.sigma_scale, cal.min_sigma)
    err = mu - table["y"]
    fused = sequence_fusions(table, cal)
    rows = []
    frame_bin = focal_bin_labels(table["y"], bins)
    for b in range(len(bins) - 1):
        row = {"f_over_long": f"{bins[b]:g}-{bins[b + 1]:g}"}
        m = frame_bin == b
        row["frames"] = int(m.sum())
        if m.any():
            row["frame_median_err"] = float(np.median(np.abs(np.expm1(err[m]))))
            row["frame_cover_1s"] = float(np.mean(np.abs(err[m]) <= sig[m]))
            row["frame_cover_2s"] = float(np.mean(np.abs(err[m]) <= 2 * sig[m]))
            row["frame_median_sigma"] = float(np.median(sig[m]))
        for n in (60,):
            f = fused.get(n)
            if f is None or not len(f["err"]):
                continue
            fm = focal_bin_labels(f["y"], bins) == b
            row[f"seq{n}_count"] = int(fm.sum())
            if fm.any():
                row[f"seq{n}_median_err"] = float(np.median(np.abs(np.expm1(f["err"][fm]))))
                row[f"seq{n}_cover_1s"] = float(np.mean(np.abs(f["err"][fm]) <= f["sigma"][fm]))
                row[f"seq{n}_cover_2s"] = float(np.mean(np.abs(f["err"][fm]) <= 2 * f["sigma"][fm]))
                row[f"seq{n}_median_sigma"] = float(np.median(f["sigma"][fm]))
        rows.append(row)
    in_range = (np.exp(table["y"]) >= 0.45) & (np.exp(table["y"]) <= 6.0)
    overall = {"frames": int(len(err)),
               "frame_median_err": float(np.median(np.abs(np.expm1(err)))),
               "frame_median_err_0.45_6": float(np.median(np.abs(np.expm1(err[in_range])))) if in_range.any() else None,
               "frame_cover_1s": float(np.mean(np.abs(err) <= sig)),
               "frame_cover_2s": float(np.mean(np.abs(err) <= 2 * sig)),
               "rotation_median_deg": float(np.median(table["rotation_err_deg"])),
               "center_median_err_rel_long": float(np.median(table["center_err_rel"])),
               "distance_median_rel_err": float(np.median(np.abs(np.expm1(table["distance_log_err"] - cal.log_bias))))}
    for n, f in fused.items():
        if not len(f["err"]):
            continue
        fin = (np.exp(f["y"]) >= 0.45) & (np.exp(f["y"]) <= 6.0)
        overall[f"seq{n}"] = {"sequences": int(len(f["err"])),
                              "median_err": float(np.median(np.abs(np.expm1(f["err"])))),
                              "median_err_0.45_6": float(np.median(np.abs(np.expm1(f["err"][fin])))) if fin.any()
                              else None,
                              "cover_1s": float(np.mean(np.abs(f["err"]) <= f["sigma"])),
                              "cover_2s": float(np.mean(np.abs(f["err"]) <= 2 * f["sigma"])),
                              "median_sigma": float(np.median(f["sigma"]))}
    return {"bins": rows, "overall": overall}


def neutral_blendshapes(datasets: list[dict]) -> list[float]:
    """Median blendshape scores over frames with few active expressions: the runtime's stand-in when a
    caller has no blendshapes (zeros are unlike any MediaPipe output)."""
    blend = np.concatenate([np.asarray(d["blendshapes"], np.float64) for d in datasets])
    calm = blend[:, 1:].max(1) <= np.quantile(blend[:, 1:].max(1), 0.25)
    return [float(v) for v in np.median(blend[calm], 0)]


def merge_tables(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}


# --- export ------------------------------------------------------------------------------------------


def export_onnx(sym: SymmetricCameraNet, path: Path, example: dict[str, torch.Tensor]) -> dict:
    """Write the ONNX file; check ONNX Runtime against torch (max |ORT - torch| / max(1, |torch|))."""
    import onnxruntime as ort  # noqa: PLC0415

    sym = sym.cpu().eval()
    wrapper = ExportWrapper(sym)
    args = tuple(example[k].cpu() for k in ONNX_INPUTS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, args, str(tmp), dynamo=False, input_names=list(ONNX_INPUTS),
                          output_names=list(ONNX_OUTPUTS), opset_version=17,
                          dynamic_axes={n: {0: "batch"} for n in list(ONNX_INPUTS) + list(ONNX_OUTPUTS)})
    tmp.replace(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: a.numpy() for k, a in zip(ONNX_INPUTS, args)})
    with torch.no_grad():
        want = wrapper(*args)
    diffs = {name: float((np.abs(g - w.numpy()) / np.maximum(1.0, np.abs(w.numpy()))).max())
             for name, g, w in zip(ONNX_OUTPUTS, got, want)}
    return {"max_diff": max(diffs.values()), "definition": "max |onnxruntime - torch| / max(1, |torch|)"}


def symmetric(net: CameraNet) -> SymmetricCameraNet:
    perms = mirror_perms()
    return SymmetricCameraNet(net, perms[0].numpy(), perms[1].numpy()).eval()


def write_onnx_and_record(net: CameraNet, path: Path, example: dict[str, torch.Tensor], record: dict) -> dict:
    check = export_onnx(symmetric(net), path, example)
    record = {"format": RECORD_FORMAT, **record, "onnx_check": check, "inputs": list(ONNX_INPUTS),
              "outputs": list(ONNX_OUTPUTS)}
    Path(path).with_suffix(".json").write_text(json.dumps(record, indent=1, default=_json_default))
    return record


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# --- the command --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="'builtin' or a head-model file (repeat)")
    parser.add_argument("--output", default="resources/camera_regressor.onnx")
    parser.add_argument("--work", default=None, help="folder for leave-one-model-out networks and tables "
                                                      "(default: <cache>/camera_regressor)")
    parser.add_argument("--epochs", type=int, default=TrainCameraConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=CameraNetConfig.dropout)
    parser.add_argument("--landmark-noise", type=float, default=TrainCameraConfig.landmark_noise)
    parser.add_argument("--aspect-jitter", type=float, default=TrainCameraConfig.aspect_jitter)
    parser.add_argument("--weight-decay", type=float, default=TrainCameraConfig.weight_decay)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more than the free cores is slower)")
    parser.add_argument("--reuse-lomo", action="store_true",
                        help="reuse leave-one-model-out networks and tables already in --work")
    parser.add_argument("--lomo-only", default=None, metavar="MODEL",
                        help="only the leave-one-model-out run that leaves MODEL out (runs can go in parallel)")
    args = parser.parse_args(argv)
    from core.assets import cache_dir  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    config = TrainCameraConfig(net=CameraNetConfig(dropout=args.dropout), epochs=args.epochs, seed=args.seed,
                               landmark_noise=args.landmark_noise, aspect_jitter=args.aspect_jitter,
                               weight_decay=args.weight_decay)
    work = Path(args.work) if args.work else cache_dir() / "camera_regressor"
    work.mkdir(parents=True, exist_ok=True)
    names = [model_name(m) for m in args.model]
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.lomo_only is not None:
        if args.lomo_only not in args.model:
            parser.error(f"--lomo-only {args.lomo_only} is not among the --model values")
        needed = [m for m in args.model if m != args.lomo_only]
    else:
        needed = args.model
    raw_train = {m: load_arrays(m, "train") for m in needed}
    raw_test = {m: load_arrays(m, "test") for m in args.model}
    raw_ood = {}
    for m in args.model:
        try:
            raw_ood[m] = load_arrays(m, "ood")
        except FileNotFoundError as exc:
            log(f"no out-of-draw set for {model_name(m)} ({exc})")
    for m in args.model:
        log(f"{model_name(m)}: " + ", ".join(f"{which} {len(d[m]['found'])} frames with a face" for which, d in
                                             (("train", raw_train), ("test", raw_test), ("ood", raw_ood)) if m in d))
    train_sets = {m: to_tensors(d) for m, d in raw_train.items()}
    test_sets = {m: to_tensors(d) for m, d in raw_test.items()}
    ood_sets = {m: to_tensors(d) for m, d in raw_ood.items() if len(d["found"])}
    example = take(test_sets[args.model[0]], slice(0, 8))
    lomo_tables, lomo_runs = [], {}
    for left_out in args.model if args.lomo_only is None else [args.lomo_only]:
        name = model_name(left_out)
        table_path = work / f"lomo-{name}.npz"
        if args.reuse_lomo and table_path.exists() and args.lomo_only is None:
            with np.load(table_path) as t:
                lomo_tables.append({k: t[k] for k in t.files})
            log(f"reusing {table_path.name}")
            continue
        others = [m for m in args.model if m != left_out]
        log(f"leave-one-model-out: training on {[model_name(m) for m in others]}, testing on {name}")
        net, fit_info = fit(concat([train_sets[m] for m in others]), config, log)
        sym = symmetric(net)
        table = prediction_table(predict(sym, test_sets[left_out]), test_sets[left_out], f"test-{name}")
        np.savez(table_path, **table)
        if left_out in ood_sets:
            np.savez(work / f"lomo-{name}-ood.npz",
                     **prediction_table(predict(sym, ood_sets[left_out]), ood_sets[left_out], f"ood-{name}"))
        write_onnx_and_record(net, work / f"lomo-{name}.onnx", example,
                              {"trained_on": [model_name(m) for m in others], "left_out": name, "fit": fit_info,
                               "config": config.to_dict()})
        lomo_tables.append(table)
        lomo_runs[name] = fit_info
        (work / f"lomo-{name}-fit.json").write_text(json.dumps(fit_info, indent=1, default=_json_default))
    if args.lomo_only is not None:
        return 0
    for name in names:
        fit_path = work / f"lomo-{name}-fit.json"
        if name not in lomo_runs and fit_path.exists():
            lomo_runs[name] = json.loads(fit_path.read_text())
    pooled = merge_tables(lomo_tables)
    cal, cal_info = calibrate(pooled)
    log(f"calibration (leave-one-model-out): {cal}")
    lomo_report = {t["label"][0]: report(t, cal) for t in lomo_tables}
    # cross-check: calibrated on one left-out model, measured on the other
    cross = {}
    if len(lomo_tables) == 2:
        for a, b in ((0, 1), (1, 0)):
            cal_a, _ = calibrate(lomo_tables[a])
            cross[f"calibrated_on_{lomo_tables[a]['label'][0]}"] = report(lomo_tables[b], cal_a)["overall"]
    log("final network on all models")
    net, fit_info = fit(concat(list(train_sets.values())), config, log)
    sym = symmetric(net)
    ood_report = {}
    for m, data in ood_sets.items():
        ood_report[model_name(m)] = report(prediction_table(predict(sym, data), data, f"ood-{model_name(m)}"), cal,
                                           OOD_FOCAL_BINS)
    record = {
        "command": "python -m training.train_camera " + " ".join(
            (f"--model {model_name(m) if m == 'builtin' else Path(m).name}" for m in args.model)) +
        f" --epochs {args.epochs} --seed {args.seed} --dropout {args.dropout} --landmark-noise {args.landmark_noise}"
        f" --aspect-jitter {args.aspect_jitter} --weight-decay {args.weight_decay}",
        "trained_on": names, "seed": args.seed, "config": config.to_dict(),
        "data": {name: {which: _spec_summary(d) for which, d in (("train", raw_train[m]), ("test", raw_test[m]),
                                                                       *((("ood", raw_ood[m]),) if m in raw_ood else ()))}
                 for name, m in zip(names, args.model)},
        "calibration": asdict(cal), "calibration_info": cal_info,
        "calibration_method": "leave-one-model-out: networks trained without one head model predict its test "
                              "sequences; bias = median log error, per-frame σ scale from |z| quantiles, sequence "
                              "floor ρ the smallest meeting 68 %/92 % coverage at 1σ/2σ for 15 and 60 frames",
        "metrics": {"final_fit": fit_info, "leave_one_model_out": lomo_report, "cross_calibration": cross,
                    "out_of_draw_final": ood_report, "lomo_fits": lomo_runs},
        "focal_rel_range": list(CameraPopulation().focal_rel_range),
        "neutral_blendshapes": neutral_blendshapes(list(raw_test.values())),
        "head_center": "each head model's head.head_center (between the eyes); translation via "
                       "core.camera_regressor.translation_for",
    }
    write_onnx_and_record(net, Path(args.output), example, record)
    log(json.dumps({k: v["overall"] for k, v in lomo_report.items()}, indent=1))
    log(f"wrote {args.output}")
    return 0


def _spec_summary(data: dict) -> dict:
    """A dataset's spec for the record: no paths (the model file is named by its hash)."""
    spec = data["spec"]
    d = spec.to_dict()
    d.pop("model", None)
    return {"key": spec.key(), "frames_with_face": int(len(data["found"])), **d}


if __name__ == "__main__":
    sys.exit(main())
