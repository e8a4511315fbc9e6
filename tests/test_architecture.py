"""Architecture rules: core never imports Qt; no third-party model data tracked in git."""
from __future__ import annotations

import ast
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core"
QT_PACKAGES = ("PySide6", "PySide2", "PyQt6", "PyQt5", "PyQt4", "pyqtgraph", "shiboken6", "shiboken2", "qtpy")
# Third-party model files that must only ever be resolved at run time (see core/assets.py, DEVELOPERS.md).
FORBIDDEN_TRACKED = ("*.task", "*.tflite", "*ict_facekit*.npz", "*generic_model.pkl", "*flame2020*.pkl",
                     "*flame2023*.pkl")


def _is_qt(module: str) -> bool:
    return module.split(".")[0] in QT_PACKAGES


def qt_imports(source: str, filename: str = "<string>") -> list[str]:
    """'line: module' for every Qt import in Python source: import statements, and
    ``__import__`` / ``importlib.import_module`` calls with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called in {"__import__", "import_module"} and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [(node.lineno, name) for name in names if _is_qt(name)]
    return [f"{line}: {name}" for line, name in sorted(found)]


def core_modules() -> list[str]:
    return sorted("core." + ".".join(p.relative_to(CORE).with_suffix("").parts)
                  for p in CORE.rglob("*.py") if p.name != "__init__.py")


def test_the_scanner_sees_qt_imports():
    snippet = ("import os\nfrom PySide6.QtCore import QObject\nimport pyqtgraph as pg\n"
               "def f():\n    import qtpy.QtWidgets\n    return __import__('PyQt5')\n"
               "import importlib\nimportlib.import_module('shiboken6')\nfrom . import pyside_like\n")
    assert [hit.split(": ")[1] for hit in qt_imports(snippet)] == [
        "PySide6.QtCore", "pyqtgraph", "qtpy.QtWidgets", "PyQt5", "shiboken6"]


def test_core_source_never_imports_qt():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 10, f"expected the core package at {CORE}"
    offenders = {str(p.relative_to(REPO)): hits for p in files if (hits := qt_imports(p.read_text(), str(p)))}
    assert not offenders, f"core must never import Qt (napari rule): {offenders}"


def test_importing_all_of_core_loads_no_qt():
    modules = core_modules()
    assert {"core.tracker.online", "core.pipeline", "core.render", "core.synthetic", "core.landmarks"} <= set(modules)
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"qt = sorted(m for m in sys.modules if m.split('.')[0] in {QT_PACKAGES!r})\n"
        "print(json.dumps({'qt': qt, 'core': sorted(m for m in sys.modules if m.startswith('core.'))}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"importing core failed:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(modules) <= set(report["core"])
    assert report["qt"] == [], f"importing core pulled in Qt: {report['qt']}"


def test_no_third_party_model_data_in_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    tracked = [p for p in proc.stdout.decode().split("\0") if p]
    assert "core/assets.py" in tracked  # the listing is real
    offenders = [p for p in tracked for pattern in FORBIDDEN_TRACKED if fnmatch.fnmatch(p.lower(), pattern)]
    assert not offenders, f"third-party model data is tracked in git (resolve it at run time instead): {offenders}"


def test_pyside_is_not_the_release_that_over_releases_none():
    """PySide6 6.12.0 drops references to None/True on Python 3.11 and crashes pyqtgraph windows;
    pyproject.toml excludes it. A venv that still has it must be re-installed."""
    from importlib.metadata import version

    assert version("PySide6-Essentials") != "6.12.0", "reinstall: pip install -e . (PySide6-Essentials!=6.12.0)"


def _grep(pattern: str, *paths: str) -> list[str]:
    proc = subprocess.run(["git", "grep", "-n", "-E", pattern, "--", *paths], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    return [line for line in proc.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_the_regressor_is_an_input_and_sessions_have_one_builder():
    """The regressor's beliefs reach the tracker only through Tracker.step's FramePrior, and the CLI and
    the app build sessions through core.session.build_session (issue: one way through the code)."""
    assert _grep(r"set_focal_prior|self\.tracker\b", "core/regressor.py") == []
    assert _grep(r"make_tracker\(|attach_regressor\(", "app", "core", "benchmarks") == []
    assert _grep(r"getattr\(tracker", "core") == []
    assert _grep(r"build_session\(", "app/cmd_track.py") and _grep(r"build_session\(", "app/gui_worker.py")


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_shared_constants_have_one_home():
    """State names, landmark counts and exit codes are defined once (core.constants, app.exit_codes)."""
    assert [hit.split(":")[0] for hit in _grep(r"^\s*(FOCAL_STATES|TRACKING_STATES)\b.*=", "*.py")] == [
        "core/constants.py", "core/constants.py"]
    assert [hit.split(":")[0] for hit in _grep(r"^\s*NUM_LANDMARKS\s*=", "*.py")] == ["core/constants.py"]
    codes = [hit.split(":")[0] for hit in _grep(r"^\s*EXIT_\w+\s*=\s*[0-9]|^\s*EXIT_\w+, ", "*.py")]
    assert codes and set(codes) == {"app/exit_codes.py"}, codes
    assert [hit for hit in _grep(r"=\s*478\b", "core", "app", "ui") if not hit.startswith("core/constants.py")] == []


def test_core_modules_stay_focused():
    """No module in core/ grows past ~800 lines: split it by responsibility (a subpackage per stage)."""
    too_long = {str(p.relative_to(REPO)): n for p in CORE.rglob("*.py")
                if (n := len(p.read_text().splitlines())) > 850}
    assert not too_long, f"split these modules by responsibility: {too_long}"
