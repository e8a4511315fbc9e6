"""Batch tracking of datasets, the pure parts: inputs, output paths, resume keys and the report.

``flamecam batch`` (``app.cmd_batch``) tracks many videos and image folders into one recording
each. This module decides *what* is done; the app runs it (worker processes or Ray tasks):

* :func:`expand_inputs` turns the command line's inputs (video files, image folders, dataset
  folders walked recursively, globs, and list files with one input per line) into
  :class:`BatchInput` items, each with its own camera choice when a list line gives one;
* :func:`output_paths` mirrors the input tree under the output folder, relative to the inputs'
  common root;
* :func:`batch_key` identifies a job: the tracking options (with the identity of every file
  they name), the input's identity (size and modification time, or a content hash) and the
  flamecam version. The key is stored in ``RecordingMeta.extra["batch"]``; a complete recording
  with the same key is skipped (:func:`existing_output`), anything else is redone;
* :func:`report_row` and :func:`write_report` make ``batch_report.csv`` / ``.json``.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import math
import os
import re
import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core.sources import IMAGE_SUFFIXES, _natural_key

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".mts", ".m2ts",
                  ".3gp", ".ogv", ".mxf"}
LIST_SUFFIXES = {".txt", ".lst", ".list"}
BATCH_META_VERSION = 1  # bump when the key's ingredients change (every output is then redone)
PARTIAL_SUFFIX = ".partial"  # an output being written: renamed to the final name only when complete
REPORT_NAME = "batch_report"
# The online tracker fills a per-frame time budget with joint refinement, so its results depend on the
# machine's speed and load. Batch runs give it a fixed number of refinement units per frame instead:
# the same input gives the same recording on any worker, node or run. Two units matched the unlimited
# refinement's fit error and focal length on real clips at the time budget's speed (measured on
# crop_512_c.mp4: fit 2.96 px and f 587±124 px with 2 units, 2.98 px and 586±124 px unlimited, 3.04 px
# and 597±128 px with the 7 ms budget).
OFFLINE_REFINE_UNITS = 2
# Per-line camera choices in a list file: key -> SessionOptions field.
CAMERA_KEYS = {"focal": "focal", "fov": "fov_deg", "camera-profile": "camera_profile", "profile": "camera_profile"}


@dataclass(frozen=True)
class BatchInput:
    """One sequence to track: a video file or a folder of images."""

    path: Path  # absolute
    kind: str  # video | images
    camera: tuple[tuple[str, str], ...] = ()  # (SessionOptions field, value) from a list line
    given: str = ""  # how the user named it (the spec, or 'LIST:LINE')

    def session_changes(self) -> dict:
        """``dataclasses.replace`` arguments for this input's SessionOptions (its source and camera)."""
        changes: dict = {"source": str(self.path)}
        for name, value in self.camera:
            if name == "fov_deg":
                changes.update(fov_deg=float(value), focal="auto", camera_profile=None)
            elif name == "focal":
                changes.update(focal=value, fov_deg=None, camera_profile=None)
            else:
                changes.update(camera_profile=value, focal="auto", fov_deg=None)
        return changes


@dataclass
class Expansion:
    """What the command line's inputs expand to, and the ones that name nothing usable."""

    inputs: list[BatchInput] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (spec, one sentence)


