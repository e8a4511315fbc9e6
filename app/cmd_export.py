"""``flamecam export REC``: a recording as per-frame OBJ / PLY meshes or one .npz of arrays."""
from __future__ import annotations

import argparse
import errno
import sys

from app.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, cli_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", metavar="REC", help="a flamecam recording (.fcrec)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--obj", metavar="DIR", help="write DIR/frame_NNNNNN.obj per frame")
    out.add_argument("--ply", metavar="DIR", help="write DIR/frame_NNNNNN.ply (binary little-endian) per frame")
    out.add_argument("--npz", metavar="FILE", help="write every per-frame array, the identities and the "
                     "metadata (JSON) to one .npz")
    parser.add_argument("--model", metavar="PATH", help="head model file, when it is no longer where the recording "
                        "says (or 'builtin')")
    parser.add_argument("--space", choices=("camera", "model"), default="camera",
                        help="camera: OpenCV camera space, lines up with the video (default); model: model axes, "
                             "head rotation applied, no translation")
    parser.add_argument("--frames", metavar="A:B", help="only frames with A <= frame_index < B (either bound may "
                        "be left out; a single number selects one frame)")
    parser.add_argument("--batch-size", type=int, default=64, help="frames per forward pass (default 64)")
    parser.add_argument("--force", action="store_true", help="export even if the model file's SHA-256 differs "
                        "from the recording's")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def parse_frames(text: str) -> tuple[int | None, int | None]:
    """'A:B' / 'A:' / ':B' / 'A' -> (start, stop) with stop exclusive."""
    try:
        if ":" not in text:
            start = int(text)
            return start, start + 1
        a, b = text.split(":", 1)
        return (int(a) if a.strip() else None), (int(b) if b.strip() else None)
    except ValueError:
        raise ValueError(f"--frames {text!r}: expected A:B with integers (e.g. 100:200, 100:, :200 or 150)") from None


def _error(message, code: int = EXIT_BAD_INPUT) -> int:
    return cli_error("export", message, code)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from core.recording import RecordingFormatError, load  # noqa: PLC0415

    try:
        rec = load(args.recording)
    except FileNotFoundError:
        return _error(f"recording not found: {args.recording}")
    except (RecordingFormatError, OSError) as exc:
        return _error(exc)
    if not rec.complete:
        print(f"flamecam export: note: {rec.path} is incomplete (the writer did not close); exporting the "
              f"{len(rec)} readable frames" + (f", {rec.discarded_bytes} bytes discarded: {rec.stop_reason}"
                                               if rec.discarded_bytes else ""), file=sys.stderr)
    if args.frames:
        try:
            start, stop = parse_frames(args.frames)
        except ValueError as exc:
            return _error(exc)
        rec = rec.frame_range(start, stop)
    if len(rec) == 0:
        return _error(f"no frames to export in {args.recording}" + (f" for --frames {args.frames}" if args.frames else ""))
    if args.batch_size < 1:
        return _error("--batch-size must be at least 1")

    if args.npz:
        target = Path(args.npz)
        if target.exists() and not args.overwrite:
            return _error(f"{target} exists; choose another name or pass --overwrite")
        try:
            rec.to_npz(target)
        except OSError as exc:
            return _error(_os_message(exc, target), EXIT_FAILED)
        print(f"wrote {len(rec)} frames to {target}")
        return EXIT_OK

    from core.export import ModelMismatchError, export_meshes, resolve_model  # noqa: PLC0415
    from core.model_io import ModelFileError  # noqa: PLC0415

    try:
        head = resolve_model(rec, args.model, force=args.force)
    except (ModelFileError, ModelMismatchError) as exc:
        return _error(exc)
    fmt, out_dir = ("obj", args.obj) if args.obj else ("ply", args.ply)
    try:
        result = export_meshes(rec, head, out_dir, fmt=fmt, space=args.space, batch_size=args.batch_size,
                               overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        return _error(exc)
    except OSError as exc:
        return _error(_os_message(exc, out_dir), EXIT_FAILED)
    print(f"wrote {len(result.paths)} {fmt.upper()} meshes ({args.space} space) to {out_dir}")
    if result.skipped_frame_indices:
        skipped = result.skipped_frame_indices
        print(f"flamecam export: note: skipped {len(skipped)} frames with non-finite parameters "
              f"(e.g. frame {skipped[0]})", file=sys.stderr)
    return EXIT_OK


def _os_message(exc: OSError, target) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {target}; files written before are complete"
    return f"cannot write {target}: {exc.strerror or exc}"
