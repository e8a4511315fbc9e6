"""Soak test: the app's tracking worker for a long session; does memory, file descriptors or threads grow?

Runs the app's worker (``app.gui_worker.TrackingThread`` under a Qt event loop, as the window does;
or ``--worker pipeline``: the same ``core.session.build_session`` pipeline with ``with_mesh=True``
in this thread) for ``--minutes`` per phase, recording everything it tracks:

* ``synthetic``: the synthetic source at real-time rate (``synthetic:realtime=1``, a live source:
  frames the tracker cannot keep up with are dropped, as with a webcam);
* ``real``: a real clip from ../shared/data/real looped endlessly at its own frame rate (a live
  source too).

Every ``--sample-s`` seconds it samples the process's resident memory (VmRSS), open file
descriptors, Python threads and OS threads (Linux /proc), and frames done. At the end of each
phase: the table, the growth of RSS after the warm-up (least-squares slope over the phase, as a
percentage of the mean RSS), whether fds and threads stayed flat, whether the recording is
complete and loadable with every frame, and where Python memory grew from half-way through the
warm-up to the end (tracemalloc's top entries; tracemalloc's own bookkeeping is in the RSS then:
``--no-tracemalloc`` for plain figures). Writes
``artifacts/soak/soak.csv``, ``soak.png`` (matplotlib) and, with ``--json``, the numbers.

    .venv/bin/python benchmarks/soak.py                      # 30 min each phase (the target)
    .venv/bin/python benchmarks/soak.py --minutes 5 --phases synthetic --json out/soak.json

Done when: RSS growth under 1 % over 30 minutes, fd and thread counts flat, recordings complete.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, print_load, print_table, write_json  # noqa: E402

import numpy as np  # noqa: E402

ARTIFACTS = REPO / "artifacts" / "soak"
REAL = REPO.parent / "shared" / "data" / "real"


# --- process measurements (Linux /proc) ---------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    py_threads: int
    os_threads: int
    frames: int
    running: bool = True  # taken while the worker ran (not the last one, after it stopped)


@dataclass
class PhaseResult:
    name: str
    source: str
    minutes: float
    samples: list[Sample] = field(default_factory=list)
    frames: int = 0
    recording: str = ""
    recording_frames: int = 0
    recording_complete: bool = False
    top_growth: list[str] = field(default_factory=list)
    error: str = ""
    first_frame_s: float = 0.0  # when the first frame arrived (the session's set-up before it is not soak)

    def after_warmup(self, warmup_s: float) -> list[Sample]:
        running = [s for s in self.samples if s.running and s.frames > 0]
        kept = [s for s in running if s.t_s >= self.first_frame_s + warmup_s]
        return kept if len(kept) >= 2 else running

    def growth(self, warmup_s: float) -> dict:
        kept = self.after_warmup(warmup_s)
        t = np.array([s.t_s for s in kept])
        rss = np.array([s.rss_mb for s in kept])
        slope = float(np.polyfit(t, rss, 1)[0]) if len(kept) >= 2 and np.ptp(t) > 0 else float("nan")
        span_s = float(t[-1] - t[0]) if len(kept) else 0.0
        return {
            "rss_start_mb": float(rss[0]), "rss_end_mb": float(rss[-1]), "rss_mean_mb": float(rss.mean()),
            "rss_slope_mb_per_min": slope * 60,
            "rss_growth_percent": 100 * slope * span_s / float(rss.mean()) if span_s else float("nan"),
            "rss_growth_percent_per_30min": 100 * slope * 1800 / float(rss.mean()),
            "fds": sorted({s.fds for s in kept}), "py_threads": sorted({s.py_threads for s in kept}),
            "os_threads": sorted({s.os_threads for s in kept}), "span_s": span_s,
            "fps": (kept[-1].frames - kept[0].frames) / span_s if span_s else float("nan"),
        }


# --- a real clip, looped as a live source ---------------------------------------------------------------


class LoopedClip:
    """A video file played in a loop at its own frame rate, as a live source (a camera that never ends)."""

    is_live = True

    def __init__(self, path: Path):
        from core.sources import VideoFileSource  # noqa: PLC0415

        probe = VideoFileSource(path)
        self.path, self.size, self.fps = path, probe.size, probe.fps or 25.0
        probe.close()
        self.name = f"{path} (looped)"
        self.num_frames = None
        self._source = None

    def __iter__(self) -> Iterator:
        from core.sources import Frame, VideoFileSource  # noqa: PLC0415

        start, index = time.monotonic(), 0
        while True:
            self._source = VideoFileSource(self.path)
            try:
                for frame in self._source:
                    delay = start + index / self.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    yield Frame(index, index / self.fps, frame.rgb)
                    index += 1
            finally:
                self._source.close()
                self._source = None

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


# --- running one phase ------------------------------------------------------------------------------------


def session_options(source_spec: str):
    from core.session import SessionOptions  # noqa: PLC0415

    return SessionOptions(source=source_spec, model="builtin", regressor="auto")


def run_phase(name: str, source_spec: str, factory, minutes: float, sample_s: float, warmup_s: float,
              worker: str, trace: bool, out_dir: Path) -> PhaseResult:
    result = PhaseResult(name, source_spec, minutes)
    recording = out_dir / f"soak_{name}.fcrec"
    recording.unlink(missing_ok=True)
    result.recording = str(recording)
    runner = _run_gui_worker if worker == "gui" else _run_pipeline
    print(f"\n== {name}: {source_spec}, {minutes:g} min, worker {worker}", flush=True)
    runner(result, source_spec, factory, minutes * 60, sample_s, warmup_s, trace, recording)
    if recording.exists():
        from core.recording import load  # noqa: PLC0415

        rec = load(recording)
        result.recording_frames, result.recording_complete = len(rec), rec.complete
    return result


class _Sampler:
    """Samples the process every ``sample_s``; takes the tracemalloc snapshots around the warm-up."""

    def __init__(self, result: PhaseResult, sample_s: float, warmup_s: float, trace: bool):
        self.result, self.sample_s, self.warmup_s, self.trace = result, sample_s, warmup_s, trace
        self.start = time.monotonic()
        self.next_at = 0.0
        self.frames = 0
        self.baseline = None
        if trace:
            tracemalloc.start(8)

    def due(self) -> bool:
        return time.monotonic() - self.start >= self.next_at

    def frame(self) -> None:
        if self.frames == 0:
            self.result.first_frame_s = time.monotonic() - self.start
            self.next_at = self.result.first_frame_s  # sample from the first frame on, every sample_s
        self.frames += 1

    def sample(self, running: bool = True) -> None:
        t = time.monotonic() - self.start
        s = Sample(round(t, 1), rss_mb(), open_fds(), threading.active_count(), os_threads(), self.frames, running)
        self.result.samples.append(s)
        self.next_at += self.sample_s
        print(f"  t={s.t_s:7.1f}s  rss {s.rss_mb:7.1f} MB  fds {s.fds:3d}  threads {s.py_threads}/{s.os_threads}  "
              f"frames {s.frames}", flush=True)
        # The baseline snapshot is taken half-way through the warm-up: it holds memory of its own for
        # the rest of the run, which must not count as growth.
        if self.trace and self.baseline is None and self.frames and t >= self.result.first_frame_s + self.warmup_s / 2:
            self.baseline = tracemalloc.take_snapshot()

    def finish(self) -> None:
        self.result.frames = self.frames
        if self.trace:
            if self.baseline is not None:
                end = tracemalloc.take_snapshot()
                stats = end.compare_to(self.baseline, "lineno")
                self.result.top_growth = [str(st) for st in stats[:10]]
            tracemalloc.stop()


def _run_pipeline(result, source_spec, factory, seconds, sample_s, warmup_s, trace, recording) -> None:
    from core.recording import RecordingWriter  # noqa: PLC0415
    from core.session import build_session  # noqa: PLC0415

    stop = threading.Event()
    session = build_session(session_options(source_spec), log=lambda m: print(f"  {m}"), stop=stop,
                            source=factory() if factory else None, with_mesh=True)
    sampler = _Sampler(result, sample_s, warmup_s, trace)
    try:
        with RecordingWriter(recording, session.recording_meta(recorded_by="benchmarks/soak.py")) as writer:
            for frame_result in session.pipeline.run():
                writer.write_track_result(frame_result.track)
                sampler.frame()
                if sampler.due():
                    sampler.sample()
                if sampler.frames and time.monotonic() - sampler.start >= result.first_frame_s + seconds:
                    stop.set()
        sampler.sample(running=False)
    finally:
        session.close()
        sampler.finish()


def _run_gui_worker(result, source_spec, factory, seconds, sample_s, warmup_s, trace, recording) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QTimer  # noqa: PLC0415

    from app.gui_worker import TrackingThread  # noqa: PLC0415

    app = QCoreApplication.instance() or QCoreApplication([])
    thread = TrackingThread(session_options(source_spec), source_factory=factory)
    sampler = _Sampler(result, sample_s, warmup_s, trace)
    state = {"latest": None, "recording": False}

    def on_frame(frame_result) -> None:  # the window keeps only the newest result
        state["latest"] = frame_result
        sampler.frame()
        if not state["recording"]:
            state["recording"] = True
            thread.start_recording(recording, overwrite=True)

    def tick() -> None:
        if sampler.frames and sampler.due():
            sampler.sample()
        if sampler.frames and time.monotonic() - sampler.start >= result.first_frame_s + seconds:
            thread.request_stop()

    thread.frameReady.connect(on_frame)
    thread.failed.connect(lambda message: setattr(result, "error", message))
    thread.finished.connect(app.quit)
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(200)
    thread.start()
    app.exec()
    timer.stop()
    thread.shutdown()
    sampler.sample(running=False)
    sampler.finish()


# --- report ------------------------------------------------------------------------------------------------


def report(results: list[PhaseResult], warmup_s: float, out_dir: Path) -> dict:
    rows, summary = [], {}
    for r in results:
        g = r.growth(warmup_s)
        flat_fds, flat_threads = len(g["fds"]) == 1, len(g["os_threads"]) == 1
        ok = (g["rss_growth_percent_per_30min"] < 1.0 and flat_fds and flat_threads and r.recording_complete
              and r.recording_frames > 0 and not r.error)
        rows.append([r.name, f"{g['span_s'] / 60:.1f}", f"{g['fps']:.1f}", f"{g['rss_start_mb']:.0f}",
                     f"{g['rss_end_mb']:.0f}", f"{g['rss_slope_mb_per_min']:+.3f}", f"{g['rss_growth_percent']:+.2f}",
                     f"{g['rss_growth_percent_per_30min']:+.2f}", ",".join(map(str, g["fds"])),
                     ",".join(map(str, g["os_threads"])), f"{r.recording_frames}/{r.frames}"
                     + ("" if r.recording_complete else " INCOMPLETE"), "yes" if ok else "NO"])
        summary[r.name] = {**g, "frames": r.frames, "recording": r.recording, "recording_frames": r.recording_frames,
                           "recording_complete": r.recording_complete, "top_growth": r.top_growth,
                           "error": r.error, "passed": ok,
                           "samples": [s.__dict__ for s in r.samples]}
    table = print_table("soak: growth after the warm-up (least squares over the samples)", ["phase", "min", "fps", "RSS MB start", "end", "MB/min", "growth %", "% per 30 min", "fds",
                 "OS threads", "recorded/tracked", "ok"], rows)
    summary["_table"] = table
    for r in results:
        if r.error:
            print(f"{r.name}: the worker reported: {r.error}")
        if r.top_growth:
            print(f"\n{r.name}: where Python memory grew after the warm-up (tracemalloc, top entries):")
            for line in r.top_growth[:6]:
                print(f"  {line}")
    _write_csv(results, out_dir / "soak.csv")
    _plot(results, warmup_s, out_dir / "soak.png")
    print(f"\ntable: {out_dir / 'soak.csv'}; plot: {out_dir / 'soak.png'}")
    return summary


def _write_csv(results: list[PhaseResult], path: Path) -> None:
    with open(path, "w") as fh:
        fh.write("phase,t_s,rss_mb,fds,py_threads,os_threads,frames\n")
        for r in results:
            for s in r.samples:
                fh.write(f"{r.name},{s.t_s},{s.rss_mb:.2f},{s.fds},{s.py_threads},{s.os_threads},{s.frames}\n")


def _plot(results: list[PhaseResult], warmup_s: float, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for r in results:
        t = np.array([s.t_s for s in r.samples]) / 60
        axes[0].plot(t, [s.rss_mb for s in r.samples], label=r.name)
        axes[1].plot(t, [s.fds for s in r.samples], label=r.name)
        axes[2].plot(t, [s.os_threads for s in r.samples], label=f"{r.name} (OS)")
        axes[2].plot(t, [s.py_threads for s in r.samples], "--", label=f"{r.name} (Python)")
    for ax, label in zip(axes, ("RSS (MB)", "open file descriptors", "threads")):
        ax.set_ylabel(label)
        ax.axvline(warmup_s / 60, color="grey", lw=0.8, ls=":")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle("flamecam soak: the tracking worker over a long session")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="minutes per phase (default 30)")
    p.add_argument("--phases", default="synthetic,real", help="comma-separated: synthetic, real")
    p.add_argument("--clip", default="webcam_400x300_a.mp4", help="the real clip to loop (in ../shared/data/real)")
    p.add_argument("--worker", choices=("gui", "pipeline"), default="gui",
                   help="gui: app.gui_worker.TrackingThread under a Qt event loop (default); pipeline: the engine "
                        "in this thread")
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--warmup-s", type=float, default=60.0, help="growth is measured after this (caches fill)")
    p.add_argument("--no-tracemalloc", action="store_true", help="no tracemalloc (it costs some speed and memory)")
    p.add_argument("--out", type=Path, default=ARTIFACTS)
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print_load("at the start")
    results = []
    for name in [n.strip() for n in args.phases.split(",") if n.strip()]:
        if name == "synthetic":
            spec, factory = "synthetic:realtime=1,fps=30", None
        elif name == "real":
            clip = REAL / args.clip
            if not clip.exists():
                print(f"real: SKIPPED - {clip} not found (../shared/data/real beside the repository)")
                continue
            spec, factory = str(clip), (lambda clip=clip: LoopedClip(clip))
        else:
            p.error(f"unknown phase {name!r}")
        results.append(run_phase(name, spec, factory, args.minutes, args.sample_s, args.warmup_s, args.worker,
                                 not args.no_tracemalloc, args.out))
    if not results:
        return 1
    print_load("at the end")
    summary = report(results, args.warmup_s, args.out)
    table = summary.pop("_table")
    write_json(args.json, "soak", [table], {"minutes": args.minutes, "worker": args.worker, "phases": summary})
    return 0 if all(v["passed"] for v in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
