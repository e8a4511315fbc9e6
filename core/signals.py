"""Ctrl+C held over a short critical section (no Qt, no heavy imports).

Some native code turns a KeyboardInterrupt raised inside it into another error (onnxruntime's
import reports ``ImportError: initialization failed``), and some sections must not be cut half-way
(stderr pointed at a file while MediaPipe starts). :func:`interrupts_deferred` holds SIGINT and
SIGTERM for the duration and raises KeyboardInterrupt once the section is done.
"""
from __future__ import annotations

import contextlib
import threading


@contextlib.contextmanager
def interrupts_deferred():
    """In the main thread, hold SIGINT/SIGTERM handled by Python code until the block ends, then raise
    KeyboardInterrupt (in other threads signals never reach Python code: nothing to do)."""
    import signal  # noqa: PLC0415

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if callable(handler):
            saved[sig] = handler
            signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt
