"""Start-up time: ``flamecam`` (the app, under Xvfb) to its first overlaid frame, and ``flamecam track``
to its first tracked frame, with a cold and a warm cache.

Each run is a fresh process started the way the console script starts it (``app.cli.main``), on a
private settings folder (``XDG_CONFIG_HOME``) and cache (``FLAMECAM_CACHE``), so the app opens as
on a new machine: no webcam here, so the synthetic source and the built-in head. *Cold*: an empty
cache (what a first run computes and stores); *warm*: the same cache after a first run (every
later start; the operating system's file cache is warm in both). Times are wall-clock from the
process being spawned, by milestone:

* app: Python and the entry point imported (``main`` called), window shown (mapped on the
  display), session started (source open, model and tracker built), first tracking result, first
  frame painted with the mesh over it;
* track: ``main`` called, first tracked frame (the pipeline's first result);
* and the CPU seconds spent by then, in the process and in its child processes (the app's source):
  far less sensitive to other work on the machine than the wall-clock times.

    python benchmarks/startup.py [--repeat 3] [--json OUT.json] [--use-display] [--no-app] [--no-track]

A child process reports its milestones through a small probe that patches nothing in the app's
behaviour: the app's event loop gets one extra 5 ms timer that looks at the window; ``track``'s
pipeline generator is wrapped to note its first result.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (repository root on sys.path)
import numpy as np
from _common import machine_info, parser, print_load, print_table, write_json

APP_MILESTONES = ("main called", "window shown", "session started", "first result", "first overlaid frame",
                  "CPU s, this process", "CPU s, child processes")
TRACK_MILESTONES = ("main called", "first tracked frame", "CPU s, this process", "CPU s, child processes")
TIMEOUT_S = 600


# --- the child processes -------------------------------------------------------------------------------


def cpu_seconds(marks: dict) -> None:
    """CPU time used so far by this process (all threads) and its live child processes (the app's
    source process): unlike the wall-clock times it hardly depends on the machine's load, so it
    bounds what a quiet machine would take (two cores: the processes overlap)."""
    import multiprocessing  # noqa: PLC0415

    marks["CPU s, this process"] = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    marks["CPU s, child processes"] = total


def child_app(report: Path, spawned: float) -> None:
    """Run ``flamecam`` (no arguments) and write the milestones' times (s since spawn) to ``report``."""
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, time.time() - spawned)

    from PySide6.QtCore import QTimer  # noqa: PLC0415  (the app imports it first thing too)
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415

    original_exec = QApplication.exec

    def probe() -> None:
        if "done" in marks:
            return  # reported once; the window is closing (the probe may tick again meanwhile)
        app = QApplication.instance()
        window = next((w for w in app.topLevelWidgets() if type(w).__name__ == "MainWindow"), None)
        if window is None:
            return
        if window.isVisible() and window.windowHandle() is not None and window.windowHandle().isExposed():
            mark("window shown")
        controller = getattr(window, "controller", None)
        if controller is not None and controller.session is not None:
            mark("session started")
        if controller is not None and controller.latest is not None:
            mark("first result")
        scene = window.view._scene
        if window.view.painted_frames and scene is not None and scene.vertices_cam is not None:
            mark("first overlaid frame")
            cpu_seconds(marks)
            report.write_text(json.dumps(marks))
            marks["done"] = True
            window.close()
        elif window.banner.level == "error" and window.banner.text:
            marks["error"] = window.banner.text
            report.write_text(json.dumps(marks))
            marks["done"] = True
            window.close()

    def exec_with_probe(*_args) -> int:
        timer = QTimer()
        timer.timeout.connect(probe)
        timer.start(5)
        return original_exec()

    QApplication.exec = exec_with_probe
    from app.cli import main  # noqa: PLC0415

    mark("main called")
    main([])


def child_track(report: Path, spawned: float, output: Path) -> None:
    """Run ``flamecam track -o OUTPUT`` (the auto source) until its first frame, then stop it."""
    marks: dict[str, float] = {}
    from app.cli import main  # noqa: PLC0415

    marks["main called"] = time.time() - spawned

    import core.pipeline  # noqa: PLC0415  (imported by the track command before it runs anyway)

    original_run = core.pipeline.TrackingPipeline.run

    def run_until_first(self, *args, **kwargs):
        for result in original_run(self, *args, **kwargs):
            marks["first tracked frame"] = time.time() - spawned
            cpu_seconds(marks)
            report.write_text(json.dumps(marks))
            yield result
            return  # the command then closes its recording as at the end of a source

    core.pipeline.TrackingPipeline.run = run_until_first
    main(["track", "-o", str(output), "--max-frames", "5", "--quiet", "--overwrite"])


