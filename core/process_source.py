"""Run a frame source in its own process, so producing frames never holds this process's GIL.

The synthetic source renders each frame with ModernGL; a ModernGL call that waits for the
software rasterizer keeps the GIL for tens of milliseconds, which stalls the GUI thread (measured
with benchmarks/gui.py: event-loop gaps of 300-400 ms with the synthetic source in a thread, under
50 ms with frames read from files). :class:`ProcessSource` opens the source in a child process
(``spawn``) and hands frames over through shared memory: a few slots, a semaphore of free slots,
and a pipe for each frame's index, timestamp and ground truth.

The live synthetic source (a simulated camera) renders *on demand*: each read asks the child for
the frame of the current moment (index = elapsed time x fps; the frames in between are skipped,
as a camera's unread frames are), so no CPU goes into frames nobody tracks. The source says so
with ``frames_on_demand``, and ``core.pipeline`` then reads it only when the tracker is ready for
the next frame. Other live sources stream: when every slot is taken the child drops the new frame
and the reader takes the newest (latest wins). Other sources block instead, so no frame is lost.
Errors in the child arrive as :class:`core.sources.SourceError` with the child's message.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from multiprocessing import shared_memory
from typing import Iterator

import numpy as np

from core.sources import Frame, FrameSource, SourceError, close_quietly

SLOTS = 4
START_TIMEOUT_S = 180.0


def _child(spec: str, conn, free, request, stop) -> None:  # runs in the child process
    import torch

    torch.set_num_threads(1)  # the parent's tracker needs the cores more than the renderer's glue
    shm = source = None
    try:
        from core.sources import open_source
        from core.synthetic import SyntheticSource

        source = open_source(spec)
        width, height = source.size
        frame_bytes = width * height * 3
        on_demand = isinstance(source, SyntheticSource) and source.is_live
        shm = shared_memory.SharedMemory(create=True, size=frame_bytes * SLOTS)
        conn.send(("info", {"name": source.name, "size": (width, height), "fps": source.fps,
                            "is_live": bool(source.is_live), "num_frames": source.num_frames,
                            "shm": shm.name, "on_demand": on_demand}))
        slots = np.ndarray((SLOTS, height, width, 3), np.uint8, buffer=shm.buf)
        if on_demand:
            _serve_on_demand(source, slots, conn, request, stop)
            return
        for n, frame in enumerate(source):
            if stop.is_set():
                break
            if source.is_live:
                if not free.acquire(block=False):
                    continue  # every slot is still unread: drop this frame, as a camera would
            else:
                while not free.acquire(timeout=0.1):
                    if stop.is_set():
                        return
            slot = n % SLOTS
            slots[slot] = frame.rgb
            conn.send(("frame", (frame.index, frame.timestamp_s, slot, frame.truth, frame.name)))
        conn.send(("end", None))
    except BaseException as exc:  # noqa: BLE001  (reported to the parent)
        try:
            conn.send(("error", f"{exc}" if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"))
        except (OSError, ValueError):
            pass
    finally:
        close_quietly(source)
        # Keep the memory until the parent has said it is done with it.
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            stop.wait(0.1)
        if shm is not None:
            shm.close()
            shm.unlink()


def _serve_on_demand(source, slots, conn, request, stop) -> None:
    """A simulated camera: per request, the frame of the current moment (paced to ``source.fps``)."""
    start = None
    last = -1
    while not stop.is_set():
        if not request.acquire(timeout=0.1):
            continue
        now = time.monotonic()
        index = 0 if start is None else max(last + 1, int((now - start) * source.fps))
        delay = 0.0 if start is None else start + index / source.fps - now
        if delay > 0:  # asked faster than the camera's frame rate
            time.sleep(delay)
        if source.num_frames is not None and index >= source.num_frames:
            conn.send(("end", None))
            return
        truth = source.trajectory.at(index)
        slots[0] = source.render(truth)
        conn.send(("frame", (index, index / source.fps, 0, truth, "")))
        if start is None:  # the clock starts once the first frame is out (the renderer starts slowly)
            start = time.monotonic()
        last = index


class ProcessSource(FrameSource):
    """``open_source(spec)`` in a child process (see module docstring)."""

    def __init__(self, spec: str, start_timeout_s: float = START_TIMEOUT_S, wait: bool = True):
        """Start the child; with ``wait`` (default) return once it has opened the source (else
        SourceError). ``wait=False`` returns at once, so the caller can load other things while the
        child starts (it imports torch and opens the source: seconds); the first use of ``size``,
        ``name``, ``fps``, ``is_live``, ``num_frames`` or the frames then waits (:meth:`wait_ready`)."""
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self._free = ctx.Semaphore(SLOTS)
        self._request = ctx.Semaphore(0)
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_child, args=(spec, child_conn, self._free, self._request, self._stop),
                                 name="flamecam-source", daemon=True)
        self._proc.start()
        child_conn.close()
        self._shm = None
        self._spec, self._deadline = spec, time.monotonic() + start_timeout_s
        self._info: dict | None = None
        if wait:
            self.wait_ready()

    def wait_ready(self) -> "ProcessSource":
        """Block until the child has opened the source; SourceError (the child's reason) if it could not."""
        if self._info is not None:
            return self
        if self._free is None:
            raise SourceError(f"{self._spec}: the source is closed")
        while not self._conn.poll(0.1):
            if not self._proc.is_alive() or time.monotonic() > self._deadline:
                self.close()
                raise SourceError(f"{self._spec}: the source process did not start")
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            kind, payload = "error", (f"{self._spec}: the source process ended while starting "
                                      f"(exit code {self._proc.exitcode})")
        if kind != "info":
            self.close()
            raise SourceError(payload if kind == "error" else f"{self._spec}: unexpected start-up message {kind!r}")
        self._shm = shared_memory.SharedMemory(name=payload["shm"])
        width, height = payload["size"]
        self._slots = np.ndarray((SLOTS, height, width, 3), np.uint8, buffer=self._shm.buf)
        self._info = payload
        return self

    # What the child reports once it has opened the source (waits for it when started with wait=False).
    name = property(lambda self: self.wait_ready()._info["name"])
    size = property(lambda self: tuple(self.wait_ready()._info["size"]))
    fps = property(lambda self: self.wait_ready()._info["fps"])
    is_live = property(lambda self: bool(self.wait_ready()._info["is_live"]))
    num_frames = property(lambda self: self.wait_ready()._info["num_frames"])
    frames_on_demand = property(lambda self: bool(self.wait_ready()._info["on_demand"]))

    def __iter__(self) -> Iterator[Frame]:
        while True:
            if self.frames_on_demand:
                self._request.release()  # "the frame of now, please"
            message = self._receive()
            if self.is_live:
                while message[0] == "frame" and self._conn.poll():  # latest wins: skip to the newest
                    self._free.release()
                    message = self._receive()
            kind, payload = message
            if kind == "end":
                return
            if kind == "error":
                raise SourceError(payload)
            index, timestamp_s, slot, truth, name = payload
            rgb = self._slots[slot].copy()
            self._free.release()
            yield Frame(index, timestamp_s, rgb, truth=truth, name=name)

    def _receive(self):
        while not self._conn.poll(0.5):
            if not self._proc.is_alive():
                if self._conn.poll():
                    break
                raise SourceError(f"the source process ended unexpectedly (exit code {self._proc.exitcode})")
        try:
            return self._conn.recv()
        except EOFError:
            raise SourceError("the source process closed its connection") from None

    def close(self) -> None:
        if self._free is None:
            return  # closed already
        self._stop.set()
        if getattr(self, "_slots", None) is not None:
            self._slots = None
        if self._shm is not None:
            self._shm.close()
            self._shm = None
        if self._proc.is_alive():
            self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._conn.close()
        self._free = self._request = None  # release the semaphores now rather than at interpreter exit
