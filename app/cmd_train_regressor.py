"""``flamecam train-regressor -o OUT.onnx``: train the per-frame regressor for a head model.

Generates (or resumes) the type-1 data in the user cache — the model rendered with random
identities, expressions, poses, cameras, backgrounds and lighting, run through MediaPipe — fits
the landmark noise model for the cheap type-2 data, trains with periodic validation, calibrates
the focal prior on validation sequences, exports ONNX (checked against torch) and writes the
record (command, seed, model hash, metrics, timings) beside it as ``OUT.json``. The result is
also installed in the user cache under the model file's hash, where the tracker finds it.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from app.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, cli_error

REPO = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write (+ OUT.json)")
    parser.add_argument("--model", default="builtin", help="FLAME .pkl, head-model .npz, or 'builtin' (default)")
    parser.add_argument("--steps", type=int, default=None, metavar="N", help="training steps (default 12000)")
    parser.add_argument("--device", default="cpu", help="torch device for training: cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    parser.add_argument("--camera", choices=("perspective", "ortho"), default="perspective",
                        help="camera model of the regressor (ortho: the ablation's orthographic baseline)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="type-1 training samples (real MediaPipe on renders; default 20000)")
    parser.add_argument("--val-sequences", type=int, default=None, metavar="N", help="validation sequences (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="data-generation processes (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--embedding", metavar="PATH", help="landmark embedding .npz (default: computed and cached)")
    parser.add_argument("--landmarker", metavar="PATH", help="MediaPipe face_landmarker.task (default: resolved)")
    parser.add_argument("--data-dir", metavar="DIR", help="where the generated data live (default: the user cache)")
    parser.add_argument("--no-install", action="store_true", help="do not install the result in the user cache")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _error(message, code: int = EXIT_BAD_INPUT) -> int:
    return cli_error("train-regressor", message, code)


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO)
    except ValueError:
        return False
    return (REPO / "core").is_dir()


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace  # noqa: PLC0415

    from core.assets import AssetError  # noqa: PLC0415
    from core.embedding import embedding_for  # noqa: PLC0415
    from core.model_io import ModelFileError, load_head_model  # noqa: PLC0415
    from core.session import COARSE_NOTICE, eprint  # noqa: PLC0415

    out = Path(args.output)
    if out.suffix != ".onnx":
        return _error(f"{out}: the output must be an .onnx file (the record is written beside it as .json)")
    if out.exists() and not args.overwrite:
        return _error(f"{out} exists; pass --overwrite to replace it")
    for name in ("steps", "samples", "val_sequences", "batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _error(f"--{name.replace('_', '-')} must be at least 1")
    if args.device.startswith("cuda"):
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            return _error("--device cuda: no CUDA device is available (this torch build or machine has none)")
    try:
        head = load_head_model(None if args.model == "builtin" else args.model)
    except (ModelFileError, AssetError, ValueError) as exc:
        return _error(exc)
    if head.kind != "builtin" and _inside_repo(out):
        return _error(f"{out} is inside the flamecam source tree: weights trained on a third-party model "
                      f"({head.name}) must not go into the repository; write them elsewhere (the result is "
                      "installed in the user cache anyway)")
    if head.is_coarse:
        eprint(COARSE_NOTICE)
    try:
        if args.embedding is None:
            eprint(f"landmark embedding for {head.name}: cached, or learned once from renders (~30 s)")
        embedding = embedding_for(head, user_file=args.embedding)
    except (AssetError, ValueError) as exc:
        return _error(exc)
    except RuntimeError as exc:
        return _error(exc, EXIT_FAILED)

    from training.train import TrainConfig, train_regressor  # noqa: PLC0415

    config = TrainConfig(seed=args.seed, camera_mode=args.camera, workers=max(1, args.workers), threads=args.threads)
    overrides = {"steps": args.steps, "train_samples": args.samples, "val_sequences": args.val_sequences,
                 "batch_size": args.batch_size}
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    command = "flamecam train-regressor " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "train-regressor" else "flamecam train-regressor " + \
        " ".join(shlex.quote(a) for a in _argv_of(args))
    eprint(f"training a {args.camera} regressor for {head.name} (sha256 {head.source_sha256[:12]}…): "
           f"{config.steps} steps, {config.train_samples} type-1 samples, seed {config.seed}, device {args.device}")
    started = time.perf_counter()
    try:
        record = train_regressor(head, embedding, args.model, out, config, device=args.device, command=command,
                                 log=lambda text: eprint(text), landmarker=args.landmarker,
                                 data_root=Path(args.data_dir) if args.data_dir else None)
    except KeyboardInterrupt:
        eprint("interrupted; finished data shards are kept and a new run resumes from them")
        return 130
    except (FloatingPointError, RuntimeError, OSError) as exc:
        return _error(exc, EXIT_FAILED)
    if not args.no_install:
        from core.regressor import install  # noqa: PLC0415

        eprint(f"installed for the tracker: {install(out)}")
    metrics = record["metrics"]
    summary = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if isinstance(v, float))
    print(f"wrote {out} ({record['onnx_bytes'] / 1e6:.1f} MB) and {out.with_suffix('.json')} in "
          f"{time.perf_counter() - started:.0f} s; validation: {summary}")
    return EXIT_OK


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options of a programmatic call, for the record."""
    out = ["-o", str(args.output)]
    for name in ("model", "steps", "device", "seed", "camera", "samples", "val_sequences", "workers", "threads",
                 "batch_size", "embedding", "landmarker", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out
