"""Regressor ablation on held-out rendered sequences with the real landmarker (Camera3DMM Table 1 / Fig. 4).

    python benchmarks/regressor.py --json OUT.json [--plot OUT.png] [--models ict,builtin] [--seeds 4]
                                   [--frames 60] [--focals 600,900,1200,1800,2400]
                                   [--regressor MODEL=PATH] [--ortho-regressor MODEL=PATH]

Held-out test set (type 1): sequences rendered like ``benchmarks/accuracy.py`` (512², focal f, the
head at f/2000 m, a ±20° yaw sweep with pitch, roll, distance changes and expressions, random
backgrounds and lighting, sensor noise, MediaPipe in VIDEO mode) but with trajectory, identity
and background seeds from ``TEST_SEED_BASE``. Training never sees them: its samples draw
identities and backgrounds from their own seed streams (``training.generate``), its validation
sequences use seeds >= 900000.

Rows (the regressors are looked up like the tracker does: user cache, then resources/ for the
built-in model; ``--regressor``/``--ortho-regressor`` override):

* **ortho + opt**: the orthographic regressor (``flamecam train-regressor --camera ortho``)
  initialises the weak-perspective tracker (depth expressed with the true focal length, as in
  ``accuracy.py``), which then optimises;
* **perspective, regressor only**: the perspective regressor's per-frame output, no optimisation;
* **perspective + opt**: the tracker (focal length estimated) with the regressor's per-frame prior
  and its sequence-level focal prior — the full pipeline;
* **optimizer only**: the tracker alone (the default without a regressor), side by side.

Columns: landmark error (px; the model's embedded landmarks projected with the estimate against
the true ones) and face vertex error (mm), mean ± std over all frames: in camera space (depth
and focal errors included; the ortho row is given the true focal length for its depth, the
perspective rows estimate it) and after rigid alignment (shape and expression alone). Per focal
length: vertex error per row (the Fig. 4 analogue, ``--plot``), the regressor's single-frame
focal median relative error, its sequence prior after ``--frames`` frames, the tracker's focal
error at that frame with and without the regressor, and ρ's absolute error there.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace

import _common  # noqa: F401  (quiet MediaPipe logging, repo on sys.path)
import accuracy  # noqa: E402  (benchmarks/accuracy.py: sequences, Evaluator)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.embedding import embedding_for  # noqa: E402
from core.landmarks import FaceObservation, LandmarkResult  # noqa: E402
from core.metrics import aligned_vertex_error_mm, vertex_error_mm  # noqa: E402
from core.model_io import load_head_model  # noqa: E402
from core.regressor import Regressor, RegressorPrior, load_regressor  # noqa: E402
from core.tracker import Tracker, TrackerOptions  # noqa: E402

TEST_SEED_BASE = 5000
FOCALS = (600, 900, 1200, 1800, 2400)
ROWS = ("ortho + opt", "regressor only", "perspective + opt", "optimizer only")


def test_sequence_options(focal: int, index: int, frames: int):
    """accuracy.py's sequence with a held-out seed and a short still segment (the head moves by frame 10)."""
    return replace(accuracy.sequence_options(focal, TEST_SEED_BASE + index, frames), still=0.3)


def _observation(landmarks_px: np.ndarray, blendshapes: np.ndarray, size, index: int) -> LandmarkResult:
    if not np.isfinite(landmarks_px).all():
        return LandmarkResult(index, size, None, 0)
    lo, hi = landmarks_px.min(0), landmarks_px.max(0)
    face = FaceObservation(np.asarray(landmarks_px, np.float32), np.zeros(478, np.float32), np.ones(478, np.float32),
                           np.asarray(blendshapes, np.float32), np.concatenate([lo, hi - lo]).astype(np.float32))
    return LandmarkResult(index, size, face, 1)


def run_tracker(head, embedding, landmarks, blendshapes, opts, topts: TrackerOptions, regressor: Regressor | None):
    """Track a sequence; with a regressor, its RegressorPrior is the per-frame prior (as in the pipeline)."""
    size = (opts.width, opts.height)
    tracker = Tracker(head, embedding, size, topts)
    camera = None
    if regressor is not None and regressor.camera_mode == "perspective":
        from core.camera_regressor import CameraRegressor  # noqa: PLC0415  (the focal belief, as the pipeline's)

        camera = CameraRegressor()
    prior_fn = RegressorPrior(regressor, camera) if regressor is not None else None
    results, prior_focal = [], []
    for i, lmk in enumerate(landmarks):
        obs = _observation(lmk, blendshapes[i], size, i)
        prior = prior_fn(obs) if (prior_fn is not None and obs.face is not None) else None
        results.append(tracker.step(lmk if obs.face is not None else None, i / opts.fps, i, prior=prior))
        est = prior_fn.focal.estimate() if prior_fn is not None and prior_fn.focal is not None else None
        prior_focal.append(est.focal_px if est else float("nan"))
    return results, prior_focal


