"""``flamecam track SOURCE -o OUT``: track a head (and the focal length) and write a recording."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from app.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_FACE, EXIT_OK, cli_error
from core.constants import DEFAULT_MAX_FACES

MAX_FACES_LIMIT = 20  # --max-faces: MediaPipe runs its landmark model once per face it finds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", default="auto",
                        help="video file, image folder, 'webcam[:N]', 'synthetic[:key=value,...]' or 'auto' "
                             "(default: the first webcam, else the synthetic source)")
    parser.add_argument("-o", "--output", metavar="OUT", help="recording to write (.fcrec; default: a dated name)")
    add_tracking_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    """The tracking options ``flamecam track`` and ``flamecam batch`` share (what SessionOptions holds)."""
    parser.add_argument("--model", default="builtin", help="FLAME .pkl, head-model .npz, or 'builtin' (default)")
    parser.add_argument("--camera", choices=("perspective", "ortho"), default="perspective",
                        help="camera model (ortho = weak perspective, for comparisons)")
    focal = parser.add_mutually_exclusive_group()
    focal.add_argument("--focal", default="auto", metavar="auto|PX",
                       help="focal length in pixels, or 'auto' to estimate it online (default)")
    focal.add_argument("--fov", type=float, metavar="DEG", help="fixed focal length as horizontal field of view")
    parser.add_argument("--camera-profile", metavar="NAME|PATH",
                        help="use a camera calibration: a stored profile's name (see flamecam calibrate --list) or a "
                             "file (.json profile, OpenCV .yaml, K/dist .npz); fixes focal length, principal point "
                             "and lens distortion")
    parser.add_argument("--no-profile", action="store_true",
                        help="do not pick the stored profile of the camera automatically")
    parser.add_argument("--no-metadata", action="store_true",
                        help="ignore focal-length metadata (EXIF, QuickTime) of photos and videos")
    parser.add_argument("--refine", action="store_true",
                        help="after tracking, refine the whole sequence jointly (offline; rewrites OUT)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--landmarker", metavar="PATH", help="MediaPipe face_landmarker.task (default: resolved)")
    parser.add_argument("--embedding", metavar="PATH", help="landmark embedding .npz (default: computed and cached)")
    parser.add_argument("--face", choices=("largest", "centre"), default="largest",
                        help="which face to track when several are in view (default: the largest)")
    parser.add_argument("--max-faces", type=int, default=DEFAULT_MAX_FACES, metavar="N",
                        help=f"faces MediaPipe looks for (default {DEFAULT_MAX_FACES}, so the tracked person is chosen "
                             "among everyone in view); 1 for footage of one person: its face detector then runs only "
                             "when the face is lost, about 20%% less of its CPU")
    parser.add_argument("--device", default="cpu", help="torch device for the tracker (cpu, cuda)")
    parser.add_argument("--regressor", default="auto", metavar="auto|none|PATH",
                        help="per-frame regressor (init, re-acquisition, focal prior): 'auto' finds the model's trained "
                             "one (user cache, or the built-in model's in resources/), 'none' tracks from landmarks "
                             "alone, or a .onnx file from flamecam train-regressor")
    parser.add_argument("--stream", action="append", default=[], metavar="URL",
                        help="stream every frame live over OSC/UDP while tracking (repeatable): "
                             "vmc://HOST[:PORT] for VSeeFace, Warudo, VNyan, Blender (VMC protocol: head pose and 52 "
                             "ARKit blendshapes; options ?blendshapes=mediapipe|model&mirror=1&names=perfectsync|arkit), "
                             "flamecam://HOST:PORT or osc://HOST:PORT for every tracked parameter (see README)")
    parser.add_argument("--no-landmarks", action="store_true", help="do not store detected landmarks in OUT")


def _error(message, code: int = EXIT_BAD_INPUT) -> int:
    return cli_error("track", message, code)


def tracking_arguments_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the tracking options ``track`` and ``batch`` share (None: nothing), in one line."""
    if args.max_frames is not None and args.max_frames < 1:
        return f"--max-frames {args.max_frames}: must be at least 1"
    if not 1 <= args.max_faces <= MAX_FACES_LIMIT:
        return f"--max-faces {args.max_faces}: must be 1 to {MAX_FACES_LIMIT}"
    return None


