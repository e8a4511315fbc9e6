"""What an image-crop branch buys the single-frame focal estimate, on held-out identities.

    python benchmarks/crop_branch.py [--model builtin|PATH] [--steps 3000] [--json OUT.json]

The landmark-only regressor plateaus at ~15-20 % single-frame focal error: MediaPipe's landmarks
carry an identity-specific bias, and the landmarker discards perspective cues the image still has
(ear visibility, face-contour curvature, relative feature sizes). This measures whether a small
CNN on the face crop recovers some of it, before it is worth a place in the shipped regressor.

Data: the cached type-1 training shards of ``flamecam train-regressor`` for the model (real
MediaPipe on renders, each with an 80 px RGB crop of the regressor's landmark box; run
``flamecam train-regressor`` first). Split by shard: the last 20 % are held out (identities,
poses, backgrounds and lighting never trained on). Target: log(f / crop side), the focal length
in units of the face box — what one frame can tell about perspective (the crop's placement is an
input). Every row trains the same way (Adam, cosine schedule, L1 loss, same steps and batches):

* **landmarks**: an MLP on the crop-normalised landmarks (as the shipped regressor sees them),
  MediaPipe's per-landmark depth, the 52 blendshape scores and the crop's placement;
* **landmarks + crop CNN**: the same MLP with a small CNN's features of the crop concatenated;
* **crop CNN alone**: the CNN and the crop's placement only.

Columns: single-frame focal median / p90 relative error on the held-out shards, and the median
per focal-length band.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (repository root on sys.path)
import numpy as np
import torch
from torch import nn

from core import camera
from core.model_io import load_head_model

BANDS = ((0, 750), (750, 1050), (1050, 1500), (1500, 2100), (2100, 1e9))


def load_shards(model_arg: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All samples with a face from the model's cached type-1 training shards, and each one's shard."""
    from training.generate import dataset_dir, shard_path  # noqa: PLC0415
    from training.train import TrainConfig, dataset_specs  # noqa: PLC0415

    head = load_head_model(None if model_arg == "builtin" else model_arg)
    spec, _ = dataset_specs(head, model_arg, TrainConfig())
    directory = dataset_dir(spec)
    keys = ("landmarks_px", "depth_px", "blendshapes", "intrinsics", "image_size", "crop")
    parts: dict[str, list] = {k: [] for k in keys}
    shard_of = []
    for index in range(spec.num_shards):
        path = shard_path(directory, index)
        if not path.exists():
            continue
        with np.load(path) as data:
            if "crop" not in data.files:
                raise SystemExit(f"{path} holds no crops (generated with crop_px=0)")
            found = data["found"]
            for k in keys:
                parts[k].append(data[k][found])
            shard_of.append(np.full(int(found.sum()), index))
    if not shard_of:
        raise SystemExit(f"no training shards in {directory}: run `flamecam train-regressor --model {model_arg}` first")
    return {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(shard_of)


def features(data: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(landmark features, placement, crops uint8 NCHW, target log(f / side)) as tensors."""
    from core.regressor import landmark_crop_box  # noqa: PLC0415

    lmk = torch.as_tensor(data["landmarks_px"], dtype=torch.float32)
    box = landmark_crop_box(lmk)  # (N, 4) x0, y0, side, side
    side = box[:, 2:3]
    xy = camera.crop_points(lmk, box, (2, 2)) - 1.0  # the regressor's crop coordinates, in [-1, 1]
    depth = torch.as_tensor(data["depth_px"].astype(np.float32)) / side
    size = torch.as_tensor(data["image_size"], dtype=torch.float32)
    centre = box[:, :2] + 0.5 * side
    placement = torch.cat([(centre - 0.5 * size) / side, torch.log(side / size.amax(1, keepdim=True))], 1)
    lmk_feat = torch.cat([xy.flatten(1), depth, torch.as_tensor(data["blendshapes"]), placement], 1)
    crops = torch.as_tensor(data["crop"]).permute(0, 3, 1, 2).contiguous()
    target = torch.log(torch.as_tensor(data["intrinsics"][:, 0]) / side[:, 0])
    return lmk_feat, placement, crops, target


class CropCNN(nn.Module):
    """80x80 RGB -> 64 features: four stride-2 conv blocks and global average pooling."""

    def __init__(self, width: int = 32):
        super().__init__()
        layers, c_in = [], 3
        for c_out in (width // 2, width, 2 * width, 2 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = c_in

    def forward(self, crops_u8: torch.Tensor) -> torch.Tensor:
        return self.body(crops_u8.float() / 127.5 - 1.0)


class FocalNet(nn.Module):
    def __init__(self, lmk_dim: int, use_landmarks: bool, use_crop: bool, hidden: int = 384):
        super().__init__()
        self.use_landmarks, self.use_crop = use_landmarks, use_crop
        self.cnn = CropCNN() if use_crop else None
        width = (lmk_dim if use_landmarks else 3) + (self.cnn.out_features if use_crop else 0)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                                 nn.Linear(hidden // 2, 1))

    def forward(self, lmk_feat, placement, crops):
        parts = [lmk_feat if self.use_landmarks else placement]
        if self.use_crop:
            parts.append(self.cnn(crops))
        return self.mlp(torch.cat(parts, 1))[:, 0]


def train_row(name, net, train, test, steps, batch, seed, log) -> dict:
    lmk, place, crops, target = train
    mean, std = lmk.mean(0), lmk.std(0) + 1e-6
    t_mean = float(target.mean())
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    start = time.perf_counter()
    net.train()
    for step in range(steps):
        idx = torch.randint(len(target), (batch,), generator=gen)
        pred = net((lmk[idx] - mean) / std, place[idx], crops[idx]) + t_mean
        loss = (pred - target[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 500 == 0:
            log(f"  {name}: step {step + 1}/{steps}  L1 {float(loss):.4f}  ({time.perf_counter() - start:.0f} s)")
    net.eval()
    t_lmk, t_place, t_crops, t_target = test
    with torch.no_grad():
        pred = torch.cat([net((t_lmk[i:i + 512] - mean) / std, t_place[i:i + 512], t_crops[i:i + 512]) + t_mean
                          for i in range(0, len(t_target), 512)])
    rel = (torch.exp(pred - t_target) - 1).abs().numpy()
    return {"rel_err": rel, "train_s": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin", help="'builtin' or the model file the shards were made for")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--holdout", type=float, default=0.2, help="share of shards held out (the last ones)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    data, shard_of = load_shards(args.model)
    lmk, place, crops, target = features(data)
    shards = np.unique(shard_of)
    held = shards[-max(1, int(round(args.holdout * len(shards)))):]
    test_mask = torch.as_tensor(np.isin(shard_of, held))
    split = lambda m: (lmk[m], place[m], crops[m], target[m])  # noqa: E731
    train, test = split(~test_mask), split(test_mask)
    focal_test = data["intrinsics"][test_mask.numpy(), 0]
    log(f"{args.model}: {len(train[3])} training samples ({len(shards) - len(held)} shards), {len(test[3])} held out "
        f"({len(held)} shards)")
    rows = {"landmarks": (True, False), "landmarks + crop CNN": (True, True), "crop CNN alone": (False, True)}
    results = {}
    for name, (use_lmk, use_crop) in rows.items():
        torch.manual_seed(args.seed)
        net = FocalNet(lmk.shape[1], use_lmk, use_crop)
        results[name] = train_row(name, net, train, test, args.steps, args.batch, args.seed, log)
    headers = ["inputs", "median %", "p90 %"] + [f"f {lo:.0f}-{hi:.0f}" if hi < 1e8 else f"f >= {lo:.0f}"
                                                 for lo, hi in BANDS] + ["train s"]
    table_rows = []
    for name, r in results.items():
        rel = r["rel_err"]
        bands = [100 * float(np.median(rel[(focal_test >= lo) & (focal_test < hi)]))
                 if ((focal_test >= lo) & (focal_test < hi)).any() else math.nan for lo, hi in BANDS]
        table_rows.append([name, 100 * float(np.median(rel)), 100 * float(np.percentile(rel, 90))] + bands
                          + [r["train_s"]])
    table = _common.print_table(f"{args.model}: single-frame focal relative error on held-out shards "
                                f"({args.steps} steps, batch {args.batch})", headers, table_rows, digits=1)
    _common.write_json(Path(args.json) if args.json else None, "crop_branch", [table], {"steps": args.steps, "holdout_shards": held.tolist()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
