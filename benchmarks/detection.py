"""MediaPipe Face Landmarker on synthetic renders: detection rate and landmark error vs ground truth.

ICT-FaceKit head and the built-in model, 512x512, focal {450..2400} px at distance f/2000 m,
yaw -30..30 step 10, pitch -10/0/10, a random identity (N(0,1) coefficients) and a random
sparse expression per frame (seeded), on a plain and on a random procedural background.
Ground truth landmarks: vertex i for the built-in model; the cached automatic embedding's
surface points (``core.embedding.embedding_for``, no bias model) for ICT, so ICT's error includes
the embedding's own error.

    python benchmarks/detection.py [--ict PATH] [--seed N] [--json OUT.json]
"""
from __future__ import annotations

import _common  # noqa: F401  (repository root on sys.path)
import numpy as np
from _common import Stopwatch, embedded_landmarks_px, load_models, parser, print_load, print_table, write_json

FOCALS = (450.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0)
YAWS = (-30, -20, -10, 0, 10, 20, 30)
PITCHES = (-10, 0, 10)
BACKGROUNDS = ("plain", "random")
SIZE = 512
MAX_ACTIVE_EXPRESSIONS = 3


def random_coefficients(head, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random identity (N(0, 1)) and 0-3 active expressions with weights in [0.2, 0.8]."""
    shape = rng.standard_normal(head.num_shape).astype(np.float32)
    expr = np.zeros(head.num_expr, np.float32)
    active = rng.choice(head.num_expr, int(rng.integers(0, MAX_ACTIVE_EXPRESSIONS + 1)), replace=False)
    expr[active] = rng.uniform(0.2, 0.8, len(active))
    return shape, expr


def run_model(model_index: int, head, embedding, landmarker, seed: int) -> list[dict]:
    """One record per frame: background, focal, yaw, pitch, detected, per-landmark error (px)."""
    from core.synthetic import SyntheticOptions  # noqa: PLC0415
    from core.synthetic_render import PLAIN_BACKGROUND, SyntheticScene, random_background  # noqa: PLC0415

    from _common import view_truth  # noqa: PLC0415

    scene = SyntheticScene(head, SyntheticOptions(width=SIZE, height=SIZE))
    records = []
    try:
        for b, background in enumerate(BACKGROUNDS):
            for f, focal in enumerate(FOCALS):
                for y, yaw in enumerate(YAWS):
                    for p, pitch in enumerate(PITCHES):
                        # One generator per frame: every frame is reproducible on its own.
                        rng = np.random.default_rng((seed, model_index, b, f, y, p))
                        shape, expr = random_coefficients(head, rng)
                        scene.background = (random_background(SIZE, SIZE, rng) if background == "random"
                                            else PLAIN_BACKGROUND)
                        truth = view_truth(head, yaw, pitch, focal, SIZE, SIZE, shape=shape, expr=expr)
                        result = landmarker.detect(scene.render(truth))
                        err = None
                        if result.face is not None:
                            gt = embedded_landmarks_px(embedding, head.faces, scene.vertices_cam(truth), truth)
                            err = np.linalg.norm(gt - result.face.landmarks_px, axis=1)
                        records.append({"background": background, "focal": focal, "yaw": yaw, "pitch": pitch,
                                        "detected": err is not None, "error": err})
    finally:
        scene.release()
    return records


def summarise(records: list[dict]) -> tuple[int, int, float, float]:
    """(detected, frames, mean px, median px) — errors pooled over detected frames and embedded landmarks."""
    hits = [r for r in records if r["detected"]]
    errors = np.concatenate([r["error"][np.isfinite(r["error"])] for r in hits]) if hits else np.zeros(0)
    if not errors.size:
        return len(hits), len(records), float("nan"), float("nan")
    return len(hits), len(records), float(errors.mean()), float(np.median(errors))


def main() -> None:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from core.embedding import embedding_for, identity_embedding  # noqa: PLC0415
    from core.landmarks import FaceLandmarker, LandmarkerOptions  # noqa: PLC0415

    print_load("at start")
    models = load_models(args)
    all_records, tables = {}, []
    with FaceLandmarker(LandmarkerOptions(running_mode="image", max_faces=1)) as landmarker:
        for i, (name, head) in enumerate(models.items()):
            with Stopwatch() as sw:  # ground truth: the surface correspondence (vertex i for the built-in model)
                embedding = identity_embedding(head.faces) if name == "builtin" else embedding_for(head)
            print(f"{name}: embedding {embedding.num_valid}/478 landmarks ({embedding.source}; {sw.seconds:.1f} s)")
            with Stopwatch() as sw:
                all_records[name] = run_model(i, head, embedding, landmarker, args.seed)
            print(f"{name}: {len(all_records[name])} frames in {sw.seconds:.1f} s")

    def rate_row(records):
        hit, n, mean_px, median_px = summarise(records)
        return [f"{hit}/{n}", 100.0 * hit / max(n, 1), mean_px, median_px]

    cols = [h for bg in BACKGROUNDS for h in (f"{bg}: found", "rate %", "mean px", "med px")]
    for name, records in all_records.items():
        truth_label = "vertex i" if name == "builtin" else "auto embedding"
        rows = []
        for focal in FOCALS:
            rows.append([f"{focal:g}"] + [v for bg in BACKGROUNDS for v in
                                          rate_row([r for r in records if r["focal"] == focal and r["background"] == bg])])
        rows.append(["all"] + [v for bg in BACKGROUNDS for v in
                               rate_row([r for r in records if r["background"] == bg])])
        tables.append(print_table(f"{name}: detection rate and landmark error vs ground truth ({truth_label}) "
                                  f"per focal (px, {SIZE}x{SIZE}, distance f/2000 m)", ["focal px"] + cols, rows))
        rows = []
        for yaw_bin in sorted({abs(y) for y in YAWS}):
            rows.append([f"{yaw_bin}"] + [v for bg in BACKGROUNDS for v in rate_row(
                [r for r in records if abs(r["yaw"]) == yaw_bin and r["background"] == bg])])
        tables.append(print_table(f"{name}: per |yaw| (degrees; all focals and pitches)", ["|yaw|"] + cols, rows))
        missed = [(r["background"], r["focal"], r["yaw"], r["pitch"]) for r in records if not r["detected"]]
        if missed:
            print(f"{name}: no face in {len(missed)} frames (background, focal, yaw, pitch): {missed[:20]}"
                  + (" ..." if len(missed) > 20 else ""))
    print("\nErrors pool every embedded landmark of every detected frame (478 for the built-in model).")
    print_load("at end")
    extra = {"frames": {name: [{k: v for k, v in r.items() if k != "error"} | {
        "mean_error_px": None if r["error"] is None else float(np.nanmean(r["error"]))} for r in records]
        for name, records in all_records.items()}}
    write_json(args.json, "detection", tables, extra)


if __name__ == "__main__":
    main()
