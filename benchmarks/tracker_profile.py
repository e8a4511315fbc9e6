"""Where the tracker's time goes: ``Tracker.step`` per model, per stage, and cProfile's top functions.

    python benchmarks/tracker_profile.py [--models flame,ict,builtin] [--frames 300] [--profile 12]
                                         [--threads 1] [--ict PATH] [--json OUT.json]

Landmark sequences, per model:

* ``flame``: the FLAME-sized articulated fixture (5023 vertices, joints global/neck/jaw/eyes,
  random bases; built by the tests' fixture code, as ``benchmarks/speed.py`` does) with 478
  landmarks on random vertices, projected exactly along a synthetic trajectory (jaw opening,
  random expressions, head motion) plus 0.5 px noise. A random blob has no face MediaPipe would
  find, so this sequence is the fixture's own.
* ``ict`` / ``builtin``: MediaPipe's detections on rendered frames (``benchmarks/_common``'s
  detection cache, the accuracy benchmark's f=900 sequence, seed 0), repeated to ``--frames``.

Per model: ms per step (wall and this thread's CPU time: under contention the CPU time is the
steadier figure), the stages (the frame's own fit, the joint refinement's units, the result),
and the accuracy the tracker reaches on the sequence, so a speed change that costs accuracy
shows (from a second run with ``frame_budget_ms=0``: one refinement unit every fourth frame
whatever the machine's speed, so two versions compare number for number), then cProfile's top
functions by own CPU time. The first 5 frames (initialisation and the
first identity fit) are left out of the timings.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402  (repo on sys.path, quiet MediaPipe logging)
import torch  # noqa: E402

from core.model_io import load_head_model  # noqa: E402
from core.synthetic import SyntheticOptions  # noqa: E402
from core.tracker import Tracker, TrackerOptions  # noqa: E402

SKIP = 5  # initialisation frames left out of the timings


def flame_sequence(frames: int):
    """(head, embedding, per-frame landmarks, ground truths) of the FLAME-sized fixture."""
    from tests.fixtures_flame import flame_like_arrays, write_flame_pickle  # noqa: PLC0415
    from tests.test_tracker import ExactLandmarks  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flame_like.pkl"
        write_flame_pickle(path, flame_like_arrays(n_vert=5023, seed=1))
        head = load_head_model(path)
    src = ExactLandmarks(head, SyntheticOptions(width=640, height=480, frames=frames), noise_px=0.5)
    landmarks, truths = zip(*(src.frame(i) for i in range(frames)))
    return head, src.emb, (640, 480), list(landmarks), list(truths)


def detected_sequence(name: str, frames: int, ict: Path):
    """(head, embedding, per-frame MediaPipe landmarks, ground truths) of a rendered rigid model."""
    from accuracy import sequence_options  # noqa: PLC0415

    from core.embedding import embedding_for  # noqa: PLC0415

    model_arg = str(ict) if name == "ict" else "builtin"
    head = load_head_model(None if name == "builtin" else model_arg)
    opts = sequence_options(900, 0, 120)
    landmarks, _, truths = _common.detect_sequence(opts, model_arg, head)
    reps = -(-frames // len(landmarks))
    # Repeated forwards and backwards so the motion stays continuous.
    order = [i for r in range(reps) for i in (range(len(landmarks)) if r % 2 == 0 else reversed(range(len(landmarks))))]
    order = order[:frames]
    size = (opts.width, opts.height)
    return head, embedding_for(head), size, [landmarks[i] for i in order], [truths[i] for i in order]


class StageTimer:
    """Wraps methods of live objects (this benchmark only) and sums their wall time per frame."""

    def __init__(self):
        self.frame: dict[str, float] = defaultdict(float)

    def wrap(self, obj, method: str, label: str) -> None:
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.frame[label] += time.perf_counter() - t0

        setattr(obj, method, timed)


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def accuracy(head, results, truths) -> dict:
    """After SKIP frames: mean face-vertex error (mm; camera space, and after rigid alignment), landmark fit
    (px), jaw opening error (rad) and the last frame's focal length (px)."""
    from core import camera  # noqa: PLC0415
    from core.head_model import HeadModelLayer  # noqa: PLC0415
    from core.metrics import aligned_vertex_error_mm, vertex_error_mm  # noqa: PLC0415

    face = head.regions.get("face", np.arange(head.num_vertices))
    layer = HeadModelLayer(head, face)

    def meshes(items):
        def t(name):
            return torch.as_tensor(np.stack([np.asarray(getattr(r, name), np.float32) for r in items]))

        with torch.no_grad():
            verts = layer(t("shape"), t("expr"), t("rotation"), t("neck_pose"), t("jaw_pose"), t("eyes_pose"))
            return camera.model_to_camera(verts, t("translation")).numpy()

    res, gt = results[SKIP:], truths[SKIP:]
    pred, true = meshes(res), meshes(gt)
    out = {"vertex_mm": float(np.nanmean(vertex_error_mm(pred, true))),
           "aligned_mm": float(np.nanmean(aligned_vertex_error_mm(pred, true))),
           "fit_px": float(np.nanmean([r.fit_error_px for r in res])), "focal_px": float(res[-1].focal_px)}
    if head.is_articulated:
        out["jaw_err_rad"] = float(np.mean([abs(r.jaw_pose[0] - g.jaw_pose[0]) for r, g in zip(res, gt)]))
    return out


