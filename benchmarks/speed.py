"""Speed of the tracking engine on a 640x480 synthetic stream, side by side with MediaPipe alone.

    python benchmarks/speed.py [--frames 300] [--models builtin,ict,flame] [--model PATH ...] [--json OUT.json]

Frames are rendered first and kept in memory, so the measurement is of the product's pipeline,
not of the renderer (a camera delivers frames for free). In one run, per model:

* ``mediapipe alone``: the landmarker in VIDEO mode over the frames (the reference);
* ``serial``: landmarks then tracker on one thread: ms per stage (the tracker stage includes the
  per-frame regressor when the model has one, as shipped; ``serial, no regressor`` without it);
* ``pipelined``: the engine as shipped (landmarks of the next frames while fitting frame t), as
  fast as it can go: sustained fps;
* ``live 30 fps``: frames arrive at 30 fps (latest wins): fps delivered and latency p50/p95 from
  a frame's arrival to its result;
* ``mediapipe, busy core`` (with the "flame" rows): MediaPipe alone while a separate process
  tracks the FLAME-sized fixture on the other core: the share of MediaPipe's solo rate that sharing
  the machine (caches, memory) with that tracker leaves. It bounds the FLAME engine's ratio while
  its tracker keeps a core busy (a lighter tracker disturbs MediaPipe less); the pipelined rows are
  also given against it.
* ``pipelined, tracking skipped`` (with the "flame" rows): the pipelined engine around a tracker
  that fits the first frame and then only re-stamps its result: MediaPipe, the segmenter's look and
  the threads' hand-over as they are, with an instant tracker. The ceiling of the pipelined rows on
  this machine; the "flame" rows take their own ``mediapipe alone`` right before, on the same frames.

The "flame" rows use a FLAME-sized articulated fixture (5023 vertices, 5 joints, random bases,
built by the tests' fixture code, ``tests/fixtures_flame.py``) with the 478 landmarks embedded on
random vertices (FLAME itself cannot be downloaded here): ``tracker only`` times the tracker's
articulated (LBS) path on exact projections of the fixture; ``pipelined`` runs the whole engine
(MediaPipe on the built-in head's frames, the fixture's tracker, latest-wins threads) as fast as it
can go, and ``pipelined, with mesh`` also poses all 5023 vertices per frame for the viewer, as the
app does. For the pipelined rows the landmark vertices sit where the built-in head has its
landmarks (``flame_sized_fixture(face_shaped=True)``), so MediaPipe's landmarks fit the fixture as
they fit a face model; on the random blob every solver step is refused, as for a lost face. They
time FLAME's size, not its accuracy (the fixture's bases are not a face's).

``--model PATH`` (repeatable) adds the same rows as the built-in model's for a head-model file: a
FLAME ``.pkl`` or a flamecam ``.npz`` (its landmark embedding is computed once and cached, ~30 s).
Given alone, only those models run; add ``--models builtin,flame`` for the others.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402,F401  (quiet MediaPipe logging, repo on sys.path)
import torch  # noqa: E402

from core.embedding import embedding_for  # noqa: E402
from core.landmarks import FaceLandmarker, LandmarkerOptions  # noqa: E402
from core.model_io import load_head_model  # noqa: E402
from core.pipeline import TrackingPipeline  # noqa: E402
from core.session import SessionOptions, load_regressor_prior  # noqa: E402
from core.sources import Frame, FrameSource  # noqa: E402
from core.synthetic import SyntheticOptions, SyntheticSource  # noqa: E402
from core.tracker import Tracker, TrackerOptions  # noqa: E402

ICT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ict_facekit_head.npz"


class MemorySource(FrameSource):
    """Pre-rendered frames; ``paced`` delivers them at their timestamps like a camera."""

    def __init__(self, frames: list[Frame], size, paced: bool = False):
        self.frames, self.size, self.fps, self.num_frames = frames, size, 30.0, len(frames)
        self.is_live, self.name = paced, "memory"

    def __iter__(self):
        start = time.perf_counter()
        for frame in self.frames:
            if self.is_live:
                delay = start + frame.timestamp_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            yield frame


def pct(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def render_frames(model_arg: str, count: int) -> list[Frame]:
    opts = SyntheticOptions(model=model_arg, width=640, height=480, frames=count, background="random", seed=3)
    with SyntheticSource(opts) as source:
        return [Frame(f.index, f.timestamp_s, f.rgb) for f in source]


def mediapipe_alone(frames: list[Frame]) -> dict:
    times = []
    with FaceLandmarker(LandmarkerOptions(running_mode="video")) as lm:
        lm.detect(frames[0].rgb, 0)  # warm-up
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for f in frames:
            t0 = time.perf_counter()
            lm.detect(f.rgb, f.timestamp_ms + 1000)
            times.append((time.perf_counter() - t0) * 1000)
        # CPU seconds per wall second: how many cores MediaPipe alone keeps busy (its own threads), i.e.
        # what a tracker running beside it must share.
        cores = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    return {"landmarks_ms_p50": pct(times, 50), "landmarks_ms_p95": pct(times, 95),
            "fps": 1000.0 / float(np.mean(times)), "cores_busy": cores}


def mediapipe_beside_a_busy_core(frames: list[Frame]) -> dict:
    """MediaPipe alone while another *process* keeps the other core busy with the FLAME-sized
    tracker: what the landmark stage of any two-thread engine can get on this machine (cores that
    share caches and memory, without a shared GIL)."""
    import subprocess  # noqa: PLC0415

    busy = subprocess.Popen([sys.executable, __file__, "--busy-tracker"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        if busy.stdout.readline().strip() != "busy":
            raise SystemExit("speed.py: the busy tracker process did not start")
        return mediapipe_alone(frames)
    finally:
        busy.terminate()
        busy.wait()


def busy_tracker() -> None:
    """Track the FLAME-sized fixture's exact landmarks in a loop until killed or orphaned
    (``--busy-tracker``)."""
    parent = os.getppid()
    torch.set_num_threads(1)
    size = (640, 480)
    head, _, exact = flame_sized_fixture(size)
    src = exact(60)
    landmarks = [src.frame(i)[0] for i in range(60)]
    tracker = Tracker(head, src.emb, size, TrackerOptions())
    print("busy", flush=True)
    for i in range(10 ** 9):
        if i % 100 == 0 and os.getppid() != parent:
            return
        tracker.step(landmarks[i % 60], i / 30, i)


class FitOnceTracker(Tracker):
    """A tracker that fits the first frame with a face, then returns its last result re-stamped
    (no fitting): the engine around it runs as it would around an instant tracker."""

    def step(self, landmarks_px, timestamp_s, frame_index, **kw):
        if self._last_result is None or landmarks_px is None:
            return super().step(landmarks_px, timestamp_s, frame_index, **kw)
        return replace(self._last_result, frame_index=frame_index, timestamp_s=timestamp_s)


def run_pipeline(frames, size, head, emb, pipelined: bool, paced: bool, regressor: bool = True,
                 with_mesh: bool = False, tracker_type: type[Tracker] = Tracker) -> dict:
    """The engine as the app and ``flamecam track`` set it up: with the model's regressor (per-frame
    prior, counted in the tracker stage) when one is found, unless ``regressor`` is False;
    ``with_mesh``: the full mesh posed per frame, as for the app's overlay."""
    tracker = tracker_type(head, emb, size, TrackerOptions())
    prior_fn, _ = load_regressor_prior(head, SessionOptions(regressor="auto" if regressor else "none"),
                                       estimate_focal=True, log=lambda *_: None)
    pipe = TrackingPipeline(MemorySource(frames, size, paced), tracker, prior_fn=prior_fn, pipelined=pipelined,
                            with_mesh=with_mesh)
    t0 = time.perf_counter()
    for _ in pipe.run():
        pass
    wall = time.perf_counter() - t0
    s = pipe.stats
    return {"frames_out": s.frames, "dropped": s.dropped, "fps": s.frames / wall,
            "landmarks_ms_p50": pct(s.landmarks_ms, 50), "tracker_ms_p50": pct(s.tracker_ms, 50),
            "tracker_ms_p95": pct(s.tracker_ms, 95), "tracker_ms_mean": float(np.mean(s.tracker_ms)),
            "total_ms_p50": pct(np.add(s.landmarks_ms, s.tracker_ms), 50),
            "latency_ms_p50": pct(s.latency_ms, 50), "latency_ms_p95": pct(s.latency_ms, 95)}


