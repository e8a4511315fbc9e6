"""The iris as a metric ruler: the tracker with and without ``TrackerOptions.iris_ruler``, side by side.

Both arms track the very same MediaPipe detections (each sequence is rendered and detected once, cached),
so every difference between them is the term's (``core.tracker.iris``: a prior N(11.7 mm, 0.5 mm) on
the model's iris diameter as a function of the identity, in the shared refinement). The joint
refinement runs without its per-frame time budget (``--budget-ms``, default unlimited) so that the
machine's load cannot starve one arm's refinement more than the other's.

A. Renders with exact truth (real MediaPipe on 512x512 renders: random background, light and sensor
   noise; ±20° yaw sweep with pitch, roll, expressions and ±10 % distance changes; 0.3 s still):
   cases of focal length (f/W 0.7-3) and distance, ``--seeds`` identities each, per population:

   * ``ict drawn``: ICT identities drawn from its identity modes, N(0, 1) (face size ±4.6 % per unit
     vector, mostly mode 0; the model's iris diameter 11.87 ± 0.86 mm: ICT's iris varies more than a
     human's, and mostly independently of the face's size);
   * ``ict iris~N(11.7,0.5)``: the same draws moved along the iris-diameter gradient until the iris is
     a human one (a draw from N(11.7 mm, 0.5 mm)): the population the prior describes;
   * ``ict scaled``: as ``iris``, with ICT's mode 0 (mostly size: ∓4.5 % face per unit) set to -2 / +2
     (a face ~9 % larger / smaller than the mean) before the iris is set: where the identity prior's
     pull towards the mean size is most wrong;
   * ``builtin drawn``: the built-in model, whose identity modes never change its iris (5.9 mm radius):
     the term is a constant there; both arms must agree exactly. With its trained regressor as the
     per-frame prior too (ICT has no trained regressor).

   After ``--frames`` frames: focal |f/f_true - 1|, its reported σ and coverage (|log error| within 1σ
   and 2σ), ρ = 1/Z error, f/Z error (ρ·f: pixels per metre at the head, what the iris measures), the
   identity's absolute scale error (RMS radius of the neutral face region) and the model iris
   diameter error D(β̂) - D(β_true). And how well MediaPipe measures the iris: its diameter in pixels
   over the truth's (the model's embedded iris points of the true identity, projected).

B. Real clips (``../shared/data/real``, no truth), tracked with ICT as ``flamecam track`` sets the
   tracker up (``core.session.build_session``): the final focal length, horizontal field of view,
   distance and σ per arm, and the metamorphic checks of ``benchmarks/real_footage.py`` (resize by
   0.5 and 2: f must scale by s; mirror: f must stay; within 5 %).

    python benchmarks/iris_ruler.py --json out/iris_ruler.json [--seeds 3] [--frames 60] [--real-frames 120]
                                    [--no-renders] [--no-real] [--clips webcam]
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (puts the repository on sys.path)

import torch  # noqa: E402

from core.assets import cache_dir  # noqa: E402
from core.embedding import embedding_for  # noqa: E402
from core.landmarks import FaceLandmarker, FaceObservation, LandmarkerOptions, LandmarkResult  # noqa: E402
from core.model_io import load_head_model  # noqa: E402
from core.synthetic import SyntheticOptions, SyntheticSource  # noqa: E402
from core.tracker import LandmarkModel, Tracker, TrackerOptions  # noqa: E402
from core.tracker.iris import IRIS_DIAMETER_M, IRIS_DIAMETER_SIGMA_M, IrisRuler  # noqa: E402
from core.tracker.landmark_model import IRIS_IDS  # noqa: E402

CASES = ((0.7, 0.25), (1.2, 0.45), (2.0, 0.6), (3.0, 1.0))  # (f / image width, distance m)
SIZE = 512
ARMS = ("off", "on")
CACHE_VERSION = 1


# --- detections (cached) ------------------------------------------------------------------------------


def _cached(key_parts, produce) -> dict:
    key = hashlib.sha256(json.dumps([CACHE_VERSION, *key_parts], sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_dir() / "bench" / f"iris-{key}.npz"
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    out = produce()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def detect_frames(frames, max_faces: int = 1) -> dict:
    """MediaPipe (VIDEO mode) on RGB frames: landmarks (T, 478, 2) NaN without a face, presence, blendshapes."""
    lmk, presence, blend, faces = [], [], [], []
    with FaceLandmarker(LandmarkerOptions(running_mode="video", max_faces=max_faces)) as lm:
        for index, timestamp_s, rgb in frames:
            res = lm.detect(rgb, int(round(1000 * timestamp_s)))
            found = res.face is not None
            lmk.append(res.face.landmarks_px if found else np.full((478, 2), np.nan, np.float32))
            presence.append(res.face.presence if found else np.zeros(478, np.float32))
            blend.append(res.face.blendshapes if found else np.zeros(52, np.float32))
            faces.append(res.num_faces)
    return {"landmarks": np.stack(lmk), "presence": np.stack(presence), "blendshapes": np.stack(blend),
            "num_faces": np.array(faces)}


def landmark_results(det: dict, size: tuple[int, int], fps: float) -> list[LandmarkResult]:
    out = []
    for i, pts in enumerate(det["landmarks"]):
        if not np.isfinite(pts).all():
            out.append(LandmarkResult(int(1000 * i / fps), size, None, 0))
            continue
        lo, hi = pts.min(0), pts.max(0)
        face = FaceObservation(pts.astype(np.float32), np.zeros(478, np.float32), det["presence"][i].astype(np.float32),
                               det["blendshapes"][i].astype(np.float32), np.concatenate([lo, hi - lo]).astype(np.float32))
        out.append(LandmarkResult(int(1000 * i / fps), size, face, int(det["num_faces"][i])))
    return out


def run_tracker(tracker: Tracker, results: list[LandmarkResult], fps: float, prior_fn=None) -> list:
    """Feed detections to a tracker as ``core.pipeline`` does (the prior sees the landmark result)."""
    out = []
    for i, lm in enumerate(results):
        face = lm.face
        prior = prior_fn(lm) if (prior_fn is not None and face is not None) else None
        out.append(tracker.step(None if face is None else face.landmarks_px, i / fps, i, prior=prior,
                                presence=None if face is None else face.presence))
    return out


# --- part A: renders ------------------------------------------------------------------------------------


def human_iris_identity(ruler: IrisRuler, shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``shape`` moved along the iris-diameter gradient until D(β) is a draw from N(11.7 mm, 0.5 mm)
    (the conditional of the N(0, 1) identity prior given that iris, for a linear D)."""
    target = rng.normal(IRIS_DIAMETER_M, IRIS_DIAMETER_SIGMA_M)
    beta = torch.as_tensor(shape, dtype=torch.float64)
    for _ in range(4):
        r, jac = ruler.residual(beta)
        g = jac[0] * ruler.sigma_m  # dD/dβ, metres per unit
        beta = beta + g * (target - ruler.diameter(beta)) / float(g @ g)
    return beta.numpy().astype(np.float32)


