"""A private virtual X server (Xvfb) for running the real GUI headless: CI, tests and benchmarks.

``with VirtualDisplay() as display: subprocess.run(..., env=display.env())`` starts
``Xvfb -displayfd`` (it picks a free display number itself), waits until it accepts clients and
stops it afterwards. On Debian/Ubuntu: ``apt-get install xvfb`` plus the xcb libraries Qt loads
(see ``.ci/install_system_deps.sh``).
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import time


class XvfbMissing(RuntimeError):
    """Xvfb is not installed."""


class VirtualDisplay:
    def __init__(self, width: int = 1280, height: int = 1024, depth: int = 24, timeout_s: float = 20.0):
        self.size, self.depth, self.timeout_s = (width, height), depth, timeout_s
        self.proc: subprocess.Popen | None = None
        self.display: str | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("Xvfb") is not None

    def start(self) -> "VirtualDisplay":
        exe = shutil.which("Xvfb")
        if exe is None:
            raise XvfbMissing("Xvfb is not installed (Debian/Ubuntu: bash .ci/install_system_deps.sh)")
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [exe, "-displayfd", str(write_fd), "-screen", "0", f"{self.size[0]}x{self.size[1]}x{self.depth}",
                 "-nolisten", "tcp", "-noreset"],
                pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            os.close(write_fd)
        deadline = time.monotonic() + self.timeout_s
        text = b""
        try:
            while not text.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    break
                ready, _, _ = select.select([read_fd], [], [], remaining)
                if not ready:
                    break
                chunk = os.read(read_fd, 64)
                if not chunk:
                    break
                text += chunk
        finally:
            os.close(read_fd)
        if not text.strip().isdigit():
            err = b""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = self.proc.stderr.read() or b""
            self.stop()
            raise RuntimeError(f"Xvfb did not start within {self.timeout_s:.0f} s: {err.decode(errors='replace')[-500:]}")
        self.display = f":{int(text.strip())}"
        return self

    def env(self, base: dict | None = None) -> dict:
        """Environment for a Qt process on this display (xcb platform, no Wayland)."""
        env = dict(os.environ if base is None else base)
        env.update(DISPLAY=self.display, QT_QPA_PLATFORM="xcb")
        env.pop("WAYLAND_DISPLAY", None)
        return env

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> "VirtualDisplay":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
