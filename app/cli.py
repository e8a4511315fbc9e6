"""``flamecam`` command line: one sub-command per job, thin wrappers over ``core``."""
from __future__ import annotations

import argparse
import sys

from app.exit_codes import EXIT_BAD_INPUT, HELP_EXIT_CODES, EXIT_INTERRUPTED


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (its own print the usage first)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flamecam", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=HELP_EXIT_CODES,
        description="Track a 3D head model (FLAME) with a perspective camera, including its focal length.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each entry: (name, module) where module defines add_arguments(parser) and run(args) -> int.
    for name, module, help_text in COMMANDS:
        mod = __import__(module, fromlist=["add_arguments", "run"])
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(cmd)
        cmd.set_defaults(_run=mod.run)
    return parser


COMMANDS: list[tuple[str, str, str]] = [
    ("track", "app.cmd_track", "Track a head and its camera's focal length in a video, image folder, webcam or "
                               "synthetic source; write a recording"),
    ("batch", "app.cmd_batch", "Track whole datasets (videos, image folders, globs, lists) into one recording each; "
                               "resumable; worker processes or a Ray cluster; writes batch_report.csv/.json"),
    ("convert-ict", "app.cmd_convert_ict", "Convert an ICT-FaceKit clone into a flamecam head-model .npz"),
    ("export", "app.cmd_export", "Export a recording as per-frame OBJ/PLY meshes or one .npz"),
    ("gui", "app.cmd_gui", "Open the desktop app (live overlay, plots, recording); 'flamecam' alone does too"),
    ("render", "app.cmd_render", "Render a source (e.g. the synthetic head) to a video file"),
    ("calibrate", "app.cmd_calibrate", "Calibrate a camera and lens from a board; store it as a camera profile"),
    ("train-regressor", "app.cmd_train_regressor", "Train the per-frame regressor (coefficients and camera) for a head model"),
]


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            # No command: the app on a desktop, the headless tracker (with a notice) without a display.
            from app.cmd_gui import run_default  # noqa: PLC0415

            return run_default()
        return int(args._run(args) or 0)
    except KeyboardInterrupt:  # Ctrl+C where a command does not handle it (start-up, imports): one line
        print("flamecam: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if argv is None:  # the process's own command line (not a test calling main)
            _ignore_interrupts_while_exiting()


def _ignore_interrupts_while_exiting() -> None:
    """The command has ended and said so: a late Ctrl+C must not print a traceback from the shutdown,
    and a handled one must not change the exit code.

    CPython remembers a KeyboardInterrupt that left Python code run by C (``PyRun_String``, e.g.
    pybind11's ``exec`` during an import) as unhandled even when an outer ``except`` handled it, and
    at exit kills the process with SIGINT instead of returning our code (exit -2 for a Ctrl+C about
    1 s into ``flamecam track``). Any successful ``PyRun_SimpleString`` clears that mark."""
    import ctypes  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.pythonapi.PyRun_SimpleString(b"pass")


if __name__ == "__main__":
    sys.exit(main())
