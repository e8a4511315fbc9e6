"""Type-1 training data: the head model rendered and run through the real MediaPipe landmarker.

Slow (render + landmarker: ~40-90 ms a sample per core here) but it carries MediaPipe's own
systematic error, which is what the regressor must learn to see through. The job is

* **sharded and resumable**: each shard is an ``.npz`` written atomically; a finished shard is
  never redone; ``manifest.json`` lists the dataset's spec and its shards;
* **seeded and reproducible**: shard ``i`` draws everything (coefficients, camera, background,
  lighting, skin tone, sensor noise) from ``SeedSequence([seed, split, i])``, so the same spec
  gives the same files whatever the number of workers or interruptions;
* **multi-process**: ``workers`` processes (spawned), each with its own EGL renderer and landmarker.

Two splits:

* ``train``: independent samples from :mod:`training.sampling`, MediaPipe in IMAGE mode;
* ``val``: short sequences (``core.synthetic.Trajectory``: a yaw sweep with pitch, roll, distance
  changes and expressions; random backgrounds and lighting) run in VIDEO mode like the tracker —
  for periodic validation and for calibrating the focal prior's σ over frames of one identity.
  Its trajectory seeds start at :data:`VAL_SEED_BASE`, far from the benchmark's test seeds
  (``benchmarks/regressor.py``), and training samples draw identities and backgrounds from their
  own seed streams, so test identities, trajectories and backgrounds are never trained on.

Data live in the user cache (``core.assets.cache_dir()/"training"``), never in the repository.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from training.sampling import SamplingConfig, sample

DATASET_VERSION = 1
SPLIT_CODES = {"train": 1, "val": 2}
VAL_SEED_BASE = 900_000  # trajectory seeds of validation sequences (the benchmark's test seeds are < 10_000)
VAL_FOCALS_512 = (600.0, 2400.0)  # validation focal lengths: log-uniform over the evaluation range


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset holds; its hash (``key``) names its folder in the cache."""

    model: str  # "builtin" or a model file path
    model_sha256: str
    split: str = "train"  # train | val
    num_samples: int = 20000  # train: samples (rounded up to whole shards); val: sequences x sequence_frames
    shard_size: int = 250  # train: samples per shard; val: one sequence per shard
    seed: int = 0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    crop_px: int = 80  # also store an RGB crop of the face (for an image branch); 0 = none
    sequence_frames: int = 30  # val only
    sensor_noise: tuple[float, float] = (0.0, 3.0)  # grey levels, uniform per sample
    blur_prob: float = 0.25  # mild Gaussian blur (webcam softness) on this fraction of train samples
    # A real-camera population (``training.camera_sampling.CameraPopulation.to_dict()``) instead of
    # ``sampling``'s cameras: shards made by ``training.generate_camera`` (the camera regressor's data).
    cameras: dict | None = None

    def __post_init__(self):
        if self.split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {self.split!r}")
        if self.num_samples < 1 or self.shard_size < 1:
            raise ValueError("num_samples and shard_size must be positive")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sampling"] = self.sampling.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetSpec":
        d = dict(d)
        d["sampling"] = SamplingConfig.from_dict(d["sampling"])
        d["sensor_noise"] = tuple(d["sensor_noise"])
        return cls(**d)

    def key(self) -> str:
        """Hash of everything that changes the data (not the model path: its hash is in here)."""
        d = self.to_dict()
        for name in ("model", "num_samples"):  # shards are a seeded stream: more samples = more shards
            d.pop(name)
        if d.get("cameras") is None:  # datasets made before the field existed keep their key
            d.pop("cameras", None)
        return hashlib.sha256(json.dumps([DATASET_VERSION, d], sort_keys=True).encode()).hexdigest()[:16]

    @property
    def num_shards(self) -> int:
        if self.split == "val":
            return max(1, self.num_samples // self.sequence_frames)
        return math.ceil(self.num_samples / self.shard_size)

    def shard_count(self, index: int) -> int:
        return self.sequence_frames if self.split == "val" else self.shard_size


def dataset_dir(spec: DatasetSpec, root: Path | None = None) -> Path:
    from core.assets import cache_dir  # noqa: PLC0415

    root = cache_dir() / "training" if root is None else Path(root)
    return root / spec.model_sha256[:16] / f"{spec.split}-{spec.key()}"


def shard_rng(spec: DatasetSpec, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, SPLIT_CODES[spec.split], index]))