def face_size_m(head, shape: np.ndarray) -> float:
    """RMS radius (m) of the neutral face region of identity ``shape``: the identity's absolute size."""
    face = head.regions.get("face", np.arange(head.num_vertices))
    verts = head.v_template[face].astype(np.float64) + head.shapedirs[face].astype(np.float64) @ shape.astype(np.float64)
    return float(np.sqrt(((verts - verts.mean(0)) ** 2).sum(1).mean()))


def render_sequence(model_arg: str, head, case, seed: int, frames: int, population: str, ruler: IrisRuler | None):
    f_rel, distance = case
    opts = SyntheticOptions(model=model_arg, width=SIZE, height=SIZE, focal=f_rel * SIZE, distance=distance,
                            frames=frames, yaw=20.0, pitch=6.0, roll=3.0, still=0.3, seed=seed, background="random",
                            lighting="random", noise=2.0)
    source = SyntheticSource(opts)
    if population in ("iris", "scaled") and ruler is not None:
        shape = source.trajectory.shape.copy()
        if population == "scaled":  # ICT's mode 0 is mostly size: ∓4.5 % face per unit; ±2 units
            shape[0] = 2.0 if seed % 2 else -2.0
        source.trajectory.shape = human_iris_identity(ruler, shape, np.random.default_rng(seed + 77))
    truths = [source.trajectory.at(i) for i in range(frames)]

    def produce():
        try:
            return detect_frames((f.index, f.timestamp_s, f.rgb) for f in source)
        finally:
            source.close()

    det = _cached([head.source_sha256, opts.__dict__, hashlib.sha256(source.trajectory.shape.tobytes()).hexdigest()],
                  produce)
    source.close()
    return opts, det, truths


