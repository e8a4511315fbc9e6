"""The engine's own bookkeeping (``core.pipeline``), without MediaPipe."""
from __future__ import annotations

import queue
import time

import numpy as np
import pytest


def test_the_tracker_is_told_when_the_next_frames_landmarks_are_due():
    """0 while a frame waits, what is left of a landmark stage under way, a whole stage otherwise."""
    from core.pipeline import TrackingPipeline

    pipe = TrackingPipeline(source=None, tracker=None)
    items: queue.Queue = queue.Queue(maxsize=1)
    pipe._stage_s = 0.008
    assert pipe._next_frame_in_s(items) == pytest.approx(0.008)  # reading the next frame: a stage to go
    pipe._detecting_since = time.perf_counter() - 0.002
    assert 0.0 < pipe._next_frame_in_s(items) <= 0.006
    pipe._detecting_since = time.perf_counter() - 0.010  # a stage running late: due now
    assert pipe._next_frame_in_s(items) == 0.0
    pipe._detecting_since = None
    items.put("frame")
    assert pipe._next_frame_in_s(items) == 0.0


class _SleepyLandmarker:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def detect(self, rgb, timestamp_ms):
        from core.landmarks import LandmarkResult

        time.sleep(self.seconds)
        return LandmarkResult(timestamp_ms, (rgb.shape[1], rgb.shape[0]), None, 0)


class _SleepyTracker:
    def __init__(self, seconds: float):
        self.seconds, self.last_refinement_s = seconds, 0.0

    def needs_pose_prior(self, timestamp_s):
        return False

    def start_segment(self, start):
        pass

    def step(self, landmarks, timestamp_s, frame_index, **_):
        time.sleep(self.seconds)
        return type("Track", (), {"frame_index": frame_index, "tracking_state": "no_face"})()


@pytest.mark.parametrize("detect_s, fit_s, in_landmark_thread", [(0.0, 0.02, True), (0.02, 0.0, False)])
def test_the_segmenters_look_is_taken_by_the_thread_with_less_work(detect_s, fit_s, in_landmark_thread):
    """The slower of the two threads sets the engine's pace: the look goes to the other one, and
    every frame gets exactly one look, wherever it was taken."""
    from core.pipeline import TrackingPipeline
    from core.sources import Frame

    pipe = TrackingPipeline(source=None, tracker=_SleepyTracker(fit_s))
    pipe._started_at = time.perf_counter()
    landmarker = _SleepyLandmarker(detect_s)
    taken_in_landmark_thread = []
    for i in range(12):
        item = pipe._detect(landmarker, Frame(i, i / 30, np.zeros((48, 64, 3), np.uint8)))
        taken_in_landmark_thread.append(item[4] is not None)
        result = pipe._track(*item)
        assert result.track.frame_index == i
    assert pipe.segmenter._segment_frames == 12  # each frame was looked at and decided on once
    assert all(taken == in_landmark_thread for taken in taken_in_landmark_thread[4:])


class _CountingLandmarker(_SleepyLandmarker):
    """A landmarker fake for ``TrackingPipeline.run``: counts the frames it has detected."""

    def __init__(self, _options=None):
        super().__init__(0.0)
        self.detected = 0

    def detect(self, rgb, timestamp_ms):
        result = super().detect(rgb, timestamp_ms)
        self.detected += 1
        return result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class _ListSource:
    def __init__(self, count: int, live: bool):
        from core.sources import Frame

        self.is_live, self.frames_on_demand, self.size = live, False, (64, 48)
        self.frames = [Frame(i, i / 30, np.zeros((48, 64, 3), np.uint8)) for i in range(count)]

    def __iter__(self):
        yield from self.frames


def test_a_file_read_flat_out_is_detected_a_few_frames_ahead_of_the_tracker(monkeypatch):
    """A file's landmark thread runs up to FILE_AHEAD_FRAMES queued frames (and the one it holds)
    ahead of a slower tracker, and drops none."""
    from core import pipeline

    landmarker = _CountingLandmarker()
    monkeypatch.setattr(pipeline, "FaceLandmarker", lambda options: landmarker)
    pipe = pipeline.TrackingPipeline(_ListSource(24, live=False), _SleepyTracker(0.01))
    leads, indices = [], []
    for result in pipe.run():
        time.sleep(0.005)  # the landmark thread, which sleeps not at all, runs as far ahead as it may
        leads.append(landmarker.detected - 1 - result.frame.index)
        indices.append(result.frame.index)
    assert indices == list(range(24))
    assert max(leads) == pipeline.FILE_AHEAD_FRAMES + 1
