"""The model-agnostic camera regressor: focal length accuracy and σ coverage off the training distribution.

    python benchmarks/camera_regressor.py [--json OUT.json] [--onnx resources/camera_regressor.onnx]
                                          [--work DIR] [--ict PATH | --no-ict]

Data: the rendered test sequences of ``training/camera_data.py`` (60 frames each: one identity,
camera and background; MediaPipe in VIDEO mode; seeds disjoint from training) and its
out-of-draw sequences, read from the user cache; the leave-one-model-out networks of
``training/train_camera.py`` (``<cache>/camera_regressor/lomo-<model>.onnx``). Make them with::

    python -m training.camera_data --model builtin --model ICT.npz
    python -m training.train_camera --model builtin --model ICT.npz

Tables (all through ``core.camera_regressor.CameraRegressor``, the shipped calibration applied):

1. **left-out head model**, per f / long-side bin: each model's sequences predicted by the network
   trained without that model; single-frame median |focal error| and 1σ/2σ coverage, and the same
   for the 60-frame fusion (:func:`core.camera_regressor.fuse_focal`);
2. **out of the training draw** (frames 160-7680 px, lenses 0.25-0.35 and 7-12 f/long, subjects
   at 0.05-0.08 m and 4-8 m): the shipped network and the left-out networks;
3. **metamorphic checks** on rendered test frames: landmarks and image size ×2 (focal must double
   exactly, σ unchanged) and the mirror image (same focal);
4. **real clips** (``../shared/data/real``, no ground truth): the fused horizontal field of view
   and σ, and the same clip upscaled 2x (through MediaPipe again: the focal must double) and
   mirrored (it must not change);
5. **cost**: one frame through ONNX Runtime, 1 thread (a median; on a shared machine, say so).
"""
from __future__ import annotations

from dataclasses import asdict
import sys
from pathlib import Path

import _common  # noqa: F401  (quiet MediaPipe logging, repo on sys.path)
import numpy as np  # noqa: E402

BIN_HEADERS = ("f/long", "frames", "1f med err %", "1f cov 1σ %", "1f cov 2σ %", "1f med σ %", "seqs",
               "60f med err %", "60f cov 1σ %", "60f cov 2σ %", "60f med σ %")


def _pct(v):
    return None if v is None else 100.0 * v


def bin_rows(rep: dict) -> list[list]:
    rows = []
    for b in rep["bins"]:
        rows.append([b["f_over_long"], b["frames"], _pct(b.get("frame_median_err")), _pct(b.get("frame_cover_1s")),
                     _pct(b.get("frame_cover_2s")), _pct(b.get("frame_median_sigma")), b.get("seq60_count", 0),
                     _pct(b.get("seq60_median_err")), _pct(b.get("seq60_cover_1s")), _pct(b.get("seq60_cover_2s")),
                     _pct(b.get("seq60_median_sigma"))])
    o = rep["overall"]
    s = o.get("seq60", {})
    rows.append(["all", o["frames"], _pct(o["frame_median_err"]), _pct(o["frame_cover_1s"]), _pct(o["frame_cover_2s"]),
                 None, s.get("sequences", 0), _pct(s.get("median_err")), _pct(s.get("cover_1s")),
                 _pct(s.get("cover_2s")), _pct(s.get("median_sigma"))])
    return rows


def table_for(regressor, data: dict, label: str):
    """Raw (uncalibrated) predictions of ``regressor`` on a dataset as a training.train_camera table."""
    import torch  # noqa: PLC0415

    from training.train_camera import prediction_table  # noqa: PLC0415

    out = regressor.run(data["landmarks_px"], data["blendshapes"], data["image_size"], calibrated=False)
    pred = {"log_focal_rel": np.log(out["focal_px"] / np.asarray(data["image_size"], np.float64).max(1)),
            "log_focal_sigma": out["log_focal_sigma"], "rotation_matrix": out["rotation_matrix"],
            "head_center_px": out["head_center_px"], "distance_m": out["distance_m"]}
    tensors = {k: torch.as_tensor(np.asarray(data[k])) for k in ("intrinsics", "image_size", "rotation", "center_cam",
                                                                 "sequence", "frame")}
    tensors = {k: v.float() if v.is_floating_point() or k == "image_size" else v for k, v in tensors.items()}
    return prediction_table(pred, tensors, label)


