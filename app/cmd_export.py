"""``flamecam export REC``: a recording as per-frame OBJ / PLY meshes, one .npz of its arrays, an animated
glTF (.glb) or smplx FLAME parameters (.npz). The work is ``core.export.export_recording``."""
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
    out.add_argument("--gltf", metavar="FILE", help="write one animated glTF 2.0 file (.glb, or .gltf): mesh with "
                     "the identity, expressions as morph targets, joints as a skin, head pose and camera per frame "
                     "(opens in Blender)")
    out.add_argument("--flame-npz", metavar="FILE", help="write smplx.FLAME's inputs per frame (betas, expression, "
                     "global_orient, neck/jaw/eye poses, transl) plus intrinsics and frame rate (FLAME models only)")
    parser.add_argument("--model", metavar="PATH", help="head model file, when it is no longer where the recording "
                        "says (or 'builtin')")
    parser.add_argument("--space", choices=("camera", "model"), default="camera",
                        help="OBJ/PLY only. camera: OpenCV camera space, lines up with the video (default); model: "
                             "model axes, head rotation applied, no translation")
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
    from core.export import ExportInputError, export_recording  # noqa: PLC0415

    fmt, target = next((name, value) for name, value in (
        ("obj", args.obj), ("ply", args.ply), ("npz", args.npz), ("gltf", args.gltf),
        ("flame-npz", args.flame_npz)) if value)
    try:
        frames = parse_frames(args.frames) if args.frames else None
        result = export_recording(args.recording, fmt, target, model_path=args.model, force=args.force,
                                  space=args.space, frames=frames, batch_size=args.batch_size,
                                  overwrite=args.overwrite)
    except (ExportInputError, ValueError) as exc:
        return _error(exc)
    except OSError as exc:
        return _error(_os_message(exc, target), EXIT_FAILED)
    for note in result.notes:
        print(f"flamecam export: note: {note}", file=sys.stderr)
    print(f"wrote {result.summary}")
    return EXIT_OK


def _os_message(exc: OSError, target) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {target}; files written before are complete"
    return f"cannot write {target}: {exc.strerror or exc}"
