"""The desktop app while tracking: sustained fps, UI paint times and event-loop gaps (under Xvfb).

Runs the real app (window, ModernGL overlay, pyqtgraph plots, status bar) on the synthetic
640x480 source paced at 30 fps like a camera (``synthetic:realtime=1``), built-in head, overlay
on (shaded mesh; ``--overlay full`` adds the wireframe and both landmark sets). After the first
frame and ``--warmup`` seconds it measures for ``--seconds``:

* tracking fps: results reaching the UI per second, and the share of the source's 30 fps frames
  never tracked (skipped %: latest wins);
* latency: frame read -> result (the engine's ``latency_ms``);
* paint: duration of each ``paintGL`` (the overlay's GL calls on the GUI thread), and of each whole
  repaint of the video view (paintGL plus the buffer swap, where a software rasterizer draws);
* event-loop gaps: intervals between ticks of a 5 ms timer; a gap is how long the GUI thread
  could not react (input, paints); the table counts gaps over 50 ms;
* CPU use of the process and the load average (other work on the machine slows everything).

Side by side in the same run: the headless engine set up exactly as the app sets it up (source
process, tracker threads, ``with_mesh=True``) without the UI, for the same time, so the UI's cost
shows as a ratio; and the same
window idle (no tracking) for a few seconds, whose event-loop gaps show what the machine's load
alone does to the UI.

    python benchmarks/gui.py [--seconds 20] [--warmup 3] [--overlay shaded|full] [--no-headless] [--json OUT.json]

Starts its own Xvfb (``app.virtual_display``) unless ``--use-display`` (then $DISPLAY is used);
the app runs in a child process on that display.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (repository root on sys.path)
import numpy as np
from _common import parser, print_load, print_table, write_json

SOURCE = "synthetic:realtime=1"
IDLE_SECONDS = 5.0


def stats(values, scale: float = 1.0) -> dict:
    v = np.asarray(values, float) * scale
    if v.size == 0:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"n": int(v.size), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def skipped_percent(indices) -> float:
    """Share of the source's frames in the measured span that were never tracked (latest wins)."""
    if len(indices) < 2:
        return float("nan")
    return 100.0 * (1.0 - len(indices) / (max(indices) - min(indices) + 1))


def run_headless(seconds: float, warmup: float) -> dict:
    """The engine alone, set up as the app sets it up (source process, tracker threads, mesh), no UI."""
    from core.session import SessionOptions, build_session  # noqa: PLC0415

    stop = threading.Event()
    options = SessionOptions(source=SOURCE, device="cpu", synthetic_in_subprocess=True)
    session = build_session(options, log=lambda *_: None, stop=stop, with_mesh=True)
    source, pipeline = session.source, session.pipeline
    times, latency, indices = [], [], []
    start = None
    cpu0 = None
    for result in pipeline.run():
        now = time.perf_counter()
        if start is None:
            start = now + warmup
        if now >= start:
            if cpu0 is None:
                cpu0 = time.process_time()
            times.append(now)
            latency.append(result.latency_ms)
            indices.append(result.frame.index)
            if now - start >= seconds:
                stop.set()
    source.close()
    wall = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {"fps": (len(times) - 1) / wall if len(times) > 1 else float("nan"), "frames": len(times),
            "latency_ms": stats(latency), "skipped_percent": skipped_percent(indices),
            "cpu_percent": 100 * (time.process_time() - cpu0) / wall}


