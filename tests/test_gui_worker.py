"""The GUI's tracking thread (pytest-qt, offscreen): results by signal, recording in the worker,
clean stops, and the failures it must survive (source gone mid-run, full disk, bad model)."""
from __future__ import annotations

import errno
import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")


from app.gui_worker import RecordingStatus, SessionInfo, TrackingThread, live_threads  # noqa: E402
from core.session import SessionOptions  # noqa: E402
from core.sources import FrameSource, SourceError  # noqa: E402

START_TIMEOUT_MS = 180_000  # first session of a run: model, embedding (cached once) and MediaPipe start-up


def assert_no_tracking_threads():
    assert live_threads() == []
    names = [t.name for t in threading.enumerate() if t.is_alive()]
    assert "flamecam-landmarks" not in names, names


class Collector:
    def __init__(self, worker: TrackingThread):
        self.infos: list[SessionInfo] = []
        self.results = []
        self.errors: list[str] = []
        self.notices: list[str] = []
        self.recordings: list[RecordingStatus] = []
        self.finished: list[dict] = []
        worker.sessionStarted.connect(self.infos.append)
        worker.frameReady.connect(self.results.append)
        worker.failed.connect(self.errors.append)
        worker.notice.connect(self.notices.append)
        worker.recordingChanged.connect(self.recordings.append)
        worker.runFinished.connect(self.finished.append)


class FailingSource(FrameSource):
    """A camera that is unplugged after ``fail_after`` frames, or when :meth:`unplug` is called
    (synthetic frames until then)."""

    def __init__(self, fail_after: int | None = None):
        from core.synthetic import SyntheticOptions, SyntheticSource

        self.inner = SyntheticSource(SyntheticOptions())
        self.fail_after = fail_after
        self.unplugged = threading.Event()
        self.size, self.fps, self.name = self.inner.size, 30.0, "fake-camera"
        self.closed = False

    def unplug(self) -> None:
        self.unplugged.set()

    def __iter__(self):
        for frame in self.inner:
            if self.unplugged.is_set() or (self.fail_after is not None and frame.index >= self.fail_after):
                raise SourceError("camera 0 stopped delivering frames (unplugged?)")
            yield frame

    def close(self):
        self.closed = True
        self.inner.close()


@pytest.fixture
def run_worker(qtbot):
    """Start a TrackingThread; always stopped and joined at the end of the test."""
    started: list[TrackingThread] = []

    def start(options: SessionOptions, **kw) -> tuple[TrackingThread, Collector]:
        worker = TrackingThread(options, **kw)
        collector = Collector(worker)
        started.append(worker)
        return worker, collector

    yield start
    for worker in started:
        assert worker.shutdown(timeout_s=60), "the tracking thread did not stop"
    assert_no_tracking_threads()


