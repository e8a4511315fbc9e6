"""``flamecam render --source SPEC -o OUT``: a frame source (e.g. the synthetic head) as a video file.

Any ``--source`` that ``core.sources.open_source`` accepts works. For synthetic sources the exact
ground truth can be drawn over the frames: the mesh shaded or as a wireframe (hidden edges removed)
or the projected MediaPipe landmarks (through the model's landmark embedding; landmark i is vertex i
on the built-in model). With ``--recording REC`` it is a review video of a take
(``app.review_video``): the recorded mesh over the video it was tracked from, drawn as in the app
(``--overlay shaded`` by default, ``wireframe`` or ``landmarks``), with the focal length, ρ and the
tracking state burnt in; the video's size and length are checked against the recording first.
Video is written with OpenCV's VideoWriter: MPEG-4 Part 2 (``mp4v``) for .mp4/.m4v/.mov, Motion
JPEG for .avi/.mkv.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

from app.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, cli_error

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
OVERLAYS = ("none", "shaded", "wireframe", "landmarks")
ENDLESS_DEFAULT_S = 10.0  # length of the video when the source never ends and --frames is not given


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="synthetic", metavar="SPEC",
                        help="'synthetic[:key=value,...]' (default 'synthetic'), a video file, an image folder "
                             "or 'webcam[:N]'")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help=f"video file to write ({', '.join(FOURCC_BY_SUFFIX)})")
    parser.add_argument("--frames", type=int, metavar="N",
                        help=f"number of frames (default: the whole source, or {ENDLESS_DEFAULT_S:g} s of an "
                             "endless one such as the synthetic head)")
    parser.add_argument("--overlay", choices=OVERLAYS,
                        help="with --recording: the recorded mesh shaded (default), as a wireframe, or the detected "
                             "and fitted landmarks; on a synthetic source without it: its ground truth (default none)")
    parser.add_argument("--recording", metavar="REC", help="a review video: draw this recording (.fcrec) over "
                        "--source, the video or image folder it was tracked from, with focal length, rho and "
                        "tracking state as text")
    parser.add_argument("--model", metavar="PATH", help="with --recording: the head model, when it is no longer "
                        "where the recording says")
    parser.add_argument("--force", action="store_true", help="with --recording: use --model even if its SHA-256 "
                        "differs from the recording's")
    parser.add_argument("--fps", type=float, metavar="N", help="frame rate of the video (default: the source's)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _error(message, code: int = EXIT_BAD_INPUT) -> int:
    return cli_error("render", message, code)


class _Overlay:
    """Draws a synthetic frame's ground truth over it (own offscreen renderer, same camera)."""

    def __init__(self, kind: str, source, width: int, height: int):
        import numpy as np  # noqa: PLC0415
        import torch  # noqa: PLC0415

        from core.embedding import embed_points, embedding_for  # noqa: PLC0415
        from core.render import OffscreenRenderer, PointLayer, WireframeStyle  # noqa: PLC0415

        self.kind, self.source = kind, source
        self._np, self._torch, self._embed = np, torch, embed_points
        self._point_layer, self._style = PointLayer, WireframeStyle(color=(0.2, 0.95, 0.45), width_px=1.0)
        self.point_size_px = max(2.5, min(width, height) / 160.0)
        if kind == "landmarks":
            if source.head.kind != "builtin":
                print(f"flamecam render: note: finding the landmarks on {source.head.name} (cached after the "
                      "first time) ...", file=sys.stderr)
            ids, weights = embedding_for(source.head).vertex_weights(source.head.faces)
            self._ids, self._weights = torch.as_tensor(ids), torch.as_tensor(weights)
        self.renderer = OffscreenRenderer(width, height)

    def draw(self, frame):
        truth = frame.truth
        verts = self.source.vertices_cam(truth)
        if self.kind == "shaded":
            return self.renderer.render(verts, self.source.head.faces, truth.intrinsics, mesh_opacity=0.6,
                                        vertex_rgb=self.source.head.vertex_rgb, background=frame.rgb).rgb
        if self.kind == "wireframe":
            # mesh_opacity 0: the mesh only fills the depth buffer, so edges behind the face stay hidden.
            return self.renderer.render(verts, self.source.head.faces, truth.intrinsics, mesh_opacity=0.0,
                                        background=frame.rgb, wireframe=self._style).rgb
        points = self._embed(self._torch.as_tensor(verts)[None], self._ids, self._weights)[0].numpy()
        layer = self._point_layer(points_cam=points, color=(1.0, 0.25, 0.2), size_px=self.point_size_px)
        return self.renderer.render(None, None, truth.intrinsics, background=frame.rgb, points=layer).rgb

    def release(self) -> None:
        self.renderer.release()


class _Review:
    """The review video's drawing (``app.review_video``) behind the same draw(frame) / release() as _Overlay."""

    def __init__(self, rec, head, kind: str, width: int, height: int):
        from app.review_video import ReviewRenderer  # noqa: PLC0415

        self.positions = {int(f): p for p, f in enumerate(rec.frame_index.tolist())}
        self.renderer = ReviewRenderer(rec, head, kind, (width, height))

    def draw(self, frame):
        return self.renderer.draw(frame.rgb, self.positions.get(int(frame.index)))

    def release(self) -> None:
        self.renderer.release()


