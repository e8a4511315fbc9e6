"""Live streaming (core.streaming): what sending adds to the tracking thread, and what arrives at 30 fps.

1. Tracking-thread cost. The real engine (MediaPipe in its thread, the tracker in this one; built-in
   head, auto focal, regressor) runs over the same pre-rendered synthetic frames once per condition
   and round: no streaming, VMC to a live receiver, VMC + flamecam OSC to live receivers, VMC to a
   port where nothing listens (ICMP port unreachable). Per frame: the ``Streamer.send`` call on the
   tracking thread (the direct cost), and the tracker's own time (``PipelineStats.tracker_ms``),
   whose change with streaming on is the indirect cost of the sender thread holding the GIL. The
   frames run as fast as the engine goes (the worst case for contention), not at 30 fps.
2. Receive rate at 30 fps. The frame results of (1) re-sent at 30 fps for ``--seconds`` to python-osc
   servers on loopback (``ThreadingOSCUDPServer``, in a child process as real receivers are): frames
   skipped by latest-wins (the sender was not ready before the next one came), sent, received per
   second, lost in transit, and the latency from ``send`` to the receiver's handler.

    python benchmarks/streaming.py [--frames 90] [--rounds 2] [--seconds 10] [--json OUT.json]

A 2-core machine shared with other jobs makes the tracker times noisy: the load average is printed;
compare the "added" column with the spread between rounds of the baseline.
"""
from __future__ import annotations

import threading
import time

import _common  # noqa: F401  (repository root on sys.path)
import numpy as np
from _common import parser, print_load, print_table, write_json

CONDITIONS = ("off", "vmc", "vmc+flamecam", "vmc, dead port")


class MemorySource:
    """Pre-rendered frames as a file-like source (never drops; no rendering cost while measuring)."""

    is_live = False
    frames_on_demand = False

    def __init__(self, frames, size, fps):
        self.frames, self.size, self.fps = frames, size, fps
        self.num_frames = len(frames)
        self.name = "synthetic (pre-rendered)"

    def __iter__(self):
        yield from self.frames

    def close(self):
        pass


def receiver_process(conn) -> None:
    """Child process: two python-osc UDP servers on loopback (VMC and flamecam) recording when each frame
    arrived (time.monotonic, system-wide on Linux). Commands by pipe: "dump" (send and clear), "stop"."""
    from pythonosc.dispatcher import Dispatcher  # noqa: PLC0415
    from pythonosc.osc_server import ThreadingOSCUDPServer  # noqa: PLC0415

    lock = threading.Lock()
    arrivals = {"vmc": [], "flamecam": []}

    def recorder(name, position):
        def handler(_address, *values):
            now = time.monotonic()
            with lock:
                arrivals[name].append((now, float(values[position])))
        return handler

    servers, threads = {}, []
    for name, address, position in (("vmc", "/VMC/Ext/T", 0), ("flamecam", "/flamecam/frame", 1)):
        dispatcher = Dispatcher()
        dispatcher.map(address, recorder(name, position))
        servers[name] = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        threads.append(threading.Thread(target=servers[name].serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True))
        threads[-1].start()
    conn.send({name: server.server_address[1] for name, server in servers.items()})
    while conn.recv() != "stop":
        with lock:
            conn.send({k: list(v) for k, v in arrivals.items()})
            for v in arrivals.values():
                v.clear()
    for server in servers.values():
        server.shutdown()
        server.server_close()


