"""The cyclic garbage collector while a session tracks.

By its first frame a session has built some 250,000 long-lived objects (libraries, head model,
MediaPipe, caches). A full collection walks all of them: about 110 ms with the GIL held, which
stalls the GUI thread and both engine threads; it comes round whenever enough objects have
outlived younger collections (the per-frame results the app keeps for its plots and timeline).
:func:`frozen_after_first` moves everything alive after the first frame out of the collector's
reach (``gc.freeze``) for the rest of the run, so a full collection walks only what the run made
since. Reference counting still frees frozen objects; the run's end unfreezes, so cyclic garbage
of a finished session is collected again.
"""
from __future__ import annotations

import gc
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def frozen_after_first(results: Iterable[T]) -> Iterator[T]:
    """Yield ``results`` (e.g. ``TrackingPipeline.run()``); from the first one on, the objects alive
    then are frozen (``gc.freeze``) until the iteration ends or is abandoned (``gc.unfreeze``)."""
    frozen = False
    iterator = iter(results)
    try:
        for result in iterator:
            yield result
            if not frozen:
                gc.freeze()
                frozen = True
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # the engine's own clean-up (its threads) runs now, not when it is collected
        if frozen:
            gc.unfreeze()
