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
* frames shown: distinct tracked frames the overlay painted, per second;
* event-loop gaps: intervals between ticks of a 5 ms timer; a gap is how long the GUI thread
  could not react (input, paints); stalls are gaps over 50 ms, reported per minute;
* the GUI thread's work, timed one by one: overlay frames (the GL window's repaints), window
  repaints (every widget repaint incl. the plots' paint and the flush to the display), the plots'
  own paint and their data refreshes; and for each stall, which of them overlapped it ("none":
  the machine's load, the GIL or work not timed here);
* CPU use of the process and the load average (other work on the machine slows everything).

Side by side in the same run: the headless engine set up exactly as the app sets it up (source
process, tracker threads, ``with_mesh=True``) without the UI, for the same time, so the UI's cost
shows as a ratio (``--rounds N`` alternates engine and app N times, so a change in the machine's
load hits both); and the same window idle (no tracking) for a few seconds, whose event-loop gaps
show what the machine's load alone does to the UI. ``--no-plots`` hides the plots dock (their cost
by difference).

    python benchmarks/gui.py [--seconds 20] [--warmup 3] [--overlay shaded|full] [--rounds 1] [--no-plots]
                             [--no-headless] [--json OUT.json]

``--playback [VIDEO]`` measures playing a file instead (default VIDEO: a 640x480, 25 fps render of
the synthetic head, made in a temporary folder): rate adherence at the file's own frame rate
(results per second, and how fast the frames shown advance through the video against its clock),
the engine's rate with "as fast as possible", and seek latency: from a seek as the timeline gives
it when the slider is released to the sought frame painted with its overlay (and to its result's
arrival), over ``--seeks`` random seeks while paused (every fourth after a quick scrub).

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


def time_updates(target, log: list, label: str):
    """Time every repaint ``target`` (a QWindow or top-level widget) handles, paint and flush to the
    display, into ``log`` as (start s, ms, label). Returns the event filter (keep it referenced)."""
    from PySide6.QtCore import QEvent, QObject  # noqa: PLC0415

    class UpdateTimer(QObject):
        def eventFilter(self, obj, event) -> bool:  # noqa: N802
            if obj is target and event.type() == QEvent.Type.UpdateRequest:
                t0 = time.perf_counter()
                obj.event(event)  # handled here, timed, and not delivered a second time
                log.append((t0, (time.perf_counter() - t0) * 1000, label))
                return True
            return False

    timer = UpdateTimer()
    target.installEventFilter(timer)
    return timer


def time_plot_paints(log: list) -> None:
    """Time each paint of the plots' graphics view (pyqtgraph's GraphicsView.paintEvent) into ``log``."""
    import pyqtgraph as pg  # noqa: PLC0415

    paint = pg.GraphicsView.paintEvent

    def timed(view, event):
        t0 = time.perf_counter()
        paint(view, event)
        log.append((t0, (time.perf_counter() - t0) * 1000, "plot paint"))

    pg.GraphicsView.paintEvent = timed


def time_garbage_collections(log: list) -> None:
    """Time each of Python's garbage collections (any thread; it stops every thread) into ``log``."""
    import gc  # noqa: PLC0415

    started: dict[str, float] = {}

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            t0 = started.pop("t")
            log.append((t0, (time.perf_counter() - t0) * 1000, f"garbage collection (gen {info['generation']})"))

    gc.callbacks.append(callback)


def stall_causes(stalls: list[tuple[float, float]], work: list[tuple[float, float, str]]) -> dict[str, int]:
    """{label: how many stalls (start s, end s) the GUI-thread work of that label overlapped}, plus
    "none" for stalls that overlapped no timed work."""
    counts: dict[str, int] = {}
    for g0, g1 in stalls:
        labels = {label for t0, ms, label in work if t0 < g1 and t0 + ms / 1000 > g0}
        for label in labels or {"none"}:
            counts[label] = counts.get(label, 0) + 1
    return counts


def run_gui(seconds: float, warmup: float, overlay: str, plots: bool = True) -> dict:
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
    window.plots_dock.setVisible(plots)
    window.show()
    work: list[tuple[float, float, str]] = []  # the GUI thread's work: (start s, ms, what)
    timers = [time_updates(window, work, "window repaint")]
    if window.view.gl_window is not None:
        timers.append(time_updates(window.view.gl_window, work, "overlay frame"))
    time_plot_paints(work)
    time_garbage_collections(work)
    out: dict = {"overlay": overlay, "plots": plots}
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
            out["idle"] = {"tick_gap_ms": stats(gaps), "gaps_over_50ms": int((gaps > 50).sum()),
                           "stalls_per_min": 60 * int((gaps > 50).sum()) / max(1e-9, now - phase["t"] - 0.2)}
            controller.start()
            phase.update(name="starting", t=now)
        elif phase["name"] == "starting" and arrivals:
            phase.update(name="warmup", t=now)
        elif phase["name"] == "warmup" and now - phase["t"] >= warmup:
            marks.update(start=now, paints=len(window.view.paint_ms), frames=len(window.view.frame_ms),
                         shown=len(window.view.painted_frames), cpu=time.process_time())
            phase.update(name="measuring", t=now)
        elif phase["name"] == "measuring" and now - phase["t"] >= seconds:
            marks.update(end=now, paints=(marks["paints"], len(window.view.paint_ms)),
                         frames=(marks["frames"], len(window.view.frame_ms)), cpu=time.process_time() - marks["cpu"],
                         shown=(marks["shown"], len(window.view.painted_frames)))
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
    s0, s1 = marks["shown"]
    shown = set(list(window.view.painted_frames)[s0:s1])
    stalls = [(a, b) for a, b in zip(tick_times[:-1], tick_times[1:]) if (b - a) * 1000 > 50]
    work += [(t, ms, "plot refresh") for t, ms in window.plots.redraw_log]
    by_label: dict[str, list[float]] = {}
    for t, ms, label in work:
        if t0 <= t <= t1:
            by_label.setdefault(label, []).append(ms)
    out.update(work_ms={label: stats(v) for label, v in by_label.items()},
               work_per_s={label: len(v) / (t1 - t0) for label, v in by_label.items()},
               stall_causes=stall_causes(stalls, work), stalls_per_min=60 * len(stalls) / (t1 - t0),
               shown_fps=len(shown) / (t1 - t0), seconds_measured=t1 - t0)
    out.update(
        fps=(len(inside) - 1) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else float("nan"),
        frames=len(inside), latency_ms=stats([lat for _, lat, _ in inside]), paint_ms=stats(paints),
        repaint_ms=stats(repaints),
        paints_per_s=len(paints) / (t1 - t0), tick_gap_ms=stats(gaps), gaps_over_50ms=int((gaps > 50).sum()),
        cpu_percent=100 * marks["cpu"] / (t1 - t0), gl=window.view.gl_info,
        skipped_percent=skipped_percent([i for _, _, i in inside]))
    return out


# --- playing a file (--playback) ---------------------------------------------------------------------


def run_playback(video: str, seconds: float, warmup: float, seeks: int) -> dict:
    """The app under a display on ``video``: rate adherence, fast-mode rate, seek latency."""
    from PySide6.QtCore import QSettings, QTimer  # noqa: PLC0415

    from app.gui import build, create_application  # noqa: PLC0415
    from core.session import SessionOptions  # noqa: PLC0415

    tmp = tempfile.mkdtemp(prefix="flamecam-bench-playback-")
    app = create_application()
    settings = QSettings(os.path.join(tmp, "settings.ini"), QSettings.Format.IniFormat)
    window, controller = build(SessionOptions(device="cpu"), source=video, settings=settings, model="builtin",
                               camera_mode="perspective", focal="auto")
    window.resize(1280, 980)
    window.show()
    playback = controller.transport_control
    out: dict = {"video": video}
    arrivals: list[tuple[float, int]] = []  # (time, frame index)
    state = {"phase": "starting", "t": time.perf_counter(), "seeks": [], "target": None}
    rng = np.random.default_rng(0)

    def on_session(_info) -> None:
        controller.worker.frameReady.connect(lambda r: arrivals.append((time.perf_counter(), r.frame.index)))

    controller.sessionStarted.connect(on_session)

    def rate_since(t0: float) -> tuple[float, float, int]:
        """(results per second, video frames advanced per second, results) of the arrivals after t0."""
        got = [(t, i) for t, i in arrivals if t >= t0]
        if len(got) < 2:
            return float("nan"), float("nan"), len(got)
        span = got[-1][0] - got[0][0]
        return (len(got) - 1) / span, (got[-1][1] - got[0][1]) / span, len(got)

    def painted(index: int) -> bool:
        view = window.view
        return bool(view.painted_frames) and view.painted_frames[-1] == index and not view._scene_dirty  # noqa: SLF001

    def finish() -> None:
        state["phase"] = "done"
        window.close()
        app.quit()

    def next_seek(now: float) -> None:
        n = window.timeline.strip.num_frames
        if len(state["seeks"]) >= seeks:
            finish()
            return
        if len(state["seeks"]) % 4 == 3:  # every fourth: a quick scrub, then the release
            start = int(rng.integers(0, n))
            for i in np.linspace(start, (start + n // 2) % n, 12).astype(int):
                window.timeline.strip.scrubbed.emit(int(i))
                app.processEvents()
            target = int(rng.integers(0, n))
            kind = "after a scrub"
        else:
            target, kind = int(rng.integers(0, n)), "click"
        if target == controller.latest.frame.index:
            target = (target + n // 3) % n
        state.update(target=target, kind=kind, t=time.perf_counter(), arrived=None)
        window.timeline.strip.seekRequested.emit(target)  # what releasing the slider emits

    def step() -> None:
        now = time.perf_counter()
        phase = state["phase"]
        if window.banner.level == "error" and "OpenGL" not in window.banner.text and phase != "done":
            out["error"] = window.banner.text
            finish()
        elif phase == "starting" and arrivals:
            state.update(phase="warmup", t=now)
        elif phase == "starting" and now - state["t"] > 300:
            out["error"] = "no frame in 300 s"
            finish()
        elif phase == "warmup" and now - state["t"] >= warmup:
            state.update(phase="realtime", t=now)
        elif phase == "realtime" and now - state["t"] >= seconds:
            fps = controller.session.source_fps
            results, advance, count = rate_since(state["t"])
            out["realtime"] = {"file_fps": fps, "results_per_s": results, "video_frames_per_s": advance,
                               "clock_ratio": advance / fps, "results": count,
                               "skipped_percent": skipped_percent([i for t, i in arrivals if t >= state["t"]])}
            playback.set_realtime(False)
            playback.seek(0)  # the file may have ended
            playback.play()
            state.update(phase="fast", t=now)
        elif phase == "fast" and now - state["t"] >= min(seconds, 8.0):
            results, _, count = rate_since(state["t"] + 1.0)
            out["fast"] = {"results_per_s": results, "results": count}
            playback.set_realtime(True)
            playback.pause()
            state.update(phase="pausing", t=now)
        elif (phase == "pausing" and controller.transport.state().idle
              and controller.latest.frame.index == controller.transport.state().position):
            state.update(phase="seeking")
            next_seek(now)
        elif phase == "seeking":
            target = state["target"]
            if state["arrived"] is None and controller.latest.frame.index == target:
                state["arrived"] = now
            if painted(target):
                state["seeks"].append({"target": target, "kind": state["kind"],
                                       "painted_ms": (now - state["t"]) * 1000,
                                       "result_ms": ((state["arrived"] or now) - state["t"]) * 1000})
                state.update(phase="settle", t=now)
            elif now - state["t"] > 30:
                out["error"] = f"seek to {target} not shown in 30 s"
                finish()
        elif phase == "settle" and now - state["t"] >= 0.3:
            state["phase"] = "seeking"
            next_seek(now)

    QTimer.singleShot(0, controller.start)
    poll = QTimer()
    poll.timeout.connect(step)
    poll.start(2)  # fine-grained: the seek latency is read off this poll
    app.exec()
    poll.stop()
    controller.shutdown()
    out["seeks"] = state["seeks"]
    out["gl"] = window.view.gl_info
    return out


def playback_main(args) -> None:
    """``--playback``: run :func:`run_playback` in a child process on Xvfb and print its tables."""
    display = None
    if not args.use_display:
        from app.virtual_display import VirtualDisplay  # noqa: PLC0415

        display = VirtualDisplay(1280, 1024).start()
    try:
        load_before = print_load("before")
        with tempfile.TemporaryDirectory() as tmp:
            video = args.playback
            if video == "synthetic":
                from app.cli import main as flamecam  # noqa: PLC0415

                video = str(Path(tmp) / "head25.mp4")
                flamecam(["render", "--source", "synthetic:fps=25", "-o", video, "--frames", "300", "--quiet"])
            out = Path(tmp) / "playback.json"
            env = display.env() if display is not None else dict(os.environ)
            proc = subprocess.run([sys.executable, __file__, "--playback-child", str(out), "--playback", video,
                                   "--seconds", str(args.seconds), "--warmup", str(args.warmup),
                                   "--seeks", str(args.seeks)], env=env)
            res = json.loads(out.read_text()) if out.exists() else {"error": f"the app exited with {proc.returncode}"}
        load_after = print_load("after")
    finally:
        if display is not None:
            display.stop()
    if "error" in res:
        raise SystemExit(f"the playback run failed: {res['error']}")
    rt, fast = res["realtime"], res["fast"]
    tables = [print_table(f"Playing {Path(res['video']).name} ({rt['file_fps']:.2f} fps) for {args.seconds:.0f} s",
                          ["mode", "results / s", "video frames / s", "clock ratio", "skipped %"],
                          [["the file's own rate", rt["results_per_s"], rt["video_frames_per_s"], rt["clock_ratio"],
                            rt["skipped_percent"]],
                           ["as fast as possible", fast["results_per_s"], fast["results_per_s"], "", 0.0]], digits=2)]
    rows = []
    for kind in ("click", "after a scrub"):
        picked = [x for x in res["seeks"] if x["kind"] == kind]
        if picked:
            painted, result = stats([x["painted_ms"] for x in picked]), stats([x["result_ms"] for x in picked])
            rows.append([kind, len(picked), result["p50"], painted["p50"], painted["p95"], painted["max"]])
    tables.append(print_table("Seek latency, paused: from the slider's release (seekRequested) to the frame",
                              ["seek", "n", "result p50 ms", "painted p50 ms", "painted p95 ms", "painted max ms"],
                              rows, digits=1))
    write_json(args.json, "gui_playback", tables, {"playback": res, "load_before": load_before,
                                                    "load_after": load_after})


def run_app(args, env: dict) -> dict:
    """The app in a child process on ``env``'s display; its measurements."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gui.json"
        cmd = [sys.executable, __file__, "--child", str(out), "--seconds", str(args.seconds), "--warmup",
               str(args.warmup), "--overlay", args.overlay] + (["--no-plots"] if args.no_plots else [])
        proc = subprocess.run(cmd, env=env)
        return json.loads(out.read_text()) if out.exists() else {"error": f"the app exited with {proc.returncode}"}


def mean_of(runs: list[dict], *keys) -> float:
    values = []
    for run in runs:
        value = run
        for key in keys:
            value = value[key]
        values.append(value)
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="measurement time per run (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the first frame before measuring")
    p.add_argument("--overlay", choices=("shaded", "full"), default="shaded")
    p.add_argument("--rounds", type=int, default=1, help="engine / app runs, alternated (default 1)")
    p.add_argument("--no-plots", action="store_true", help="hide the plots dock")
    p.add_argument("--no-headless", action="store_true", help="skip the headless engine baseline")
    p.add_argument("--use-display", action="store_true", help="use $DISPLAY instead of starting Xvfb")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: run the app, write JSON here
    p.add_argument("--playback", nargs="?", const="synthetic", metavar="VIDEO",
                   help="measure playing a file instead: rate adherence and seek latency (see above)")
    p.add_argument("--seeks", type=int, default=20, help="--playback: seeks to time (default 20)")
    p.add_argument("--playback-child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("FLAMECAM_NO_DOWNLOAD", "1")
    if args.playback_child is not None:
        args.playback_child.write_text(json.dumps(run_playback(args.playback, args.seconds, args.warmup, args.seeks),
                                                  default=float))
        return
    if args.playback:
        playback_main(args)
        return
    if args.child is not None:
        result = run_gui(args.seconds, args.warmup, args.overlay, plots=not args.no_plots)
        args.child.write_text(json.dumps(result, default=float))
        return
    display = None
    if not args.use_display:
        from app.virtual_display import VirtualDisplay  # noqa: PLC0415

        display = VirtualDisplay(1280, 1024).start()
    engines, apps = [], []
    try:
        load_before = print_load("before")
        env = display.env() if display is not None else dict(os.environ)
        for _ in range(max(1, args.rounds)):
            if not args.no_headless:
                engines.append(run_headless(args.seconds, args.warmup))
            apps.append(run_app(args, env))
            if "error" in apps[-1]:
                break
        load_after = print_load("after")
    finally:
        if display is not None:
            display.stop()
    failed = [a["error"] for a in apps if "error" in a]
    if failed:
        raise SystemExit(f"the GUI run failed: {failed[0]}")
    g = apps[-1]
    print(f"\nOpenGL: {g['gl'].get('GL_RENDERER')} ({g['gl'].get('GL_VERSION')}), MSAA samples "
          f"{g['gl'].get('samples')}; {'Xvfb' if display else 'display'} {env.get('DISPLAY')}; "
          f"plots {'hidden' if args.no_plots else 'shown'}")
    rows = []
    for i in range(len(apps)):
        tag = f" #{i + 1}" if len(apps) > 1 else ""
        if engines:
            e = engines[i]
            rows.append([f"engine alone (no UI){tag}", e["fps"], "", e["latency_ms"]["p50"], e["latency_ms"]["p95"],
                         e["cpu_percent"], e["skipped_percent"], "", "", ""])
        a = apps[i]
        rows.append([f"app, overlay {args.overlay}{tag}", a["fps"], a["shown_fps"], a["latency_ms"]["p50"],
                     a["latency_ms"]["p95"], a["cpu_percent"], a["skipped_percent"], a["stalls_per_min"],
                     a["tick_gap_ms"]["p99"], a["tick_gap_ms"]["max"]])
        rows.append([f"app idle (no tracking){tag}", "", "", "", "", "", "", a["idle"]["stalls_per_min"],
                     a["idle"]["tick_gap_ms"]["p99"], a["idle"]["tick_gap_ms"]["max"]])
    tables = [print_table(
        f"Synthetic 640x480 source at 30 fps, {args.seconds:.0f} s after {args.warmup:.0f} s warm-up per run",
        ["run", "fps", "frames shown/s", "latency p50 ms", "latency p95 ms", "CPU %", "skipped %",
         "stalls >50 ms /min", "loop gap p99 ms", "loop gap max ms"], rows, digits=1)]
    work_rows = []
    for label in ("overlay frame", "window repaint", "plot paint", "plot refresh", "garbage collection (gen 0)",
                  "garbage collection (gen 1)", "garbage collection (gen 2)"):
        if label in g["work_ms"]:
            w = g["work_ms"][label]
            work_rows.append([label, g["work_per_s"][label], w["p50"], w["p95"], w["max"],
                              g["stall_causes"].get(label, 0)])
    work_rows.append(["(none of these)", "", "", "", "", g["stall_causes"].get("none", 0)])
    stalls = int(round(g["stalls_per_min"] * g["seconds_measured"] / 60))
    tables.append(print_table(f"GUI-thread work while tracking (last app run; {stalls} stalls > 50 ms in "
                              f"{g['seconds_measured']:.0f} s)",
                              ["work", "per s", "p50 ms", "p95 ms", "max ms", "stalls overlapped"], work_rows, digits=1))
    summary = [["app fps (mean of runs)", mean_of(apps, "fps")],
               ["frames shown per s (mean of runs)", mean_of(apps, "shown_fps")],
               ["stalls > 50 ms per minute while tracking (mean of runs)", mean_of(apps, "stalls_per_min")],
               ["stalls > 50 ms per minute, idle window (mean of runs)", mean_of(apps, "idle", "stalls_per_min")]]
    if engines:
        summary[:0] = [["engine-alone fps (mean of runs)", mean_of(engines, "fps")],
                       ["app fps / engine-alone fps (same runs)", mean_of(apps, "fps") / mean_of(engines, "fps")]]
    tables.append(print_table("Summary", ["measure", "value"], summary, digits=2))
    write_json(args.json, "gui", tables, {"headless": engines, "gui": apps, "load_before": load_before,
                                           "load_after": load_after})


if __name__ == "__main__":
    main()
