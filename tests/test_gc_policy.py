"""The collector while a session tracks (app.gc_policy): start-up's objects frozen from the first frame
until the run ends, however it ends."""
from __future__ import annotations

import gc

import pytest

from app.gc_policy import frozen_after_first


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def results(count: int, fail_at: int | None = None, closed: list | None = None):
    try:
        for i in range(count):
            if i == fail_at:
                raise KeyboardInterrupt
            yield i
    finally:
        if closed is not None:
            closed.append(True)


def test_objects_alive_at_the_first_result_are_frozen_until_the_run_ends():
    frozen_during = []
    for i in frozen_after_first(results(3)):
        frozen_during.append(gc.get_freeze_count())
    assert frozen_during[0] == 0  # the first result is out before the freeze
    assert all(count > 1000 for count in frozen_during[1:])  # the interpreter's own objects and more
    assert gc.get_freeze_count() == 0


def test_a_run_left_early_or_interrupted_unfreezes_and_closes_the_engine():
    closed = []
    for i in frozen_after_first(results(5, closed=closed)):
        if i == 2:
            break
    assert gc.get_freeze_count() == 0 and closed == [True]  # a for loop closes its generator at once
    closed = []
    with pytest.raises(KeyboardInterrupt):
        for _ in frozen_after_first(results(5, fail_at=3, closed=closed)):
            pass
    assert gc.get_freeze_count() == 0 and closed == [True]


def test_what_start_up_built_is_out_of_the_collectors_reach():
    """The point of it: a full collection (~110 ms for a session's ~250,000 objects, GIL held) no
    longer walks what was alive at the first frame."""
    kept = [[i] for i in range(200_000)]  # containers the collector would walk
    counts = [gc.get_freeze_count() for _ in frozen_after_first(results(2))]
    assert counts[1] >= len(kept)
