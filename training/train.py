"""Training the regressor: data, schedule, validation, focal calibration, ONNX export and its record.

``train_regressor(head, embedding, ...)`` runs the whole job that ``flamecam train-regressor``
exposes:

1. type-1 data (real MediaPipe on renders, :mod:`training.generate`): the training split and the
   validation sequences, generated or resumed in the user cache;
2. the landmark noise model fitted to them (:mod:`training.synth`) for type-2 batches;
3. pre-training on type-2 batches only, then training on type-1 samples (crop boxes jittered)
   mixed with a share of type-2 ones; AdamW with a cosine schedule; periodic validation;
4. calibration of the sequence-level focal prior on the validation sequences (see
   :func:`calibrate_focal`);
5. ONNX export (checked against torch) and the JSON record beside it.

Deterministic for a seed: data are seeded per shard, batches and initialisation from ``seed``,
and torch runs with deterministic algorithms.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from training.generate import DatasetSpec, generate, load_dataset, summary_of
from training.losses import Geometry, LossWeights, regressor_loss
from training.model import ONNX_INPUTS, ExportWrapper, NetConfig, RegressorNet
from training.sampling import SamplingConfig, expressions_bounded, has_jaw
from training.synth import LandmarkNoiseModel, LandmarkProjector, SyntheticBatches

RECORD_FORMAT = "flamecam-regressor"
RECORD_VERSION = 1
GT_KEYS = ("image_size", "intrinsics", "shape", "expr", "jaw_pose", "rotation", "center_cam", "translation")
INPUT_KEYS = ("landmarks_px", "blendshapes")
FOCAL_BINS = (600, 900, 1200, 1800, 2400)  # px at 512²: validation errors are reported near these


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 12000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_steps: int = 300
    pretrain_fraction: float = 0.15  # type-2 batches only, first
    synthetic_share: float = 0.4  # share of type-2 samples in each later batch (unlimited: it curbs overfitting)
    jitter_shift: float = 0.03  # crop-box centre jitter (σ, box sides) on type-1 samples
    jitter_log_scale: float = 0.05
    landmark_noise: float = 0.002  # extra landmark noise on type-1 samples (σ, crop units: ~0.4 px at a 400 px box)
    val_every: int = 500
    keep_best: bool = True  # keep the weights with the best validation score (validation sequences only)
    seed: int = 0
    camera_mode: str = "perspective"
    hidden: int = 384
    trunk_layers: int = 3
    head_hidden: int = 192
    train_samples: int = 20000  # type-1
    val_sequences: int = 60
    val_frames: int = 30
    workers: int = 2
    threads: int | None = None  # torch threads (None: torch's default)
    weights: LossWeights = field(default_factory=LossWeights)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = self.weights.to_dict()
        d["sampling"] = self.sampling.to_dict()
        return d


def dataset_specs(head, model_arg: str, config: TrainConfig) -> tuple[DatasetSpec, DatasetSpec]:
    """The type-1 training and validation datasets of a run (data seed 0: shared by all training seeds)."""
    train = DatasetSpec(model=model_arg, model_sha256=head.source_sha256, split="train",
                        num_samples=config.train_samples, sampling=config.sampling)
    val = DatasetSpec(model=model_arg, model_sha256=head.source_sha256, split="val",
                      num_samples=config.val_sequences * config.val_frames, sequence_frames=config.val_frames,
                      sampling=config.sampling, crop_px=0)
    return train, val


def to_tensors(arrays: dict[str, np.ndarray], device: str = "cpu") -> dict[str, torch.Tensor]:
    out = {}
    for key in GT_KEYS + INPUT_KEYS + ("sequence", "frame"):
        if key in arrays:
            dtype = torch.long if key in ("sequence", "frame") else torch.float32
            out[key] = torch.as_tensor(np.asarray(arrays[key]), dtype=dtype, device=device)
    return out


def _take(data: dict[str, torch.Tensor], index) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in data.items()}


def _cat(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([a[k], b[k]]) for k in a if k in b}


def input_statistics(net: RegressorNet, data: dict[str, torch.Tensor]) -> None:
    """Set the network's input standardisation (and camera output scale) from training data."""
    from training.losses import ground_truth  # noqa: PLC0415

    with torch.no_grad():
        box = net.crop_box(data["landmarks_px"])
        feats = net.features(data["landmarks_px"], data["blendshapes"], data["image_size"], box)
        net.in_mean.copy_(feats.mean(0))
        net.in_std.copy_(feats.std(0).clamp_min(1e-3))
        gt = ground_truth(data, box)
        for i, key in enumerate(("log_focal_crop", "log_scale_crop")):
            net.cam_mean[i] = gt[key].mean()
            net.cam_std[i] = gt[key].std().clamp_min(1e-3)


