"""Throughput of ``flamecam batch``: one worker, N workers and local Ray, on the same inputs in one run.

    python benchmarks/batch.py [--clips 6] [--max-frames 150] [--workers 2] [--no-ray] [--json OUT.json]

Inputs: the real clips of ../shared/data/real (the first ``--clips``, each cut to ``--max-frames``),
or, where they are absent, synthetic clips rendered first. Each configuration runs the real command
(``flamecam batch``, a subprocess) into a fresh output folder:

* ``1 worker``: ``--workers 1``;
* ``N workers``: ``--workers N``;
* ``Ray (local)``: ``--ray local --cpus-per-task C`` (a private Ray instance on this machine; N tasks
  at a time with C = cores / N).

Per configuration: the command's wall time, frames tracked, end-to-end frames/s (wall), and the
throughput while files were being tracked (frames over the span from the first file's start to the last
file's end, so without the command's own and Ray's start-up), the per-file start-up overhead from the
report (``startup_s``: task start to first tracked frame; a worker's first file also loads the models,
later files reuse them), and the projected time for 1,000 hours of 30 fps video on one such machine
(at the span throughput, plus the per-file overhead for 5-minute clips).
"""
from __future__ import annotations

import csv
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (repo on sys.path, quiet MediaPipe)

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
FLAMECAM = [sys.executable, "-m", "app.cli"]
DATASET_HOURS, DATASET_FPS, CLIP_MINUTES = 1000, 30, 5


def inputs(work: Path, clips: int, frames: int) -> list[Path]:
    found = sorted(REAL.glob("*.mp4"))[:clips] if REAL.is_dir() else []
    if found:
        print(f"inputs: {len(found)} real clips from {REAL}, at most {frames} frames each")
        return found
    print(f"inputs: {clips} synthetic clips of {frames} frames (no real clips at {REAL})")
    made = []
    for i in range(clips):
        out = work / "inputs" / f"synthetic_{i}.avi"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([*FLAMECAM, "render", "--source", f"synthetic:width=640,height=480,seed={i}", "-o", str(out),
                        "--frames", str(frames)], check=True, cwd=REPO, capture_output=True)
        made.append(out)
    return made


def run_config(name: str, clips: list[Path], out: Path, frames: int, extra: list[str]) -> dict:
    command = [*FLAMECAM, "batch", *map(str, clips), "-o", str(out), "--max-frames", str(frames), "--quiet", *extra]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 4):
        print(proc.stderr[-2000:])
        raise SystemExit(f"{name}: flamecam batch exited {proc.returncode}")
    with open(out / "batch_report.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "done"]
    frames_done = sum(int(r["frames"]) for r in rows)
    starts = [datetime.datetime.fromisoformat(r["started_utc"]).timestamp() for r in rows]
    span = max(s + float(r["seconds"]) for s, r in zip(starts, rows)) - min(starts)
    first_per_worker, later = [], []  # a worker's first file loads the models; later ones reuse them
    seen: set[str] = set()
    for r in sorted(rows, key=lambda r: r["started_utc"]):
        (later if r["worker"] in seen else first_per_worker).append(float(r["startup_s"]))
        seen.add(r["worker"])
    return {"config": name, "files": len(rows), "frames": frames_done, "wall_s": wall, "processes": len(seen),
            "fps_wall": frames_done / wall, "fps_span": frames_done / span,
            "startup_first_s": sorted(first_per_worker)[len(first_per_worker) // 2] if first_per_worker else None,
            "startup_later_s": sorted(later)[len(later) // 2] if later else None,
            "command": " ".join(command[2:])}


def projection(result: dict, workers: int) -> float:
    """Hours for DATASET_HOURS of DATASET_FPS video on one machine like this one."""
    frames = DATASET_HOURS * 3600 * DATASET_FPS
    files = DATASET_HOURS * 60 / CLIP_MINUTES
    overhead = files * (result["startup_later_s"] or result["startup_first_s"] or 0) / max(1, workers)
    return (frames / result["fps_span"] + overhead) / 3600


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--max-frames", type=int, default=150)
    p.add_argument("--workers", type=int, default=2, help="N for the multi-worker and Ray rows")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args()
    load_before = _common.print_load("before")
    cores = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="flamecam-bench-batch-"))
    try:
        clips = inputs(work, args.clips, args.max_frames)
        configs = [("1 worker", ["--workers", "1"]), (f"{args.workers} workers", ["--workers", str(args.workers)])]
        if not args.no_ray:
            try:
                import ray  # noqa: F401,PLC0415

                configs.append((f"Ray (local), {args.workers} tasks",
                                ["--ray", "local", "--cpus-per-task", f"{cores / args.workers:g}"]))
            except ImportError:
                print("Ray row: SKIPPED - ray is not installed (pip install 'flamecam[cluster]')")
        results = []
        for name, extra in configs:
            print(f"running {name} ...", flush=True)
            results.append(run_config(name, clips, work / name.replace(" ", "_"), args.max_frames, extra))
        load_after = _common.print_load("after")
        base = results[0]["fps_span"]
        rows = [[r["config"], r["files"], r["frames"], r["wall_s"], r["fps_wall"], r["fps_span"], r["fps_span"] / base,
                 r["startup_first_s"], r["startup_later_s"],
                 projection(r, 1 if r is results[0] else args.workers)] for r in results]
        table = _common.print_table(
            f"flamecam batch on {len(clips)} clips x <= {args.max_frames} frames ({cores} cores; measured under load "
            "from other processes on this machine: compare the rows, not the absolute numbers)",
            ["config", "files", "frames", "wall s", "fps (wall)", "fps (tracking)", "speed-up",
             "start-up 1st file s", "start-up later s", f"{DATASET_HOURS} h @{DATASET_FPS}fps: h"], rows)
        print(f"\nfps (tracking): frames / (last file's end - first file's start); the projection uses it plus the "
              f"later files' start-up for {CLIP_MINUTES}-minute clips "
              f"({DATASET_HOURS * 60 // CLIP_MINUTES:.0f} files).")
        _common.write_json(args.json, "batch", [table], {"results": results, "load_before": load_before,
                                                         "load_after": load_after, "under_load": True})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
