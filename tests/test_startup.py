"""Start-up: the app's window does not wait for the tracking engine's heavy modules.

``flamecam`` imports torch and MediaPipe only in the tracking thread, after the window is up
(``benchmarks/startup.py`` measures the times; this checks the import order that makes them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
import app.gui

def run_gui(*args, **kwargs):  # what `flamecam gui` has imported when it is about to build the window
    print(json.dumps(sorted(name for name in ("torch", "mediapipe", "onnxruntime") if name in sys.modules)))
    return 0

app.gui.run_gui = run_gui
from app.cli import main
sys.exit(main(["gui"]))
"""


def test_the_window_opens_before_torch_and_mediapipe_are_imported():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
