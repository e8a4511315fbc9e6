"""``flamecam calibrate SOURCE --board SPEC``: calibrate a camera from a checkerboard/ChArUco board.

Detects the board in a live camera, a video or an image folder, picks well-spread views,
solves intrinsics and lens distortion with OpenCV, prints the result with its uncertainty and
saves it as a camera profile (picked automatically when that camera opens again; see
``core.profiles``). A poor calibration is refused with the reason (exit code 4).

Also: ``--list`` the stored profiles, ``--import`` an OpenCV YAML or K/dist .npz calibration,
``--export-yaml`` / ``--export-npz`` a profile, ``--print-board`` a board image to print.
"""
from __future__ import annotations

import argparse
import sys

from app.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, cli_error

DEFAULT_BOARD = "charuco:9x6,square=0.03,marker=0.022,dict=DICT_5X5_100"
MAX_FILE_FRAMES = 400  # frames of a video examined (evenly spaced); detection costs ~5-100 ms each


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", help="'webcam[:N]', a video file or a folder of images of the board")
    parser.add_argument("--board", default=DEFAULT_BOARD, metavar="SPEC",
                        help="the printed board: charuco:NXxNY,square=M,marker=M[,dict=DICT_5X5_100][,legacy=1] or "
                             "checkerboard:NXxNY,square=M (counts are squares; measure the print; default "
                             f"{DEFAULT_BOARD}). Both give corners to ~0.1 px (see benchmarks/intrinsics.py); "
                             "ChArUco also works when part of the board is out of view, which helps cover the "
                             "image corners")
    parser.add_argument("--model", choices=("opencv", "rational", "fisheye"), default="opencv",
                        help="lens model: opencv (default: k1 k2, plus p1 p2 and k3 only when a likelihood-ratio "
                             "test says the views need them), rational (k1..k6 p1 p2, strong distortion), fisheye "
                             "(equidistant k1..k4, lenses wider than ~120°)")
    parser.add_argument("--principal-point", choices=("auto", "free", "centre"), default="auto",
                        help="auto (default): estimated, unless the views leave it uncertain by more than 1 %% of "
                             "the image (narrow lenses), then fixed at the centre with a warning; free; centre")
    parser.add_argument("--name", help="camera name to store the profile under (default: the device name, the "
                                       "photos' make and model, or the file name)")
    parser.add_argument("--views", type=int, default=20, metavar="N",
                        help="views to use (live: collect this many; files: pick up to this many; default 20)")
    parser.add_argument("--min-views", type=int, default=8, metavar="N", help="refuse with fewer views (default 8)")
    parser.add_argument("--max-rms", type=float, default=1.0, metavar="PX",
                        help="refuse above this RMS reprojection error (default 1.0 px)")
    parser.add_argument("--min-board", type=float, default=0.03, metavar="FRACTION",
                        help="ignore views where the board covers less of the image (default 0.03)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="live: stop after N frames")
    parser.add_argument("-o", "--output", metavar="PROFILE.json", help="also write the profile here")
    parser.add_argument("--no-save", action="store_true", help="do not store the profile in the user config folder")
    parser.add_argument("--export-yaml", metavar="PATH", help="write the calibration as OpenCV YAML")
    parser.add_argument("--export-npz", metavar="PATH", help="write the calibration as K/dist .npz")
    parser.add_argument("--profile", metavar="NAME|PATH", help="with --export-*: export this existing profile")
    parser.add_argument("--list", action="store_true", help="list the stored camera profiles and exit")
    parser.add_argument("--import", dest="import_path", metavar="FILE",
                        help="store an OpenCV YAML / K-dist .npz calibration as a profile (with --name)")
    parser.add_argument("--image-size", metavar="WxH", help="with --import: the image size, when the file lacks it")
    parser.add_argument("--lens", choices=("opencv", "fisheye"), help="with --import: the file's lens model")
    parser.add_argument("--print-board", metavar="PNG", help="write a printable image of --board and exit")
    parser.add_argument("--dpi", type=int, default=300, help="with --print-board (default 300)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _error(message, code: int = EXIT_BAD_INPUT) -> int:
    return cli_error("calibrate", message, code)


def _size(text: str | None):
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        raise ValueError(f"--image-size {text!r}: expected WxH, e.g. 1280x720") from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from core.calibration import BoardSpec  # noqa: PLC0415
    from core.profiles import (ProfileError, export_npz, export_opencv_yaml, list_profiles,  # noqa: PLC0415
                               load_profile_spec, profiles_dir, save_profile)

    if args.list:
        profiles = list_profiles()
        if not profiles:
            print(f"no camera profiles in {profiles_dir()} (run flamecam calibrate SOURCE)")
        for p in profiles:
            print(f"{p.describe()}\n    {p.path}")
        return EXIT_OK
    try:
        board = BoardSpec.parse(args.board)
    except ValueError as exc:
        return _error(exc)
    if args.print_board:
        return _print_board(board, Path(args.print_board), args.dpi)
    if args.import_path:
        from dataclasses import replace  # noqa: PLC0415

        try:
            profile = load_profile_spec(args.import_path, None if args.image_size is None else _size(args.image_size),
                                        lens_model=args.lens)
        except (ProfileError, ValueError) as exc:
            return _error(exc)
        if args.name:
            profile = replace(profile, name=args.name)
        return _finish_profile(profile, args, save_profile, export_opencv_yaml, export_npz)
    if args.profile:
        if not (args.export_yaml or args.export_npz):
            return _error("--profile is for exporting: add --export-yaml or --export-npz")
        try:
            profile = load_profile_spec(args.profile)
        except ProfileError as exc:
            return _error(exc)
        args.no_save = True
        return _finish_profile(profile, args, save_profile, export_opencv_yaml, export_npz)
    if not args.source:
        return _error("give a SOURCE (webcam[:N], a video or an image folder), or --list / --import / --print-board")
    return _calibrate(args, board)


def _print_board(board, path, dpi: int) -> int:
    from core.render import save_png  # noqa: PLC0415

    px = max(20, int(round(board.square_m / 0.0254 * dpi)))
    try:
        save_png(path, board.image(px_per_square=px))
    except (OSError, ValueError) as exc:
        return _error(exc, EXIT_FAILED)
    w, h = board.size_m
    print(f"wrote {path}: {board} ({w * 100:.1f} x {h * 100:.1f} cm at {dpi} dpi). Print at 100 % scale, "
          "glue it flat, and measure a square: pass the measured size as square=...")
    return EXIT_OK


def _finish_profile(profile, args, save_profile, export_opencv_yaml, export_npz) -> int:
    from core.profiles import ProfileError  # noqa: PLC0415

    try:
        if not args.no_save:
            print(f"saved camera profile: {save_profile(profile)}")
        if args.output:
            print(f"wrote {profile.save(args.output)}")
        if args.export_yaml:
            print(f"wrote {export_opencv_yaml(profile, args.export_yaml)} (OpenCV YAML, OpenCV pixel convention)")
        if args.export_npz:
            print(f"wrote {export_npz(profile, args.export_npz)} (K, dist, image_size, model)")
    except (OSError, ProfileError) as exc:
        return _error(exc, EXIT_FAILED)
    print(profile.describe())
    return EXIT_OK


def _calibrate(args, board) -> int:
    from pathlib import Path  # noqa: PLC0415

    from core.calibration import CalibrationCriteria, CalibrationError, CalibrationSession, calibrate  # noqa: PLC0415
    from core.profiles import (camera_name_for_source, export_npz, export_opencv_yaml,  # noqa: PLC0415
                               profile_from_calibration, save_profile)
    from core.sources import SourceError, open_source  # noqa: PLC0415

    criteria = CalibrationCriteria(min_views=args.min_views, max_rms_px=args.max_rms,
                                   min_area_fraction=args.min_board)
    try:
        source = open_source(args.source)
    except SourceError as exc:
        return _error(exc)
    name = args.name or camera_name_for_source(source) or Path(args.source.rstrip("/")).stem or "camera"
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    session = CalibrationSession(board, source.size, args.model, criteria, target_views=args.views)
    interrupted = False
    try:
        if source.is_live:
            log(f"calibrating {name} ({source.size[0]}x{source.size[1]}) with {board}; Ctrl-C to solve early")
            last_tips = None
            try:
                for frame in source:
                    fb = session.process(frame.rgb, frame.index)
                    tips = session.guidance()
                    if fb.accepted or tips != last_tips:
                        log(f"[{fb.num_views} views] {fb.message}. " + " ".join(tips))
                        last_tips = tips
                    if session.ready and len(session.views) >= args.views:
                        break
                    if args.max_frames is not None and frame.index + 1 >= args.max_frames:
                        break
            except KeyboardInterrupt:
                interrupted = True
            views = session.views
        else:
            views = _views_from_files(source, session, args, log)
            log(f"selected {len(views)} well-spread views of {len(session.candidates)} with the board "
                f"({session.frames_seen} frames examined)")
    except SourceError as exc:
        return _error(f"{exc}", EXIT_FAILED)
    finally:
        source.close()
    try:
        result = calibrate(views, args.model, criteria, board, principal_point=args.principal_point)
    except CalibrationError as exc:
        print(f"flamecam calibrate: calibration refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(result.summary())
    profile = profile_from_calibration(result, name, source=args.source)
    code = _finish_profile(profile, args, save_profile, export_opencv_yaml, export_npz)
    return EXIT_INTERRUPTED if interrupted and code == EXIT_OK else code


def _views_from_files(source, session, args, log):
    """Collect every detection in a video / image folder (a long video is sampled evenly)."""
    from core.sources import ImageFolderSource, SourceError  # noqa: PLC0415

    total = source.num_frames
    stride = 1 if not total else max(1, total // MAX_FILE_FRAMES)
    unrelated = isinstance(source, ImageFolderSource)  # photos: no motion between them to judge
    for frame in source:
        if frame.index % stride:
            continue
        det = session.collect(frame.rgb, frame.index, max_motion_px=None if unrelated else 3.0)
        if det is not None and len(session.candidates) % 10 == 0:
            log(f"  board found in {len(session.candidates)} of {session.frames_seen} frames")
    if not session.candidates:
        raise SourceError(f"the board ({session.board}) was not found in any of {session.frames_seen} frames "
                          "examined: check --board (counts are squares, not inner corners; the ChArUco dictionary) "
                          "and that the board is sharp and evenly lit")
    return session.select(args.views)
