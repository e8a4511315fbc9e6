"""The camera regressor's datasets: which head models, how many samples, which seeds.

One place names every dataset so that training (``training/train_camera.py``), calibration and
the benchmark (``benchmarks/camera_regressor.py``) read the same files:

* ``train``: independent frames per head model (real-camera population, IMAGE mode);
* ``test``: 60-frame sequences per head model (VIDEO mode), seeds disjoint from training; used
  for leave-one-model-out calibration and for the benchmark;
* ``ood``: shorter sequences from :func:`training.camera_sampling.out_of_draw_population`.

Generate (resumable; data go to ``core.assets.cache_dir()/training``)::

    python -m training.camera_data --model builtin --model ICT.npz --workers 2
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from training.camera_sampling import CameraPopulation, out_of_draw_population
from training.generate import DatasetSpec, generate, load_dataset

TRAIN_SEED = 11
TEST_SEED = 12  # different seeds: different identities, cameras, backgrounds and trajectories
OOD_SEED = 13


@dataclass(frozen=True)
class DataPlan:
    train_samples: int = 10000
    test_sequences: int = 40
    test_frames: int = 60
    ood_sequences: int = 8
    ood_frames: int = 30
    shard_size: int = 250


def model_name(model: str) -> str:
    """'builtin' or the model file's stem (a label for tables, never a path)."""
    return "builtin" if model == "builtin" else Path(model).stem


def specs(model: str, model_sha256: str, plan: DataPlan = DataPlan()) -> dict[str, DatasetSpec]:
    population = CameraPopulation().to_dict()
    common = dict(model=model, model_sha256=model_sha256, crop_px=0, blur_prob=0.25)
    return {
        "train": DatasetSpec(split="train", num_samples=plan.train_samples, shard_size=plan.shard_size,
                             seed=TRAIN_SEED, cameras=population, **common),
        "test": DatasetSpec(split="val", num_samples=plan.test_sequences * plan.test_frames,
                            sequence_frames=plan.test_frames, seed=TEST_SEED, cameras=population, **common),
        "ood": DatasetSpec(split="val", num_samples=plan.ood_sequences * plan.ood_frames,
                           sequence_frames=plan.ood_frames, seed=OOD_SEED,
                           cameras=out_of_draw_population().to_dict(), **common),
    }


def available(spec: DatasetSpec, root: Path | None = None) -> DatasetSpec:
    """``spec`` with ``num_samples`` cut to the shards made so far (contiguous from shard 0): datasets
    are seeded streams, so a smaller one is a prefix of a larger one."""
    from dataclasses import replace  # noqa: PLC0415

    from training.generate import dataset_dir, shard_path  # noqa: PLC0415

    directory = dataset_dir(spec, root)
    count = 0
    while count < spec.num_shards and shard_path(directory, count).exists():
        count += 1
    if count == 0:
        raise FileNotFoundError(f"{directory}: no shards (make them with python -m training.camera_data)")
    per = spec.sequence_frames if spec.split == "val" else spec.shard_size
    return replace(spec, num_samples=count * per)


def load(model: str, which: str, plan: DataPlan = DataPlan(), root: Path | None = None) -> tuple[dict, DatasetSpec]:
    """The arrays of one dataset (faces found only; the shards made so far) and the spec they are."""
    from core.model_io import load_head_model  # noqa: PLC0415

    head = load_head_model(None if model == "builtin" else model)
    spec = available(specs(model, head.source_sha256, plan)[which], root)
    return load_dataset(spec, root), spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="'builtin' or a head-model file (repeat)")
    parser.add_argument("--which", action="append", choices=("train", "test", "ood"),
                        help="datasets to make (default: test, train, ood)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train-samples", type=int, default=DataPlan.train_samples)
    parser.add_argument("--test-sequences", type=int, default=DataPlan.test_sequences)
    parser.add_argument("--ood-sequences", type=int, default=DataPlan.ood_sequences)
    args = parser.parse_args(argv)
    from core.model_io import load_head_model  # noqa: PLC0415

    plan = DataPlan(train_samples=args.train_samples, test_sequences=args.test_sequences,
                    ood_sequences=args.ood_sequences)
    for which in args.which or ("test", "train", "ood"):
        for model in args.model:
            head = load_head_model(None if model == "builtin" else model)
            spec = specs(model, head.source_sha256, plan)[which]
            t0 = time.time()

            def progress(done, total, info, t0=t0, name=f"{model_name(model)}/{which}"):
                rate = (time.time() - t0) / max(done, 1)
                print(f"{name}: shard {done}/{total} ({info.get('found')}/{info.get('count')} faces, "
                      f"{info.get('seconds', 0):.1f} s); ~{rate * (total - done) / 60:.0f} min left", flush=True)

            folder = generate(spec, workers=args.workers, progress=progress)
            print(f"{model_name(model)}/{which}: done in {folder}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