def flame_sized_fixture(size, face_shaped: bool = False):
    """(head, embedding, ExactLandmarks source) of the FLAME-sized articulated fixture (landmarks on
    random vertices). ``face_shaped``: those vertices moved to where the built-in head has its
    landmarks, with its MediaPipe bias model and landmark weights, so that MediaPipe's landmarks of
    the built-in head's frames fit the fixture as they fit a face model (on the random blob the fit is
    off by centimetres and every solver step is refused: a tracker that has lost the face)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dataclasses import replace  # noqa: PLC0415

    from tests.fixtures_flame import flame_like_arrays, write_flame_pickle  # noqa: PLC0415
    from tests.test_tracker import ExactLandmarks, vertex_embedding  # noqa: PLC0415

    arrays = flame_like_arrays(n_vert=5023, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flame_like.pkl"
        write_flame_pickle(path, arrays)
        head = load_head_model(path)
        emb, picks = vertex_embedding(head)
        if face_shaped:
            builtin = load_head_model(None)
            builtin_emb = embedding_for(builtin)
            vids, weights = builtin_emb.vertex_weights(builtin.faces)
            arrays["v_template"][picks] = np.einsum("lk,lkc->lc", weights, builtin.v_template[vids].astype(np.float64))
            arrays["J"] = arrays["J_regressor"] @ arrays["v_template"]
            write_flame_pickle(path, arrays)
            head = load_head_model(path)
            emb = replace(emb, spread_mm=builtin_emb.spread_mm, offset_m=builtin_emb.offset_m,
                          rho_slope_m2=builtin_emb.rho_slope_m2, rho_ref_per_m=builtin_emb.rho_ref_per_m)
    return head, emb, lambda frames: ExactLandmarks(head, SyntheticOptions(width=size[0], height=size[1],
                                                                           frames=frames), noise_px=0.5)


def tracker_only_articulated(head, exact_source, frames: int, size) -> dict:
    """Tracker ms on the FLAME-sized fixture, from exact projections of its own landmarks."""
    src = exact_source(frames)
    tracker = Tracker(head, src.emb, size, TrackerOptions())
    times = []
    for i in range(frames):
        uv, _ = src.frame(i)
        t0 = time.perf_counter()
        tracker.step(uv, i / 30, i)
        times.append((time.perf_counter() - t0) * 1000)
    times = times[5:]
    return {"tracker_ms_p50": pct(times, 50), "tracker_ms_p95": pct(times, 95), "tracker_ms_mean": float(np.mean(times))}


def model_rows(frames, size, head, emb) -> dict:
    return {"mediapipe_alone": mediapipe_alone(frames),
            "serial, no regressor": run_pipeline(frames, size, head, emb, pipelined=False, paced=False,
                                                  regressor=False),
            "serial": run_pipeline(frames, size, head, emb, pipelined=False, paced=False),
            "pipelined": run_pipeline(frames, size, head, emb, pipelined=True, paced=False),
            "live_30fps": run_pipeline(frames, size, head, emb, pipelined=True, paced=True)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--models", default=None,
                        help="comma-separated: builtin, ict, flame (the FLAME-sized fixture); default all three, "
                             "or none when --model is given")
    parser.add_argument("--model", action="append", default=[], metavar="PATH",
                        help="also a head-model file (FLAME .pkl, flamecam .npz); repeatable")
    parser.add_argument("--json")
    parser.add_argument("--busy-tracker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.busy_tracker:
        busy_tracker()
        return 0
    for path in args.model:
        if not Path(path).is_file():
            parser.error(f"--model {path}: no such file")
    torch.set_num_threads(1)  # the tracker's small problems; MediaPipe keeps its own threads
    size = (640, 480)
    report = {"frames": args.frames, "image": list(size), "results": {}}
    models = [m for m in (args.models if args.models is not None else ("" if args.model else "builtin,ict,flame"))
              .split(",") if m]
    runs = []  # (row name, model argument for load_head_model / the synthetic source)
    for name in models:
        if name == "ict" and not ICT.exists():
            print(f"skipping ict: {ICT} not found")
        elif name in ("builtin", "ict"):
            runs.append((name, "builtin" if name == "builtin" else str(ICT)))
    runs += [(Path(path).name, path) for path in args.model]
    builtin_frames = None
    for name, model_arg in runs:
        try:
            head = load_head_model(None if model_arg == "builtin" else model_arg)
        except Exception as exc:  # noqa: BLE001  (one line for a file that is not a head model)
            raise SystemExit(f"speed.py: cannot load {model_arg}: {exc}") from None
        emb = embedding_for(head)
        print(f"rendering {args.frames} frames of {name} ...", file=sys.stderr, flush=True)
        frames = render_frames(model_arg, args.frames)
        if model_arg == "builtin":
            builtin_frames = frames
        report["results"][name] = model_rows(frames, size, head, emb)
    if "flame" in models:
        if builtin_frames is None:
            print(f"rendering {args.frames} frames of builtin (faces for the FLAME-sized fixture) ...",
                  file=sys.stderr, flush=True)
            builtin_frames = render_frames("builtin", args.frames)
        head, emb, exact = flame_sized_fixture(size)
        face_head, face_emb, _ = flame_sized_fixture(size, face_shaped=True)
        report["results"]["flame-sized fixture"] = {
            "mediapipe_alone": mediapipe_alone(builtin_frames),
            "mediapipe, busy core": mediapipe_beside_a_busy_core(builtin_frames),
            "tracker only": tracker_only_articulated(head, exact, len(builtin_frames), size),
            "pipelined": run_pipeline(builtin_frames, size, face_head, face_emb, pipelined=True, paced=False,
                                      regressor=False),
            "pipelined, with mesh": run_pipeline(builtin_frames, size, face_head, face_emb, pipelined=True,
                                                 paced=False, regressor=False, with_mesh=True),
            "pipelined, tracking skipped": run_pipeline(builtin_frames, size, face_head, face_emb, pipelined=True,
                                                        paced=False, regressor=False, tracker_type=FitOnceTracker)}
    print_table(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def print_table(report: dict) -> None:
    print(f"\n640x480 synthetic stream, {report['frames']} frames in memory; ms are per frame")
    head = (f"{'model':<26} {'run':<28} {'fps':>6} {'landmarks p50':>13} {'tracker p50/p95/mean':>21} "
            f"{'total p50':>9} {'latency p50/p95':>16} {'dropped':>7}")
    print(head)
    print("-" * len(head))
    for model, runs in report["results"].items():
        for run, r in runs.items():
            trk = (f"{r['tracker_ms_p50']:.1f}/{r['tracker_ms_p95']:.1f}/{r['tracker_ms_mean']:.1f}"
                   if "tracker_ms_p50" in r else "-")
            lat = f"{r['latency_ms_p50']:.0f}/{r['latency_ms_p95']:.0f}" if "latency_ms_p50" in r else "-"
            fps = f"{r['fps']:.1f}" if "fps" in r else "-"
            lmk = f"{r['landmarks_ms_p50']:.1f}" if "landmarks_ms_p50" in r else "-"
            tot = f"{r['total_ms_p50']:.1f}" if "total_ms_p50" in r else "-"
            print(f"{model:<26} {run:<28} {fps:>6} {lmk:>13} {trk:>21} {tot:>9} {lat:>16} {r.get('dropped', '-'):>7}")
    for model, runs in report["results"].items():
        if "mediapipe_alone" in runs:
            print(f"{model}: MediaPipe alone keeps {runs['mediapipe_alone']['cores_busy']:.2f} of "
                  f"{os.cpu_count()} cores busy")
        reference = runs.get("mediapipe_alone")  # every model's rows, the fixture's too, take their own
        if "mediapipe, busy core" in runs and reference is not None:
            ratio = runs["mediapipe, busy core"]["fps"] / reference["fps"]
            print(f"{model}: MediaPipe with a tracker process busy on the other core runs at {100 * ratio:.0f}% of "
                  f"its rate alone")
        for run in ("pipelined", "pipelined, with mesh", "pipelined, tracking skipped"):
            if run in runs and reference is not None:
                ratio = runs[run]["fps"] / reference["fps"]
                print(f"{model}: {run} engine runs at {100 * ratio:.0f}% of MediaPipe alone's rate (same run)")
            if run in runs and "mediapipe, busy core" in runs:
                ratio = runs[run]["fps"] / runs["mediapipe, busy core"]["fps"]
                print(f"{model}: {run} engine runs at {100 * ratio:.0f}% of MediaPipe's rate beside a busy core")


if __name__ == "__main__":
    sys.exit(main())
