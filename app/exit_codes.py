"""Exit codes of the ``flamecam`` commands and their one error line (the README's table lists them).

Every failure a user can cause or meet ends with exactly one line ``flamecam COMMAND: error: ...``
on stderr (no traceback) and one of these codes.
"""
from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILED = 1  # something went wrong on the way (disk, codec, model could not be embedded, ...)
EXIT_BAD_INPUT = 2  # a bad option, a missing or unreadable file, a wrong model file
EXIT_NO_FACE = 3  # track: no face in the whole source
EXIT_REFUSED = 4  # calibrate: the calibration was too poor to save
EXIT_SOME_FAILED = 4  # batch: some inputs failed (each one is in batch_report.csv/.json)
EXIT_INTERRUPTED = 130  # Ctrl+C or SIGTERM (what was recorded is closed and readable)

# `flamecam --help` prints this; the README's table says the same.
HELP_EXIT_CODES = """exit codes:
  0    done (batch: every input done or already complete)
  1    failed on the way (disk full, codec, a camera that vanished; what was recorded is kept)
  2    bad input: a bad option, a missing or unreadable file, a wrong model file
  3    track: no face in the whole source
  4    calibrate: the calibration was too poor to save; batch: some inputs failed (batch_report.csv)
  130  interrupted (Ctrl+C or SIGTERM; the recording is closed and readable; batch: run again to resume)
Every failure prints one line: flamecam COMMAND: error: WHAT (and how to fix it)."""


def cli_error(command: str, message, code: int = EXIT_BAD_INPUT) -> int:
    """Print ``flamecam COMMAND: error: MESSAGE`` (one line) to stderr and return ``code``."""
    print(f"flamecam {command}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code
