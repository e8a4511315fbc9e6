"""Long sessions stay bounded: what grows per frame is capped (benchmarks/soak.py measures a real run)."""
from __future__ import annotations

import numpy as np


def test_pipeline_timings_keep_bounded_memory_and_whole_run_percentiles():
    from core.pipeline import FrameTimes, PipelineStats

    stats = PipelineStats(times=FrameTimes(capacity=1000, seed=1))
    rng = np.random.default_rng(0)
    # A run of 50,000 frames whose tracker time drifts from ~10 ms to ~30 ms: the run's median is ~20 ms,
    # which the last 1000 frames alone would not give.
    drift = np.linspace(10, 30, 50_000)
    for ms in drift + rng.normal(0, 0.5, drift.size):
        stats.times.add(5.0, ms, ms + 5.0)
    assert stats.times._rows.shape == (1000, 3)  # never grows
    assert len(stats.tracker_ms) == 1000
    summary = stats.summary()
    assert abs(summary["tracker_ms_p50"] - 20.0) < 1.0, summary
    assert abs(summary["latency_ms_p50"] - 25.0) < 1.0
    assert summary["landmarks_ms_p50"] == 5.0


def test_short_runs_keep_every_frame():
    from core.pipeline import PipelineStats

    stats = PipelineStats()
    assert np.isnan(stats.summary()["tracker_ms_p50"])  # no frames yet: NaN, no warning
    for i in range(7):
        stats.times.add(1.0, float(i), 2.0)
    assert stats.tracker_ms == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert stats.summary()["tracker_ms_p50"] == 3.0