def iris_seen_over_true(ruler: IrisRuler, lmodel: LandmarkModel, det: dict, truths) -> np.ndarray:
    """Per frame with a face: MediaPipe's iris diameter in pixels over the true one (the model's 10
    embedded iris points of the truth, projected), both by :func:`iris_diameter_m` on the 2D points. (T',)"""
    from core import camera  # noqa: PLC0415
    from core.tracker.iris import iris_diameter_m, iris_rows  # noqa: PLC0415

    rows = torch.as_tensor(iris_rows(lmodel.ids))
    out = []
    for pts, truth in zip(det["landmarks"], truths):
        if not np.isfinite(pts).all():
            continue
        shape = torch.as_tensor(truth.shape, dtype=torch.float64)
        model_pts = lmodel.points(shape[None], torch.as_tensor(truth.expr, dtype=torch.float64)[None])[0, rows]
        cam = camera.model_to_camera(model_pts, torch.as_tensor(truth.translation, dtype=torch.float64),
                                     torch.as_tensor(truth.rotation, dtype=torch.float64))
        true_px = iris_diameter_m(camera.project_perspective(cam, torch.as_tensor(truth.intrinsics, dtype=torch.float64)))
        seen_px = iris_diameter_m(torch.as_tensor(pts[IRIS_IDS], dtype=torch.float64))
        out.append(float(seen_px / true_px))
    return np.array(out)


def evaluate(head, ruler, results, truths, opts) -> dict:
    last, truth = results[-1], truths[-1]
    f_true = opts.focal_px()
    log_err = math.log(last.focal_px / f_true)
    sigma = last.focal_sigma_px / last.focal_px
    shape_true = np.asarray(truth.shape, np.float64)
    out = {"tracked": float(np.mean([r.tracking_state in ("tracking", "reacquired") for r in results])),
           "focal_px": last.focal_px, "focal_true_px": f_true, "focal_rel_err": last.focal_px / f_true - 1,
           "focal_sigma_rel": sigma, "z": abs(log_err) / max(sigma, 1e-9), "focal_state": last.focal_state,
           "rho_per_m": last.rho_per_m, "rho_true_per_m": truth.rho_per_m,
           "rho_rel_err": last.rho_per_m / truth.rho_per_m - 1,
           # f/Z = ρ·f, pixels per metre at the head centre: what the iris measures directly (f·D/Z = D_px)
           "px_per_m_rel_err": (last.rho_per_m * last.focal_px) / (truth.rho_per_m * f_true) - 1,
           "scale_rel_err": face_size_m(head, last.shape) / face_size_m(head, shape_true) - 1,
           "fit_px": float(np.nanmedian([r.fit_error_px for r in results]))}
    if ruler is not None:
        d_est = ruler.diameter(torch.as_tensor(last.shape, dtype=torch.float64))
        d_true = ruler.diameter(torch.as_tensor(shape_true))
        out.update(iris_mm=1000 * d_est, iris_true_mm=1000 * d_true, iris_err_mm=1000 * (d_est - d_true))
    return out