def build_net(head, config: TrainConfig) -> RegressorNet:
    net_config = NetConfig(num_shape=head.num_shape, num_expr=head.num_expr, has_jaw=has_jaw(head),
                           expr_bounded=expressions_bounded(head), camera_mode=config.camera_mode,
                           hidden=config.hidden, trunk_layers=config.trunk_layers, head_hidden=config.head_hidden)
    return RegressorNet(net_config, torch.as_tensor(head.head_center))


# --- evaluation ------------------------------------------------------------------------------------


@torch.no_grad()
def predict(net: RegressorNet, data: dict[str, torch.Tensor], batch: int = 1024) -> dict[str, torch.Tensor]:
    net.eval()
    outs = []
    for i in range(0, len(data["landmarks_px"]), batch):
        d = _take(data, slice(i, i + batch))
        outs.append(net(d["landmarks_px"], d["blendshapes"], d["image_size"]))
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


@torch.no_grad()
def evaluate(net: RegressorNet, data: dict[str, torch.Tensor], geometry: Geometry) -> dict:
    """Validation metrics: single-frame focal errors (overall and near each focal length of
    :data:`FOCAL_BINS`), the per-sequence (median over frames) focal error, ρ, landmark and vertex errors."""
    out = predict(net, data)
    metrics: dict = {"samples": int(len(data["landmarks_px"]))}
    f512 = (data["intrinsics"][:, 0] * 512.0 / data["image_size"].amin(1)).cpu().numpy()
    _, lmk_gt = geometry.model_points(data["shape"], data["expr"], data["jaw_pose"])
    if net.config.camera_mode == "perspective":
        f_true = data["intrinsics"][:, 0]
        log_err = (torch.log(out["intrinsics"][:, 0]) - torch.log(f_true)).cpu().numpy()
        rel = np.abs(np.exp(log_err) - 1)
        metrics["focal_median_rel_err"] = float(np.median(rel))
        metrics["focal_median_log_bias"] = float(np.median(log_err))
        metrics["focal_rel_err_by_f"] = {str(f): float(np.median(rel[np.abs(np.log(f512 / f)) < 0.2]))
                                         for f in FOCAL_BINS if (np.abs(np.log(f512 / f)) < 0.2).any()}
        rho_true = 1.0 / data["center_cam"][:, 2]
        metrics["rho_median_abs_err"] = float((out["rho_per_m"] - rho_true).abs().median())
        if "sequence" in data:
            seq = data["sequence"].cpu().numpy()
            per_seq = [np.median(log_err[seq == s]) for s in np.unique(seq)]
            metrics["sequence_focal_median_rel_err"] = float(np.median(np.abs(np.exp(per_seq) - 1)))
        verts_p, lmk_p = geometry.model_points(out["shape"], out["expr"], out["jaw_pose"])
        from training.losses import _camera_points  # noqa: PLC0415
        from core import camera  # noqa: PLC0415

        uv_p = camera.project_perspective(_camera_points(lmk_p, out["rotation_matrix"], out["translation"]),
                                          out["intrinsics"])
        rot = camera.axis_angle_to_matrix(data["rotation"])
        uv_gt = camera.project_perspective(_camera_points(lmk_gt, rot, data["translation"]), data["intrinsics"])
        metrics["landmark_px"] = float((uv_p - uv_gt).norm(dim=-1).mean())
        verts_gt, _ = geometry.model_points(data["shape"], data["expr"], data["jaw_pose"])
        v_p = _camera_points(verts_p, out["rotation_matrix"], out["translation"])
        v_gt = _camera_points(verts_gt, rot, data["translation"])
        metrics["vertex_mm"] = float(1000 * (v_p - v_gt).norm(dim=-1).mean())
    scale_true = data["intrinsics"][:, 0] / data["center_cam"][:, 2]
    metrics["scale_median_rel_err"] = float(((out["scale_px_per_m"] - scale_true).abs() / scale_true).median())
    return metrics