def val_sequence_options(spec: DatasetSpec, index: int):
    """The ``SyntheticOptions`` of validation sequence ``index`` (a deterministic function of the spec)."""
    from core.synthetic import SyntheticOptions  # noqa: PLC0415

    rng = shard_rng(spec, index)
    lo, hi = VAL_FOCALS_512
    f512 = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    width, height = (512, 512) if rng.random() < 0.7 else (640, 480)
    focal = f512 * min(width, height) / 512
    distance = f512 * spec.sampling.metres_per_focal_px * math.exp(rng.uniform(0.0, math.log(1.4)))
    return SyntheticOptions(width=width, height=height, focal=focal, distance=distance,
                            frames=spec.sequence_frames, yaw=float(rng.uniform(10, 30)), pitch=float(rng.uniform(3, 10)),
                            roll=float(rng.uniform(1, 6)), period=float(rng.uniform(3, 6)), still=0.3,
                            seed=VAL_SEED_BASE + 1000 * spec.seed + index, identity=spec.sampling.identity_scale,
                            background="random", lighting="random", noise=2.0)


# --- worker side -----------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(model: str, landmarker: str | None) -> None:
    """Per process: the head model, its full-mesh layer, a renderer and an IMAGE-mode landmarker."""
    import torch  # noqa: PLC0415

    from core.head_model import HeadModelLayer  # noqa: PLC0415
    from core.landmarks import FaceLandmarker, LandmarkerOptions  # noqa: PLC0415
    from core.model_io import load_head_model  # noqa: PLC0415

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _release_worker()
    head = load_head_model(None if model == "builtin" else model)
    _WORKER.update(head=head, layer=HeadModelLayer(head), landmarker_path=landmarker, renderer=None,
                   image_landmarker=FaceLandmarker(LandmarkerOptions(model_path=landmarker, running_mode="image",
                                                                     max_faces=1)))


def _release_worker() -> None:
    if _WORKER.get("renderer") is not None:
        _WORKER["renderer"].release()
    if _WORKER.get("image_landmarker") is not None:
        _WORKER["image_landmarker"].close()
    _WORKER.clear()


def _renderer(width: int, height: int):
    from core.render import OffscreenRenderer  # noqa: PLC0415

    if _WORKER.get("renderer") is None:
        _WORKER["renderer"] = OffscreenRenderer(width, height)
    else:
        _WORKER["renderer"].resize(width, height)
    return _WORKER["renderer"]