def render_rows(args, models: dict) -> tuple[list[dict], list[dict]]:
    from core.regressor import RegressorPrior, load_regressor  # noqa: PLC0415

    runs = []
    t0 = time.perf_counter()
    populations = [("ict", "drawn"), ("ict", "iris"), ("ict", "scaled"), ("builtin", "drawn")]
    for label, population in populations:
        if label not in models:
            continue
        model_arg, head = models[label]
        embedding = embedding_for(head)
        lmodel = LandmarkModel(head, embedding)
        ruler = IrisRuler(lmodel) if IrisRuler.available(lmodel) else None
        regressor, message = load_regressor(head)
        print(f"  {label}: {message}", file=sys.stderr, flush=True)
        for case in CASES:
            for seed in range(args.seeds):
                opts, det, truths = render_sequence(model_arg, head, case, seed, args.frames, population, ruler)
                results = landmark_results(det, (SIZE, SIZE), opts.fps)
                seen = iris_seen_over_true(ruler, lmodel, det, truths) if ruler is not None else np.array([])
                for prior_name in (("none", "regressor") if regressor is not None else ("none",)):
                    for arm in ARMS:
                        topts = TrackerOptions(iris_ruler=arm == "on", frame_budget_ms=args.budget_ms)
                        tracker = Tracker(head, embedding, (SIZE, SIZE), topts)
                        prior_fn = RegressorPrior(regressor) if prior_name == "regressor" else None
                        res = run_tracker(tracker, results, opts.fps, prior_fn)
                        row = evaluate(head, ruler, res, truths, opts)
                        row.update(model=label, population=population, prior=prior_name, arm=arm, f_rel=case[0],
                                   distance_m=case[1], seed=seed,
                                   detected=float(np.isfinite(det["landmarks"]).all((1, 2)).mean()),
                                   iris_seen_ratio=float(np.median(seen)) if len(seen) else float("nan"),
                                   iris_seen_ratio_sd=float(np.std(seen)) if len(seen) else float("nan"))
                        runs.append(row)
                print(f"  {label} {population} f/W={case[0]} d={case[1]} m seed {seed} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return runs, summarize(runs)


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["model"], r["population"], r["prior"], r["arm"]), []).append(r)
    rows = []
    for (model, population, prior, arm), rs in groups.items():
        med = lambda key: float(np.median([abs(r[key]) for r in rs if key in r])) if any(key in r for r in rs) \
            else float("nan")  # noqa: E731
        z = np.array([r["z"] for r in rs])
        rows.append({"model": model, "population": population, "prior": prior, "arm": arm, "n": len(rs),
                     "focal_err_pct": 100 * med("focal_rel_err"), "sigma_pct": 100 * med("focal_sigma_rel"),
                     "cover_1s": float((z <= 1).mean()), "cover_2s": float((z <= 2).mean()),
                     "rho_err_pct": 100 * med("rho_rel_err"), "scale_err_pct": 100 * med("scale_rel_err"),
                     "px_per_m_err_pct": 100 * med("px_per_m_rel_err"),
                     "iris_err_mm": med("iris_err_mm"),
                     "signed_scale_pct": 100 * float(np.median([r["scale_rel_err"] for r in rs])),
                     "signed_rho_pct": 100 * float(np.median([r["rho_rel_err"] for r in rs])),
                     "fit_px": float(np.median([r["fit_px"] for r in rs]))})
    return rows