def calibrate_focal(net: RegressorNet, val: dict[str, torch.Tensor], frame_counts=(1, 2, 4, 8, 16, 30)) -> dict:
    """The sequence-level focal prior's calibration, measured on the validation sequences.

    Per sequence, the prior after n frames is the median of the first n per-frame log-focal
    predictions. Its median offset from the truth over sequences (the asymmetric loss shifts
    predictions up on purpose) is the bias to remove, and σ(n) is the 68th percentile of the
    remaining |log error| over sequences at each n: measured, so it shrinks with frames only as
    far as the identity-specific share of the error allows (frames of one face are not independent).
    """
    if "sequence" not in val:
        raise ValueError("calibration needs validation sequences")
    out = predict(net, val)
    log_err = (torch.log(out["intrinsics"][:, 0]) - torch.log(val["intrinsics"][:, 0])).cpu().numpy()
    seq = val["sequence"].cpu().numpy()
    frame = val["frame"].cpu().numpy()
    errors_by_n = {}
    for n in frame_counts:
        per_seq = []
        for s in np.unique(seq):
            e = log_err[seq == s][np.argsort(frame[seq == s])][:n]
            if len(e) >= min(n, 1):
                per_seq.append(np.median(e))
        errors_by_n[n] = np.array(per_seq)
    bias = float(np.median(errors_by_n[max(frame_counts)]))
    sigma = [[n, float(np.percentile(np.abs(e - bias), 68))] for n, e in errors_by_n.items()]
    # Enforce a non-increasing σ(n) (sampling noise of a small validation set aside).
    for i in range(1, len(sigma)):
        sigma[i][1] = min(sigma[i][1], sigma[i - 1][1])
    return {"log_bias": bias, "sigma_by_frames": sigma, "sequences": int(len(np.unique(seq))),
            "frames": int(len(seq)), "method": "median of per-frame log f over the first n frames; "
            "σ(n) = 68th percentile of |log error - bias| over validation sequences"}


# --- training ------------------------------------------------------------------------------------


