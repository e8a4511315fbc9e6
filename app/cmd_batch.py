"""``flamecam batch INPUT... -o OUT_DIR``: track whole datasets, resumably, on one machine or a Ray cluster.

One recording per input under OUT_DIR (mirroring the input tree), one progress bar over all
frames, a line per finished file, and ``batch_report.csv`` / ``.json``. A complete recording made
from the same input with the same options and flamecam version is skipped; partial ones are redone;
a bad input is reported and the batch goes on (exit code 4 when any input failed). See
``core.batch`` (what is done), ``app.batch_worker`` (the per-file task and the local worker pool)
and ``app.batch_ray`` (Ray tasks).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from app.cmd_track import add_tracking_arguments
from app.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, cli_error


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """MediaPipe and the tracker each keep a core busy, so one worker per two cores."""
    return max(1, usable_cores() // 2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, image folders, dataset folders (searched recursively for videos and image "
                             "folders), globs ('data/**/*.mp4', quoted) or list files (.txt/.lst/.list: one input per "
                             "line, optionally followed by focal=PX, fov=DEG or camera-profile=NAME|PATH for that "
                             "input's camera)")
    parser.add_argument("-o", "--output-dir", required=True, metavar="OUT_DIR",
                        help="where the recordings go (one .fcrec per input, mirroring the inputs' folders) with "
                             "batch_report.csv/.json")
    add_tracking_arguments(parser)
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"worker processes on this machine (default: half the cores, here {default_workers()})")
    parser.add_argument("--ray", metavar="auto|local|ADDRESS",
                        help="run the files as Ray tasks: 'auto' joins the cluster this machine belongs to, ADDRESS "
                             "another one (host:port), 'local' starts Ray on this machine only; OUT_DIR must be "
                             "shared storage (checked). Needs pip install 'flamecam[cluster]'")
    parser.add_argument("--cpus-per-task", type=float, default=2.0, metavar="C",
                        help="CPUs Ray reserves per file (default 2: MediaPipe and the tracker each keep one busy)")
    parser.add_argument("--retries", type=int, default=2, metavar="R",
                        help="times a file is retried when its worker process (or Ray node) is lost (default 2)")
    parser.add_argument("--content-hash", action="store_true",
                        help="identify inputs by a SHA-256 of their contents instead of size and modification time "
                             "(slower; survives copies that change file times)")
    parser.add_argument("--overwrite", action="store_true", help="track every input again, even complete ones")
    parser.add_argument("--dry-run", action="store_true", help="list each input, its output and whether it would be "
                                                               "tracked or skipped; track nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the line per file stays)")


def _error(message, code: int = EXIT_BAD_INPUT) -> int:
    return cli_error("batch", message, code)


def _check_option_files(args: argparse.Namespace) -> str | None:
    """Why an option's file is unusable (checked once here, not once per input)."""
    named = {"--model": None if args.model == "builtin" else args.model, "--embedding": args.embedding,
             "--landmarker": args.landmarker,
             "--regressor": None if args.regressor in ("auto", "none") else args.regressor}
    for flag, value in named.items():
        if value is not None and not Path(value).is_file():
            return f"{flag} {value}: no such file"
    profile = args.camera_profile
    if profile and (Path(profile).suffix or os.sep in profile) and not Path(profile).is_file():
        return f"--camera-profile {profile}: no such file"
    return None


def _expected_frames(path: Path, kind: str, max_frames: int | None) -> int:
    """The frame count a file promises (for the progress bar; 0 when unknown)."""
    count = 0
    try:
        if kind == "images":
            from core.sources import IMAGE_SUFFIXES  # noqa: PLC0415

            count = (sum(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()) if path.is_dir() else 1)
        else:
            os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # a broken file is the task's to report
            import cv2  # noqa: PLC0415

            cap = cv2.VideoCapture(str(path))
            count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))) if cap.isOpened() else 0
            cap.release()
    except OSError:
        count = 0
    return min(count, max_frames) if max_frames else count