def face_crop(rgb: np.ndarray, landmarks_px: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8 crop of the regressor's square landmark box (``core.regressor.landmark_crop_box``)."""
    import cv2  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from core.regressor import landmark_crop_box  # noqa: PLC0415

    x0, y0, side, _ = landmark_crop_box(torch.as_tensor(landmarks_px, dtype=torch.float64)).tolist()
    # Cut the box at about full resolution (an affine map in OpenCV's pixel-centre coordinates:
    # crop = (img + 0.5 - x0)·s - 0.5), then shrink with area averaging (no aliasing).
    big = max(size, int(round(side)))
    s = big / side
    affine = np.array([[s, 0.0, (0.5 - x0) * s - 0.5], [0.0, s, (0.5 - y0) * s - 0.5]])
    patch = cv2.warpAffine(rgb, affine, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


def _empty_arrays(n: int, head, crop_px: int) -> dict[str, np.ndarray]:
    out = {
        "found": np.zeros(n, bool),
        "landmarks_px": np.full((n, 478, 2), np.nan, np.float32),
        "depth_px": np.full((n, 478), np.nan, np.float16),
        "presence": np.zeros((n, 478), np.float16),
        "blendshapes": np.zeros((n, 52), np.float32),
    }
    if crop_px:
        out["crop"] = np.zeros((n, crop_px, crop_px, 3), np.uint8)
    return out


def _store_detection(out: dict, i: int, result, rgb: np.ndarray, crop_px: int) -> None:
    face = result.face
    if face is None:
        return
    out["found"][i] = True
    out["landmarks_px"][i] = face.landmarks_px
    out["depth_px"][i] = face.depth_px
    out["presence"][i] = face.presence
    out["blendshapes"][i] = face.blendshapes
    if crop_px:
        out["crop"][i] = face_crop(rgb, face.landmarks_px, crop_px)


def _vertices_cam(samples, index_slice) -> np.ndarray:
    import torch  # noqa: PLC0415

    from core import camera  # noqa: PLC0415

    t = lambda a: torch.as_tensor(np.asarray(a[index_slice], np.float32))  # noqa: E731
    with torch.no_grad():
        verts = _WORKER["layer"](t(samples.shape), t(samples.expr), t(samples.rotation), None, t(samples.jaw_pose), None)
        return camera.model_to_camera(verts, t(samples.translation)).numpy()


def _train_shard(spec: DatasetSpec, index: int) -> dict[str, np.ndarray]:
    import cv2  # noqa: PLC0415

    from core.synthetic_render import random_background, random_lighting  # noqa: PLC0415

    head = _WORKER["head"]
    rng = shard_rng(spec, index)
    n = spec.shard_count(index)
    samples = sample(rng, n, head, spec.sampling)
    out = _empty_arrays(n, head, spec.crop_px)
    # Backgrounds: a pool per shard, each use flipped and shifted at random (a fresh one per sample
    # would cost as much as the render itself).
    pool: dict[tuple[int, int], list[np.ndarray]] = {}
    pool_size = max(2, n // 8)
    base_rgb = head.vertex_rgb if head.vertex_rgb is not None else np.full((head.num_vertices, 3), 0.75, np.float32)
    for start in range(0, n, 32):
        chunk = slice(start, min(start + 32, n))
        verts = _vertices_cam(samples, chunk)
        for k, i in enumerate(range(chunk.start, chunk.stop)):
            width, height = (int(v) for v in samples.image_size[i])
            backgrounds = pool.setdefault((width, height), [])
            if len(backgrounds) < pool_size * (width * height) // (512 * 512) or not backgrounds:
                backgrounds.append(random_background(width, height, rng))
                background = backgrounds[-1]
            else:
                background = backgrounds[int(rng.integers(len(backgrounds)))]
                if rng.random() < 0.5:
                    background = background[:, ::-1]
                background = np.roll(background, (int(rng.integers(height)), int(rng.integers(width))), (0, 1))
            tone = rng.uniform(0.55, 1.1) * rng.uniform(0.92, 1.08, 3)
            rgb = _renderer(width, height).render(
                verts[k], head.faces, samples.intrinsics[i], vertex_rgb=np.clip(base_rgb * tone, 0, 1).astype(np.float32),
                lighting=random_lighting(rng), background=np.ascontiguousarray(background)).rgb
            if rng.random() < spec.blur_prob:
                rgb = cv2.GaussianBlur(rgb, (0, 0), sigmaX=float(rng.uniform(0.4, 1.1)))
            sigma = rng.uniform(*spec.sensor_noise)
            if sigma > 0:
                rgb = np.clip(rgb + rng.normal(0, sigma, rgb.shape), 0, 255).astype(np.uint8)
            _store_detection(out, i, _WORKER["image_landmarker"].detect(rgb), rgb, spec.crop_px)
    return {**samples.arrays(), **out}


def _val_shard(spec: DatasetSpec, index: int) -> dict[str, np.ndarray]:
    from core.landmarks import FaceLandmarker, LandmarkerOptions  # noqa: PLC0415
    from core.synthetic import Trajectory  # noqa: PLC0415
    from core.synthetic_render import SyntheticScene  # noqa: PLC0415

    head = _WORKER["head"]
    opts = val_sequence_options(spec, index)
    trajectory = Trajectory(opts, head)
    truths = [trajectory.at(i) for i in range(opts.frames)]
    n = len(truths)
    out = _empty_arrays(n, head, spec.crop_px)
    scene = SyntheticScene(head, opts)
    try:
        with FaceLandmarker(LandmarkerOptions(model_path=_WORKER["landmarker_path"], running_mode="video",
                                              max_faces=1)) as landmarker:
            for i, truth in enumerate(truths):
                rgb = scene.render(truth)
                _store_detection(out, i, landmarker.detect(rgb, int(round(1000 * i / opts.fps))), rgb, spec.crop_px)
    finally:
        scene.release()
    stack = lambda name: np.stack([np.asarray(getattr(t, name), np.float32) for t in truths])  # noqa: E731
    return {"image_size": np.tile(np.array([[opts.width, opts.height]], np.int32), (n, 1)),
            "intrinsics": stack("intrinsics"), "shape": stack("shape"), "expr": stack("expr"),
            "jaw_pose": stack("jaw_pose"), "rotation": stack("rotation"), "center_cam": stack("head_center_cam"),
            "translation": stack("translation"), "sequence": np.full(n, index, np.int32),
            "frame": np.arange(n, dtype=np.int32), **out}


def _run_shard(args: tuple[dict, int, str]) -> dict:
    spec_dict, index, path = args
    spec = DatasetSpec.from_dict(spec_dict)
    start = time.perf_counter()
    if spec.cameras is not None:
        from training.generate_camera import camera_sequence_shard, camera_train_shard  # noqa: PLC0415

        arrays = camera_train_shard(spec, index) if spec.split == "train" else camera_sequence_shard(spec, index)
    else:
        arrays = _train_shard(spec, index) if spec.split == "train" else _val_shard(spec, index)
    tmp = Path(path).with_name(Path(path).name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return {"index": index, "file": Path(path).name, "count": int(len(arrays["found"])),
            "found": int(arrays["found"].sum()), "seconds": time.perf_counter() - start}


# --- the job ---------------------------------------------------------------------------------------


def shard_path(directory: Path, index: int) -> Path:
    return directory / f"shard-{index:05d}.npz"


def _shard_ok(path: Path) -> bool:
    try:
        with np.load(path) as data:
            return "found" in data.files
    except (OSError, ValueError, EOFError):
        return False


def generate(spec: DatasetSpec, workers: int = 2, root: Path | None = None, landmarker: str | None = None,
             progress: Callable[[int, int, dict], None] | None = None) -> Path:
    """Make (or finish) the dataset of ``spec``; returns its folder (``manifest.json`` + shards).

    ``workers`` processes render and detect in parallel (1: in this process). Finished shards are
    kept; an interrupted job resumes where it stopped. ``progress(done, total, shard_info)`` is
    called after every shard.
    """
    directory = dataset_dir(spec, root)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / "manifest.json"
    manifest = {"version": DATASET_VERSION, "spec": spec.to_dict(), "key": spec.key(), "shards": {}}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("key") == spec.key():
            manifest["shards"] = old.get("shards", {})
    todo = []
    for index in range(spec.num_shards):
        path = shard_path(directory, index)
        if path.exists() and _shard_ok(path):
            manifest["shards"].setdefault(str(index), {"index": index, "file": path.name,
                                                       "count": spec.shard_count(index)})
            continue
        todo.append((spec.to_dict(), index, str(path)))
    done = spec.num_shards - len(todo)

    def record(info: dict) -> None:
        nonlocal done
        done += 1
        manifest["shards"][str(info["index"])] = info
        _write_json(manifest_path, manifest)
        if progress is not None:
            progress(done, spec.num_shards, info)

    _write_json(manifest_path, manifest)
    if todo:
        if workers <= 1:
            _init_worker(spec.model, landmarker)
            try:
                for item in todo:
                    record(_run_shard(item))
            finally:
                _release_worker()
        else:
            import multiprocessing  # noqa: PLC0415

            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(spec.model, landmarker)) as pool:
                for info in pool.imap_unordered(_run_shard, todo):
                    record(info)
    manifest["complete"] = True
    _write_json(manifest_path, manifest)
    return directory


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


# --- reading ---------------------------------------------------------------------------------------


def load_dataset(spec: DatasetSpec, root: Path | None = None, found_only: bool = True) -> dict[str, np.ndarray]:
    """The shards of ``spec`` concatenated in shard order (only samples with a detected face by default)."""
    directory = dataset_dir(spec, root)
    parts: dict[str, list[np.ndarray]] = {}
    for index in range(spec.num_shards):
        path = shard_path(directory, index)
        if not path.exists():
            raise FileNotFoundError(f"{directory}: shard {index} is missing (run the generator again to finish it)")
        with np.load(path) as data:
            keep = data["found"] if found_only else np.ones(len(data["found"]), bool)
            for name in data.files:
                parts.setdefault(name, []).append(data[name][keep])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def summary_of(spec: DatasetSpec, root: Path | None = None) -> dict:
    directory = dataset_dir(spec, root)
    manifest = json.loads((directory / "manifest.json").read_text())
    shards = [manifest["shards"][str(i)] for i in range(spec.num_shards) if str(i) in manifest["shards"]]
    count = sum(s.get("count", 0) for s in shards)
    found = sum(s.get("found", s.get("count", 0)) for s in shards)
    return {"key": manifest["key"], "split": spec.split, "samples": count, "with_face": found, "shards": len(shards),
            "folder": str(directory)}

