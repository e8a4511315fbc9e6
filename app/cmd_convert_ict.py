"""``flamecam convert-ict``: turn a clone of ICT-FaceKit into a head model flamecam loads.

ICT-FaceKit (MIT, github ICT-VGL/ICT-FaceKit) is cloned by the user; this command keeps its face,
head, neck and eyeballs and writes the ICT light ``.npz`` layout (see ``core.ict_convert``), which
``core.model_io.load_head_model`` then loads wherever flamecam takes a head-model file.
"""
from __future__ import annotations

import argparse
import sys

from app.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, cli_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clone", metavar="PATH_TO_ICT_FACEKIT_CLONE",
                        help="folder of a clone of https://github.com/ICT-VGL/ICT-FaceKit (or its FaceXModel folder)")
    parser.add_argument("-o", "--output", metavar="OUT.npz", required=True, help="head-model file to write")
    parser.add_argument("--force", action="store_true", help="overwrite OUT.npz if it exists")
    parser.add_argument("--layout", metavar="LAYOUT.json",
                        help="vertex ranges of the parts, for another ICT-FaceKit version (JSON object with any of "
                             "num_vertices, face, head_neck, eyeball_left, eyeball_right, iris_left, iris_right "
                             "as [lo, hi) ranges, num_identities, expression_names); default: the light model's")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors and the result")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415  (keep `flamecam --help` fast)

    from core.ict_convert import ICT_LAYOUT, IctConvertError, IctLayout, convert_ict  # noqa: PLC0415
    from core.model_io import ModelFileError, load_ict  # noqa: PLC0415

    out = Path(args.output).expanduser()
    if out.exists() and not args.force:
        return cli_error("convert-ict", f"{out} exists; pass --force to overwrite it")
    if out.is_dir():
        return cli_error("convert-ict", f"{out} is a folder; -o takes a file name such as ict_head.npz")

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    try:
        layout = IctLayout.from_json(args.layout) if args.layout else ICT_LAYOUT
        result = convert_ict(args.clone, out, layout, progress=say)
        head = load_ict(out)  # proves the file is usable before reporting success
    except IctConvertError as exc:  # not a clone, another version, a bad layout file: the user's input
        return cli_error("convert-ict", exc, EXIT_BAD_INPUT)
    except ModelFileError as exc:  # what we wrote does not load back
        return cli_error("convert-ict", exc, EXIT_FAILED)
    except OSError as exc:  # e.g. a full disk or an unwritable folder while writing OUT.npz
        return cli_error("convert-ict", f"cannot write {out}: {exc}", EXIT_FAILED)
    paint = ", ".join(f"{k} {v}" for k, v in result.paint_counts.items())
    print(f"wrote {out}: {head.num_vertices} vertices, {result.num_faces} triangles, {head.num_shape} identity and "
          f"{head.num_expr} expression components"
          f"{'' if result.has_landmarks else ', no 68 landmarks (README.md without them)'}; painted {paint}")
    if result.dropped_faces:
        say(f"note: {result.dropped_faces} triangles joined kept and dropped parts and were left out")
    return 0
