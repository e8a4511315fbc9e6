"""Ctrl+C held over a short critical section (no Qt, no heavy imports).

Some native code turns a KeyboardInterrupt raised inside it into another error (onnxruntime's
import reports ``ImportError: initialization failed``), and some sections must not be cut half-way
(stderr pointed at a file while MediaPipe starts). :func:`interrupts_deferred` holds SIGINT and
SIGTERM for the duration and raises KeyboardInterrupt once the section is done.

Other code catches the KeyboardInterrupt and goes on (a bare ``except:`` around an import), so a
Ctrl+C in a command's start-up could be lost: :func:`sticky_interrupts` makes every SIGINT/SIGTERM
also leave a mark, and :func:`raise_if_interrupted` raises it again at the end of the start-up.
"""
from __future__ import annotations

import contextlib
import threading

_INTERRUPTED = threading.Event()


def sticky_interrupts() -> None:
    """In the main thread: SIGINT and SIGTERM raise KeyboardInterrupt (as Ctrl+C does) and are
    remembered for :func:`raise_if_interrupted` (the mark starts cleared)."""
    import signal  # noqa: PLC0415

    _INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(_signum, _frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a signal came since :func:`sticky_interrupts` (even one that code in
    between caught and swallowed)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


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
        _INTERRUPTED.set()
        raise KeyboardInterrupt
