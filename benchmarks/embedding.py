"""How well MediaPipe's 478 landmarks sit on each head model (the landmark embedding).

For the ICT-FaceKit head (automatic embedding, ``core.embedding.compute_embedding``) and the
built-in model (identity correspondence, landmark i = vertex i, plus the learned bias model, as
``embedding_for`` builds it): embedded count, dropped ids, consistency (per-view spread of the
back-projected surface points), the time the embedding took and — the headline — the distance
between the embedded points re-projected and MediaPipe's detections on *held-out* renders
(yaw/pitch/focal other than the embedding's own ``DEFAULT_VIEWS`` x ``EMBEDDING_FOCALS``),
overall, per focal and per landmark region; both for the surface points alone and with the
embedding's model of MediaPipe's bias added (what the tracker fits).

    python benchmarks/embedding.py [--ict PATH] [--auto-builtin] [--json OUT.json]
"""
from __future__ import annotations

import _common  # noqa: F401  (repository root on sys.path)
import numpy as np
from _common import (Stopwatch, embedded_landmarks_px, landmark_regions, load_models, parser, print_load, print_table,
                     view_truth, write_json)

HELD_OUT_YAWS = (-25, -15, 5, 15, 25)
HELD_OUT_PITCHES = (-5, 5)
HELD_OUT_FOCALS = (900.0, 1800.0)
SIZE = 512


def held_out_errors(head, embedding, landmarker) -> dict:
    """Per held-out view: (focal, yaw, pitch) and (478,) px errors without / with the bias model."""
    from core.synthetic import SyntheticOptions  # noqa: PLC0415
    from core.synthetic_render import SyntheticScene  # noqa: PLC0415

    scene = SyntheticScene(head, SyntheticOptions(width=SIZE, height=SIZE))
    views, surface, biased, missed = [], [], [], 0
    try:
        for focal in HELD_OUT_FOCALS:
            for yaw in HELD_OUT_YAWS:
                for pitch in HELD_OUT_PITCHES:
                    truth = view_truth(head, yaw, pitch, focal, SIZE, SIZE)
                    result = landmarker.detect(scene.render(truth))
                    if result.face is None:
                        missed += 1
                        continue
                    verts = scene.vertices_cam(truth)
                    for out, with_bias in ((surface, False), (biased, True)):
                        uv = embedded_landmarks_px(embedding, head.faces, verts, truth, with_bias)
                        out.append(np.linalg.norm(uv - result.face.landmarks_px, axis=1))
                    views.append((focal, yaw, pitch))
    finally:
        scene.release()
    empty = np.zeros((0, 478))
    return {"views": np.array(views).reshape(-1, 3), "surface": np.array(surface) if surface else empty,
            "biased": np.array(biased) if biased else empty, "missed": missed}


def stats(err: np.ndarray) -> tuple[float, float]:
    err = err[np.isfinite(err)]
    return (float(err.mean()), float(np.median(err))) if err.size else (float("nan"), float("nan"))


def main() -> None:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--auto-builtin", action="store_true",
                    help="also embed the built-in model automatically (the method against the exact identity)")
    args = ap.parse_args()
    from core.embedding import DEFAULT_VIEWS, EMBEDDING_FOCALS, compute_embedding, identity_embedding  # noqa: PLC0415
    from core.landmarks import NUM_LANDMARKS, FaceLandmarker, LandmarkerOptions  # noqa: PLC0415

    print_load("at start")
    models = load_models(args)
    runs = []  # (label, head, embedding, report, seconds, spread measured)
    for name, head in models.items():
        if name == "builtin":
            with Stopwatch() as sw:
                emb, report = compute_embedding(head, base=identity_embedding(head.faces))
            runs.append(("builtin (identity)", head, emb, report, sw.seconds, False))
        if name != "builtin" or args.auto_builtin:
            with Stopwatch() as sw:
                emb, report = compute_embedding(head)
            runs.append((f"{name} (auto)", head, emb, report, sw.seconds, True))

    regions = landmark_regions()
    n_views = len(HELD_OUT_FOCALS) * len(HELD_OUT_YAWS) * len(HELD_OUT_PITCHES)
    summary, per_focal, region_rows, results = [], [], {r: [] for r in regions}, {}
    with FaceLandmarker(LandmarkerOptions(running_mode="image", max_faces=1)) as landmarker:
        for label, head, emb, report, seconds, measured in runs:
            held = held_out_errors(head, emb, landmarker)
            spread = emb.spread_mm[emb.valid]
            summary.append([label, f"{emb.num_valid}/{NUM_LANDMARKS}", NUM_LANDMARKS - emb.num_valid,
                            float(np.median(spread)) if measured else None,
                            float(np.percentile(spread, 90)) if measured else None, seconds,
                            *stats(report.reprojection_px), f"{len(held['surface'])}/{n_views}",
                            *stats(held["surface"]), *stats(held["biased"])])
            for focal in HELD_OUT_FOCALS:
                sel = held["views"][:, 0] == focal
                per_focal.append([label, focal, int(sel.sum()), *stats(held["surface"][sel]),
                                  *stats(held["biased"][sel])])
            for region, ids in regions.items():
                kept = ids[emb.valid[ids]]
                region_rows[region].append((f"{len(kept)}/{len(ids)}", stats(held["surface"][:, kept])[0],
                                            stats(held["biased"][:, kept])[0]))
            results[label] = {"dropped_ids": np.flatnonzero(~emb.valid).tolist(), "embedding_seconds": seconds,
                              "embedding_source": emb.source, "held_out_views": held["views"].tolist(),
                              "held_out_missed": held["missed"]}

    yaws = sorted({v[0] for v in DEFAULT_VIEWS})
    pitches = sorted({v[1] for v in DEFAULT_VIEWS})
    tables = [print_table(
        f"Landmark embedding vs MediaPipe, {SIZE}x{SIZE}. Embedding renders: yaw {yaws}, pitch {pitches}, focal "
        f"{EMBEDDING_FOCALS} px. Held out: yaw {HELD_OUT_YAWS}, pitch {HELD_OUT_PITCHES}, focal {HELD_OUT_FOCALS} px "
        "(distance f/2000 m)",
        ["model", "embedded", "dropped", "spread med mm", "spread p90 mm", "embed s", "in-view mean px",
         "in-view med px", "held-out views", "surface mean px", "surface med px", "HELD-OUT +BIAS MEAN px",
         "+bias med px"], summary)]
    tables.append(print_table("Held-out error per focal length (px)",
                              ["model", "focal px", "views", "surface mean", "surface med", "+bias mean", "+bias med"],
                              per_focal))
    labels = [r[0] for r in runs]
    headers = ["region"] + [h for label in labels for h in (f"{label} kept", "surface mean", "+bias mean")]
    rows = [[region] + [v for cell in cells for v in cell] for region, cells in region_rows.items()]
    tables.append(print_table("Held-out mean error per region, px (irises: FaceLandmarksConnections + centres "
                              "468/473)", headers, rows))
    print("\n'spread': RMS distance of the per-view back-projected surface points to their median (automatic "
          "embeddings only). 'in-view': the embedding's own renders, with its bias model. 'surface': embedded "
          "surface points alone; '+bias': plus the embedding's model of MediaPipe's bias (as the tracker fits).")
    print_load("at end")
    write_json(args.json, "embedding", tables, {"models": results})


if __name__ == "__main__":
    main()
