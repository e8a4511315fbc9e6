"""Careless users: bad options, unwritable outputs, random files, Ctrl+C at any moment, noisy logs.

Each failure the README's exit-code table lists ends with one line on stderr and no traceback;
checks that need a real process (signals, what was imported, what a run prints) use a subprocess.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.recording import load

REPO = Path(__file__).resolve().parents[1]
FLAMECAM = [sys.executable, "-m", "app.cli"]


def _env(tmp_path) -> dict:
    env = dict(os.environ, FLAMECAM_NO_DOWNLOAD="1", FLAMECAM_CACHE=os.environ.get("FLAMECAM_CACHE", str(tmp_path)),
               PYTHONUNBUFFERED="1")
    env.pop("FLAMECAM_NATIVE_LOGS", None)
    return env


# What a run imported: nothing heavy may load before a bad command line is refused.
PROBE = """import sys
from app.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # argparse's own errors
    code = exc.code
heavy = [m for m in ("torch", "mediapipe", "cv2", "onnxruntime", "core.model_io") if m in sys.modules]
print("LOADED:" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def probe(tmp_path, *args) -> tuple[int, list[str], list[str]]:
    """(exit code, stderr lines other than the probe's, modules loaded) of ``flamecam ARGS``."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    loaded = [line for line in lines if line.startswith("LOADED:")]
    assert loaded, proc.stderr
    return proc.returncode, [line for line in lines if not line.startswith("LOADED:")], \
        [m for m in loaded[-1][len("LOADED:"):].split(",") if m]


def assert_one_error_line(lines: list[str], command: str = "track") -> str:
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"flamecam {command}: error: "), lines
    return lines[0]


@pytest.mark.parametrize("fov", ["180", "0", "-10", "500", "nan"])
def test_impossible_fov_is_refused_before_anything_loads(tmp_path, fov):
    code, err, loaded = probe(tmp_path, "track", "synthetic:frames=3", "-o", tmp_path / "x.fcrec", f"--fov={fov}")
    assert code == 2
    line = assert_one_error_line(err)
    assert "--fov" in line and "between 1 and 170 degrees" in line
    assert loaded == [], f"{loaded} loaded before refusing --fov {fov}"
    assert not (tmp_path / "x.fcrec").exists()


def test_output_in_a_missing_folder_is_refused_before_any_model_loads(tmp_path):
    code, err, loaded = probe(tmp_path, "track", "synthetic:frames=3", "-o", tmp_path / "nodir" / "x.fcrec")
    assert code == 2
    line = assert_one_error_line(err)
    assert "nodir" in line and "create it first" in line
    # no model (the built-in one says "note: using the built-in head model"), no embedding, no torch
    assert loaded == [], loaded
    assert not (tmp_path / "nodir").exists()


def test_bad_arguments_are_one_line_too(tmp_path):
    code, err, _ = probe(tmp_path, "track", "--fov", "wide")
    assert code == 2 and len(err) == 1 and "invalid float value" in err[0] and "--help" in err[0]
    code, err, _ = probe(tmp_path, "track", "synthetic", "--max-frames", "0", "-o", tmp_path / "y.fcrec")
    assert code == 2 and len(err) == 1 and "--max-frames" in err[0]


def test_help_lists_the_exit_codes():
    out = subprocess.run(FLAMECAM + ["--help"], cwd=REPO, capture_output=True, text=True, timeout=120).stdout
    from app.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_FACE, EXIT_REFUSED

    table = out[out.index("exit codes:"):]
    for code in (0, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_REFUSED, EXIT_INTERRUPTED):
        assert re.search(rf"^\s+{code}\s+\S", table, re.M), (code, table)
    readme = (REPO / "README.md").read_text()
    for code in (EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_REFUSED, EXIT_INTERRUPTED):
        assert re.search(rf"\|\s*`?{code}`?\s*\|", readme), f"README's exit-code table lacks {code}"


def test_random_bytes_model_names_the_file_types_expected(tmp_path):
    from core.model_io import ModelFileError, load_head_model

    for suffix in (".pkl", ".npz", ".bin"):
        path = tmp_path / f"model{suffix}"
        path.write_bytes(bytes(range(44, 256)) * 8)  # starts with ',' like the reported file
        with pytest.raises(ModelFileError) as info:
            load_head_model(path)
        message = str(info.value)
        assert "expected a FLAME .pkl" in message and "head-model .npz" in message, message


def test_no_face_anywhere_is_exit_3_with_one_line(tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "blank"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((120, 160, 3), 128, np.uint8))
    proc = subprocess.run(FLAMECAM + ["track", str(folder), "-o", str(tmp_path / "b.fcrec"), "--quiet"], cwd=REPO,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.splitlines() if not _notice(line)]
    assert_one_error_line(errors)
    assert "Traceback" not in proc.stderr
    rec = load(tmp_path / "b.fcrec")
    assert set(rec.tracking_state_names()) == {"no_face"}
    assert np.isnan(rec.rotation).all() and np.isnan(rec.translation).all()  # frames without a face have no pose


def _notice(line: str) -> bool:
    """Information a run gives before its result (not an error line)."""
    return line.startswith("note:") or line.startswith("landmark embedding for ")


# --- noise -------------------------------------------------------------------------------------------

NOISE = [
    re.compile(r"^[IWE]\d{4} \d\d:\d\d:"),  # absl/glog lines
    re.compile(r"^INFO: "),  # TF Lite
    re.compile(r"Logging before InitGoogle|absl::InitializeLog"),
    re.compile(r"learned once from renders"),  # the built-in model has its embedding
    re.compile(r"\bnan px\b|fit error nan"),
    re.compile(r"Mean of empty slice|RuntimeWarning"),
    re.compile(r"source synthetic:(\s|$)"),
    re.compile(r"Traceback"),
]


def test_a_default_run_prints_no_noise(tmp_path):
    """The second run (the first one learns the built-in model's embedding once, and says so)."""
    for run in ("first", "second"):
        out = tmp_path / f"{run}.fcrec"
        proc = subprocess.run(FLAMECAM + ["track", "synthetic:width=320,height=240", "--max-frames", "5", "-o",
                                          str(out)], cwd=REPO, env=_env(tmp_path), capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
    text = proc.stdout + "\n" + proc.stderr
    lines = [part for line in text.splitlines() for part in line.split("\r")]  # progress bar redraws
    noisy = [line for line in lines for pattern in NOISE if pattern.search(line)]
    assert not noisy, noisy
    assert "tracked 5 frames" in proc.stdout and "focal length" in proc.stdout


def test_native_chatter_filter_keeps_other_lines():
    """The fd-2 filter drops MediaPipe's start-up chatter only: errors and our own lines pass."""
    code = ("import os, sys\n"
            "from core.landmarks import quiet_native_startup\n"
            "with quiet_native_startup():\n"
            "    os.write(2, b'W0000 00:00:1796534738.359970    2211 face_landmarker_graph.cc:181] chatter\\n')\n"
            "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
            "    os.write(2, b'E0000 00:00:1796534738.359970    2211 graph.cc:1] a real error\\n')\n"
            "    print('our own line', file=sys.stderr)\n"
            "print('after', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, FLAMECAM_NATIVE_LOGS="0"))
    assert proc.stderr.splitlines() == ["E0000 00:00:1796534738.359970    2211 graph.cc:1] a real error",
                                        "our own line", "after"], proc.stderr


# --- Ctrl+C ------------------------------------------------------------------------------------------


def _interrupt(tmp_path, name: str, when) -> tuple[int, str, Path]:
    """Start an endless track, send SIGINT ``when`` (seconds, or 'bar': as soon as the progress bar shows)."""
    out = tmp_path / f"{name}.fcrec"
    proc = subprocess.Popen(FLAMECAM + ["track", "synthetic:width=320,height=240", "-o", str(out)], cwd=REPO,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if when == "bar":
            seen = b""
            deadline = time.monotonic() + 300
            bar = re.compile(rb"\d+frame \[")  # tqdm: "0frame [00:00, ?frame/s]"
            while not bar.search(seen) and time.monotonic() < deadline:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
            assert bar.search(seen), seen
        else:
            time.sleep(when)
            seen = b""
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, (seen + stderr).decode("utf-8", "replace") + stdout.decode("utf-8", "replace"), out


@pytest.mark.parametrize("when", [0.3, 1.0, 2.5, "bar"])
def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(tmp_path, when):
    code, text, out = _interrupt(tmp_path, "run", when)
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert code == 130, (code, text)
    if out.exists():  # the recording had opened: it is closed, readable and says it was interrupted
        rec = load(out)
        assert rec.complete and rec.discarded_bytes == 0
        assert rec.interrupted and rec.summary["ended_by"] == "interrupted"
        assert "interrupted" in rec.stop_reason
        assert "is closed and readable" in text
    else:
        assert "interrupted" in text
    if when == "bar":
        assert out.exists()


def test_a_ctrl_c_that_start_up_code_swallowed_still_ends_the_run(tmp_path, monkeypatch, capsys):
    """Ctrl+C lands inside code that catches everything (a bare except around an import, as some
    libraries have) and start-up goes on: the run still ends there, nothing recorded, exit 130."""
    import core.session
    from app import cli

    real_build = core.session.build_session

    def build_swallowing_ctrl_c(*args, **kw):
        try:
            signal.raise_signal(signal.SIGINT)  # the user's Ctrl+C, raised as KeyboardInterrupt here...
        except BaseException:  # noqa: BLE001  (...and swallowed, as such code does)
            pass
        return real_build(*args, **kw)

    monkeypatch.setattr(core.session, "build_session", build_swallowing_ctrl_c)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    out = tmp_path / "never.fcrec"
    try:
        code = cli.main(["track", "synthetic:width=160,height=120,frames=5", "-o", str(out), "--quiet"])
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert code == 130 and not out.exists()
    assert "interrupted during start-up; nothing was recorded" in capsys.readouterr().err


def test_sigterm_records_the_run_as_interrupted(tmp_path):
    out = tmp_path / "term.fcrec"
    proc = subprocess.Popen(FLAMECAM + ["track", "synthetic:width=320,height=240", "-o", str(out), "--quiet"],
                            cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # until frames are on disk (flushed every second)
            time.sleep(0.5)
            if out.exists() and out.stat().st_size > 4096:
                break
        proc.terminate()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    rec = load(out)
    assert len(rec) > 0 and rec.complete and rec.interrupted
    assert rec.summary["frames"] == len(rec)
    assert b"Traceback" not in stderr


@pytest.mark.parametrize("command", [
    ["export", "{tmp}/missing.fcrec", "--npz", "{tmp}/x.npz"],
    ["render", "--source", "{tmp}/missing.mp4", "-o", "{tmp}/x.mp4"],
    ["calibrate", "{tmp}/missing.mp4"],
    ["convert-ict", "{tmp}/no_clone", "-o", "{tmp}/x.npz"],
    ["train-regressor", "--model", "{tmp}/missing.pkl", "-o", "{tmp}/x.onnx"],
    ["track", "{tmp}/missing.mp4", "-o", "{tmp}/x.fcrec"],
    ["track", "synthetic", "--model", "{tmp}/random.pkl", "-o", "{tmp}/y.fcrec"],
])
def test_every_command_refuses_bad_input_with_exit_2_and_one_line(tmp_path, command):
    (tmp_path / "random.pkl").write_bytes(bytes(range(44, 256)) * 8)
    args = [part.format(tmp=tmp_path) for part in command]
    proc = subprocess.run(FLAMECAM + args, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not _notice(line)]
    assert_one_error_line(errors, command[0])


def test_a_handled_ctrl_c_keeps_the_commands_exit_code(tmp_path):
    """A Ctrl+C that passes through Python code run from C (as an import's pybind11 ``exec`` does)
    leaves CPython's "unhandled KeyboardInterrupt" mark even once the command handled it; the
    command's exit code (130, one line) still wins. Run as a module, it used to end as -2, killed by
    SIGINT at exit."""
    from app.exit_codes import EXIT_INTERRUPTED

    (tmp_path / "probe.py").write_text(
        "import ctypes, sys\n"
        "import core.session\n"
        "def build_session(*args, **kw):\n"
        "    ctypes.pythonapi.PyRun_SimpleString(b'raise KeyboardInterrupt')  # leaves the mark\n"
        "    raise KeyboardInterrupt  # the Ctrl+C reaches the command\n"
        "core.session.build_session = build_session\n"
        f"sys.argv = ['flamecam', 'track', 'synthetic', '-o', {str(tmp_path / 'x.fcrec')!r}]\n"
        "from app.cli import main\n"
        "sys.exit(main())\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    proc = subprocess.run([sys.executable, "-m", "probe"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, (proc.returncode, proc.stderr)
    assert "interrupted during start-up; nothing was recorded" in proc.stderr