def _natural_path_key(path: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _images_in(folder: Path) -> bool:
    try:
        return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def _walk(folder: Path) -> list[tuple[Path, str]]:
    """Sequences under a folder: every video file, and every folder that holds images (one sequence each)."""
    found: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort(key=lambda d: _natural_key(Path(d)))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        here = Path(root)
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            found.append((here, "images"))
        for name in sorted(files, key=lambda f: _natural_key(Path(f))):
            if Path(name).suffix.lower() in VIDEO_SUFFIXES and not name.startswith("."):
                found.append((here / name, "video"))
    return found


def _parse_camera(tokens: list[str], where: str) -> tuple[tuple[str, str], ...]:
    from core.intrinsics import check_fixed_focal  # noqa: PLC0415

    camera = []
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or key not in CAMERA_KEYS or not value:
            raise ValueError(f"{where}: {token!r} is not a camera choice (use focal=PX, fov=DEG or "
                             "camera-profile=NAME|PATH after the path)")
        name = CAMERA_KEYS[key]
        if name == "fov_deg":
            try:
                check_fixed_focal("auto", float(value))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        elif name == "focal":
            try:
                check_fixed_focal(value, None)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        camera.append((name, value))
    if len(camera) > 1:
        raise ValueError(f"{where}: give one camera choice per line (focal=, fov= or camera-profile=)")
    return tuple(camera)


def _expand_one(spec: str, base: Path, out: Expansion, camera=(), given: str = "", allow_lists: bool = True) -> None:
    given = given or spec
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.exists() and _has_glob(spec):
        pattern = str(path)
        matches = sorted(glob.glob(pattern, recursive=True), key=_natural_path_key)
        if not matches:
            out.problems.append((given, f"{spec}: the pattern matches no file or folder"))
        for match in matches:
            _expand_one(match, base, out, camera, f"{given} → {match}", allow_lists=False)
        return
    if not path.exists():
        out.problems.append((given, f"{spec}: no such file or folder"))
        return
    path = Path(os.path.abspath(path))
    if path.is_dir():
        found = _walk(path)
        if not found:
            out.problems.append((given, f"{spec}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) or images in "
                                        "this folder or below it"))
        out.inputs += [BatchInput(p, kind, camera, given) for p, kind in found]
    elif allow_lists and path.suffix.lower() in LIST_SUFFIXES:
        _expand_list(path, out)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        out.inputs.append(BatchInput(path, "images", camera, given))
    else:
        out.inputs.append(BatchInput(path, "video", camera, given))


def _expand_list(list_file: Path, out: Expansion) -> None:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        out.problems.append((str(list_file), f"{list_file}: cannot read this list ({exc})"))
        return
    for number, line in enumerate(lines, 1):
        where = f"{list_file}:{number}"
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            tokens = shlex.split(text)
            camera = _parse_camera(tokens[1:], where)
        except ValueError as exc:
            out.problems.append((where, str(exc)))
            continue
        _expand_one(tokens[0], list_file.parent, out, camera, where, allow_lists=False)


def expand_inputs(specs: list[str], cwd: Path | None = None) -> Expansion:
    """The sequences the command line names, in order, without duplicates (the first mention wins).

    Each spec is a video file, an image folder, a dataset folder (walked recursively: every video
    file and every folder holding images is a sequence), a glob (``data/**/*.mp4``, quoted against
    the shell), or a list file (``.txt``/``.lst``/``.list``): one input per line (paths relative to
    the list's folder; ``#`` comments; optionally ``focal=PX``, ``fov=DEG`` or
    ``camera-profile=NAME|PATH`` after the path for that input's camera)."""
    out = Expansion()
    base = Path(cwd or os.getcwd())
    for spec in specs:
        _expand_one(spec, base, out)
    seen: set[Path] = set()
    unique = []
    for item in out.inputs:
        if item.path not in seen:
            seen.add(item.path)
            unique.append(item)
    out.inputs = unique
    return out


def common_root(inputs: list[BatchInput]) -> Path:
    """The deepest folder that holds every input (a sequence's own folder counts as inside its parent)."""
    return Path(os.path.commonpath([str(item.path.parent) for item in inputs]))


def output_paths(inputs: list[BatchInput], out_dir: Path) -> list[Path]:
    """One ``.fcrec`` per input under ``out_dir``, mirroring the input tree below :func:`common_root`.

    ``clip.mp4`` -> ``clip.fcrec``, an image folder ``frames/`` -> ``frames.fcrec``; when two inputs
    of one folder would share a name (``a.mp4`` and ``a.mov``) both keep their suffix (``a.mp4.fcrec``)."""
    if not inputs:
        return []
    root = common_root(inputs)
    rel = [item.path.relative_to(root) for item in inputs]
    short = [r.parent / ((r.stem if item.kind == "video" else r.name) + ".fcrec") for r, item in zip(rel, inputs)]
    counts: dict[Path, int] = {}
    for s in short:
        counts[s] = counts.get(s, 0) + 1
    return [out_dir / (s if counts[s] == 1 else r.parent / (r.name + ".fcrec")) for s, r in zip(short, rel)]


def partial_path(out: Path) -> Path:
    """Where ``out`` is written until it is complete (then renamed to ``out``)."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


# --- identities and keys ----------------------------------------------------------------------------


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def input_identity(item: BatchInput, content: bool = False) -> dict:
    """What makes an input the same input: size and modification time (``content``: a SHA-256 of the bytes).

    An image folder's identity covers its image files (names, sizes and times, or their contents)."""
    if item.kind == "images" and item.path.is_dir():
        files = sorted((p for p in item.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=_natural_key)
        digest = hashlib.sha256()
        size = 0
        for p in files:
            st = p.stat()
            size += st.st_size
            digest.update(f"{p.name}\0{st.st_size}\0".encode())
            digest.update((file_sha256(p) if content else str(st.st_mtime_ns)).encode() + b"\0")
        kind = "content_sha256" if content else "stat_sha256"
        return {"images": len(files), "size": size, kind: digest.hexdigest()}
    st = item.path.stat()
    if content:
        return {"size": st.st_size, "content_sha256": file_sha256(item.path)}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def flamecam_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("flamecam")
    except PackageNotFoundError:
        return "unknown"


def _file_or_value(value):
    """An option's value, with the identity (size, mtime) of the file it names, if it names one."""
    if isinstance(value, str) and value not in ("builtin", "auto", "none") and os.path.isfile(value):
        st = os.stat(value)
        return {"path": os.path.abspath(value), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return value


def options_record(options) -> dict:
    """The tracking options of a job as JSON, without its source; files named by an option carry their
    identity, so replacing the model, embedding, regressor, landmarker or profile file redoes the job."""
    record = {k: _file_or_value(v) for k, v in sorted(asdict(options).items())
              if k not in ("source", "synthetic_in_subprocess")}
    return json.loads(json.dumps(record, default=str))


def batch_key(options_json: dict, identity: dict, version: str) -> str:
    """SHA-256 over the options, the input identity and the flamecam version (what makes a job the same)."""
    text = json.dumps({"v": BATCH_META_VERSION, "options": options_json, "input": identity, "flamecam": version},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ExistingOutput:
    """What is at a job's output path: ``complete`` (same key: skip), else why it is redone."""

    state: str  # complete | missing | incomplete | changed | unreadable
    reason: str = ""
    recording: object | None = None  # core.recording.Recording when complete


def existing_output(out: Path, key: str) -> ExistingOutput:
    """Is there a complete recording at ``out`` made by a job with this key?"""
    from core.recording import RecordingFormatError, load  # noqa: PLC0415

    if not out.exists():
        return ExistingOutput("missing")
    try:
        rec = load(out)
    except (OSError, RecordingFormatError) as exc:
        return ExistingOutput("unreadable", f"the existing {out.name} is unreadable ({exc})")
    if not rec.complete or rec.interrupted:
        return ExistingOutput("incomplete", f"the existing {out.name} is incomplete ({rec.stop_reason or 'no end'})")
    if rec.meta.extra.get("batch", {}).get("key") != key:
        return ExistingOutput("changed", f"the existing {out.name} was made from another input, other options or "
                                         "another flamecam version")
    return ExistingOutput("complete", recording=rec)


# --- report -----------------------------------------------------------------------------------------

# seconds: the file's wall time in its task; startup_s: from the task's start to its first tracked frame
# (session, model and landmarker set-up: the per-file overhead); started_utc: when its last attempt began;
# worker: host:pid of the process that ran it.
REPORT_COLUMNS = ("input", "output", "status", "frames", "frames_with_face", "focal_px", "focal_sigma_px",
                  "focal_state", "focal_mode", "rho_per_m", "fit_error_px", "fps", "seconds", "startup_s",
                  "started_utc", "worker", "attempts", "error")
STATUSES = ("done", "skipped", "failed", "interrupted", "pending")


def _finite(value, digits: int = 3):
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def recording_stats(rec) -> dict:
    """Report fields of a recording: frames, frames with a face, the last tracked frame's focal length ± σ,
    focal state and ρ, and the median fit error over tracked frames."""
    import numpy as np  # noqa: PLC0415

    from core.constants import TRACKING_STATES  # noqa: PLC0415

    tracked_codes = [TRACKING_STATES.index("tracking"), TRACKING_STATES.index("reacquired")]
    no_face = TRACKING_STATES.index("no_face")
    tracked = np.isin(rec.tracking_state, tracked_codes)
    stats = {"frames": len(rec), "frames_with_face": int(np.count_nonzero(rec.tracking_state != no_face)),
             "focal_mode": rec.meta.focal_mode, "fps": _finite((rec.summary or {}).get("fps"), 2)}
    if tracked.any():
        last = int(np.flatnonzero(tracked)[-1])
        fit = rec.fit_error_px[tracked]
        fit = fit[np.isfinite(fit)]
        stats.update(focal_px=_finite(rec.fx[last], 1), focal_sigma_px=_finite(rec.focal_sigma_px[last], 1),
                     focal_state=rec.focal_state_names()[last], rho_per_m=_finite(rec.rho_per_m[last], 4),
                     fit_error_px=_finite(np.median(fit), 3) if fit.size else None)
    return stats


def report_row(item: BatchInput, out: Path, status: str, **fields) -> dict:
    row = {name: None for name in REPORT_COLUMNS}
    row.update(input=str(item.path), output=str(out), status=status)
    row.update({k: v for k, v in fields.items() if k in row})
    return row


def summarize(rows: list[dict], wall_s: float) -> dict:
    counts = {status: sum(r["status"] == status for r in rows) for status in STATUSES}
    tracked = [r for r in rows if r["status"] == "done"]
    frames = sum(r["frames"] or 0 for r in tracked)
    return {"files": len(rows), **counts, "frames_tracked": frames,
            "frames_with_face": sum(r["frames_with_face"] or 0 for r in tracked),
            "wall_s": round(wall_s, 2), "frames_per_s": round(frames / wall_s, 2) if wall_s > 0 else None}


def summary_line(summary: dict) -> str:
    parts = [f"{summary[s]} {s}" for s in ("done", "skipped", "failed", "interrupted", "pending") if summary[s]]
    rate = f", {summary['frames_per_s']:.1f} frames/s" if summary["frames_per_s"] else ""
    minutes, seconds = divmod(summary["wall_s"], 60)
    return (f"{summary['files']} files: {', '.join(parts) or 'nothing to do'}; tracked {summary['frames_tracked']} "
            f"frames ({summary['frames_with_face']} with a face) in {int(minutes)}m{seconds:04.1f}s{rate}")


def write_report(out_dir: Path, rows: list[dict], summary: dict, info: dict) -> tuple[Path, Path]:
    """Write ``batch_report.csv`` (one row per input, then a ``(total)`` row) and ``batch_report.json``
    (``summary``, ``files``, and ``info``: command, options, flamecam version), each through a temporary
    file so a reader never sees half a report."""
    csv_path, json_path = out_dir / f"{REPORT_NAME}.csv", out_dir / f"{REPORT_NAME}.json"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    writer.writerow({**{name: None for name in REPORT_COLUMNS}, "input": "(total)", "status": "summary",
                     "frames": summary["frames_tracked"], "frames_with_face": summary["frames_with_face"],
                     "fps": summary["frames_per_s"], "seconds": summary["wall_s"], "error": summary_line(summary)})
    for path, text in ((csv_path, buffer.getvalue()),
                       (json_path, json.dumps({"summary": summary, "files": rows, **info}, indent=1, default=str))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return csv_path, json_path


def replace_source(options, item: BatchInput):
    """The SessionOptions of one input (its path as the source, its own camera choice if any)."""
    return replace(options, **item.session_changes())


def offline_options(options):
    """A session's options for batch tracking: reproducible refinement (:data:`OFFLINE_REFINE_UNITS`)."""
    return replace(options, tracker_overrides={**options.tracker_overrides,
                                               "refine_units_per_frame": OFFLINE_REFINE_UNITS})
