"""``python -m core.recording [REC] [--describe]``: a recording's summary, or the file format's documentation."""
from __future__ import annotations

import argparse
import sys

import core.recording as _package
from core.recording.format import RecordingFormatError
from core.recording.reader import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.recording", description="flamecam recording files (.fcrec)")
    parser.add_argument("recording", nargs="?", help="print a summary of this recording")
    parser.add_argument("--describe", action="store_true", help="print the file format documentation")
    args = parser.parse_args(argv)
    if args.describe:
        print(_package.__doc__)
        return 0
    if not args.recording:
        parser.print_help()
        return 0
    try:
        print(load(args.recording).describe())
    except (OSError, RecordingFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