def _lr(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


class _Prefetch:
    """Type-2 batches made ahead in a thread (numpy and torch release the GIL), in a fixed order,
    so the result does not depend on timing."""

    def __init__(self, make: Callable[[int], dict], sizes: list[int], depth: int = 3):
        import queue  # noqa: PLC0415
        import threading  # noqa: PLC0415

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()

        def work():
            try:
                for n in sizes:
                    item = make(n) if n else None
                    while not self._stop.is_set():
                        try:
                            self._queue.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
            except BaseException as exc:  # noqa: BLE001  (re-raised in the training thread)
                self._queue.put(exc)

        self._thread = threading.Thread(target=work, name="flamecam-type2-batches", daemon=True)
        self._thread.start()

    def next(self) -> dict | None:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def fit(net: RegressorNet, geometry: Geometry, train: dict[str, torch.Tensor] | None, synthetic: SyntheticBatches,
        config: TrainConfig, val: dict[str, torch.Tensor] | None = None, device: str = "cpu",
        log: Callable[[str], None] = print, on_validation: Callable[[int, dict], None] | None = None,
        eval_geometry: Geometry | None = None) -> list[dict]:
    """The training loop. ``train`` may be None (type-2 only, e.g. tests). Returns the loss history.
    ``geometry``: the loss's point subset; ``eval_geometry``: the validation metrics' (default the same)."""
    eval_geometry = geometry if eval_geometry is None else eval_geometry
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = []
    n_real = 0 if train is None else len(train["landmarks_px"])
    pretrain_steps = int(config.pretrain_fraction * config.steps) if n_real else config.steps
    b = config.batch_size
    sizes = [b if step < pretrain_steps else int(round(config.synthetic_share * b)) for step in range(config.steps)]
    jitter_scale = torch.tensor([config.jitter_shift, config.jitter_shift, config.jitter_log_scale], device=device)
    start = time.perf_counter()
    running = None
    best = None  # (score, step, weights)
    prefetch = _Prefetch(synthetic, sizes)
    try:
        for step, n_syn in enumerate(sizes):
            net.train()
            for group in opt.param_groups:
                group["lr"] = _lr(step, config)
            parts, jitter = [], []
            synthetic_batch = prefetch.next()
            if n_syn:
                parts.append(to_tensors(synthetic_batch, device))
                jitter.append(torch.zeros(n_syn, 3, device=device))
            if b - n_syn:
                index = torch.randint(n_real, (b - n_syn,), generator=gen)
                real = _take(train, index.to(train["landmarks_px"].device))
                if config.landmark_noise > 0:
                    side = real["landmarks_px"].amax(1) - real["landmarks_px"].amin(1)
                    sigma_px = config.landmark_noise * 0.5 * side.amax(1)[:, None, None]
                    noise = rng.standard_normal(real["landmarks_px"].shape).astype(np.float32)
                    real["landmarks_px"] = real["landmarks_px"] + torch.as_tensor(noise, device=device) * sigma_px
                parts.append(real)
                j = torch.as_tensor(rng.standard_normal((b - n_syn, 3)), dtype=torch.float32, device=device)
                jitter.append(j * jitter_scale)
            batch = parts[0] if len(parts) == 1 else _cat(parts[0], parts[1])
            out = net(batch["landmarks_px"], batch["blendshapes"], batch["image_size"], torch.cat(jitter))
            loss, terms = regressor_loss(out, batch, geometry, config.weights, config.camera_mode)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"training diverged at step {step} (loss {value}); terms {terms}")
            running = value if running is None else 0.98 * running + 0.02 * value
            history.append({"step": step, "loss": value, **terms})
            if val is not None and ((step + 1) % config.val_every == 0 or step == config.steps - 1):
                metrics = evaluate(net, val, eval_geometry)
                score = validation_score(metrics)
                if config.keep_best and (best is None or score < best[0]):
                    best = (score, step + 1, {k: v.detach().clone() for k, v in net.state_dict().items()})
                if on_validation is not None:
                    on_validation(step + 1, metrics)
                txt = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
                log(f"step {step + 1}/{config.steps}  loss {running:.4f}  ({time.perf_counter() - start:.0f} s)  "
                    f"val: {txt}  score {score:.4g}")
            elif (step + 1) % 200 == 0:
                log(f"step {step + 1}/{config.steps}  loss {running:.4f}  lr {_lr(step, config):.2e}  "
                    f"({time.perf_counter() - start:.0f} s)")
    finally:
        prefetch.close()
    if best is not None:
        net.load_state_dict(best[2])
        log(f"kept the weights of step {best[1]} (best validation score {best[0]:.4g})")
        history.append({"step": best[1], "kept_best": True, "score": best[0], "loss": float("nan")})
    net.eval()
    return history


def validation_score(metrics: dict) -> float:
    """What the best weights are chosen by: the per-sequence and single-frame focal errors plus the
    image scale's (perspective), or the scale error and landmark error (ortho)."""
    if "focal_median_rel_err" in metrics:
        seq = metrics.get("sequence_focal_median_rel_err", metrics["focal_median_rel_err"])
        return seq + 0.5 * metrics["focal_median_rel_err"] + metrics["scale_median_rel_err"]
    return metrics["scale_median_rel_err"] + 0.01 * metrics.get("landmark_px", 0.0)


