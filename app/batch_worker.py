"""The per-file task of ``flamecam batch`` and the local pool of worker processes that runs it.

:func:`track_file` tracks one input into ``OUT.fcrec.partial`` with the same session builder and
track loop as ``flamecam track`` (``core.session.build_session``, ``app.cmd_track.record_run``) and
renames it to ``OUT.fcrec`` only when the recording is complete, so a crash or kill never leaves a
file that looks finished. It never raises for a bad input: it returns the report fields, with the
error as one sentence. Models, embeddings and the regressor stay loaded in the process between
files (:data:`MODEL_CACHE`; ``core.regressor`` keeps its own), so only the first file of a worker
pays for them. The same function runs in :class:`LocalPool` workers and as a Ray task
(``app.batch_ray``).

Messages to the driver, through whatever ``send`` the runner gives: ``("started", index, where)``,
``("progress", index, frames_so_far)`` and, from the local pool, ``("done", index, fields)``.
"""
from __future__ import annotations

import datetime
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MODEL_CACHE: dict = {}  # this process's loaded head models and embeddings (core.session.load_model_and_embedding)
PROGRESS_INTERVAL_S = 0.5
# Fault injection for the tests of worker loss: in a folder named by this variable, the first attempt at
# each input leaves a marker file and kills its own process after a few frames (a lost worker or node).
FAULT_ENV = "FLAMECAM_BATCH_FAULT_DIR"


@dataclass(frozen=True)
class FileJob:
    """One input to track (picklable: sent to worker processes and Ray tasks)."""

    index: int
    input: str
    output: str
    options: object  # core.session.SessionOptions for this input
    refine: bool
    batch_meta: dict  # RecordingMeta.extra["batch"]: key, input identity, options, version
    torch_threads: int = 1


