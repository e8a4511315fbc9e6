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


def test_a_process_source_can_start_while_the_caller_loads_other_things():
    import pytest

    from core.process_source import ProcessSource
    from core.sources import SourceError

    source = ProcessSource("synthetic:frames=3", wait=False)  # returns while the child starts
    try:
        assert source.size == (640, 480) and source.num_frames == 3  # the first use waits for the child
        assert [frame.index for frame in source] == [0, 1, 2]
    finally:
        source.close()
    bad = ProcessSource("synthetic:bogus=1", wait=False)  # a bad spec shows when it is waited for
    with pytest.raises(SourceError, match="unknown synthetic option 'bogus'"):
        bad.wait_ready()
    assert not bad._proc.is_alive()  # noqa: SLF001  (closed on failure)


def test_a_session_whose_source_process_fails_says_so_and_cleans_up():
    import pytest

    from core.session import SessionError, SessionOptions, build_session

    options = SessionOptions(source="synthetic:bogus=1", synthetic_in_subprocess=True)
    with pytest.raises(SessionError, match="cannot open the source 'synthetic:bogus=1'.*bogus") as err:
        build_session(options, log=lambda *_: None)
    assert err.value.bad_input
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name == "flamecam-source"]