def test_worker_streams_results_records_and_stops_cleanly(qtbot, run_worker, tmp_path):
    from core.pipeline import FrameResult
    from core.recording import load

    worker, got = run_worker(SessionOptions(source="synthetic", device="cpu"))
    worker.start()
    qtbot.waitUntil(lambda: len(got.results) >= 3 or bool(got.errors), timeout=START_TIMEOUT_MS)
    assert not got.errors
    (info,) = got.infos
    assert info.image_size == (640, 480) and info.device == "CPU" and info.model.kind == "builtin"
    assert info.model.faces.shape[1] == 3 and not info.model.faces.flags.writeable
    result = got.results[-1]
    assert isinstance(result, FrameResult)
    verts = result.mesh_vertices_cam
    assert verts.shape == (info.model.num_vertices, 3) and verts.dtype == np.float32
    assert not verts.flags.writeable  # immutable: the UI keeps it while the worker moves on
    assert 0.1 < float(np.median(verts[:, 2])) < 1.0  # metres in front of the camera
    # the posed model agrees with the detected face: fitted and detected landmarks within a few px
    detected, fitted = result.track.landmarks_px, result.track.fitted_landmarks_px
    both = np.isfinite(fitted).all(1)
    assert both.sum() > 100 and np.median(np.linalg.norm(detected[both] - fitted[both], axis=1)) < 10

    path = tmp_path / "take.fcrec"
    worker.start_recording(path)
    qtbot.waitUntil(lambda: any(s.state == "recording" for s in got.recordings), timeout=60_000)
    first = len(got.results)
    qtbot.waitUntil(lambda: len(got.results) >= first + 8, timeout=120_000)
    worker.stop_recording()
    qtbot.waitUntil(lambda: got.recordings[-1].state == "stopped", timeout=60_000)
    stopped = got.recordings[-1]
    rec = load(path)
    assert rec.complete and len(rec) == stopped.frames >= 8
    shown = {r.track.frame_index: r.track for r in got.results}
    for i, index in enumerate(rec.frame_index.tolist()):
        track = shown[index]  # every recorded frame was also emitted to the UI, with the same values
        np.testing.assert_allclose(rec.translation[i], track.translation, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(rec.intrinsics[i], track.intrinsics, rtol=1e-6)
    assert rec.meta.image_width == 640 and rec.meta.extra.get("recorded_by") == "flamecam gui"

    assert worker.shutdown(timeout_s=60)
    assert worker.isFinished()
    qtbot.waitUntil(lambda: bool(got.finished), timeout=5000)
    assert got.finished[0]["ended_by"] == "stopped" and got.finished[0]["frames"] >= len(got.results) - 1
    assert_no_tracking_threads()


def test_source_failing_mid_run_reports_and_keeps_the_recording(qtbot, run_worker, tmp_path):
    from core.recording import load

    source = FailingSource(fail_after=12)
    worker, got = run_worker(SessionOptions(source="fake", device="cpu"), source_factory=lambda: source)
    path = tmp_path / "cut.fcrec"
    worker.start_recording(path)  # from the first frame on
    worker.start()
    qtbot.waitUntil(lambda: bool(got.finished), timeout=START_TIMEOUT_MS)
    (message,) = got.errors
    assert "stopped delivering frames" in message and "unplugged" in message
    assert str(path) in message and "is saved" in message
    assert got.finished[0]["ended_by"] == "failed" and source.closed
    assert [s.state for s in got.recordings][-1] == "stopped"
    rec = load(path)
    assert rec.complete and 1 <= len(rec) <= 12
    assert rec.frame_index.tolist() == [r.track.frame_index for r in got.results]
    worker.wait()
    assert_no_tracking_threads()


def test_full_disk_stops_recording_but_not_tracking(qtbot, run_worker, tmp_path, monkeypatch):
    from core.recording import RecordingWriter, load

    writes = {"n": 0}
    real_write = RecordingWriter._raw_write

    def flaky_write(self, data):
        writes["n"] += 1
        if writes["n"] >= 3:  # header + metadata, one flush of frames, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(RecordingWriter, "_raw_write", flaky_write)
    worker, got = run_worker(SessionOptions(source="synthetic", device="cpu"))
    path = tmp_path / "full.fcrec"
    worker.start_recording(path)
    worker.start()
    qtbot.waitUntil(lambda: any(s.state == "failed" for s in got.recordings) or bool(got.errors), timeout=START_TIMEOUT_MS)
    assert not got.errors
    failure = next(s for s in got.recordings if s.state == "failed")
    assert "disk full" in failure.message and "Tracking goes on" in failure.message
    count = len(got.results)
    qtbot.waitUntil(lambda: len(got.results) >= count + 3, timeout=60_000)  # still tracking
    rec = load(path)  # what was flushed before the disk filled is readable
    assert len(rec) == failure.frames_flushed >= 1 and not rec.complete


def test_bad_model_file_is_a_clear_error(qtbot, run_worker, tmp_path):
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(b"\x80\x04this is not a FLAME pickle")
    worker, got = run_worker(SessionOptions(source="synthetic", model=str(bad), device="cpu"))
    worker.start()
    qtbot.waitUntil(lambda: bool(got.finished), timeout=START_TIMEOUT_MS)
    (message,) = got.errors
    assert message.startswith(f"Cannot use the model file {bad}") and not got.results
    assert got.finished[0]["ended_by"] == "failed"
    worker.wait()
    assert_no_tracking_threads()


def test_stop_while_starting_ends_quickly(qtbot, run_worker):
    worker, got = run_worker(SessionOptions(source="synthetic", device="cpu"))
    worker.start()
    worker.request_stop()
    assert worker.shutdown(timeout_s=120)
    qtbot.waitUntil(lambda: bool(got.finished), timeout=5000)  # queued to this thread
    assert not got.errors and got.finished[0]["ended_by"] == "stopped"
    assert len(got.results) <= 1


# --- the engine's latest-frame-wins for on-demand sources, and the source process -------------------


class _CountingSource(FrameSource):
    """A live source that makes a frame when read (like the simulated camera) and counts reads;
    ``read_made`` is notified on every read."""

    is_live = True

    def __init__(self, on_demand: bool, frames: int = 400):
        from core.synthetic import SyntheticOptions, SyntheticSource

        inner = SyntheticSource(SyntheticOptions(frames=1))
        self.rgb = next(iter(inner)).rgb
        inner.close()
        self.frames_on_demand = on_demand
        self.size, self.fps, self.name, self.total = (640, 480), 30.0, "counting", frames
        self.reads = 0
        self.read_made = threading.Condition()

    def __iter__(self):
        from core.sources import Frame

        for i in range(self.total):
            with self.read_made:
                self.reads += 1
                self.read_made.notify_all()
            yield Frame(i, i / 30.0, self.rgb)


class _BusyTracker:
    """Stands in for the tracker: each step lasts until the source has been read ``reads_per_step``
    more times, or ``patience_s`` went by without that (a source that is not read while the tracker
    is busy), or the run is stopping. The steps' lengths thus follow the source, not the machine's
    speed. ``reads_during_steps``: reads made during each step before the stop."""

    def __init__(self, source: _CountingSource, reads_per_step: int = 3, patience_s: float = 0.3):
        self.source, self.reads_per_step, self.patience_s = source, reads_per_step, patience_s
        self.stop = threading.Event()
        self.reads_during_steps: list[int] = []
        self.last_refinement_s = 0.0  # it refines nothing

    def start_segment(self, start):
        pass  # the stand-in has no identity to reset

    def step(self, landmarks, timestamp_s, frame_index, prior=None, presence=None, other_faces=False,
             next_frame_in_s=None):
        import time

        source = self.source
        deadline = time.monotonic() + self.patience_s
        with source.read_made:
            before = source.reads
            while (source.reads < before + self.reads_per_step and not self.stop.is_set()
                   and time.monotonic() < deadline):
                source.read_made.wait(0.05)
            if not self.stop.is_set():
                self.reads_during_steps.append(source.reads - before)
        return type("Track", (), {"frame_index": frame_index, "tracking_state": "tracking"})()


@pytest.mark.parametrize("on_demand", [True, False])
def test_pipeline_reads_on_demand_sources_only_when_the_tracker_is_ready(on_demand):
    from core.pipeline import TrackingPipeline

    source = _CountingSource(on_demand)
    # On demand, no read may come while the tracker works, so each step waits 0.3 s in vain; a
    # streaming camera is read on, so the steps end as soon as three more frames were read.
    tracker = _BusyTracker(source, patience_s=0.3 if on_demand else 60.0)
    pipeline = TrackingPipeline(source, tracker)
    tracker.stop = pipeline.stop
    results = []
    for result in pipeline.run():
        results.append(result)
        if len(results) == 15:
            pipeline.stop.set()
    assert len(results) >= 15  # items already queued when stop was set are still yielded
    if on_demand:
        # one frame in flight: each frame read is tracked (none made or detected just to be dropped),
        # however long the tracker takes: at most the next frame is read while it works
        assert max(tracker.reads_during_steps) <= 1
        assert source.reads <= len(results) + 2 and pipeline.stats.dropped == 0
        indices = [r.frame.index for r in results]
        assert indices == sorted(indices)
    else:  # a streaming camera keeps being read; the newest detection replaces older ones
        assert min(tracker.reads_during_steps) >= tracker.reads_per_step
        assert source.reads > len(results) + 2 and pipeline.stats.dropped > 0
        indices = [r.frame.index for r in results[:15]]
        assert all(b - a >= 2 for a, b in zip(indices[1:], indices[2:]))  # frames were skipped, not queued


def test_process_source_serves_the_newest_frame_and_cleans_up():
    import time

    from core.process_source import ProcessSource

    source = ProcessSource("synthetic:realtime=1,fps=30,still=0")  # moving from the first frame
    try:
        assert source.is_live and source.frames_on_demand and source.size == (640, 480)
        frames = iter(source)
        first = next(frames)
        received = time.monotonic()
        assert first.index == 0 and first.rgb.shape == (480, 640, 3) and first.truth is not None
        # A slow reader: the next frame is the one of now, not the next in line. The child's clock
        # starts when it has sent frame 0, before it arrived here, so at least the time measured here
        # has passed on it (no assumption about how fast anything runs).
        threading.Event().wait(0.5)
        asked = time.monotonic()
        later = next(frames)
        assert later.index >= max(2, int((asked - received) * 30)), (later.index, asked - received)
        assert later.timestamp_s == pytest.approx(later.index / 30)
        assert not np.array_equal(first.rgb, later.rgb)
    finally:
        source.close()
    assert not source._proc.is_alive()  # noqa: SLF001
    files = ProcessSource("synthetic:frames=4")  # not live: every frame, in order
    try:
        assert not files.frames_on_demand and [f.index for f in files] == [0, 1, 2, 3]
    finally:
        files.close()
    with pytest.raises(SourceError, match="unknown synthetic option 'bogus'"):
        ProcessSource("synthetic:bogus=1")