class Receivers:
    """The receiving apps, in their own process as real receivers are (their parsing never takes our GIL)."""

    def __init__(self):
        import multiprocessing  # noqa: PLC0415

        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=receiver_process, args=(child,), daemon=True)
        self.process.start()
        self.ports = self.conn.recv()

    def dump(self) -> dict[str, list[tuple[float, float]]]:
        self.conn.send("dump")
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join(10)


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def targets_for(condition: str, receivers: Receivers):
    from core.streaming import StreamTarget  # noqa: PLC0415

    if condition == "off":
        return []
    if condition == "vmc, dead port":
        return [StreamTarget.parse(f"vmc://127.0.0.1:{free_port()}")]
    urls = [f"vmc://127.0.0.1:{receivers.ports['vmc']}"]
    if condition == "vmc+flamecam":
        urls.append(f"osc://127.0.0.1:{receivers.ports['flamecam']}")
    return [StreamTarget.parse(u) for u in urls]


def track_once(session_args: dict, condition: str, receivers: Receivers) -> dict:
    from core.session import build_session  # noqa: PLC0415
    from core.streaming import StreamModel, Streamer  # noqa: PLC0415

    session = build_session(session_args["options"], log=lambda *_: None, source=session_args["source"])
    pipeline = session.pipeline
    targets = targets_for(condition, receivers)
    streamer = Streamer(targets, StreamModel.from_head(session.head)) if targets else None
    send_s, results = [], []
    hand_over = streamer.send if streamer is not None else (lambda _result: None)  # off: the timing floor
    try:
        for result in pipeline.run():
            t0 = time.perf_counter()
            hand_over(result)
            send_s.append(time.perf_counter() - t0)
            results.append(result)
    finally:
        if streamer is not None:
            streamer.close()
    stats = pipeline.stats
    out = {"tracker_ms": np.median(stats.tracker_ms), "send_us": np.array(send_s) * 1e6, "fps": stats.fps,
           "results": results, "head": session.head}
    if streamer is not None:
        status = streamer.status
        out["status"] = [t.describe() for t in status.targets]
        out["refused"] = sum(t.refused for t in status.targets)
        out["sender_cpu_ms"] = 1000 * status.sender_cpu_s / max(status.processed, 1)
        out["skipped"] = status.skipped
    receivers.dump()  # clear
    return out