def print_render_tables(runs: list[dict], summary: list[dict], frames: int) -> list[dict]:
    tables = [_common.print_table(
        f"A. Renders, after {frames} frames (medians of |error|; coverage: |log f error| within 1σ / 2σ of the reported σ)",
        ["model", "population", "prior", "iris ruler", "n", "|f err| %", "σ %", "1σ", "2σ", "|ρ err| %", "ρ err %",
         "|f/Z err| %", "|scale err| %", "scale err %", "|iris err| mm", "fit px"],
        [[r["model"], r["population"], r["prior"], r["arm"], r["n"], r["focal_err_pct"], r["sigma_pct"],
          f"{r['cover_1s']:.0%}", f"{r['cover_2s']:.0%}", r["rho_err_pct"], r["signed_rho_pct"], r["px_per_m_err_pct"],
          r["scale_err_pct"],
          r["signed_scale_pct"], r["iris_err_mm"], r["fit_px"]] for r in summary])]
    # How well MediaPipe measures the iris: its diameter in pixels over the true one.
    seqs = {}
    for r in runs:
        if r["arm"] == "off" and r["prior"] == "none" and math.isfinite(r["iris_seen_ratio"]):
            seqs.setdefault((r["model"], r["population"]), []).append(r)
    tables.append(_common.print_table(
        "A. MediaPipe's iris diameter (px) over the truth's (projected model iris points), per sequence",
        ["model", "population", "sequences", "median ratio", "spread of medians", "frame-to-frame sd"],
        [[m, p, len(rs), float(np.median([r["iris_seen_ratio"] for r in rs])),
          float(np.std([r["iris_seen_ratio"] for r in rs])), float(np.median([r["iris_seen_ratio_sd"] for r in rs]))]
         for (m, p), rs in seqs.items()], digits=3))
    # Per case: the two arms' errors next to each other (median over seeds).
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["model"], r["population"], r["prior"], r["f_rel"], r["distance_m"]), {}).setdefault(
            r["arm"], []).append(r)
    rows = []
    for (model, population, prior, f_rel, dist), arms in groups.items():
        cells = [model, population, prior, f_rel, dist]
        for key in ("focal_rel_err", "rho_rel_err", "px_per_m_rel_err", "scale_rel_err"):
            for arm in ARMS:
                cells.append(100 * float(np.median([r[key] for r in arms.get(arm, [])])))
        cells.append(float(np.median([r["iris_true_mm"] for r in arms["off"]])) if "iris_true_mm" in arms["off"][0]
                     else float("nan"))
        rows.append(cells)
    tables.append(_common.print_table(
        "A. Per case (signed medians over seeds, %): off | on", ["model", "population", "prior", "f/W", "dist m",
                                                                 "f err off", "f err on", "ρ err off", "ρ err on",
                                                                 "f/Z off", "f/Z on", "scale off", "scale on",
                                                                 "true iris mm"], rows))
    return tables


# --- part B: real clips ------------------------------------------------------------------------------------