def _fault_once(job: FileJob, frames: int) -> None:
    folder = os.environ.get(FAULT_ENV)
    if not folder or frames != 3:
        return
    import hashlib  # noqa: PLC0415

    marker = Path(folder) / (hashlib.sha256(job.input.encode()).hexdigest()[:16] + ".killed")
    if not marker.exists():
        marker.write_text(f"{job.input}\n{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def track_file(job: FileJob, send: Callable[[tuple], None] = lambda message: None) -> dict:
    """Track ``job.input`` into ``job.output``; the report fields (``status`` done | failed, ...)."""
    from app.cmd_track import record_run, write_refined  # noqa: PLC0415
    from core.batch import partial_path, recording_stats  # noqa: PLC0415
    from core.recording import RecordingError  # noqa: PLC0415
    from core.recording import load as load_recording  # noqa: PLC0415
    from core.recording.writer import fsync_dir  # noqa: PLC0415
    from core.session import SessionError, build_session  # noqa: PLC0415
    from core.sources import SourceError  # noqa: PLC0415

    started = time.perf_counter()
    started_utc = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    worker = f"{socket.gethostname()}:{os.getpid()}"
    send(("started", job.index, worker))
    os.environ["FLAMECAM_TORCH_THREADS"] = str(job.torch_threads)  # read by build_session
    out = Path(job.output)
    tmp = partial_path(out)
    fields: dict = {"status": "failed", "started_utc": started_utc, "worker": worker}

    def finish(**more) -> dict:
        fields.update(more, seconds=round(time.perf_counter() - started, 2))
        return fields

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)  # what an earlier, killed attempt left
    except OSError as exc:
        return finish(error=f"cannot write into {out.parent}: {exc.strerror or exc}")
    try:
        session = build_session(job.options, log=lambda message: None, model_cache=MODEL_CACHE)
    except SessionError as exc:
        return finish(error=exc.message)
    except Exception as exc:  # noqa: BLE001  (one bad input never stops the batch)
        return finish(error=f"cannot start tracking: {type(exc).__name__}: {exc}")
    frames = 0
    first_frame_at = None
    last_sent = 0.0

    def on_result(_result) -> None:
        nonlocal frames, first_frame_at, last_sent
        frames += 1
        if first_frame_at is None:
            first_frame_at = time.perf_counter()
        _fault_once(job, frames)
        now = time.perf_counter()
        if now - last_sent >= PROGRESS_INTERVAL_S:
            send(("progress", job.index, frames))
            last_sent = now

    try:
        meta = session.recording_meta(batch=job.batch_meta)
        run = record_run(session, tmp, meta, overwrite=True, on_result=on_result)
        if run.interrupted:
            raise KeyboardInterrupt
        stats = session.pipeline.stats
        if stats.frames == 0:
            raise SourceError("the source delivered no frames")
        if stats.frames_with_face == 0:
            raise SourceError(f"no face found in any of {stats.frames} frames")
        if job.refine:
            write_refined(session, tmp, meta, segments=run.segments)
        tmp.replace(out)
        fsync_dir(out.parent)
        rec = load_recording(out)
    except (SourceError, RecordingError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        return finish(frames=frames, error=str(exc))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        return finish(frames=frames, error=f"{type(exc).__name__}: {exc}")
    finally:
        session.close()
    send(("progress", job.index, frames))
    startup = (first_frame_at or time.perf_counter()) - started
    return finish(status="done", startup_s=round(startup, 3), **recording_stats(rec))


# --- the local pool --------------------------------------------------------------------------------------


def _worker_main(worker_id: int, jobs, messages, log_dir: str | None) -> None:
    """A worker process: take jobs until None; Ctrl+C is the driver's to handle (it ends the workers).
    MediaPipe's and TensorFlow Lite's console chatter goes to ``log_dir/worker-PID.log``, not the terminal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("GLOG_minloglevel", "2")
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(log_dir) / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def send(message: tuple) -> None:
        messages.put(message)

    messages.put(("ready", worker_id, os.getpid()))
    while True:
        job = jobs.get()
        if job is None:
            return
        fields = track_file(job, send)
        messages.put(("done", job.index, fields))
        messages.put(("ready", worker_id, os.getpid()))


class LocalPool:
    """``workers`` processes (spawned, so each loads torch and MediaPipe cleanly) that track files.

    Each worker gets one job at a time from the driver, so the driver always knows which file a worker
    holds; a worker that dies (killed, out of memory, a crash in native code) is replaced and its file is
    retried up to ``retries`` times, then reported as failed. :meth:`run` yields the messages of
    :mod:`app.batch_worker` plus ``("done", index, fields)`` for every job."""

    def __init__(self, workers: int, retries: int = 1, log_dir: Path | None = None):
        import multiprocessing as mp  # noqa: PLC0415

        self.ctx = mp.get_context("spawn")
        self.workers = max(1, int(workers))
        self.retries = max(0, int(retries))
        self.log_dir = None if log_dir is None else str(log_dir)
        self.messages = self.ctx.Queue()
        self.procs: dict[int, object] = {}
        self.inboxes: dict[int, object] = {}
        self.holding: dict[int, int | None] = {}  # worker id -> job index
        self._next_id = 0
        self.idle_deaths = 0

    def _start_worker(self) -> None:
        wid = self._next_id
        self._next_id += 1
        inbox = self.ctx.Queue()
        proc = self.ctx.Process(target=_worker_main, args=(wid, inbox, self.messages, self.log_dir),
                                name=f"flamecam-batch-{wid}",
                                daemon=True)
        proc.start()
        self.procs[wid], self.inboxes[wid], self.holding[wid] = proc, inbox, None

    def run(self, jobs: list[FileJob]):
        import queue  # noqa: PLC0415

        pending = list(jobs)
        by_index = {job.index: job for job in jobs}
        attempts = {job.index: 0 for job in jobs}
        remaining = len(jobs)
        for _ in range(min(self.workers, len(jobs))):
            self._start_worker()
        try:
            while remaining:
                try:
                    message = self.messages.get(timeout=0.5)
                except queue.Empty:
                    for message in self._reap(pending, by_index, attempts):
                        remaining -= message[0] == "done"
                        yield message
                    continue
                kind = message[0]
                if kind == "ready":
                    wid = message[1]
                    if wid not in self.procs:
                        continue
                    self.holding[wid] = None
                    if pending:
                        job = pending.pop(0)
                        attempts[job.index] += 1
                        self.holding[wid] = job.index
                        self.inboxes[wid].put(job)
                    else:
                        self.inboxes[wid].put(None)
                    continue
                if kind == "done":
                    remaining -= 1
                    message[2]["attempts"] = attempts[message[1]]
                    for wid, held in self.holding.items():
                        if held == message[1]:
                            self.holding[wid] = None
                yield message
        finally:
            self.close()

    def _reap(self, pending: list, by_index: dict, attempts: dict):
        """Replace dead workers; retry (or fail) the file each held."""
        for wid, proc in list(self.procs.items()):
            if proc.is_alive():
                continue
            held = self.holding.pop(wid)
            del self.procs[wid], self.inboxes[wid]
            code = proc.exitcode
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            if held is None:
                self.idle_deaths += code != 0
                if self.idle_deaths > 2 * self.workers and not self.procs:
                    while pending:  # workers that die before taking a job would be restarted forever
                        job = pending.pop(0)
                        yield ("done", job.index, {"status": "failed", "attempts": attempts[job.index],
                                                   "error": f"worker processes die on start-up ({how})"})
                    return
                if pending:
                    self._start_worker()
                continue
            if attempts[held] <= self.retries:
                pending.insert(0, by_index[held])
                print(f"flamecam batch: worker {proc.pid} died ({how}) while tracking {by_index[held].input}; "
                      "retrying it", file=sys.stderr)
            else:
                yield ("done", held, {"status": "failed", "attempts": attempts[held],
                                      "error": f"the worker process died ({how}) on each of {attempts[held]} attempts"})
            self._start_worker()

    def close(self) -> None:
        for wid, inbox in self.inboxes.items():
            try:
                inbox.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for proc in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        self.procs.clear()
        self.inboxes.clear()
