"""``flamecam gui``: the desktop app; ``flamecam`` with no arguments opens it too (or tracks headless).

With no arguments the app opens on the first webcam, or on the synthetic source with a notice
when there is none. On a machine without a display (Linux without X11/Wayland and no explicit
QT_QPA_PLATFORM) ``flamecam`` says so and runs the headless tracker instead: ``flamecam track``
with its defaults, limited to 150 frames on the synthetic source so that it ends.
"""
from __future__ import annotations

import argparse
import sys

from app.exit_codes import cli_error

HEADLESS_SYNTHETIC_FRAMES = 150


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="auto",
                        help="video file, image folder, 'webcam[:N]', 'synthetic[:key=value,...]' or 'auto' "
                             "(default: the first webcam, else the synthetic source)")
    parser.add_argument("--model", help="FLAME .pkl, head-model .npz, or 'builtin' (default: the last one used)")
    parser.add_argument("--camera", choices=("perspective", "ortho"), help="camera model (default: the last one used)")
    focal = parser.add_mutually_exclusive_group()
    focal.add_argument("--focal", metavar="auto|PX", help="focal length in pixels, or 'auto' to estimate it")
    focal.add_argument("--fov", type=float, metavar="DEG", help="fixed focal length as horizontal field of view")
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--camera-profile", metavar="NAME|PATH",
                         help="use a camera calibration (a stored profile's name or a file); default: the camera's "
                              "stored profile, if any (calibrate in the app's Calibrate tab or with flamecam calibrate)")
    profile.add_argument("--no-profile", action="store_true", help="do not use a camera profile")
    parser.add_argument("--device", default="auto", help="torch device for the tracker: auto (CUDA when present), "
                                                         "cpu, cuda")
    parser.add_argument("--landmarker", metavar="PATH", help="MediaPipe face_landmarker.task (default: resolved)")
    parser.add_argument("--embedding", metavar="PATH", help="landmark embedding .npz (default: computed and cached)")
    parser.add_argument("--record-dir", metavar="DIR", help="folder for recordings (default: the last one used)")
    parser.add_argument("--settings", metavar="FILE", help="keep settings in this .ini file instead of the "
                                                           "user's flamecam settings")


def _synthetic_spec(spec: str) -> str:
    """Live display of the synthetic source: paced like a camera (latest frame wins)."""
    if spec == "synthetic":
        return "synthetic:realtime=1"
    if spec.startswith("synthetic:") and "realtime" not in spec:
        return spec + ",realtime=1"
    return spec


def run(args: argparse.Namespace) -> int:
    from app.gui import has_display  # noqa: PLC0415

    if not has_display():
        return cli_error("gui", "no display (neither DISPLAY nor WAYLAND_DISPLAY is set). Run it on a desktop, under "
                                "xvfb-run, or track headless with 'flamecam track SOURCE -o OUT.fcrec'.")
    from app.gui import run_gui  # noqa: PLC0415
    from core.session import SessionOptions  # noqa: PLC0415

    from core.intrinsics import check_fixed_focal  # noqa: PLC0415

    try:
        check_fixed_focal(args.focal or "auto", args.fov)
    except ValueError as exc:
        return cli_error("gui", exc)
    options = SessionOptions(device=args.device, landmarker=args.landmarker, embedding=args.embedding)
    camera_profile = "none" if args.no_profile else args.camera_profile
    return run_gui(options, source=_synthetic_spec(args.source), model=args.model, camera_mode=args.camera,
                   focal=args.focal, fov_deg=args.fov, settings_path=args.settings, record_dir=args.record_dir,
                   camera_profile=camera_profile)


def run_default() -> int:
    """``flamecam`` alone: the app when there is a display, else the headless tracker (with a notice)."""
    from app.gui import has_display  # noqa: PLC0415

    if has_display():
        parser = argparse.ArgumentParser(prog="flamecam gui")
        add_arguments(parser)
        return run(parser.parse_args([]))
    from app import cmd_track  # noqa: PLC0415
    from core.session import default_output, resolve_source  # noqa: PLC0415

    spec, notice = resolve_source("auto")
    out = default_output(None)
    argv = [spec, "-o", str(out)]
    if spec.startswith("synthetic"):
        argv += ["--max-frames", str(HEADLESS_SYNTHETIC_FRAMES)]
    print("flamecam: no display found (DISPLAY / WAYLAND_DISPLAY unset), so running the headless tracker: "
          f"flamecam track {' '.join(argv)}" + (f"\nnote: {notice}" if notice else ""), file=sys.stderr)
    parser = argparse.ArgumentParser(prog="flamecam track")
    cmd_track.add_arguments(parser)
    return int(cmd_track.run(parser.parse_args(argv)) or 0)
