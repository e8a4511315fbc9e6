"""Camera intrinsics: calibration accuracy on rendered boards, and the tracker with calibrated vs. auto
intrinsics on the synthetic head sequences.

    python benchmarks/intrinsics.py [--json OUT.json] [--quick] [--seeds 2] [--frames 120] [--views 15]
                                    [--poses guided|random] [--no-tracker] [--no-boards] [--ict PATH]

Part A — calibration (``core.calibration.calibrate``: OpenCV's solver, distortion terms chosen by the
likelihood-ratio test, honest σ) from ``--views`` rendered board views at focal lengths 400-2400 px,
640x480 and 1280x720, without and with strong radial distortion (barrel, the image corner pulled in
by 12 % of its radius: k1 = -0.15/r², k2 = 0.03/r⁴ with r the corner's normalised radius), ChArUco
9x6 and checkerboard 10x7, principal point off centre by up to 1 % of the image. The views
(``core.calibration.render_board_views``: the project's exact pinhole renderer with 4x MSAA, then the
lens by remapping) are those of a user following the calibration session's guidance
(``--poses guided``, default: ``core.calibration.GUIDED_VIEWS`` — board filling the frame face-on and
tilted ~45° left/right/up/down and ~35° about both diagonals, the four image corners, the left and
right edges — each with a human's imprecision, randomised per seed: ``guided_board_poses``), or
``--poses random`` (``random_board_poses``: jittered 4x3 grid, tilts up to ±45°, board 35-70 % of the
image width; what the benchmark used before the guided session existed). Errors against the
rendering camera: fx (%), principal point (px, the larger of cx and cy), distortion (px: the
largest difference of the two lenses' displacement fields over the image area the board covered),
RMS reprojection error, the reported 1σ of fx and of the principal point, whether the principal
point was estimated or fixed at the centre (``principal_point="auto"``), and the distortion terms
the test kept. Per row the worst of ``--seeds`` seeds. Then the coverage of the reported σ over all
rows and seeds: the fraction of errors within 1σ and 2σ (68 % and 95 % for an honest Gaussian σ), for
the reported σ and for OpenCV's own (Jacobian) σ.

Part B — the tracker on the accuracy benchmark's sequences (``benchmarks/accuracy.py``: 512x512,
the head at f/2000 m, random background and light, real MediaPipe landmarks), face-region vertex
error in mm (camera space and after rigid alignment), in the accuracy benchmark's table format.
Modes: ``calibrated`` (intrinsics and lens from a board calibration of the same rendering camera,
landmarks undistorted before fitting), ``auto`` (online focal estimate from the default prior),
``true_focal`` (the exact pinhole, for reference); a ``radial`` lens row renders the head through the
strong barrel lens, and ``ignore lens`` tracks it with the calibrated pinhole but without
undistorting. Median over seeds.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (puts the repository on sys.path)

from core.calibration import (BoardDetector, BoardSpec, CalibrationError, calibrate, covered_points,  # noqa: E402
                              distortion_error_px, image_grid, render_board_views)
from core.distortion import LensDistortion, Undistorter  # noqa: E402

BOARDS = {"charuco": "charuco:9x6,square=0.03,marker=0.022,dict=DICT_5X5_100",
          "checker": "checkerboard:10x7,square=0.025"}
SIZES = ((640, 480), (1280, 720))
FOCALS = (400, 800, 1600, 2400)
TRACK_FOCALS = (450, 900, 2400)
BARREL = 0.12  # the image corner moves in by this fraction of its radius


def strong_radial(focal: float, size: tuple[int, int]) -> LensDistortion:
    r2 = (size[0] ** 2 + size[1] ** 2) / 4 / focal ** 2
    return LensDistortion.opencv(-0.15 / r2, 0.03 / r2 ** 2, 0.0, 0.0, 0.0)


def calibrate_camera(board_text, intr, size, lens, views, seed, poses="guided"):
    board = BoardSpec.parse(board_text)
    images = render_board_views(board, intr, size, views, lens, seed=seed, poses=poses)
    detector = BoardDetector(board)
    dets = [d for d in (detector.detect(im, i) for i, im in enumerate(images)) if d is not None]
    return dets, calibrate(dets, "opencv", board=board)


def board_rows(args) -> tuple[dict, list, dict]:
    sizes = SIZES[:1] if args.quick else SIZES
    focals = (400, 2400) if args.quick else FOCALS
    rows, raw = [], []
    t0 = time.perf_counter()
    for size in sizes:
        for focal in focals:
            for distorted in (False, True):
                for bname, btext in BOARDS.items():
                    per_seed = []
                    for seed in range(args.seeds):
                        rng = np.random.default_rng(1000 * seed + focal + size[0])
                        pp = np.array(size) / 2 + rng.uniform(-0.01, 0.01, 2) * np.array(size)
                        intr = np.array([focal, focal * (1 + rng.uniform(-0.002, 0.002)), *pp])
                        lens = strong_radial(focal, size) if distorted else LensDistortion.opencv()
                        try:
                            dets, cal = calibrate_camera(btext, intr, size, lens, args.views, seed, args.poses)
                        except CalibrationError as exc:
                            per_seed.append({"refused": str(exc)})
                            continue
                        covered = covered_points(image_grid(size), dets)
                        err = cal.intrinsics - intr
                        per_seed.append({
                            "fx_err_pct": 100 * abs(err[0]) / intr[0],
                            "fy_err_pct": 100 * abs(err[1]) / intr[1],
                            "pp_err_px": float(np.abs(err[2:]).max()),
                            "pp_fixed": cal.principal_point_fixed,
                            "dist_err_px": distortion_error_px((intr, lens), (cal.intrinsics, cal.lens), covered),
                            "rms_px": cal.rms_px, "fx_sigma_pct": 100 * cal.sigmas["fx"] / intr[0],
                            "pp_sigma_px": float(max(cal.sigmas["cx"], cal.sigmas["cy"])),
                            "terms": " ".join(cal.distortion_terms),
                            "errors": {k: float(e) for k, e in zip(("fx", "fy", "cx", "cy"), err)},
                            "sigmas": {k: float(cal.sigmas[k]) for k in ("fx", "fy", "cx", "cy")},
                            "sigmas_jacobian": {k: float(cal.sigmas_jacobian[k]) for k in ("fx", "fy", "cx", "cy")},
                            "warnings": list(cal.warnings), "views": cal.num_views})
                    ok = [r for r in per_seed if "refused" not in r]
                    row = {"size": f"{size[0]}x{size[1]}", "focal": focal, "lens": "radial" if distorted else "none",
                           "board": bname, "refused": len(per_seed) - len(ok)}
                    if ok:
                        for key in ("fx_err_pct", "fy_err_pct", "pp_err_px", "dist_err_px", "rms_px", "fx_sigma_pct"):
                            row[key] = max(r[key] for r in ok)
                        measured = [r["pp_sigma_px"] for r in ok if np.isfinite(r["pp_sigma_px"])]  # NaN: pp fixed
                        row["pp_sigma_px"] = max(measured) if measured else None
                        row["pp"] = "/".join(sorted({"fixed" if r["pp_fixed"] else "free" for r in ok}))
                        row["terms"] = "/".join(sorted({_short_terms(r["terms"]) for r in ok}))
                        row["views"] = min(r["views"] for r in ok)
                    raw.append({**row, "seeds": per_seed})
                    rows.append(row)
            print(f"  boards {size[0]}x{size[1]} f={focal} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
    headers = ["size", "f px", "lens", "board", "fx err %", "σ fx %", "fy err %", "pp err px", "σ pp px", "pp",
               "dist err px", "RMS px", "terms", "views", "refused"]
    table = _common.print_table(
        f"A. Calibration from {args.views} rendered board views, {args.poses} poses (worst of {args.seeds} seeds; "
        f"lens 'radial' = corner pulled in {BARREL:.0%})", headers,
        [[r["size"], r["focal"], r["lens"], r["board"], r.get("fx_err_pct"), r.get("fx_sigma_pct"), r.get("fy_err_pct"),
          r.get("pp_err_px"), r.get("pp_sigma_px"), r.get("pp", "-"), r.get("dist_err_px"), r.get("rms_px"),
          r.get("terms", "-"), r.get("views"), r["refused"]] for r in rows], digits=3)
    good = [r for r in rows if "fx_err_pct" in r]
    fx_ok = sum(r["fx_err_pct"] <= 0.5 for r in good)
    pp_ok = sum(r["pp_err_px"] <= 2.0 for r in good)
    print(f"targets: fx within 0.5 %: {fx_ok}/{len(rows)} rows; principal point within 2 px: {pp_ok}/{len(rows)} rows "
          f"(worst of {args.seeds} seeds each)")
    for r, full in zip(rows, raw):
        if "fx_err_pct" in r and (r["fx_err_pct"] > 0.5 or r["pp_err_px"] > 2.0):
            print(f"  misses: {r['size']} f={r['focal']} {r['lens']} {r['board']}: fx {r['fx_err_pct']:.2f} %, "
                  f"pp {r['pp_err_px']:.1f} px ({r['pp']}), σ fx {r['fx_sigma_pct']:.2f} %, σ pp "
                  + (f"{r['pp_sigma_px']:.1f} px" if r["pp_sigma_px"] is not None else "- (fixed)")
                  + ("; warned" if all(s.get("warnings") for s in full["seeds"] if "refused" not in s) else ""))
        for s_ in full["seeds"]:
            if "refused" in s_:
                print(f"  refused: {r['size']} f={r['focal']} {r['lens']} {r['board']}: {s_['refused']}")
    coverage = sigma_coverage(raw)
    print("coverage of the reported 1σ over all rows and seeds (|error| <= kσ; honest Gaussian: 68 % / 95 %):")
    for key, c in coverage.items():
        print(f"  {key:<9} " + "   ".join(f"{p}: {c[p]['1']:.0%} / {c[p]['2']:.0%} (n={c[p]['n']})" for p in c))
    return table, raw, coverage


def _short_terms(terms: str) -> str:
    return {"k1 k2": "k1k2", "k1 k2 k3": "+k3", "k1 k2 p1 p2": "+p", "k1 k2 p1 p2 k3": "+p+k3"}.get(terms, terms)


def sigma_coverage(raw: list) -> dict:
    """Fraction of |error| <= σ and <= 2σ per parameter, for the reported and the Jacobian σ (estimated only)."""
    out = {}
    for key in ("sigmas", "sigmas_jacobian"):
        per = {}
        for p in ("fx", "fy", "cx", "cy"):
            z = [abs(s["errors"][p]) / s[key][p] for row in raw for s in row.get("seeds", [])
                 if "errors" in s and np.isfinite(s[key][p]) and s[key][p] > 0]
            z = np.asarray(z)
            per[p] = {"1": float((z <= 1).mean()) if len(z) else float("nan"),
                      "2": float((z <= 2).mean()) if len(z) else float("nan"), "n": int(len(z))}
        out["reported" if key == "sigmas" else "jacobian"] = per
    return out


# --- part B: the tracker -----------------------------------------------------------------------------


def tracker_rows(args, ict: Path) -> tuple[dict, dict]:
    import accuracy  # noqa: PLC0415  (benchmarks/accuracy.py: same sequences, metrics and table)

    from core.embedding import embedding_for  # noqa: PLC0415
    from core.model_io import load_head_model  # noqa: PLC0415
    from core.tracker import Tracker, TrackerOptions  # noqa: PLC0415

    head = load_head_model(ict)
    embedding = embedding_for(head)
    ev = accuracy.Evaluator(head, embedding)
    focals = (450, 2400) if args.quick else TRACK_FOCALS
    cases = [(f, "none") for f in focals] + [(450, "radial")]
    results: dict = {}
    t0 = time.perf_counter()
    for focal, lens_name in cases:
        per_mode: dict[str, list] = {}
        for seed in range(args.seeds):
            opts = accuracy.sequence_options(focal, seed, args.frames)
            lens = strong_radial(focal, (opts.width, opts.height)) if lens_name == "radial" else LensDistortion.opencv()
            if lens_name == "radial":
                opts = replace(opts, k1=lens.coeffs[0], k2=lens.coeffs[1])
            # calibrate this very camera from rendered boards (its pinhole and lens), as a user would
            intr = opts.intrinsics().astype(np.float64)
            _, cal = calibrate_camera(BOARDS["charuco"], intr, (opts.width, opts.height), lens, args.views, seed,
                                      args.poses)
            landmarks, truths = accuracy.detect_sequence(opts, str(ict), head)
            detected = float(np.mean([np.isfinite(x).all() for x in landmarks]))
            hook = Undistorter(cal.intrinsics, cal.lens)
            modes = {
                "calibrated": (TrackerOptions(focal_px=float(cal.intrinsics[0]), principal_px=tuple(cal.intrinsics[2:]),
                                              pixel_aspect=float(cal.intrinsics[1] / cal.intrinsics[0])), hook),
                "auto": (TrackerOptions(), None),
                "true_focal": (TrackerOptions(focal_px=float(opts.focal_px())), None),
            }
            if lens_name == "radial":
                modes["ignore lens"] = (modes["calibrated"][0], None)
                modes["auto"] = (TrackerOptions(), hook)  # auto focal, landmarks still undistorted
                del modes["true_focal"]
            for mode, (topts, undistort) in modes.items():
                tracker = Tracker(head, embedding, (opts.width, opts.height), topts)
                out = []
                for i, lmk in enumerate(landmarks):
                    found = np.isfinite(lmk).all()
                    pts = undistort(lmk) if (found and undistort is not None) else lmk
                    out.append(tracker.step(pts if found else None, i / opts.fps, i))
                row = accuracy.evaluate(ev, out, truths, opts)
                row["detected_fraction"] = detected
                row["calibrated_fx_err"] = abs(cal.intrinsics[0] - intr[0]) / intr[0]
                row["calibrated_fx_sigma"] = cal.sigmas["fx"] / intr[0]
                per_mode.setdefault(mode, []).append(row)
        results[f"{focal}/{lens_name}"] = {m: accuracy.median_over_seeds(rows) for m, rows in per_mode.items()}
        print(f"  tracker f={focal} lens={lens_name} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
              flush=True)
    print(f"\n## B. ict: 512x512, distance = f/2000 m, median over {args.seeds} seeds, {args.frames} frames "
          "(the accuracy benchmark's table)")
    head_line = (f"{'f px':>5} {'lens':<6} {'mode':<11} {'vert mm':>8} {'align mm':>8} {'fit px':>7} {'gt lmk px':>9} "
                 f"{'jitter mm':>9} {'jump px':>7} {'f err@30/60/120 (σ@120)':>27} {'ρ err':>6} {'det':>5}")
    print(head_line)
    print("-" * len(head_line))
    rows = []
    for key, modes in results.items():
        focal, lens_name = key.split("/")
        for mode, r in modes.items():
            fe = r["focal_rel_err"]
            if mode == "auto":
                focal_txt = ("/".join(f"{100 * fe[k]:.0f}%" for k in sorted(fe, key=int)) +
                             f" ({100 * r['focal_sigma_rel'].get(max(fe, key=int), float('nan')):.0f}%)")
            elif mode in ("calibrated", "ignore lens"):
                focal_txt = f"calib {100 * r['calibrated_fx_err']:.2f}% (σ {100 * r['calibrated_fx_sigma']:.2f}%)"
            else:
                focal_txt = "fixed"
            print(f"{focal:>5} {lens_name:<6} {mode:<11} {r['vertex_mm']:>8.2f} {r['aligned_mm']:>8.2f} "
                  f"{r['fit_px']:>7.2f} {r['gt_landmark_px']:>9.2f} {r['jitter_mm']:>9.3f} {r['jump_px']:>7.2f} "
                  f"{focal_txt:>27} {r['rho_err']:>6.2f} {100 * r['detected_fraction']:>4.0f}%")
            rows.append([int(focal), lens_name, mode, r["vertex_mm"], r["aligned_mm"], r["fit_px"], r["gt_landmark_px"],
                         r["jitter_mm"], r["jump_px"], focal_txt, r["rho_err"], r["detected_fraction"]])
    lo, hi = min(focals), max(focals)
    cal_lo, cal_hi = results[f"{lo}/none"]["calibrated"], results[f"{hi}/none"]["calibrated"]
    ratio = cal_lo["vertex_mm"] / cal_hi["vertex_mm"]
    print(f"target: calibrated vertex error at f={lo} / f={hi}: {cal_lo['vertex_mm']:.2f} / {cal_hi['vertex_mm']:.2f} mm "
          f"= {ratio:.2f}x (target <= 1.10x); aligned {cal_lo['aligned_mm'] / cal_hi['aligned_mm']:.2f}x")
    for f in focals:
        c, a = results[f"{f}/none"]["calibrated"], results[f"{f}/none"]["auto"]
        print(f"  f={f}: calibrated vs auto vertex error {c['vertex_mm']:.2f} vs {a['vertex_mm']:.2f} mm "
              f"({100 * (1 - c['vertex_mm'] / a['vertex_mm']):.0f}% lower)")
    rad, pin = results["450/radial"], results["450/none"]
    print(f"  f=450 through the radial lens: calibrated+undistorted {rad['calibrated']['vertex_mm']:.2f} mm "
          f"(aligned {rad['calibrated']['aligned_mm']:.2f}) vs the pinhole camera {pin['calibrated']['vertex_mm']:.2f} mm "
          f"(aligned {pin['calibrated']['aligned_mm']:.2f}); lens ignored {rad['ignore lens']['vertex_mm']:.2f} mm "
          f"(aligned {rad['ignore lens']['aligned_mm']:.2f})")
    table = {"title": "B. tracker", "headers": ["f px", "lens", "mode", "vert mm", "align mm", "fit px", "gt lmk px",
                                                 "jitter mm", "jump px", "f err", "rho err", "det"], "rows": rows}
    return table, {"results": results, "ratio_450_2400": ratio}


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer settings (a smoke run)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--views", type=int, default=15)
    p.add_argument("--poses", choices=("guided", "random"), default="guided",
                   help="board views of a user following the session's guidance (default) or random ones")
    p.add_argument("--no-tracker", action="store_true")
    p.add_argument("--no-boards", action="store_true")
    args = p.parse_args(argv)
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    start = time.perf_counter()
    tables, extra = [], {}
    if not args.no_boards:
        table, raw, coverage = board_rows(args)
        tables.append(table)
        extra["boards"] = raw
        extra["sigma_coverage"] = coverage
    if not args.no_tracker:
        ict = _common.ict_path(args)
        if ict is not None:
            table, res = tracker_rows(args, ict)
            tables.append(table)
            extra["tracker"] = res
    extra["wall_s"] = time.perf_counter() - start
    print(f"\nwall time {extra['wall_s'] / 60:.1f} min")
    _common.write_json(args.json, "intrinsics", tables, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