def run_gui(seconds: float, warmup: float, overlay: str) -> dict:
    from PySide6.QtCore import QSettings, QTimer  # noqa: PLC0415

    from app.gui import build, create_application  # noqa: PLC0415
    from core.session import SessionOptions  # noqa: PLC0415
    from ui.overlay_view import OverlayStyle  # noqa: PLC0415

    tmp = tempfile.mkdtemp(prefix="flamecam-bench-gui-")
    app = create_application()
    settings = QSettings(os.path.join(tmp, "settings.ini"), QSettings.Format.IniFormat)
    window, controller = build(SessionOptions(device="cpu"), source=SOURCE, settings=settings, model="builtin",
                               camera_mode="perspective", focal="auto")
    style = OverlayStyle(shaded=True, opacity=0.6)
    if overlay == "full":
        style = OverlayStyle(shaded=True, wireframe=True, detected_landmarks=True, fitted_landmarks=True, opacity=0.6)
    window.overlay_panel.set_style(style)
    window.resize(1280, 980)
    window.show()
    out: dict = {"overlay": overlay}
    ticks: list[float] = []
    arrivals: list[tuple[float, float, int]] = []  # (time, latency_ms, frame index)
    phase = {"name": "idle", "t": time.perf_counter()}
    marks: dict = {}

    def on_session(_info) -> None:
        controller.worker.frameReady.connect(
            lambda r: arrivals.append((time.perf_counter(), r.latency_ms, r.frame.index)))

    controller.sessionStarted.connect(on_session)

    def tick() -> None:
        ticks.append(time.perf_counter())

    def finish() -> None:
        window.close()
        app.quit()

    def step() -> None:
        now = time.perf_counter()
        if window.banner.level == "error" and window.banner.text:
            out["error"] = window.banner.text
            finish()
        elif phase["name"] == "idle" and now - phase["t"] >= IDLE_SECONDS:
            # the shown window without a session: what the machine's load alone does to the event loop
            gaps = np.diff([t for t in ticks if t >= phase["t"] + 0.2]) * 1000
            out["idle"] = {"tick_gap_ms": stats(gaps), "gaps_over_50ms": int((gaps > 50).sum())}
            controller.start()
            phase.update(name="starting", t=now)
        elif phase["name"] == "starting" and arrivals:
            phase.update(name="warmup", t=now)
        elif phase["name"] == "warmup" and now - phase["t"] >= warmup:
            marks.update(start=now, paints=len(window.view.paint_ms), frames=len(window.view.frame_ms),
                         cpu=time.process_time())
            phase.update(name="measuring", t=now)
        elif phase["name"] == "measuring" and now - phase["t"] >= seconds:
            marks.update(end=now, paints=(marks["paints"], len(window.view.paint_ms)),
                         frames=(marks["frames"], len(window.view.frame_ms)), cpu=time.process_time() - marks["cpu"])
            phase.update(name="done", t=now)
            finish()
        elif phase["name"] == "starting" and now - phase["t"] > 300:
            out["error"] = "no frame in 300 s"
            finish()

    poll = QTimer()
    poll.timeout.connect(step)
    poll.start(100)
    probe = QTimer()
    probe.timeout.connect(tick)
    probe.start(5)
    app.exec()
    poll.stop()
    probe.stop()
    controller.shutdown()
    if "error" in out or "end" not in marks:
        out.setdefault("error", "stopped early")
        return out
    t0, t1 = marks["start"], marks["end"]
    inside = [(t, lat, i) for t, lat, i in arrivals if t0 <= t <= t1]
    tick_times = np.array([t for t in ticks if t0 <= t <= t1])
    gaps = np.diff(tick_times) * 1000
    p0, p1 = marks["paints"]
    paints = list(window.view.paint_ms)[p0:p1]
    f0, f1 = marks["frames"]
    repaints = list(window.view.frame_ms)[f0:f1]
    out.update(
        fps=(len(inside) - 1) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else float("nan"),
        frames=len(inside), latency_ms=stats([lat for _, lat, _ in inside]), paint_ms=stats(paints),
        repaint_ms=stats(repaints),
        paints_per_s=len(paints) / (t1 - t0), tick_gap_ms=stats(gaps), gaps_over_50ms=int((gaps > 50).sum()),
        cpu_percent=100 * marks["cpu"] / (t1 - t0), gl=window.view.gl_info,
        skipped_percent=skipped_percent([i for _, _, i in inside]))
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="measurement time per configuration (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the first frame before measuring")
    p.add_argument("--overlay", choices=("shaded", "full"), default="shaded")
    p.add_argument("--no-headless", action="store_true", help="skip the headless engine baseline")
    p.add_argument("--use-display", action="store_true", help="use $DISPLAY instead of starting Xvfb")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: run the app, write JSON here
    args = p.parse_args()
    os.environ.setdefault("FLAMECAM_NO_DOWNLOAD", "1")
    if args.child is not None:
        args.child.write_text(json.dumps(run_gui(args.seconds, args.warmup, args.overlay), default=float))
        return
    display = None
    if not args.use_display:
        from app.virtual_display import VirtualDisplay  # noqa: PLC0415

        display = VirtualDisplay(1280, 1024).start()
    try:
        load_before = print_load("before")
        headless = None if args.no_headless else run_headless(args.seconds, args.warmup)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "gui.json"
            env = display.env() if display is not None else dict(os.environ)
            proc = subprocess.run([sys.executable, __file__, "--child", str(out), "--seconds", str(args.seconds),
                                   "--warmup", str(args.warmup), "--overlay", args.overlay], env=env)
            gui = json.loads(out.read_text()) if out.exists() else {"error": f"the app exited with {proc.returncode}"}
        load_after = print_load("after")
    finally:
        if display is not None:
            display.stop()
    if "error" in gui:
        raise SystemExit(f"the GUI run failed: {gui['error']}")
    print(f"\nOpenGL: {gui['gl'].get('GL_RENDERER')} ({gui['gl'].get('GL_VERSION')}), MSAA samples "
          f"{gui['gl'].get('samples')}; {'Xvfb' if display else 'display'} {env.get('DISPLAY')}")
    rows = []
    if headless is not None:
        rows.append(["engine alone (no UI)", headless["fps"], headless["latency_ms"]["p50"],
                     headless["latency_ms"]["p95"], headless["cpu_percent"], headless["skipped_percent"], "", "", "", "", ""])
    g, lat, paint, gap = gui, gui["latency_ms"], gui["paint_ms"], gui["tick_gap_ms"]
    rows.append([f"app, overlay {args.overlay}", g["fps"], lat["p50"], lat["p95"], g["cpu_percent"], g["skipped_percent"],
                 paint["p50"], paint["p95"], paint["max"], gap["p95"], gap["max"]])
    idle = gui["idle"]["tick_gap_ms"]
    rows.append(["app idle (no tracking)", "", "", "", "", "", "", "", "", idle["p95"], idle["max"]])
    tables = [print_table(
        f"Synthetic 640x480 source at 30 fps, {args.seconds:.0f} s after {args.warmup:.0f} s warm-up",
        ["run", "fps", "latency p50 ms", "latency p95 ms", "CPU %", "skipped %", "paint p50 ms", "paint p95 ms",
         "paint max ms", "loop gap p95 ms", "loop gap max ms"], rows, digits=1)]
    rp = g["repaint_ms"]
    tables.append(print_table("UI event loop while tracking", ["measure", "value"], [
        ["paints per second", g["paints_per_s"]],
        ["view repaint incl. swap p50 / p95 / max ms", f"{rp['p50']:.1f} / {rp['p95']:.1f} / {rp['max']:.1f}"],
        ["event-loop gaps > 50 ms (tracking)", f"{g['gaps_over_50ms']} in {args.seconds:.0f} s"],
        ["event-loop gaps > 50 ms (idle)", f"{gui['idle']['gaps_over_50ms']} in {IDLE_SECONDS:.0f} s"],
        ["event-loop gap p50 / p99 ms", f"{gap['p50']:.1f} / {gap['p99']:.1f}"],
        ["app fps / engine-alone fps", (g["fps"] / headless["fps"]) if headless else float("nan")]], digits=2))
    write_json(args.json, "gui", tables, {"headless": headless, "gui": gui, "load_before": load_before,
                                           "load_after": load_after})


if __name__ == "__main__":
    main()