def metamorphic(regressor, data: dict, n: int = 200) -> dict:
    from training.train_camera import mirror_perms  # noqa: PLC0415

    idx = np.linspace(0, len(data["landmarks_px"]) - 1, min(n, len(data["landmarks_px"]))).astype(int)
    pts, blend, size = data["landmarks_px"][idx].astype(np.float64), data["blendshapes"][idx], data["image_size"][idx]
    base = regressor.run(pts, blend, size)
    scaled = regressor.run(pts * 2.0, blend, size * 2.0)
    lp, bp = (p.numpy() for p in mirror_perms())
    mpts = pts[:, lp].copy()
    mpts[..., 0] = size[:, None, 0] - mpts[..., 0]
    mirrored = regressor.run(mpts, blend[:, bp], size)
    return {"frames": int(len(idx)),
            "scale2_focal_ratio_max_dev": float(np.abs(scaled["focal_px"] / base["focal_px"] - 2.0).max()),
            "scale2_sigma_max_dev": float(np.abs(scaled["log_focal_sigma"] - base["log_focal_sigma"]).max()),
            "mirror_focal_max_rel_dev": float(np.abs(mirrored["focal_px"] / base["focal_px"] - 1.0).max())}


REAL_DIR = _common.REPO.parent / "shared" / "data" / "real"  # real clips, no ground truth (read in place)