def frame_errors(ev, items, truths, intrinsics, fitted_landmarks=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame face vertex error (mm, camera space), the same after rigid alignment (shape and
    expression alone: no depth or focal error) and landmark error (px) against the truth."""
    gt_mesh = ev.meshes(truths)
    gt_lmk = ev.landmarks_px(truths, truths[0].intrinsics)
    pred_mesh = ev.meshes(items)
    vert, aligned = vertex_error_mm(pred_mesh, gt_mesh), aligned_vertex_error_mm(pred_mesh, gt_mesh)
    if fitted_landmarks is None:
        fitted_landmarks = ev.landmarks_px(items, np.asarray(intrinsics, np.float32))
    lmk = np.linalg.norm(fitted_landmarks - gt_lmk, axis=-1).mean(-1)
    return vert, aligned, lmk


def _pred_items(head, preds):
    """Regressor outputs as items ``accuracy.Evaluator`` can pose."""
    from types import SimpleNamespace  # noqa: PLC0415

    z3 = np.zeros(3, np.float32)
    return [SimpleNamespace(shape=p.shape, expr=p.expr, rotation=p.rotation, neck_pose=z3, jaw_pose=p.jaw_pose,
                            eyes_pose=np.zeros(6, np.float32), translation=p.translation) for p in preds]


def evaluate_sequence(head, embedding, ev, opts, landmarks, blendshapes, truths, persp, ortho, at: int) -> dict:
    f_true = opts.focal_px()
    size = (opts.width, opts.height)
    found = np.array([np.isfinite(x).all() for x in landmarks])
    out: dict = {"found": float(found.mean()), "rows": {}}
    tracked_ok = lambda res: np.array([r.tracking_state in ("tracking", "reacquired") for r in res])  # noqa: E731

    def tracked_row(results):
        ok = tracked_ok(results)
        fitted = np.stack([r.fitted_landmarks_px[ev.lmk_ids] for r in results])
        vert, aligned, lmk = frame_errors(ev, results, truths, None, fitted)
        return {"vertex_mm": vert[ok].tolist(), "aligned_mm": aligned[ok].tolist(), "landmark_px": lmk[ok].tolist(),
                "focal_rel_err": abs(results[at - 1].focal_px - f_true) / f_true,
                "rho_abs_err": abs(results[at - 1].rho_per_m - truths[at - 1].rho_per_m),
                "focal_state": results[at - 1].focal_state}

    if ortho is not None:
        res, _ = run_tracker(head, embedding, landmarks, blendshapes, opts,
                             TrackerOptions(camera_mode="ortho", focal_px=f_true), ortho)
        out["rows"]["ortho + opt"] = tracked_row(res)
    if persp is not None:
        idx = np.flatnonzero(found)
        t0 = time.perf_counter()
        preds = [persp.predict(landmarks[i], blendshapes[i], size) for i in idx]
        out["regressor_ms"] = 1000 * (time.perf_counter() - t0) / max(len(idx), 1)
        vert, aligned, lmk = frame_errors(ev, _pred_items(head, preds), [truths[i] for i in idx],
                                 np.stack([p.intrinsics for p in preds]))
        focal = np.array([p.focal_px for p in preds])
        rho = np.array([p.rho_per_m for p in preds])
        out["rows"]["regressor only"] = {
            "vertex_mm": vert.tolist(), "aligned_mm": aligned.tolist(), "landmark_px": lmk.tolist(),
            "focal_rel_err_frames": (np.abs(focal - f_true) / f_true).tolist(),
            "rho_abs_err_frames": np.abs(rho - np.array([truths[i].rho_per_m for i in idx])).tolist()}
        res, prior_focal = run_tracker(head, embedding, landmarks, blendshapes, opts, TrackerOptions(), persp)
        row = tracked_row(res)
        row["prior_focal_rel_err"] = abs(prior_focal[at - 1] - f_true) / f_true
        out["rows"]["perspective + opt"] = row
    res, _ = run_tracker(head, embedding, landmarks, blendshapes, opts, TrackerOptions(), None)
    out["rows"]["optimizer only"] = tracked_row(res)
    return out


def summarise(per_focal: dict[int, list[dict]]) -> dict:
    """Pool frames over seeds (errors) and take medians over seeds (frame-``at`` focal and ρ errors)."""
    out: dict = {}
    for focal, seqs in per_focal.items():
        rows = {}
        for row in ROWS:
            items = [s["rows"][row] for s in seqs if row in s["rows"]]
            if not items:
                continue
            vert = np.concatenate([i["vertex_mm"] for i in items])
            aligned = np.concatenate([i["aligned_mm"] for i in items])
            lmk = np.concatenate([i["landmark_px"] for i in items])
            r = {"vertex_mm_mean": float(vert.mean()), "vertex_mm_std": float(vert.std()),
                 "aligned_mm_mean": float(aligned.mean()), "aligned_mm_std": float(aligned.std()),
                 "landmark_px_mean": float(lmk.mean()), "landmark_px_std": float(lmk.std()), "frames": int(len(vert))}
            if "focal_rel_err" in items[0]:
                fe = [i["focal_rel_err"] for i in items]
                re = [i["rho_abs_err"] for i in items]
                r.update(focal_rel_err_median=float(np.median(fe)), focal_rel_err_max=float(np.max(fe)),
                         rho_abs_err_median=float(np.median(re)), rho_abs_err_max=float(np.max(re)))
            if "prior_focal_rel_err" in items[0]:
                r["prior_focal_rel_err_median"] = float(np.median([i["prior_focal_rel_err"] for i in items]))
            if "focal_rel_err_frames" in items[0]:
                fe = np.concatenate([i["focal_rel_err_frames"] for i in items])
                re = np.concatenate([i["rho_abs_err_frames"] for i in items])
                r.update(single_frame_focal_rel_err_median=float(np.median(fe)),
                         single_frame_rho_abs_err_median=float(np.median(re)))
            rows[row] = r
        out[focal] = {"rows": rows, "found": float(np.mean([s["found"] for s in seqs])),
                      "regressor_ms": float(np.mean([s.get("regressor_ms", np.nan) for s in seqs]))}
    return out


def overall(per_focal_raw: dict[int, list[dict]], focals=None) -> dict:
    """Table 1: all frames of the chosen focal lengths pooled, per row."""
    out = {}
    for row in ROWS:
        vert, aligned, lmk = [], [], []
        for focal, seqs in per_focal_raw.items():
            if focals is not None and focal not in focals:
                continue
            for s in seqs:
                if row in s["rows"]:
                    vert += s["rows"][row]["vertex_mm"]
                    aligned += s["rows"][row]["aligned_mm"]
                    lmk += s["rows"][row]["landmark_px"]
        if vert:
            out[row] = {"landmark_px_mean": float(np.mean(lmk)), "landmark_px_std": float(np.std(lmk)),
                        "vertex_mm_mean": float(np.mean(vert)), "vertex_mm_std": float(np.std(vert)),
                        "aligned_mm_mean": float(np.mean(aligned)), "aligned_mm_std": float(np.std(aligned))}
    return out


def print_report(label: str, report: dict, at: int) -> list[dict]:
    tables = []
    for name, key in (("all focal lengths", "table1"), ("f <= 900 px", "table1_short")):
        rows = [[row, f"{r['landmark_px_mean']:.2f} ± {r['landmark_px_std']:.2f}",
                 f"{r['vertex_mm_mean']:.1f} ± {r['vertex_mm_std']:.1f}",
                 f"{r['aligned_mm_mean']:.2f} ± {r['aligned_mm_std']:.2f}"] for row, r in report[key].items()]
        tables.append(_common.print_table(f"{label}: Table 1 ({name})",
                                          ["row", "landmark px", "vertex mm (camera)", "vertex mm (aligned)"], rows))
    fs = sorted(report["per_focal"], key=int)
    rows = []
    for f in fs:
        pf = report["per_focal"][f]["rows"]
        rows.append([f] + [pf[r]["vertex_mm_mean"] if r in pf else float("nan") for r in ROWS]
                    + [pf[r]["aligned_mm_mean"] if r in pf else float("nan") for r in ROWS])
    tables.append(_common.print_table(
        f"{label}: face vertex error (mm) per focal length (Fig. 4): camera space | after rigid alignment",
        ["f px"] + list(ROWS) + [f"{r} (al.)" for r in ROWS], rows, digits=1))
    rows = []
    for f in fs:
        pf = report["per_focal"][f]["rows"]
        reg, full, opt = pf.get("regressor only", {}), pf.get("perspective + opt", {}), pf["optimizer only"]
        pct = lambda v: 100 * v if v is not None else float("nan")  # noqa: E731
        rows.append([f, pct(reg.get("single_frame_focal_rel_err_median")), pct(full.get("prior_focal_rel_err_median")),
                     pct(full.get("focal_rel_err_median")), pct(opt.get("focal_rel_err_median")),
                     full.get("rho_abs_err_median", float("nan")), full.get("rho_abs_err_max", float("nan")),
                     opt.get("rho_abs_err_median", float("nan"))])
    tables.append(_common.print_table(
        f"{label}: focal length median relative error (%) and ρ absolute error (1/m) at frame {at}",
        ["f px", "regressor 1 frame", f"reg. prior @{at}", f"tracker+reg @{at}", f"optimizer only @{at}",
         "ρ err (t+r)", "ρ err max (t+r)", "ρ err (opt only)"], rows, digits=2))
    return tables


def targets(label: str, report: dict) -> dict:
    pf = report["per_focal"]
    out = {}
    for f in sorted(pf, key=int):
        rows = pf[f]["rows"]
        full, ortho, opt = rows.get("perspective + opt"), rows.get("ortho + opt"), rows["optimizer only"]
        t = {}
        if full and ortho and int(f) <= 900:
            t["vertex_gain_vs_ortho"] = 1 - full["vertex_mm_mean"] / ortho["vertex_mm_mean"]
            t["aligned_gain_vs_ortho"] = 1 - full["aligned_mm_mean"] / ortho["aligned_mm_mean"]
        if full:
            limit = 0.08 if int(f) <= 900 else 0.15 if int(f) >= 2400 else None
            t["focal_rel_err"] = full["focal_rel_err_median"]
            t["focal_target"] = limit
            t["rho_abs_err_median"] = full["rho_abs_err_median"]
        t["optimizer_only_focal_rel_err"] = opt["focal_rel_err_median"]
        t["optimizer_only_rho_abs_err_median"] = opt["rho_abs_err_median"]
        out[f] = t
    print(f"\n{label}: targets")
    for f, t in out.items():
        parts = []
        if "vertex_gain_vs_ortho" in t:
            g, ga = t["vertex_gain_vs_ortho"], t["aligned_gain_vs_ortho"]
            parts.append(f"vertex error {100 * g:.0f}% below ortho in camera space (ortho given the true focal for "
                         f"depth; {'met' if g >= 0.30 else 'MISSED'}, target >= 30%), {100 * ga:.0f}% after rigid "
                         f"alignment ({'met' if ga >= 0.30 else 'MISSED'})")
        if "focal_rel_err" in t:
            e, lim = t["focal_rel_err"], t["focal_target"]
            verdict = "" if lim is None else f" ({'met' if e <= lim else 'MISSED'}, target <= {100 * lim:.0f}%)"
            parts.append(f"focal {100 * e:.1f}%{verdict} vs optimizer only {100 * t['optimizer_only_focal_rel_err']:.1f}%")
            r = t["rho_abs_err_median"]
            parts.append(f"ρ err {r:.2f}/m ({'met' if r <= 0.3 else 'MISSED'}, target <= 0.3) vs "
                         f"{t['optimizer_only_rho_abs_err_median']:.2f}/m")
        print(f"  f={f}: " + "; ".join(parts))
    return out


def plot(reports: dict, path: str, at: int) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    labels = list(reports)
    fig, axes = plt.subplots(2, max(1, len(labels)), figsize=(5.5 * max(1, len(labels)), 8), squeeze=False)
    for col, label in enumerate(labels):
        pf = reports[label]["per_focal"]
        fs = sorted(pf, key=int)
        x = [int(f) for f in fs]
        ax = axes[0][col]
        for row in ROWS:
            ys = [pf[f]["rows"][row]["vertex_mm_mean"] if row in pf[f]["rows"] else np.nan for f in fs]
            al = [pf[f]["rows"][row]["aligned_mm_mean"] if row in pf[f]["rows"] else np.nan for f in fs]
            if np.isfinite(ys).any():
                line, = ax.plot(x, ys, marker="o", label=row)
                ax.plot(x, al, marker=".", linestyle="--", color=line.get_color(), label=f"{row}, aligned")
        ax.set_title(f"{label}: face vertex error vs focal length (dashed: rigidly aligned)")
        ax.set_xlabel("focal length (px, 512² image)")
        ax.set_ylabel("mm (camera space)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        ax = axes[1][col]
        series = {"regressor, 1 frame": ("regressor only", "single_frame_focal_rel_err_median"),
                  f"regressor prior @{at}": ("perspective + opt", "prior_focal_rel_err_median"),
                  f"tracker + regressor @{at}": ("perspective + opt", "focal_rel_err_median"),
                  f"optimizer only @{at}": ("optimizer only", "focal_rel_err_median")}
        for name, (row, key) in series.items():
            ys = [100 * pf[f]["rows"].get(row, {}).get(key, np.nan) for f in fs]
            if np.isfinite(ys).any():
                ax.plot(x, ys, marker="o", label=name)
        ax.set_title(f"{label}: focal length median relative error")
        ax.set_xlabel("focal length (px, 512² image)")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
        ax.legend()
    _common.save_figure(fig, path)


def _mapping(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values or []:
        if "=" not in v:
            raise SystemExit(f"expected MODEL=PATH (MODEL: ict or builtin), got {v!r}")
        k, p = v.split("=", 1)
        out[k] = p
    return out


def main(argv=None) -> int:
    parser = _common.parser(__doc__.split("\n")[0])
    parser.add_argument("--models", default="ict,builtin", help="comma list among ict,builtin (default both)")
    parser.add_argument("--focals", default=",".join(map(str, FOCALS)))
    parser.add_argument("--seeds", type=int, default=4, help="test sequences per focal length")
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence (focal errors at the last)")
    parser.add_argument("--regressor", action="append", metavar="MODEL=PATH", help="perspective regressor override")
    parser.add_argument("--ortho-regressor", action="append", metavar="MODEL=PATH", help="orthographic regressor override")
    parser.add_argument("--plot", default="artifacts/regressor_vertex_error.png", help="PNG (Fig. 4 analogue)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    persp_paths, ortho_paths = _mapping(args.regressor), _mapping(args.ortho_regressor)
    models = []
    wanted = [m for m in args.models.split(",") if m]
    if "ict" in wanted:
        path = _common.ict_path(args)
        if path is not None:
            models.append(("ict", str(path)))
    if "builtin" in wanted:
        models.append(("builtin", "builtin"))
    focals = [int(f) for f in args.focals.split(",")]
    reports, tables, t0 = {}, [], time.perf_counter()
    for label, model_arg in models:
        head = load_head_model(None if model_arg == "builtin" else model_arg)
        embedding = embedding_for(head)
        ev = accuracy.Evaluator(head, embedding)
        persp, msg_p = load_regressor(head, persp_paths.get(label), "perspective")
        ortho, msg_o = load_regressor(head, ortho_paths.get(label), "ortho")
        print(f"{label}: perspective {msg_p}\n{label}: orthographic {msg_o}")
        raw: dict[int, list[dict]] = {}
        for focal in focals:
            raw[focal] = []
            for k in range(args.seeds):
                opts = test_sequence_options(focal, k, args.frames)
                landmarks, blends, truths = _common.detect_sequence(opts, model_arg, head, blendshapes=True)
                raw[focal].append(evaluate_sequence(head, embedding, ev, opts, landmarks, blends, truths, persp, ortho,
                                                    args.frames))
            print(f"  {label} f={focal} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        report = {"per_focal": summarise(raw), "table1": overall(raw),
                  "table1_short": overall(raw, [f for f in focals if f <= 900]),
                  "regressors": {"perspective": msg_p, "ortho": msg_o,
                                 "perspective_record": persp.record.data.get("metrics") if persp else None,
                                 "focal_calibration": persp.record.focal_calibration if persp else None}}
        tables += print_report(label, report, args.frames)
        report["targets"] = targets(label, report)
        reports[label] = report
    ms = [r["per_focal"][f]["regressor_ms"] for r in reports.values() for f in r["per_focal"]]
    if ms and np.isfinite(ms).any():
        print(f"\nregressor inference (ONNX Runtime, 1 thread, one frame at a time, incl. Python): "
              f"{np.nanmean(ms):.2f} ms/frame")
    _common.write_json(args.json, "regressor", tables, {
        "settings": {"focals": focals, "seeds": args.seeds, "frames": args.frames, "image": [512, 512],
                     "test_seed_base": TEST_SEED_BASE},
        "reports": reports, "wall_s": time.perf_counter() - t0})
    if args.plot:
        plot(reports, args.plot, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