def real_rows(args) -> tuple[list[dict], list[dict]]:
    import real_footage  # noqa: PLC0415  (benchmarks/real_footage.py: clip reading and transforms)

    from core.session import SessionOptions, build_session  # noqa: PLC0415
    from core.sources import FrameListSource  # noqa: PLC0415

    model = str(args.ict)
    clips = sorted(real_footage.REAL.glob("*.mp4"))
    if args.clips:
        clips = [c for c in clips if any(o in c.name for o in args.clips)]
    rows = []
    t0 = time.perf_counter()
    for path in clips:
        frames, fps = real_footage.read_clip(path, args.real_frames)
        variants = {"base": {}, "scale_0.5": {"scale": 0.5}, "scale_2": {"scale": 2.0}, "mirror": {"mirror": True}}
        row = {"clip": path.name, "arms": {}}
        for vname, how in variants.items():
            # One transformed frame at a time: a 2x copy of a 720p clip would not fit in memory at once.
            det = _cached(["real", path.name, vname, args.real_frames], lambda: detect_frames(
                ((f.index, f.timestamp_s, real_footage.transformed([f], **how)[0].rgb) for f in frames), max_faces=2))
            vframes = real_footage.transformed(frames[:1], **how)  # the session needs the image size only
            size = (vframes[0].rgb.shape[1], vframes[0].rgb.shape[0])
            results = landmark_results(det, size, fps)
            for arm in ARMS:
                session = build_session(
                    SessionOptions(source=f"{path.name} {vname}", model=model, store_landmarks=False,
                                   tracker_overrides={"iris_ruler": arm == "on", "frame_budget_ms": args.budget_ms}),
                    source=FrameListSource(vframes, fps, f"{path.name} {vname}"), log=lambda *_: None)
                try:
                    res = run_tracker(session.tracker, results, fps, session.regressor_prior)
                finally:
                    session.close()
                tracked = [r for r in res if r.tracking_state in ("tracking", "reacquired")]
                entry = {"detected": float(np.isfinite(det["landmarks"]).all((1, 2)).mean())}
                if tracked:
                    last = tracked[-1]
                    entry.update(focal_px=last.focal_px, focal_sigma_rel=last.focal_sigma_px / last.focal_px,
                                 focal_state=last.focal_state,
                                 hfov_deg=math.degrees(2 * math.atan(size[0] / 2 / last.focal_px)),
                                 distance_m=1 / last.rho_per_m if last.rho_per_m > 0 else float("nan"),
                                 fit_px=float(np.median([r.fit_error_px for r in tracked])))
                row["arms"].setdefault(arm, {})[vname] = entry
        for arm in ARMS:
            v = row["arms"][arm]
            base = v["base"].get("focal_px", float("nan"))
            for vname, s in (("scale_0.5", 0.5), ("scale_2", 2.0), ("mirror", 1.0)):
                ratio = v[vname].get("focal_px", float("nan")) / base / s
                v[vname]["ratio"] = ratio
                v[vname]["ok"] = bool(abs(ratio - 1) <= real_footage.TOLERANCE)
        rows.append(row)
        print(f"  {path.name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    table_rows = []
    for row in rows:
        for arm in ARMS:
            v = row["arms"][arm]
            b = v["base"]
            table_rows.append([row["clip"], arm, b.get("focal_px"), b.get("hfov_deg"), 100 * b.get("focal_sigma_rel", math.nan),
                               b.get("focal_state", "-"), b.get("distance_m"), b.get("fit_px"),
                               v["scale_0.5"]["ratio"], v["scale_2"]["ratio"], v["mirror"]["ratio"],
                               sum(v[k]["ok"] for k in ("scale_0.5", "scale_2", "mirror"))])
    table = _common.print_table(
        f"B. Real clips (ICT, {args.real_frames} frames): final focal; metamorphic ratios f(variant)/(s·f), "
        f"ok within {real_footage.TOLERANCE:.0%}",
        ["clip", "iris ruler", "focal px", "hfov °", "σ %", "state", "distance m", "fit px", "0.5x", "2x", "mirror",
         "ok /3"], table_rows, digits=3)
    for arm in ARMS:
        oks = [row["arms"][arm][k]["ok"] for row in rows for k in ("scale_0.5", "scale_2", "mirror")]
        devs = [abs(row["arms"][arm][k]["ratio"] - 1) for row in rows for k in ("scale_0.5", "scale_2", "mirror")]
        webcams = [row["arms"][arm]["base"].get("hfov_deg", math.nan) for row in rows if row["clip"].startswith("webcam")]
        print(f"  iris ruler {arm}: metamorphic checks {sum(oks)}/{len(oks)} within {real_footage.TOLERANCE:.0%}, "
              f"median |ratio - 1| {100 * float(np.nanmedian(devs)):.1f} %; webcam clips' horizontal FOV "
              + ", ".join(f"{x:.0f}°" for x in webcams) + " (laptop webcams: ~50-75°)")
    return rows, [table]


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="identities per render case and population (default 3)")
    p.add_argument("--frames", type=int, default=60, help="frames per rendered sequence (default 60)")
    p.add_argument("--real-frames", type=int, default=120, help="frames per real clip (default 120)")
    p.add_argument("--budget-ms", type=float, default=1e9,
                   help="the tracker's per-frame refinement budget (default unlimited: load-independent)")
    p.add_argument("--models", default="ict,builtin", help="render models among ict,builtin")
    p.add_argument("--clips", nargs="*", help="only real clips whose name contains one of these")
    p.add_argument("--no-renders", action="store_true")
    p.add_argument("--no-real", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    _common.print_load("at start")
    t0 = time.perf_counter()
    tables, extra = [], {}
    ict = _common.ict_path(args)
    args.ict = ict
    models = {}
    if "ict" in args.models and ict is not None:
        models["ict"] = (str(ict), load_head_model(ict))
    if "builtin" in args.models:
        models["builtin"] = ("builtin", load_head_model("builtin"))
    if not args.no_renders and models:
        runs, summary = render_rows(args, models)
        tables += print_render_tables(runs, summary, args.frames)
        extra.update(render_runs=runs, render_summary=summary)
    if not args.no_real and ict is not None:
        rows, real_tables = real_rows(args)
        tables += real_tables
        extra["real"] = rows
    extra["wall_s"] = time.perf_counter() - t0
    _common.print_load("at end")
    print(f"wall time {extra['wall_s'] / 60:.1f} min (under load: other jobs share the 2 cores)")
    _common.write_json(args.json, "iris_ruler", tables, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