def session_options(args: argparse.Namespace):
    """The :class:`core.session.SessionOptions` of a ``flamecam track`` command line."""
    from core.session import SessionOptions  # noqa: PLC0415

    return SessionOptions(source=args.source, model=args.model, camera_mode=args.camera, focal=args.focal,
                          fov_deg=args.fov, landmarker=args.landmarker, embedding=args.embedding, device=args.device,
                          max_frames=args.max_frames, store_landmarks=not args.no_landmarks, keep_history=args.refine,
                          camera_profile=args.camera_profile, auto_profile=not args.no_profile,
                          use_metadata=not args.no_metadata, regressor=args.regressor, face=args.face,
                          max_faces=args.max_faces)


def check_output(out, overwrite: bool) -> str | None:
    """Why the recording cannot be written at ``out`` (None when it can), checked before any model loads."""
    import os  # noqa: PLC0415

    if out.is_dir():
        return f"{out} is a folder; give a file name such as {out / 'take.fcrec'}"
    if out.exists() and not overwrite:
        return f"{out} exists; pass --overwrite to replace it"
    folder = out.parent if str(out.parent) else out.resolve().parent
    if not folder.is_dir():
        return f"{folder} is not an existing folder (create it first)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write into {folder} (no permission)"
    return None


def run(args: argparse.Namespace) -> int:
    from core.signals import sticky_interrupts  # noqa: PLC0415

    sticky_interrupts()  # kill (SIGTERM) ends a run like Ctrl+C; neither is lost in the start-up
    try:
        return _run(args)
    except KeyboardInterrupt:  # before the recording opened (after it, _track handles it)
        print("flamecam track: interrupted during start-up; nothing was recorded", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from core.intrinsics import check_fixed_focal  # noqa: PLC0415
    from core.session import SessionError, build_session, default_output, eprint  # noqa: PLC0415
    from core.signals import raise_if_interrupted  # noqa: PLC0415

    problem = tracking_arguments_problem(args)
    if problem:
        return _error(problem)
    try:
        check_fixed_focal(args.focal, args.fov)
    except ValueError as exc:
        return _error(exc)
    out = default_output(args.output)
    problem = check_output(out, args.overwrite)
    if problem:
        return _error(problem)
    from core.streaming import StreamError, StreamModel, Streamer, StreamTarget  # noqa: PLC0415
    try:
        stream_targets = [StreamTarget.parse(url) for url in args.stream]
        for target in stream_targets:
            target.resolve()
    except StreamError as exc:
        return _error(exc)
    try:
        session = build_session(session_options(args), log=eprint)
    except SessionError as exc:
        return _error(exc.message, EXIT_BAD_INPUT if exc.bad_input else EXIT_FAILED)
    try:
        raise_if_interrupted()  # a Ctrl+C that code in the start-up caught and swallowed
    except KeyboardInterrupt:
        session.close()
        raise
    try:
        streamer = Streamer(stream_targets, StreamModel.from_head(session.head)) if stream_targets else None
    except StreamError as exc:
        session.close()
        return _error(exc)
    try:
        return _track(session, out, args, streamer)
    finally:
        if streamer is not None:
            streamer.close()
        session.close()


def _track(session, out, args: argparse.Namespace, streamer=None) -> int:
    from tqdm import tqdm  # noqa: PLC0415

    from core.recording import RecordingError  # noqa: PLC0415
    from core.session import eprint  # noqa: PLC0415
    from core.sources import SourceError  # noqa: PLC0415

    source, pipeline = session.source, session.pipeline
    meta = session.recording_meta()
    total = min(x for x in (source.num_frames, session.options.max_frames, float("inf")) if x is not None)
    bar = None

    def open_bar() -> None:  # once the recording is open: from then on Ctrl+C leaves a closed recording
        nonlocal bar
        bar = tqdm(total=None if total == float("inf") else int(total), unit="frame", disable=args.quiet,
                   file=sys.stderr, dynamic_ncols=True)

    def show(result) -> None:
        if streamer is not None:
            streamer.send(result)
        track = result.track
        bar.update(1)
        bar.set_postfix_str(f"{pipeline.stats.frames / max(bar.format_dict['elapsed'], 1e-6):.1f} fps  "
                            f"f={track.focal_px:.0f}±{track.focal_sigma_px:.0f}px ({track.focal_state})  "
                            f"ρ={track.rho_per_m:.2f}/m  {track.tracking_state}", refresh=False)

    try:
        run = record_run(session, out, meta, overwrite=args.overwrite, on_result=show, on_open=open_bar)
    except SourceError as exc:
        _close_bar(bar)
        return _error(f"{exc}; the frames before it are saved in {out}", EXIT_FAILED)
    except RecordingError as exc:
        _close_bar(bar)
        return _error(exc, EXIT_FAILED)
    finally:
        _close_bar(bar)
    stats, interrupted, last_with_face, segments = pipeline.stats, run.interrupted, run.last_with_face, run.segments
    if interrupted:
        eprint(f"flamecam track: interrupted after {stats.frames} frames; the recording {out} is closed and readable")
        if stats.frames_with_face == 0:
            return EXIT_INTERRUPTED
    elif stats.frames == 0:
        return _error("the source delivered no frames", EXIT_FAILED)
    if stats.frames_with_face == 0:
        return _error(f"no face found in any of {stats.frames} frames (recording {out} holds only 'no_face' frames)",
                      EXIT_NO_FACE)
    if args.refine and not interrupted:
        eprint(f"refining {len(session.tracker.history)} frames jointly ...")
        last_with_face = write_refined(session, out, meta, segments=segments)
    summary = stats.summary()
    print(f"tracked {stats.frames} frames ({stats.frames_with_face} with a face) at {summary['fps']:.1f} fps "
          f"(tracker p50 {summary['tracker_ms_p50']:.1f} ms, landmarks p50 {summary['landmarks_ms_p50']:.1f} ms)"
          + (" — interrupted" if interrupted else ""))
    if last_with_face is not None:
        print(focal_summary(last_with_face, source.size[0]))
    if len(segments) > 1:
        print("\n".join(segments.lines(lambda track: focal_summary(track, source.size[0]))))
    print(f"recording: {out}")
    if streamer is not None:
        streamer.close()  # what was still waiting is sent, so the counts are final
        for status in streamer.status.targets:
            print(f"stream: {status.describe()}")
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _close_bar(bar) -> None:
    if bar is not None:
        bar.close()


def focal_record(track) -> dict:
    """The final focal estimate and what it rests on, for the recording's END summary."""
    if track is None:
        return {}
    return {"focal_px": track.focal_px, "focal_sigma_px": track.focal_sigma_px, "focal_state": track.focal_state,
            "focal_evidence": [list(part) for part in track.focal_evidence], "rho_per_m": track.rho_per_m}


def focal_summary(track, width: int) -> str:
    """The closing lines about the camera, in a user's words: the focal length and what it rests on,
    or plainly that it is not known."""
    from core.camera import focal_to_fov_deg  # noqa: PLC0415
    from core.tracker.types import describe_shares  # noqa: PLC0415

    f, sigma_rel = track.focal_px, track.focal_sigma_px / track.focal_px
    fov = float(focal_to_fov_deg(f, width))
    basis = describe_shares(track.focal_evidence) if track.focal_evidence else "?"
    distance = f"; distance {1 / track.rho_per_m:.2f} m (ρ = {track.rho_per_m:.2f} 1/m)" if track.rho_per_m > 0 else ""
    if track.focal_state == "not_observable":
        text = (f"focal length not known from this footage: {f:.0f} px ± {sigma_rel:.0%} ({fov:.0f}° horizontal), "
                f"resting on {basis}. Calibrate (flamecam calibrate), or give the lens: --focal PX, --fov DEG or "
                "--camera-profile")
    else:
        state = "" if track.focal_state == "fixed" else f", {track.focal_state}"
        text = f"focal length {f:.0f} ± {track.focal_sigma_px:.0f} px ({fov:.0f}° horizontal{state}) — {basis}"
    return f"{text}{distance}; fit error {track.fit_error_px:.2f} px"


# --- the track loop, shared with flamecam batch (app.batch_worker) ---------------------------------------


@dataclass
class RunOutcome:
    """How :func:`record_run` ended: ``interrupted`` by Ctrl+C/SIGTERM; the last frame that had a face."""

    interrupted: bool
    last_with_face: object | None  # core.tracker.TrackResult
    segments: object  # core.segments.SegmentLog


def record_run(session, out, meta, overwrite: bool = False, on_result=None, summary_extra: dict | None = None,
               on_open=None) -> RunOutcome:
    """Run ``session``'s pipeline to its end and write every frame (and identity change) to the recording
    ``out``, closed with the run's statistics (plus ``summary_extra``). ``on_result(FrameResult)`` is
    called after each frame is written, ``on_open()`` once the recording is open. Ctrl+C stops the run and closes the recording (``interrupted``);
    a source failure (:class:`core.sources.SourceError`) or a write failure
    (:class:`core.recording.RecordingError`) is raised after the frames before it are saved."""
    from app.gc_policy import frozen_after_first  # noqa: PLC0415
    from core.recording import RecordingWriter  # noqa: PLC0415
    from core.segments import SegmentLog  # noqa: PLC0415

    pipeline = session.pipeline
    shape_version = -1
    last_with_face = None
    interrupted = False
    segments = SegmentLog()
    with RecordingWriter(out, meta, overwrite=overwrite) as writer:
        try:
            if on_open is not None:
                on_open()
            for result in frozen_after_first(pipeline.run()):
                track = result.track
                if track.shape_version != shape_version:
                    writer.write_identity(track.frame_index, track.shape)
                    shape_version = track.shape_version
                writer.write_track_result(track)
                segments.add(track)
                if track.tracking_state in ("tracking", "reacquired"):
                    last_with_face = track
                if on_result is not None:
                    on_result(result)
        except KeyboardInterrupt:
            interrupted = True
            pipeline.stop.set()
        ended_by = "interrupted" if interrupted else "finished"
        writer.close(summary={**pipeline.stats.summary(), **focal_record(last_with_face), **(summary_extra or {}),
                              "segments": segments.records(), "ended_by": ended_by})
    return RunOutcome(interrupted, last_with_face, segments)


def write_refined(session, out, meta, summary_extra: dict | None = None, segments=None):
    """Refine the tracked sequence jointly (``--refine``) and rewrite the recording ``out`` with it (through a
    temporary file renamed over ``out``; the online segments are kept); returns the last refined frame's
    TrackResult."""
    from core.recording import RecordingWriter  # noqa: PLC0415
    from core.recording import load as load_recording  # noqa: PLC0415

    tracker, stats = session.tracker, session.pipeline.stats
    refined = tracker.refine_sequence()
    # Refinement covers only frames with a face; frames without one keep their online record.
    by_index = {track.frame_index: track for track in refined}
    online = load_recording(out)
    tmp = out.with_name(out.name + ".refining")
    with RecordingWriter(tmp, meta, overwrite=True) as writer:
        if len(online.segment_ids) <= 1:
            writer.write_identity(0, tracker.shape.cpu().numpy())
        for i, index in enumerate(online.frame_index.tolist()):
            if online.segments and (i == 0 or online.segment_id[i] != online.segment_id[i - 1]):
                writer.write_segment(online.segment_info(int(online.segment_id[i])))
            if index in by_index:
                writer.write_track_result(by_index[index])
            else:
                writer.write_frame(online.frame(i))
        extra = {"segments": segments.records()} if segments is not None else {}
        writer.close(summary={**stats.summary(), **focal_record(refined[-1]), **(summary_extra or {}), **extra,
                              "refined": True, "ended_by": "finished"})
    tmp.replace(out)
    return refined[-1]
