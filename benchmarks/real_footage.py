"""Real footage, no ground truth: metamorphic checks and plausibility of the focal length and distance.

For each clip in ``../shared/data/real/`` (real people, real cameras; see its README), the whole
engine as ``flamecam track`` runs it (``core.session.build_session``) on:

* the clip as it is;
* the clip resized by s = 0.5 and s = 2: the final focal length in pixels must scale by s (within 5 %);
* the clip mirrored left-right: the focal length must stay (within 5 %).

It reports each clip's final horizontal field of view, distance (1/ρ), focal state and σ, the
detection rate, the median fit error and the engine's rate. A second table runs HMC-like renders
(a head-mounted camera: 0.08-0.25 m, wide lens, seen from below) for detection rate and fit error,
and how often the truth lies within the reported ±1σ / ±2σ of the focal length.

    python benchmarks/real_footage.py --json out/real_footage.json [--frames 150] [--model builtin]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REAL = REPO.parent / "shared" / "data" / "real"
SCALES = (0.5, 2.0)
TOLERANCE = 0.05
HMC_CASES = (  # (horizontal FOV deg, distance m, chin-up deg)
    (100.0, 0.10, 30.0), (90.0, 0.15, 20.0), (110.0, 0.08, 35.0), (80.0, 0.25, 10.0),
)


def read_clip(path: Path, max_frames: int):
    import cv2

    from core.sources import Frame

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(Frame(len(frames), len(frames) / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    cap.release()
    return frames, fps


def transformed(frames, scale: float = 1.0, mirror: bool = False):
    import cv2

    from core.sources import Frame

    out = []
    for f in frames:
        rgb = f.rgb
        if scale != 1.0:
            h, w = rgb.shape[:2]
            size = (int(round(w * scale)), int(round(h * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        if mirror:
            rgb = np.ascontiguousarray(rgb[:, ::-1])
        out.append(Frame(f.index, f.timestamp_s, rgb))
    return out


def run_engine(frames, fps: float, model: str, name: str, tracker_overrides: dict) -> dict:
    """The engine as `flamecam track` sets it up (regressor, metadata-free), on frames in memory, with
    ``tracker_overrides`` (``frame_budget_ms`` 0: a fixed refinement schedule, so a clip and its resized
    or mirrored variant get the same refinement whatever the machine's load)."""
    from core.session import SessionOptions, build_session
    from core.sources import FrameListSource

    source = FrameListSource(frames, fps, name)
    session = build_session(SessionOptions(source=name, model=model, store_landmarks=False,
                                           tracker_overrides=dict(tracker_overrides)), source=source,
                            log=lambda *_: None)
    last, fits, segments = None, [], set()
    t0 = time.perf_counter()
    for result in session.pipeline.run():
        track = result.track
        segments.add(track.segment_id)
        if track.tracking_state in ("tracking", "reacquired"):
            last = track
            fits.append(track.fit_error_px)
    wall = time.perf_counter() - t0
    stats = session.pipeline.stats
    width = source.size[0]
    row = {"frames": stats.frames, "detection_rate": stats.frames_with_face / max(stats.frames, 1),
           "fps": stats.frames / wall, "fit_error_px_median": float(np.median(fits)) if fits else float("nan"),
           "image_size": list(source.size), "segments": len(segments)}
    if last is not None:
        row.update(focal_px=last.focal_px, focal_sigma_rel=last.focal_sigma_px / last.focal_px,
                   focal_state=last.focal_state, hfov_deg=math.degrees(2 * math.atan(width / 2 / last.focal_px)),
                   distance_m=1.0 / last.rho_per_m if last.rho_per_m > 0 else float("nan"),
                   evidence=[list(p) for p in last.focal_evidence])
    return row


def real_clips(max_frames: int, model: str, only: list[str] | None, tracker_overrides: dict) -> list[dict]:
    rows = []
    clips = sorted(REAL.glob("*.mp4"))
    if only:
        clips = [c for c in clips if any(o in c.name for o in only)]
    for path in clips:
        frames, fps = read_clip(path, max_frames)
        base = run_engine(frames, fps, model, path.name, tracker_overrides)
        row = {"clip": path.name, **base, "variants": {}}
        for scale in SCALES:
            v = run_engine(transformed(frames, scale=scale), fps, model, f"{path.name}@{scale:g}x", tracker_overrides)
            ratio = v.get("focal_px", float("nan")) / base.get("focal_px", float("nan")) / scale
            row["variants"][f"scale_{scale:g}"] = {**v, "focal_ratio_over_s": ratio,
                                                   "ok": bool(abs(ratio - 1) <= TOLERANCE)}
        v = run_engine(transformed(frames, mirror=True), fps, model, f"{path.name} mirrored", tracker_overrides)
        ratio = v.get("focal_px", float("nan")) / base.get("focal_px", float("nan"))
        row["variants"]["mirror"] = {**v, "focal_ratio_over_s": ratio, "ok": bool(abs(ratio - 1) <= TOLERANCE)}
        rows.append(row)
        print_real_row(row)
    return rows


def hmc_renders(frames: int, model: str, tracker_overrides: dict) -> list[dict]:
    from core.camera import fov_deg_to_focal
    from core.sources import Frame, open_source

    rows = []
    for i, (fov, distance, chin_up) in enumerate(HMC_CASES):
        width, height = 640, 480
        focal = float(fov_deg_to_focal(fov, width))
        spec = (f"synthetic:model={model},width={width},height={height},focal={focal:.2f},distance={distance},"
                f"chin_up={chin_up},frames={frames},still=0.2,background=random,seed={i}")
        source = open_source(spec)
        try:
            rendered = [Frame(f.index, f.timestamp_s, f.rgb) for f in source]
        finally:
            source.close()
        res = run_engine(rendered, 30.0, model, f"hmc {fov:g}° {distance:g} m", tracker_overrides)
        err = math.log(res["focal_px"] / focal) if "focal_px" in res else float("nan")
        res.update(case={"hfov_deg": fov, "distance_m": distance, "chin_up_deg": chin_up, "focal_px": focal},
                   focal_log_error=err, within_1sigma=bool(abs(err) <= res.get("focal_sigma_rel", 0)),
                   within_2sigma=bool(abs(err) <= 2 * res.get("focal_sigma_rel", 0)))
        rows.append(res)
        print(f"hmc {fov:5.0f}° {distance:5.2f} m chin-up {chin_up:3.0f}°: detected {res['detection_rate']:.0%}, "
              f"fit {res['fit_error_px_median']:.2f} px, focal {res.get('focal_px', float('nan')):.0f} "
              f"(truth {focal:.0f}, {res.get('focal_sigma_rel', float('nan')):.0%}, {res.get('focal_state', '-')}), "
              f"distance {res.get('distance_m', float('nan')):.2f} m", flush=True)
    return rows


def print_real_row(row: dict) -> None:
    v = row["variants"]
    checks = "  ".join(f"{k} {d['focal_ratio_over_s']:.3f}{'' if d['ok'] else ' MISS'}" for k, d in v.items())
    print(f"{row['clip']:28s} {row['image_size'][0]}x{row['image_size'][1]}  detected {row['detection_rate']:.0%}  "
          f"focal {row.get('focal_px', float('nan')):6.0f} px ± {row.get('focal_sigma_rel', float('nan')):.0%} "
          f"({row.get('hfov_deg', float('nan')):.0f}° h, {row.get('focal_state', '-')}), "
          f"distance {row.get('distance_m', float('nan')):.2f} m, fit {row['fit_error_px_median']:.2f} px, "
          f"{row['segments']} segment{'s' if row['segments'] != 1 else ''}, "
          f"{row['fps']:.0f} fps | {checks}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="frames per clip (default 150)")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--clips", nargs="*", help="only clips whose name contains one of these")
    parser.add_argument("--no-hmc", action="store_true", help="skip the HMC renders")
    parser.add_argument("--frame-budget-ms", type=float, default=0.0,
                        help="the tracker's per-frame refinement budget; 0 (default) runs a fixed schedule, so "
                             "the variants of a clip compare number for number; 7 is what flamecam track uses")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    overrides = {"frame_budget_ms": args.frame_budget_ms}
    if not REAL.is_dir():
        print(f"error: {REAL} not found (the real clips live in ../shared/data/real beside the repo)", file=sys.stderr)
        return 2
    from core.session import set_tracker_threads

    set_tracker_threads()
    print(f"# real clips ({args.frames} frames each): final focal, and the metamorphic ratios f(variant)/(s·f)")
    rows = real_clips(args.frames, args.model, args.clips, overrides)
    checks = [d["ok"] for r in rows for d in r["variants"].values()]
    print(f"metamorphic checks within {TOLERANCE:.0%}: {sum(checks)}/{len(checks)}")
    hmc = [] if args.no_hmc else hmc_renders(60, args.model, overrides)
    if hmc:
        cover1 = np.mean([r["within_1sigma"] for r in hmc])
        cover2 = np.mean([r["within_2sigma"] for r in hmc])
        print(f"hmc renders: detection {np.mean([r['detection_rate'] for r in hmc]):.0%}, fit error median "
              f"{np.median([r['fit_error_px_median'] for r in hmc]):.2f} px, focal truth within 1σ {cover1:.0%}, "
              f"2σ {cover2:.0%}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"real": rows, "hmc": hmc, "tolerance": TOLERANCE,
                                               "checks_passed": int(sum(checks)), "checks": len(checks)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
