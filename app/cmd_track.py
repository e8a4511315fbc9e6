"""``flamecam track SOURCE -o OUT``: track a head (and the focal length) and write a recording."""
from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", default="auto",
                        help="video file, image folder, 'webcam[:N]', 'synthetic[:key=value,...]' or 'auto' "
                             "(default: the first webcam, else the synthetic source)")
    parser.add_argument("-o", "--output", metavar="OUT", help="recording to write (.fcrec; default: a dated name)")
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
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _error(message, code: int = EXIT_BAD_INPUT) -> int:
    print(f"flamecam track: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from core.assets import AssetError  # noqa: PLC0415
    from core.landmarks import LandmarkerOptions  # noqa: PLC0415
    from core.model_io import ModelFileError  # noqa: PLC0415
    from core.pipeline import TrackingPipeline  # noqa: PLC0415
    from core.recording import RecordingError, RecordingMeta, RecordingWriter  # noqa: PLC0415
    from core.recording import load as load_recording  # noqa: PLC0415
    from core.session import (SessionOptions, default_output, eprint, load_model_and_embedding,  # noqa: PLC0415
                              make_tracker, open_session_source, resolve_intrinsics, set_tracker_threads)
    from core.sources import SourceError  # noqa: PLC0415

    options = SessionOptions(source=args.source, model=args.model, camera_mode=args.camera, focal=args.focal,
                             fov_deg=args.fov, landmarker=args.landmarker, embedding=args.embedding,
                             device=args.device, max_frames=args.max_frames, store_landmarks=not args.no_landmarks,
                             keep_history=args.refine, camera_profile=args.camera_profile,
                             auto_profile=not args.no_profile, use_metadata=not args.no_metadata,
                             regressor=args.regressor)
    if args.max_frames is not None and args.max_frames < 1:
        return _error(f"--max-frames {args.max_frames}: must be at least 1")
    out = default_output(args.output)
    if out.exists() and not args.overwrite:
        return _error(f"{out} exists; pass --overwrite to replace it")
    from core.streaming import StreamError, StreamModel, Streamer, StreamTarget  # noqa: PLC0415
    try:
        stream_targets = [StreamTarget.parse(url) for url in args.stream]
        for target in stream_targets:
            target.resolve()
    except StreamError as exc:
        return _error(exc)
    try:
        source = open_session_source(options, log=eprint)
    except SourceError as exc:
        return _error(exc)
    try:
        plan = resolve_intrinsics(options, source, log=eprint)
        head, embedding = load_model_and_embedding(options, log=eprint)
        tracker = make_tracker(head, embedding, source, options, plan=plan, log=eprint)
    except (ModelFileError, AssetError, ValueError) as exc:
        source.close()
        return _error(exc)
    except RuntimeError as exc:  # e.g. the landmarker never found the model's face while embedding it
        source.close()
        return _error(exc, EXIT_FAILED)
    set_tracker_threads()  # after the one-off embedding work, which may use every core
    try:
        streamer = Streamer(stream_targets, StreamModel.from_head(head)) if stream_targets else None
    except StreamError as exc:
        source.close()
        return _error(exc)
    width, height = source.size
    meta = RecordingMeta.for_model(
        head, options.model, width, height, source=source.name, frame_rate_hz=source.fps, camera_mode=options.camera_mode,
        landmark_count=478 if options.store_landmarks else 0, **plan.recording_fields())
    pipeline = TrackingPipeline(source, tracker, LandmarkerOptions(model_path=options.landmarker, running_mode="video",
                                                                   select=args.face),
                                max_frames=options.max_frames, undistort=plan.undistorter())
    total = min(x for x in (source.num_frames, options.max_frames, float("inf")) if x is not None)
    bar = tqdm(total=None if total == float("inf") else int(total), unit="frame", disable=args.quiet,
               file=sys.stderr, dynamic_ncols=True)
    shape_version = -1
    last = None
    interrupted = False
    _stop_on_sigterm()
    try:
        with RecordingWriter(out, meta, overwrite=args.overwrite) as writer:
            try:
                for result in pipeline.run():
                    if streamer is not None:
                        streamer.send(result)  # first: the live receivers see the frame soonest
                    track = result.track
                    if track.shape_version != shape_version:
                        writer.write_identity(track.frame_index, track.shape)
                        shape_version = track.shape_version
                    writer.write_track_result(track)
                    last = track
                    bar.update(1)
                    bar.set_postfix_str(f"{pipeline.stats.frames / max(bar.format_dict['elapsed'], 1e-6):.1f} fps  "
                                        f"f={track.focal_px:.0f}±{track.focal_sigma_px:.0f}px ({track.focal_state})  "
                                        f"ρ={track.rho_per_m:.2f}/m  {track.tracking_state}", refresh=False)
            except KeyboardInterrupt:
                interrupted = True
                pipeline.stop.set()
            writer.close(summary=pipeline.stats.summary())
    except SourceError as exc:
        bar.close()
        source.close()
        return _error(f"{exc}; the frames before it are saved in {out}", EXIT_FAILED)
    except RecordingError as exc:
        bar.close()
        source.close()
        return _error(exc, EXIT_FAILED)
    finally:
        bar.close()
        if streamer is not None:
            streamer.close()
    source.close()
    stats = pipeline.stats
    if stats.frames == 0:
        return _error("the source delivered no frames", EXIT_FAILED)
    if stats.frames_with_face == 0:
        return _error(f"no face found in any of {stats.frames} frames (recording {out} holds only 'no_face' frames)",
                      EXIT_NO_FACE)
    if args.refine:
        eprint(f"refining {len(tracker.history)} frames jointly ...")
        refined = tracker.refine_sequence()
        # Refinement covers only frames with a face; frames without one keep their online record.
        by_index = {track.frame_index: track for track in refined}
        online = load_recording(out)
        tmp = out.with_name(out.name + ".refining")
        with RecordingWriter(tmp, meta, overwrite=True) as writer:
            writer.write_identity(0, tracker.shape.cpu().numpy())
            for i, index in enumerate(online.frame_index.tolist()):
                if index in by_index:
                    writer.write_track_result(by_index[index])
                else:
                    writer.write_frame(online.frame(i))
            writer.close(summary={**stats.summary(), "refined": True})
        tmp.replace(out)
        last = refined[-1]
    summary = stats.summary()
    fits = [] if last is None else [last.fit_error_px]
    print(f"tracked {stats.frames} frames ({stats.frames_with_face} with a face) at {summary['fps']:.1f} fps "
          f"(tracker p50 {summary['tracker_ms_p50']:.1f} ms, landmarks p50 {summary['landmarks_ms_p50']:.1f} ms)")
    if last is not None:
        print(f"focal length {last.focal_px:.0f} ± {last.focal_sigma_px:.0f} px ({last.focal_state}); "
              f"ρ = {last.rho_per_m:.2f} 1/m; fit error {np.nanmean(fits):.2f} px")
    print(f"recording: {out}")
    for status in [] if streamer is None else streamer.status.targets:
        print(f"stream: {status.describe()}")
    return EXIT_INTERRUPTED if interrupted else EXIT_OK



def _stop_on_sigterm() -> None:
    """Treat SIGTERM (e.g. ``kill``) like Ctrl+C: stop, close the recording, exit 130."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
