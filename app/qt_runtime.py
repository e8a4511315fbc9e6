"""Process-wide Qt set-up that must happen before (or right after) the QApplication exists.

PySide6 / shiboken6 6.12.0 returns ``None`` from every void method without taking a reference
to it. Python 3.12+ made ``None`` immortal, so nothing happens there; on Python 3.11 each call
(``QPainter.drawLine``, ``setPen``, ``save`` ...) drops ``None``'s reference count by one, and a
pyqtgraph window makes thousands of such calls per second, so the process aborts within seconds
to minutes with "Fatal Python error: none_dealloc: deallocating None". Measured here: -3942 per
1000 loop iterations with 6.12.0, +67 with 6.11.3. The clean fix is to avoid that release
(``PySide6-Essentials!=6.12.0``); :func:`apply_pyside_workarounds` makes an affected install safe
by giving ``None`` a reference count it cannot exhaust (``None`` is never freed anyway).
"""
from __future__ import annotations

import ctypes
import sys

NONE_REFCOUNT_RESERVE = 1 << 40  # at a million leaked references a second: ~12 days


def pyside_leaks_none() -> bool:
    """True when this PySide6 over-releases ``None`` on void calls and Python does not protect it."""
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QObject  # noqa: PLC0415

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(64):
        probe.setObjectName("probe")  # a void method
    return sys.getrefcount(None) - before <= -32


def apply_pyside_workarounds() -> bool:
    """Apply the workaround when needed (idempotent); True if it was applied now or before."""
    if getattr(apply_pyside_workarounds, "applied", False):
        return True
    if not pyside_leaks_none():
        return False
    # ob_refcnt is the first field of every PyObject (a Py_ssize_t) in CPython < 3.12 release builds.
    ctypes.c_ssize_t.from_address(id(None)).value += NONE_REFCOUNT_RESERVE
    apply_pyside_workarounds.applied = True
    return True