# --- the parent ----------------------------------------------------------------------------------------


def run_child(kind: str, env: dict, tmp: Path) -> dict:
    report = tmp / f"{kind}-{time.monotonic_ns()}.json"
    spawned = time.time()
    cmd = [sys.executable, __file__, "--child", kind, "--report", str(report), "--spawned", repr(spawned)]
    if kind == "track":
        cmd += ["--output", str(tmp / "startup.fcrec")]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=TIMEOUT_S)
    if not report.exists():
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        return {"error": f"{kind} exited with {proc.returncode} before its first frame: {' | '.join(tail)}"}
    marks = json.loads(report.read_text())
    marks["exit code"] = proc.returncode
    return marks


def measure(kind: str, repeat: int, base_env: dict) -> dict:
    """{"cold": milestones, "warm": [milestones, ...]} for ``kind`` (app | track)."""
    with tempfile.TemporaryDirectory(prefix=f"flamecam-startup-{kind}-") as tmp_name:
        tmp = Path(tmp_name)
        env = dict(base_env, FLAMECAM_CACHE=str(tmp / "cache"), XDG_CONFIG_HOME=str(tmp / "config"),
                   FLAMECAM_NO_DOWNLOAD="1")
        print(f"{kind}: cold start ...", file=sys.stderr, flush=True)
        cold = run_child(kind, env, tmp)
        warm = []
        for i in range(repeat):
            print(f"{kind}: warm start {i + 1}/{repeat} ...", file=sys.stderr, flush=True)
            warm.append(run_child(kind, env, tmp))
    return {"cold": cold, "warm": warm}


def rows_for(kind: str, result: dict, milestones) -> list[list]:
    rows = []
    warm_ok = [w for w in result["warm"] if "error" not in w]
    for name in milestones:
        cold = result["cold"].get(name, float("nan"))
        values = [w.get(name, float("nan")) for w in warm_ok]
        rows.append([f"{kind}: {name}", cold, float(np.median(values)) if values else float("nan"),
                     float(np.min(values)) if values else float("nan"),
                     float(np.max(values)) if values else float("nan")])
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="warm starts per command (default 3)")
    p.add_argument("--no-app", action="store_true", help="skip the app")
    p.add_argument("--no-track", action="store_true", help="skip flamecam track")
    p.add_argument("--use-display", action="store_true", help="use $DISPLAY instead of starting Xvfb")
    p.add_argument("--child", choices=("app", "track"), help=argparse.SUPPRESS)
    p.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "app":
        child_app(args.report, args.spawned)
        return
    if args.child == "track":
        child_track(args.report, args.spawned, args.output)
        return
    load_before = print_load("before")
    results: dict = {}
    tables = []
    display = None
    try:
        if not args.no_app:
            env = dict(os.environ)
            if not args.use_display:
                from app.virtual_display import VirtualDisplay  # noqa: PLC0415

                display = VirtualDisplay(1280, 1024).start()
                env = display.env()
            results["app"] = measure("app", args.repeat, env)
        if not args.no_track:
            env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
            results["track"] = measure("track", args.repeat, env)
    finally:
        if display is not None:
            display.stop()
    load_after = print_load("after")
    rows = []
    for kind, milestones in (("app", APP_MILESTONES), ("track", TRACK_MILESTONES)):
        if kind not in results:
            continue
        for run in [results[kind]["cold"], *results[kind]["warm"]]:
            if "error" in run:
                print(f"{kind}: {run['error']}")
        rows += rows_for(kind, results[kind], milestones)
    tables.append(print_table(f"Start-up, seconds from spawning the process, and CPU seconds used by then "
                              f"({args.repeat} warm starts)",
                              ["milestone", "cold", "warm median", "warm min", "warm max"], rows, digits=2))
    write_json(args.json, "startup", tables, {"results": results, "load_before": load_before,
                                              "load_after": load_after, "machine": machine_info()})


if __name__ == "__main__":
    main()