# --- export ----------------------------------------------------------------------------------------


def export_onnx(net: RegressorNet, path: Path, example: dict[str, torch.Tensor] | None = None) -> dict:
    """Write the ONNX file and check ONNX Runtime against torch on ``example`` inputs.

    ``max_diff`` is the largest |ORT - torch| / max(1, |torch|) over all outputs: absolute for
    values up to 1 (coefficients, rotations, metres), relative for pixel-sized ones (a focal
    length of 2000 px holds float32 only to ~1e-4 px)."""
    import onnxruntime as ort  # noqa: PLC0415

    net = net.cpu().eval()
    wrapper = ExportWrapper(net)
    if example is None:
        example = example_inputs(8)
    args = tuple(example[k].cpu() for k in ONNX_INPUTS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, args, str(tmp), dynamo=False, input_names=list(ONNX_INPUTS),
                          output_names=list(wrapper.names), opset_version=17,
                          dynamic_axes={n: {0: "batch"} for n in list(ONNX_INPUTS) + list(wrapper.names)})
    tmp.replace(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: a.numpy() for k, a in zip(ONNX_INPUTS, args)})
    with torch.no_grad():
        want = wrapper(*args)
    diffs = {name: float((np.abs(g - w.numpy()) / np.maximum(1.0, np.abs(w.numpy()))).max()) if g.size else 0.0
             for name, g, w in zip(wrapper.names, got, want)}
    return {"max_diff": max(diffs.values()), "per_output": diffs,
            "definition": "max |onnxruntime - torch| / max(1, |torch|)"}