def track(head, emb, size, landmarks, profiler: cProfile.Profile | None = None,
          options: TrackerOptions = TrackerOptions()):
    """Run a fresh tracker over the sequence: results, per-frame wall and CPU ms, per-stage ms."""
    tracker = Tracker(head, emb, size, options)
    timer = StageTimer()
    timer.wrap(tracker.problem, "solve", "frame fit")
    timer.wrap(tracker.shared, "advance", "refinement units")
    timer.wrap(tracker, "_result", "result")
    wall, cpu, stages, results = [], [], defaultdict(list), []
    for i, lmk in enumerate(landmarks):
        found = lmk is not None and np.isfinite(lmk).all()
        timer.frame.clear()
        if profiler is not None and i == SKIP:
            profiler.enable()
        t0, c0 = time.perf_counter(), time.thread_time()
        results.append(tracker.step(lmk if found else None, i / 30, i))
        wall_ms, cpu_ms = (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000
        if i >= SKIP:
            wall.append(wall_ms)
            cpu.append(cpu_ms)
            for label in ("frame fit", "refinement units", "result"):
                stages[label].append(timer.frame[label] * 1000)
    if profiler is not None:
        profiler.disable()
    return results, wall, cpu, stages


def run_model(name: str, frames: int, top: int, ict: Path) -> dict:
    if name == "flame":
        head, emb, size, landmarks, truths = flame_sequence(frames)
    else:
        head, emb, size, landmarks, truths = detected_sequence(name, frames, ict)
    _, wall, cpu, stages = track(head, emb, size, landmarks)
    # Accuracy from a run whose refinement schedule does not depend on the machine's speed (one
    # unit every fourth frame), so that two versions of the tracker compare number for number.
    results, *_ = track(head, emb, size, landmarks, options=TrackerOptions(frame_budget_ms=0.0))
    row = {"frames": len(wall), "wall_ms_p50": pct(wall, 50), "wall_ms_p95": pct(wall, 95),
           "wall_ms_mean": float(np.mean(wall)), "cpu_ms_p50": pct(cpu, 50), "cpu_ms_p95": pct(cpu, 95),
           "stages_ms_mean": {k: float(np.mean(v)) for k, v in stages.items()},
           "accuracy": accuracy(head, results, truths)}
    if top:
        # A second run under cProfile (its overhead would distort the timings above), timed in
        # this thread's CPU time so other processes' load does not land on whatever was running.
        profiler = cProfile.Profile(time.thread_time)
        track(head, emb, size, landmarks, profiler)
        stats = pstats.Stats(profiler, stream=io.StringIO())
        row["top"] = top_functions(stats, top, len(wall))
    return row


def top_functions(stats: pstats.Stats, top: int, frames: int) -> list[dict]:
    """cProfile's top functions by own time: ms per frame own and cumulative."""
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():
        rows.append({"function": f"{Path(file).name}:{line}({func})", "calls_per_frame": ncalls / frames,
                     "own_ms_per_frame": 1000 * tottime / frames, "cum_ms_per_frame": 1000 * cumtime / frames})
    return sorted(rows, key=lambda r: -r["own_ms_per_frame"])[:top]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="flame,ict,builtin")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--profile", type=int, default=12, metavar="N", help="cProfile's top N functions (0: off)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the app uses 1)")
    parser.add_argument("--ict", type=Path, default=_common.DEFAULT_ICT_PATH, help="ICT-FaceKit head model .npz")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"frames": args.frames, "threads": args.threads, "results": {}}
    for name in filter(None, args.models.split(",")):
        if name == "ict" and not args.ict.exists():
            print(f"skipping ict: {args.ict} not found (pass --ict PATH)")
            continue
        print(f"{name} ...", file=sys.stderr, flush=True)
        report["results"][name] = run_model(name, args.frames, args.profile, args.ict)
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def print_report(report: dict) -> None:
    print(f"\nTracker.step, {report['frames']} frames, torch threads {report['threads']}; ms per frame "
          f"(first {SKIP} frames left out); accuracy from the run with frame_budget_ms=0")
    head = (f"{'model':<8} {'wall p50/p95/mean':>18} {'cpu p50/p95':>12}  {'fit / refine / result (mean)':>28}  "
            f"{'vertex mm':>9} {'aligned':>7} {'fit px':>6} {'jaw rad':>7} {'focal':>6}")
    print(head)
    print("-" * len(head))
    for name, r in report["results"].items():
        st, acc = r["stages_ms_mean"], r["accuracy"]
        jaw = f"{acc['jaw_err_rad']:.4f}" if "jaw_err_rad" in acc else "-"
        print(f"{name:<8} {r['wall_ms_p50']:>6.2f}/{r['wall_ms_p95']:.2f}/{r['wall_ms_mean']:.2f} "
              f"{r['cpu_ms_p50']:>6.2f}/{r['cpu_ms_p95']:.2f}  "
              f"{st['frame fit']:>10.2f} / {st['refinement units']:.2f} / {st['result']:.2f}  "
              f"{acc['vertex_mm']:>9.3f} {acc['aligned_mm']:>7.3f} {acc['fit_px']:>6.3f} {jaw:>7} "
              f"{acc['focal_px']:>6.0f}")
    for name, r in report["results"].items():
        if "top" in r:
            print(f"\n{name}: top functions by own CPU time (ms per frame, own / cumulative, calls per frame)")
            for t in r["top"]:
                print(f"  {t['own_ms_per_frame']:7.3f} {t['cum_ms_per_frame']:7.3f} {t['calls_per_frame']:7.1f}  "
                      f"{t['function']}")


if __name__ == "__main__":
    sys.exit(main())