def replay_at(results: list, head, fps: float, seconds: float, receivers: Receivers) -> list[list]:
    """Re-send ``results`` (cycled, frame index = position) at ``fps`` for ``seconds``; per-target receive stats."""
    from dataclasses import replace  # noqa: PLC0415

    from core.streaming import StreamModel, Streamer, StreamTarget  # noqa: PLC0415

    targets = [StreamTarget.parse(f"vmc://127.0.0.1:{receivers.ports['vmc']}"),
               StreamTarget.parse(f"osc://127.0.0.1:{receivers.ports['flamecam']}")]
    receivers.dump()
    count = int(round(fps * seconds))
    sent_at, send_us = np.empty(count), np.empty(count)
    keys_vmc = (np.arange(count) / fps).astype(np.float32)  # /VMC/Ext/T carries the frame time as float32
    start = time.monotonic()
    with Streamer(targets, StreamModel.from_head(head)) as streamer:
        for i in range(count):
            delay = start + i / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            base = results[i % len(results)]
            # each frame its own index and time, so that arrivals can be matched to sends
            frame = replace(base, track=replace(base.track, frame_index=i, timestamp_s=i / fps))
            sent_at[i] = time.monotonic()
            t0 = time.perf_counter()
            streamer.send(frame)
            send_us[i] = (time.perf_counter() - t0) * 1e6
        time.sleep(0.3)
    status = streamer.status
    arrivals = receivers.dump()
    rows = []
    for target, name in zip(status.targets, ("vmc", "flamecam")):
        times = np.array([t for t, _ in arrivals[name]])
        keys = np.array([k for _, k in arrivals[name]])
        index = (np.searchsorted(keys_vmc, keys.astype(np.float32)) if name == "vmc" else keys).astype(int)
        index = np.clip(index, 0, count - 1)
        latency_ms = (times - sent_at[index]) * 1000 if len(index) else np.array([np.nan])
        span = times.max() - times.min() if len(times) > 1 else np.nan
        received = len(set(index.tolist()))
        rows.append([name, count, status.skipped, target.frames, received,
                     (len(times) - 1) / span if span == span else np.nan, target.frames - received,
                     float(np.median(latency_ms)), float(np.percentile(latency_ms, 95)), float(latency_ms.max()),
                     float(np.median(send_us)), float(np.percentile(send_us, 95)), float(send_us.max())])
    return rows


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=90, help="pre-rendered frames per tracking run")
    p.add_argument("--rounds", type=int, default=2, help="runs of each condition (order rotated per round)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the 30 fps replay")
    p.add_argument("--fps", type=float, default=30.0)
    args = p.parse_args()

    from core.session import SessionOptions  # noqa: PLC0415
    from core.synthetic import SyntheticOptions, SyntheticSource  # noqa: PLC0415

    load_before = print_load("before")
    synthetic = SyntheticSource(SyntheticOptions(width=320, height=240, frames=args.frames, still=0.2))
    frames = list(synthetic)
    synthetic.close()
    session_args = {"source": MemorySource(frames, (320, 240), 30.0),
                    "options": SessionOptions(source="synthetic", model="builtin", auto_profile=False,
                                              use_metadata=False)}
    receivers = Receivers()
    try:
        track_once(session_args, "off", receivers)  # warm-up: MediaPipe, torch, regressor
        runs: dict[str, list[dict]] = {c: [] for c in CONDITIONS}
        for r in range(args.rounds):
            order = CONDITIONS[r % len(CONDITIONS):] + CONDITIONS[:r % len(CONDITIONS)]
            for condition in order:
                runs[condition].append(track_once(session_args, condition, receivers))
        base = float(np.median([run["tracker_ms"] for run in runs["off"]]))
        floor_us = float(np.median(np.concatenate([run["send_us"] for run in runs["off"]])))
        rows = []
        for condition, done in runs.items():
            tracker_ms = [run["tracker_ms"] for run in done]
            hand_over = np.concatenate([run["send_us"] for run in done])
            sender = [run["sender_cpu_ms"] for run in done if "sender_cpu_ms" in run]
            added = float(np.median(tracker_ms)) - base + (float(np.median(hand_over)) - floor_us) / 1000
            rows.append([condition, float(np.median(tracker_ms)), " / ".join(f"{t:.2f}" for t in tracker_ms),
                         float(np.median(hand_over)), float(np.percentile(hand_over, 95)), float(np.max(hand_over)),
                         float(np.mean(sender)) if sender else np.nan, added,
                         float(np.median([run["fps"] for run in done])), sum(run.get("refused", 0) for run in done)])
        cost = print_table(
            f"Tracking thread, per frame ({args.frames} frames x {args.rounds} rounds, built-in head, 320x240; "
            "'off' times a no-op call in send()'s place)",
            ["condition", "tracker ms p50", "per round", "send() us p50", "p95", "max", "sender CPU ms/frame",
             "added ms", "engine fps", "refused"], rows)
        replay = print_table(
            f"Receive rate: results re-sent at {args.fps:.0f} fps for {args.seconds:.0f} s to python-osc servers "
            "(both targets at once)",
            ["target", "frames", "skipped (newer came)", "sent", "received", "rate fps", "lost in transit",
             "latency ms p50", "p95", "max", "send() us p50", "p95", "max"],
            replay_at(runs["vmc"][0]["results"], runs["vmc"][0]["head"], args.fps, args.seconds, receivers))
    finally:
        receivers.close()
    load_after = print_load("after")
    print("\nadded ms = (tracker ms p50 with streaming - without) + (send() p50 - the no-op's p50). The first term "
          "is noise of the order of the spread between rounds on a loaded machine; the sender thread's CPU per "
          "frame bounds what it can take from the tracking thread (it holds the GIL for at most that long).")
    write_json(args.json, "streaming", [cost, replay], {"load_before": load_before, "load_after": load_after})


if __name__ == "__main__":
    main()