def example_inputs(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Plausible random detections (a face-like cloud somewhere in a 512² or 640x480 image)."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([[512.0, 512.0], [640.0, 480.0]])[torch.arange(n) % 2]
    centre = size / 2 + (torch.rand(n, 2, generator=g) - 0.5) * 100
    pts = centre[:, None, :] + torch.randn(n, 478, 2, generator=g) * 60
    return {"landmarks_px": pts, "blendshapes": torch.rand(n, 52, generator=g), "image_size": size}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_record(path: Path, record: dict) -> None:
    Path(path).write_text(json.dumps(record, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


# --- the whole job ---------------------------------------------------------------------------------


def prepare_data(head, embedding, model_arg: str, config: TrainConfig, log=print, landmarker: str | None = None,
                 data_root: Path | None = None) -> dict:
    """Generate (or resume) the type-1 datasets and fit the noise model. Returns arrays and summaries."""
    train_spec, val_spec = dataset_specs(head, model_arg, config)
    timings = {}
    for name, spec in (("train", train_spec), ("val", val_spec)):
        t0 = time.perf_counter()
        total = spec.num_shards
        log(f"type-1 data ({name}): {spec.num_samples} samples in {total} shards, {config.workers} workers "
            f"(resumable; cached in {_dataset_folder(spec, data_root)})")
        last = [time.perf_counter()]

        def progress(done, total, info, name=name, t0=t0):
            if time.perf_counter() - last[0] > 10 or done == total:
                last[0] = time.perf_counter()
                rate = info.get("count", 0) / max(info.get("seconds", 1e-9), 1e-9)
                log(f"  {name}: shard {done}/{total} ({time.perf_counter() - t0:.0f} s; ~{rate:.0f} samples/s/worker)")

        generate(spec, workers=config.workers, root=data_root, landmarker=landmarker, progress=progress)
        timings[f"generate_{name}_s"] = time.perf_counter() - t0
    train = load_dataset(train_spec, data_root)
    val = load_dataset(val_spec, data_root)
    projector = LandmarkProjector(head, embedding)
    t0 = time.perf_counter()
    noise = LandmarkNoiseModel.fit(train, projector)
    timings["noise_fit_s"] = time.perf_counter() - t0
    return {"train": train, "val": val, "noise": noise, "projector": projector, "timings": timings,
            "summaries": {"train": summary_of(train_spec, data_root), "val": summary_of(val_spec, data_root)},
            "specs": {"train": train_spec.to_dict(), "val": val_spec.to_dict()}}


def _dataset_folder(spec: DatasetSpec, root) -> str:
    from training.generate import dataset_dir  # noqa: PLC0415

    return str(dataset_dir(spec, root))


def train_regressor(head, embedding, model_arg: str, output: Path, config: TrainConfig, device: str = "cpu",
                    command: str = "", log=print, landmarker: str | None = None, data_root: Path | None = None,
                    data: dict | None = None) -> dict:
    """The full job (see module docstring). Writes ``output`` (.onnx) and ``output.with_suffix('.json')``."""
    t_start = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    if data is None:
        data = prepare_data(head, embedding, model_arg, config, log=log, landmarker=landmarker, data_root=data_root)
    train = to_tensors(data["train"], device)
    val = to_tensors(data["val"], device)
    log(f"type-1 samples with a face: train {len(train['landmarks_px'])}, validation {len(val['landmarks_px'])} "
        f"({data['summaries']['val']['samples'] // max(config.val_frames, 1)} sequences); noise model fitted on "
        f"{data['noise'].fitted_on}")
    synthetic = SyntheticBatches(head, data["projector"], data["noise"], config.sampling, seed=config.seed)
    net = build_net(head, config).to(device)
    input_statistics(net, train)
    geometry = Geometry(head, embedding).to(device)
    # Validation metrics on all embedded landmarks and more face vertices than the loss uses.
    eval_geometry = Geometry(head, embedding, num_vertices=500, num_landmarks=478, seed=1).to(device)
    history_val = []
    t_train = time.perf_counter()
    history = fit(net, geometry, train, synthetic, config, val=val, device=device, log=log,
                  on_validation=lambda step, m: history_val.append({"step": step, **m}), eval_geometry=eval_geometry)
    train_s = time.perf_counter() - t_train
    metrics = {"step": next((h["step"] for h in history if h.get("kept_best")), config.steps),
               **evaluate(net, val, eval_geometry)}  # of the weights kept
    calibration = calibrate_focal(net, val) if config.camera_mode == "perspective" else None
    net = net.cpu()
    example = {k: v[:64].cpu() for k, v in val.items()}
    check = export_onnx(net, Path(output), example)
    if check["max_diff"] > 1e-4:
        raise RuntimeError(f"ONNX Runtime disagrees with torch by {check['max_diff']:.2e} on the exported model")
    record = {
        "format": RECORD_FORMAT, "version": RECORD_VERSION,
        "command": command, "seed": config.seed, "device": device,
        "model": {"name": head.name, "kind": head.kind, "sha256": head.source_sha256, "num_shape": head.num_shape,
                  "num_expr": head.num_expr, "has_jaw": has_jaw(head), "expr_bounded": expressions_bounded(head),
                  "head_center": [float(v) for v in head.head_center]},
        "camera_mode": config.camera_mode,
        "inputs": list(ONNX_INPUTS), "outputs": list(ExportWrapper(net).names),
        "net": net.config.to_dict(), "train_config": config.to_dict(),
        "data": {"summaries": data["summaries"], "specs": data["specs"], "noise_model_fitted_on": data["noise"].fitted_on},
        "metrics": metrics, "validation_history": history_val, "focal_calibration": calibration,
        "loss_first_last": [history[0]["loss"], float(np.nanmean([h["loss"] for h in history[-50:]]))],
        "kept_step": next((h["step"] for h in history if h.get("kept_best")), config.steps),
        "onnx_check": check, "onnx_sha256": file_sha256(Path(output)), "onnx_bytes": Path(output).stat().st_size,
        "timings_s": {**data["timings"], "train_s": train_s, "total_s": time.perf_counter() - t_start},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "platform": platform.platform()},
    }
    write_record(Path(output).with_suffix(".json"), record)
    return record