def run(args: argparse.Namespace) -> int:
    from core.signals import sticky_interrupts  # noqa: PLC0415

    sticky_interrupts()  # kill (SIGTERM) ends a batch like Ctrl+C: the report is written, then exit 130
    try:
        return _run(args)
    except KeyboardInterrupt:  # before any work started (once it has, _run_jobs handles it)
        print("flamecam batch: interrupted before tracking started", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from app.cmd_track import session_options, tracking_arguments_problem  # noqa: PLC0415
    from core import batch  # noqa: PLC0415
    from core.intrinsics import check_fixed_focal  # noqa: PLC0415

    started = time.perf_counter()
    problem = tracking_arguments_problem(args)
    if problem:
        return _error(problem)
    if args.workers is not None and args.workers < 1:
        return _error(f"--workers {args.workers}: must be at least 1")
    if args.retries < 0 or args.cpus_per_task <= 0:
        return _error("--retries must be 0 or more and --cpus-per-task more than 0")
    if args.ray is not None and args.workers is not None:
        return _error("give --workers (this machine) or --ray (a cluster), not both")
    try:
        check_fixed_focal(args.focal, args.fov)
    except ValueError as exc:
        return _error(exc)
    problem = _check_option_files(args)
    if problem:
        return _error(problem)
    if args.ray is not None:
        from app.batch_ray import RaySetupError, import_ray  # noqa: PLC0415

        try:
            import_ray()
        except RaySetupError as exc:
            return _error(exc)

    expansion = batch.expand_inputs(args.inputs)
    if not expansion.inputs:
        for _, message in expansion.problems[:-1]:
            print(f"flamecam batch: {message}", file=sys.stderr)
        return _error(f"nothing to track: {expansion.problems[-1][1] if expansion.problems else 'no inputs'}")
    out_dir = Path(args.output_dir).expanduser().absolute()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _error(f"cannot create the output folder {out_dir}: {exc.strerror or exc}")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        return _error(f"cannot write into {out_dir} (no permission)")

    args.source = "auto"  # each input replaces it (core.batch.replace_source)
    base = batch.offline_options(session_options(args))
    version = batch.flamecam_version()
    outputs = batch.output_paths(expansion.inputs, out_dir)
    rows: list[dict] = []
    jobs = []
    expected: dict[int, int] = {}
    redo_reasons: list[str] = []
    from app.batch_worker import FileJob  # noqa: PLC0415

    threads = (max(1, int(args.cpus_per_task) // 2) if args.ray is not None
               else max(1, min(4, usable_cores() // (2 * (args.workers or default_workers())))))
    for item, out in zip(expansion.inputs, outputs):
        index = len(rows)
        options = batch.replace_source(base, item)
        options_json = batch.options_record(options)
        try:
            identity = batch.input_identity(item, content=args.content_hash)
        except OSError as exc:
            rows.append(batch.report_row(item, out, "failed", error=f"cannot read {item.path}: {exc.strerror or exc}"))
            continue
        key = batch.batch_key(options_json, identity, version)
        if not args.overwrite:
            existing = batch.existing_output(out, key)
            if existing.state == "complete":
                batch.partial_path(out).unlink(missing_ok=True)  # left by a killed --overwrite run
                rows.append(batch.report_row(item, out, "skipped", **batch.recording_stats(existing.recording),
                                             error=""))
                continue
            if existing.reason:
                redo_reasons.append(existing.reason)
        if batch.partial_path(out).exists():
            redo_reasons.append(f"{batch.partial_path(out).name} was left by an interrupted run")
        rows.append(batch.report_row(item, out, "pending"))
        meta = {"key": key, "input": str(item.path), "input_identity": identity, "options": options_json,
                "flamecam_version": version, "camera_from_list": dict(item.camera) or None}
        jobs.append(FileJob(index=index, input=str(item.path), output=str(out), options=options, refine=args.refine,
                            batch_meta=meta, torch_threads=threads))
        expected[index] = _expected_frames(item.path, item.kind, args.max_frames)
    for spec, message in expansion.problems:  # named inputs that are not there: reported, the rest goes on
        rows.append({**{c: None for c in batch.REPORT_COLUMNS}, "input": spec, "status": "failed", "error": message})
    skipped = sum(r["status"] == "skipped" for r in rows)
    print(f"flamecam batch: {len(rows)} inputs → {out_dir}: {len(jobs)} to track, {skipped} complete (skipped)"
          + (f", {len(redo_reasons)} redone (partial, incomplete or made with other options)" if redo_reasons else ""),
          file=sys.stderr)
    info = {"command": ["flamecam", "batch", *sys.argv[2:]] if sys.argv[1:2] == ["batch"] else sys.argv,
            "output_dir": str(out_dir), "flamecam_version": version, "options": batch.options_record(base),
            "runner": f"ray:{args.ray}" if args.ray is not None else f"local:{args.workers or default_workers()}"}
    if args.dry_run:
        for row in rows:
            print(f"{row['status'] if row['status'] != 'pending' else 'track':8s} {row['input']} → {row['output']}"
                  + (f"  ({row['error']})" if row.get("error") else ""))
        return EXIT_OK
    code = _run_jobs(args, jobs, rows, expected, out_dir, info, started)
    return code


def _run_jobs(args, jobs, rows, expected, out_dir: Path, info: dict, started: float) -> int:
    from tqdm import tqdm  # noqa: PLC0415

    from core import batch  # noqa: PLC0415

    finished = sum(r["status"] != "pending" for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    bar = tqdm(total=sum(expected.values()), unit="frame", disable=args.quiet or not jobs, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.05)
    progress: dict[int, int] = {}
    starts: dict[int, int] = {}
    started_ray = False
    interrupted = False

    def report() -> None:
        batch.write_report(out_dir, rows, batch.summarize(rows, time.perf_counter() - started), info)

    def show_progress() -> None:
        bar.update(sum(progress.values()) - bar.n)
        bar.set_postfix_str(f"{finished}/{len(rows)} files" + (f", {failed} failed" if failed else ""), refresh=False)

    try:
        if jobs and args.ray is not None:
            from app.batch_ray import RaySetupError, check_shared_storage, connect, run_ray  # noqa: PLC0415

            try:
                started_ray = connect(args.ray, log=lambda m: print(f"flamecam batch: {m}", file=sys.stderr))
                root = batch.common_root([batch.BatchInput(Path(j.input), "video") for j in jobs])
                nodes = check_shared_storage(out_dir, root, args.cpus_per_task)
            except RaySetupError as exc:
                bar.close()
                return _error(exc)
            print(f"flamecam batch: {out_dir} is shared by all {nodes} Ray node(s)", file=sys.stderr)
            messages = run_ray(jobs, args.cpus_per_task, args.retries)
        elif jobs:
            from app.batch_worker import LocalPool  # noqa: PLC0415

            pool = LocalPool(args.workers or default_workers(), args.retries, log_dir=out_dir / "batch_logs")
            messages = pool.run(jobs)
        else:
            messages = iter(())
        for message in messages:
            kind, index = message[0], message[1]
            if kind == "started":
                starts[index] = starts.get(index, 0) + 1
                rows[index]["status"] = "running"
            elif kind == "progress":
                progress[index] = max(progress.get(index, 0), int(message[2]))
            elif kind == "done":
                fields = dict(message[2])
                fields.setdefault("attempts", starts.get(index, 1))
                rows[index].update({k: v for k, v in fields.items() if k in rows[index]})
                progress[index] = max(progress.get(index, 0), expected.get(index, 0))
                finished += 1
                failed += rows[index]["status"] == "failed"
                bar.write(_file_line(rows[index], finished, len(rows)), file=sys.stdout)
                report()
            show_progress()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        if started_ray:
            import ray  # noqa: PLC0415

            ray.shutdown()
    for row in rows:
        if row["status"] in ("running", "pending"):
            row["status"] = "interrupted" if interrupted else "failed"
            row["error"] = row["error"] or ("the batch was interrupted; run the same command again to resume"
                                            if interrupted else "no result came back for this input")
    summary = batch.summarize(rows, time.perf_counter() - started)
    csv_path, _ = batch.write_report(out_dir, rows, summary, info)
    print(f"flamecam batch: {batch.summary_line(summary)}; report: {csv_path}")
    if interrupted:
        print("flamecam batch: interrupted; finished recordings are kept, run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if summary["failed"] else EXIT_OK


def _file_line(row: dict, finished: int, total: int) -> str:
    head = f"[{finished}/{total}] {row['status']:6s} {row['input']}"
    if row["status"] != "done":
        return f"{head}: {row['error']}"
    focal = (f"f={row['focal_px']:.0f}±{row['focal_sigma_px']:.0f}px ({row['focal_state']}), "
             f"ρ={row['rho_per_m']:.2f}/m, fit {row['fit_error_px']:.2f}px, "
             if row.get("focal_px") is not None else "")
    return (f"{head} → {row['output']}: {row['frames']} frames ({row['frames_with_face']} with a face), {focal}"
            f"{row['fps'] or 0:.1f} fps")