def _detect_clip(path: Path, frames: int, transform) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Landmarks and blendshapes of the first ``frames`` frames with a face (VIDEO mode)."""
    import cv2  # noqa: PLC0415

    from core.landmarks import FaceLandmarker, LandmarkerOptions  # noqa: PLC0415

    cap = cv2.VideoCapture(str(path))
    pts, blends, size = [], [], None
    with FaceLandmarker(LandmarkerOptions(running_mode="video", max_faces=1)) as lm:
        i = 0
        while len(pts) < frames:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = np.ascontiguousarray(transform(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            size = (rgb.shape[1], rgb.shape[0])
            face = lm.detect(rgb, int(i * 40)).face
            i += 1
            if face is not None:
                pts.append(face.landmarks_px)
                blends.append(face.blendshapes)
    cap.release()
    return np.asarray(pts), np.asarray(blends), size


def real_footage(regressor, frames: int = 90) -> list[list]:
    """Fused focal (as horizontal field of view) on the real clips: as is, upscaled 2x, mirrored."""
    import cv2  # noqa: PLC0415

    rows = []
    variants = {"as is": lambda im: im, "2x": lambda im: cv2.resize(im, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC),
                "mirror": lambda im: im[:, ::-1]}
    for path in sorted(REAL_DIR.glob("*.mp4")):
        row: list = [path.stem]
        base = None
        for name, fn in variants.items():
            pts, blends, size = _detect_clip(path, frames, fn)
            if not len(pts):
                row += [None, None, None]
                continue
            preds = [regressor.predict(p, b, size) for p, b in zip(pts, blends)]
            fused = regressor.fuse(preds)
            hfov = 2 * np.degrees(np.arctan(size[0] / 2 / fused.focal_px))
            ratio = None if base is None else fused.focal_px / base
            if base is None:
                base = fused.focal_px
            row += [hfov, 100 * fused.log_sigma, ratio]
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = _common.parser(__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=None, help="camera regressor (default: the shipped one)")
    parser.add_argument("--real-frames", type=int, default=90, help="frames per real clip (0: skip them)")
    parser.add_argument("--no-real", action="store_true", help="skip the real clips")
    parser.add_argument("--work", type=Path, default=None,
                        help="leave-one-model-out networks (default <cache>/camera_regressor)")
    args = parser.parse_args(argv)
    from core.assets import cache_dir  # noqa: PLC0415
    from core.camera_regressor import CameraRegressor, CameraRegressorError  # noqa: PLC0415
    from training.camera_data import model_name  # noqa: PLC0415
    from training.train_camera import OOD_FOCAL_BINS, load_arrays, report  # noqa: PLC0415

    models = ["builtin"]
    ict = _common.ict_path(args)
    if ict is not None:
        models.append(str(ict))
    try:
        shipped = CameraRegressor(args.onnx)
    except CameraRegressorError as exc:
        print(f"error: {exc}")
        return 2
    cal = shipped.calibration
    print(f"camera regressor: {shipped.path} (calibration {cal})")
    work = args.work or cache_dir() / "camera_regressor"
    tables, results = [], {"calibration": asdict(cal)}
    data = {}
    for m in models:
        try:
            data[m] = {which: load_arrays(m, which) for which in ("test", "ood")}
        except FileNotFoundError as exc:
            print(f"error: test data for {model_name(m)} missing ({exc}); make it with: "
                  f"python -m training.camera_data --model {m}")
            return 2
    # 1. left-out head model
    lomo_tables = []
    for m in models:
        name = model_name(m)
        path = work / f"lomo-{name}.onnx"
        if not path.is_file():
            print(f"leave-one-model-out network for {name} missing ({path}); run training/train_camera.py")
            continue
        reg = CameraRegressor(path)
        t = table_for(reg, data[m]["test"], f"test-{name}")
        lomo_tables.append(t)
        rep = report(t, cal)
        results[f"left_out_{name}"] = rep
        tables.append(_common.print_table(f"Left-out head model {name} (network trained without it)",
                                          BIN_HEADERS, bin_rows(rep), 1))
        if not len(data[m]["ood"]["found"]):
            continue
        t_ood = table_for(reg, data[m]["ood"], f"ood-{name}")
        rep = report(t_ood, cal, OOD_FOCAL_BINS)
        results[f"out_of_draw_left_out_{name}"] = rep
        tables.append(_common.print_table(f"Out of draw, left-out head model {name}", BIN_HEADERS, bin_rows(rep), 1))
    if lomo_tables:
        from training.train_camera import merge_tables  # noqa: PLC0415

        rep = report(merge_tables(lomo_tables), cal)
        results["left_out_pooled"] = rep
        tables.append(_common.print_table("Left-out head models pooled", BIN_HEADERS, bin_rows(rep), 1))
    # 2. shipped network out of draw
    for m in models:
        name = model_name(m)
        if not len(data[m]["ood"]["found"]):
            continue
        rep = report(table_for(shipped, data[m]["ood"], f"ood-{name}"), cal, OOD_FOCAL_BINS)
        results[f"out_of_draw_shipped_{name}"] = rep
        tables.append(_common.print_table(f"Out of draw, shipped network, {name} renders", BIN_HEADERS,
                                          bin_rows(rep), 1))
    # 3. metamorphic checks
    meta = metamorphic(shipped, data[models[0]]["test"])
    results["metamorphic"] = meta
    tables.append(_common.print_table("Metamorphic checks (shipped network)", ("check", "value"),
                                      [[k, v] for k, v in meta.items()], 8))
    # 4. real clips (no ground truth): field of view, and the metamorphic checks on real detections
    if REAL_DIR.is_dir() and not args.no_real and args.real_frames > 0:
        headers = ("clip", "HFOV °", "σ %", "(ratio)", "2x HFOV °", "2x σ %", "2x f ratio", "mirror HFOV °", "mirror σ %",
                   "mirror f ratio")
        rows = real_footage(shipped, args.real_frames)
        results["real_clips"] = [dict(zip(headers, r)) for r in rows]
        tables.append(_common.print_table(f"Real clips (first {args.real_frames} frames with a face, fused; "
                                          "2x: upscaled, f ratio must be 2; mirror: ratio 1)", headers, rows, 2))
    else:
        print(f"real clips: skipped ({REAL_DIR} missing or --no-real)")
    # 5. cost
    one = data[models[0]]["test"]
    pts, blend, size = one["landmarks_px"][:1], one["blendshapes"][:1], one["image_size"][:1]
    load = _common.print_load("before timing")
    cost = _common.time_calls(lambda: shipped.run(pts, blend, size), repeats=500, warmup=20)
    results["cost_per_frame"] = {**cost, "threads": 1, "loadavg": load}
    tables.append(_common.print_table("ONNX Runtime cost per frame (1 thread, batch 1)", ("p50 ms", "p90 ms", "min ms"),
                                      [[cost["p50_ms"], cost["p90_ms"], cost["min_ms"]]], 3))
    _common.write_json(args.json, "camera_regressor", tables, {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