def _load_recording(args):
    """(recording, head model) for --recording, or an error message."""
    from core.export import ModelMismatchError, resolve_model  # noqa: PLC0415
    from core.model_io import ModelFileError  # noqa: PLC0415
    from core.recording import RecordingFormatError, load  # noqa: PLC0415

    try:
        rec = load(args.recording)
    except FileNotFoundError:
        return None, f"recording not found: {args.recording}"
    except (RecordingFormatError, OSError) as exc:
        return None, str(exc)
    if len(rec) == 0:
        return None, f"{args.recording} holds no frames"
    try:
        return (rec, resolve_model(rec, args.model, force=args.force)), ""
    except (ModelFileError, ModelMismatchError) as exc:
        return None, str(exc)


def run(args: argparse.Namespace) -> int:
    import cv2  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from core.assets import AssetError  # noqa: PLC0415
    from core.model_io import ModelFileError  # noqa: PLC0415
    from core.sources import SourceError, open_source  # noqa: PLC0415

    out = Path(args.output).expanduser()
    fourcc = FOURCC_BY_SUFFIX.get(out.suffix.lower())
    if fourcc is None:
        return _error(f"{out}: unsupported video type {out.suffix or '(no suffix)'!r}; "
                      f"use one of {', '.join(FOURCC_BY_SUFFIX)}")
    if args.frames is not None and args.frames < 1:
        return _error("--frames must be at least 1")
    if args.fps is not None and not args.fps > 0:
        return _error("--fps must be positive")
    if out.exists() and not args.overwrite:
        return _error(f"{out} exists; choose another name or pass --overwrite")
    if not out.parent.is_dir():
        return _error(f"{out.parent} is not an existing folder")
    kind = args.overlay or ("shaded" if args.recording else "none")
    review = None
    if args.recording:
        if kind == "none":
            return _error("--recording draws the take: choose --overlay shaded, wireframe or landmarks")
        review, message = _load_recording(args)
        if review is None:
            return _error(message)
    elif args.model or args.force:
        return _error("--model and --force go with --recording")
    try:
        source = open_source(args.source)
    except (SourceError, ModelFileError, AssetError) as exc:
        return _error(exc)

    from core.synthetic import SyntheticSource  # noqa: PLC0415

    if review is None and kind != "none" and not isinstance(source, SyntheticSource):
        source.close()
        return _error(f"--overlay {kind} draws the ground truth of a synthetic source; "
                      f"{source.name} has none (use --source synthetic[:...], or --recording REC for a take)")
    if review is not None:
        from app.review_video import RecordingMismatchError, check_source_matches  # noqa: PLC0415

        try:
            take_frames = check_source_matches(review[0], source)
        except RecordingMismatchError as exc:
            source.close()
            return _error(exc)
    fps = args.fps or source.fps or 30.0
    total = args.frames if args.frames is not None else source.num_frames
    if total is None:
        total = int(round(ENDLESS_DEFAULT_S * fps))
        print(f"flamecam render: note: {source.name} never ends; writing {total} frames ({ENDLESS_DEFAULT_S:g} s), "
              "use --frames N for another length", file=sys.stderr)
    elif source.num_frames is not None:
        total = min(total, source.num_frames)
    if review is not None:  # the take: from the video's start through the recording's last frame
        total = take_frames if args.frames is None else min(args.frames, take_frames)
    width, height = source.size

    overlay = writer = None
    written, interrupted, resized = 0, False, False
    bar = tqdm(total=total, unit="frame", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    try:
        if kind != "none":
            try:
                overlay = (_Overlay(kind, source, width, height) if review is None
                           else _Review(*review, kind, width, height))
            except (AssetError, RuntimeError) as exc:  # e.g. no landmarker for a model's embedding, no EGL
                return _error(f"cannot draw the {kind} overlay: {exc}", EXIT_FAILED)
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        if not writer.isOpened():
            return _error(f"OpenCV cannot write {out} with the {fourcc} codec at {width}x{height} "
                          "(is the folder writable? is the size valid?)", EXIT_FAILED)
        started = time.perf_counter()
        try:
            for frame in itertools.islice(source, total):  # islice never pulls (renders) a frame too many
                rgb = frame.rgb if overlay is None else overlay.draw(frame)
                if (rgb.shape[1], rgb.shape[0]) != (width, height):
                    if not resized:
                        print(f"flamecam render: note: frame {frame.index} is {rgb.shape[1]}x{rgb.shape[0]}; "
                              f"resizing frames to the first frame's {width}x{height}", file=sys.stderr)
                        resized = True
                    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
                # OpenCV >= 5 reports a failed write (e.g. a full disk); 4.x returns None.
                if writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)) is False:
                    return _error(f"writing frame {written} to {out} failed (disk full?); "
                                  f"the {written} frames before it are in the file", EXIT_FAILED)
                written += 1
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
        except SourceError as exc:
            return _error(f"{exc}; the {written} frames before it are in {out}", EXIT_FAILED)
    finally:
        bar.close()
        if writer is not None:
            writer.release()  # finalises the container, also after an error or Ctrl+C
        if overlay is not None:
            overlay.release()
        source.close()

    if written == 0:
        out.unlink(missing_ok=True)
        return _error(f"{source.name} delivered no frames; nothing written", EXIT_FAILED)
    check = cv2.VideoCapture(str(out))
    readable = check.isOpened() and check.read()[0]
    check.release()
    if not readable:
        return _error(f"{out} was written but cannot be read back (disk full or codec failure?)", EXIT_FAILED)
    if written < total and not interrupted:
        print(f"flamecam render: note: the source ended after {written} of {total} frames", file=sys.stderr)
    rate = written / max(time.perf_counter() - started, 1e-9)
    print(f"wrote {written} frames ({width}x{height}, {fps:g} fps, {fourcc}) to {out}; rendered at {rate:.1f} frames/s")
    return EXIT_INTERRUPTED if interrupted else EXIT_OK
