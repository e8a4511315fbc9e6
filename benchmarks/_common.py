"""Shared helpers for the benchmark scripts: paths, views, tables, JSON output and timing.

Benchmarks run from the repository root as ``python benchmarks/<name>.py``; importing this
module puts the repository root on ``sys.path``. They print tables (and write them with
``--json OUT.json``); they are measurements, never pass/fail tests.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's start-up chatter
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# The ICT-FaceKit head lives beside the repository (never inside it); FLAMECAM_ICT or --ict override.
DEFAULT_ICT_PATH = REPO.parent / "shared" / "data" / "ict_facekit_head.npz"


# --- command line and models -----------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--ict", type=Path, default=None,
                   help=f"ICT-FaceKit head model .npz (default $FLAMECAM_ICT or {DEFAULT_ICT_PATH})")
    p.add_argument("--no-ict", action="store_true", help="skip the ICT model")
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="also write the results as JSON")
    return p


def ict_path(args: argparse.Namespace) -> Path | None:
    """The ICT model's path, or None (with a printed reason) when it is missing or skipped."""
    if getattr(args, "no_ict", False):
        print("ICT model: skipped (--no-ict)")
        return None
    path = args.ict or Path(os.environ.get("FLAMECAM_ICT", DEFAULT_ICT_PATH))
    if not path.is_file():
        print(f"ICT model: SKIPPED - not found at {path} (it lives in ../shared/data beside the repository; "
              "pass --ict PATH)")
        return None
    return path


def load_models(args: argparse.Namespace) -> dict:
    """{"ict": HeadModel, "builtin": HeadModel} (ICT only when available)."""
    from core.model_io import load_head_model  # noqa: PLC0415

    models = {}
    path = ict_path(args)
    if path is not None:
        models["ict"] = load_head_model(path)
    models["builtin"] = load_head_model("builtin")
    return models


# --- synthetic views -----------------------------------------------------------------------------


def view_truth(head, yaw_deg: float, pitch_deg: float, focal_px: float, width: int = 512, height: int = 512,
               distance_m: float | None = None, shape=None, expr=None, roll_deg: float = 0.0):
    """Ground truth for one still view: head centre on the optical axis at ``distance_m``
    (default focal/2000 m at 512 px, Camera3DMM's proportion), given rotation and coefficients."""

    from core import camera  # noqa: PLC0415
    from core.synthetic import GroundTruth, _euler_to_axis_angle  # noqa: PLC0415

    distance = focal_px / 2000.0 * 512.0 / min(width, height) if distance_m is None else distance_m
    rotation = _euler_to_axis_angle(yaw_deg, pitch_deg, roll_deg)
    rot_cam = camera.rotation_model_to_camera(np.asarray(rotation, np.float64))
    center = np.array([0.0, 0.0, distance])
    translation = center - rot_cam @ head.head_center.astype(np.float64)
    shape = np.zeros(head.num_shape, np.float32) if shape is None else np.asarray(shape, np.float32)
    expr = np.zeros(head.num_expr, np.float32) if expr is None else np.asarray(expr, np.float32)
    intr = np.array([focal_px, focal_px, width / 2, height / 2], np.float32)
    return GroundTruth(shape, expr, rotation, translation.astype(np.float32), np.zeros(3, np.float32),
                       np.zeros(3, np.float32), np.zeros(6, np.float32), intr, 1.0 / distance,
                       center.astype(np.float32), True)


def embedded_landmarks_px(embedding, faces, vertices_cam, truth, with_bias: bool = False) -> np.ndarray:
    """(478, 2) pixels of the embedded landmarks of a frame's camera-space vertices (nan where not embedded).

    ``with_bias``: add the embedding's model of MediaPipe's bias (``LandmarkEmbedding.bias_terms``, a
    model-space offset linear in ρ = 1/Z0, as the tracker does): where MediaPipe is expected to put them.
    """
    import torch  # noqa: PLC0415

    from core import camera  # noqa: PLC0415
    from core.embedding import embed_points  # noqa: PLC0415

    vids, weights = embedding.vertex_weights(faces)
    pts = embed_points(torch.as_tensor(vertices_cam, dtype=torch.float64)[None], torch.as_tensor(vids),
                       torch.as_tensor(weights, dtype=torch.float64))[0].numpy()
    if with_bias:
        offset, slope, rho_ref = embedding.bias_terms()
        bias = (offset + slope * (truth.rho_per_m - rho_ref))[embedding.valid].astype(np.float64)
        rot_cam = camera.rotation_model_to_camera(np.asarray(truth.rotation, np.float64))
        pts = pts + bias @ rot_cam.T  # R·(p + b) + t = (R·p + t) + R·b
    uv = camera.project_perspective(torch.as_tensor(pts), torch.as_tensor(truth.intrinsics, dtype=torch.float64))
    out = np.full((len(embedding.valid), 2), np.nan)
    out[embedding.valid] = uv.numpy()
    return out


def landmark_regions() -> dict[str, np.ndarray]:
    """MediaPipe's landmark groups (from FaceLandmarksConnections); irises include their centres 468/473."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C  # noqa: PLC0415

    def ids(*lists) -> np.ndarray:
        return np.array(sorted({i for conns in lists for c in conns for i in (c.start, c.end)}), np.int64)

    return {
        "lips": ids(C.FACE_LANDMARKS_LIPS),
        "eyes": ids(C.FACE_LANDMARKS_LEFT_EYE, C.FACE_LANDMARKS_RIGHT_EYE),
        "brows": ids(C.FACE_LANDMARKS_LEFT_EYEBROW, C.FACE_LANDMARKS_RIGHT_EYEBROW),
        "nose": ids(C.FACE_LANDMARKS_NOSE),
        "face oval": ids(C.FACE_LANDMARKS_FACE_OVAL),
        "irises": np.union1d(ids(C.FACE_LANDMARKS_LEFT_IRIS, C.FACE_LANDMARKS_RIGHT_IRIS), [468, 473]),
    }


# --- rendered sequences through the landmarker -----------------------------------------------------------

DETECTION_CACHE_VERSION = 1


def detect_sequence(opts, model_arg: str, head, blendshapes: bool = False) -> tuple[list, np.ndarray | None, list]:
    """Render a synthetic sequence and run the landmarker (VIDEO mode); cached on disk per setting.

    Returns (per-frame (478, 2) landmarks, NaN without a face; (T, 52) blendshape scores when asked,
    else None; ground truths). A cache file from before blendshapes were stored is refreshed when
    they are asked for.
    """
    import hashlib  # noqa: PLC0415
    from dataclasses import replace  # noqa: PLC0415

    from core.assets import cache_dir  # noqa: PLC0415
    from core.landmarks import FaceLandmarker, LandmarkerOptions  # noqa: PLC0415
    from core.synthetic import SyntheticSource  # noqa: PLC0415

    key = hashlib.sha256(json.dumps([DETECTION_CACHE_VERSION, head.source_sha256, opts.__dict__],
                                    sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_dir() / "bench" / f"detections-{key}.npz"
    source = SyntheticSource(replace(opts, model=model_arg))
    truths = [source.trajectory.at(i) for i in range(opts.frames)]
    if path.exists():
        with np.load(path) as data:
            if not blendshapes or "blendshapes" in data.files:
                source.close()
                return list(data["landmarks"]), (data["blendshapes"] if blendshapes else None), truths
    landmarks, scores = [], []
    with FaceLandmarker(LandmarkerOptions(running_mode="video", max_faces=1)) as lm:
        for frame in source:
            res = lm.detect(frame.rgb, frame.timestamp_ms)
            found = res.face is not None
            landmarks.append(res.face.landmarks_px if found else np.full((478, 2), np.nan, np.float32))
            scores.append(res.face.blendshapes if found else np.zeros(52, np.float32))
    source.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, landmarks=np.stack(landmarks), blendshapes=np.stack(scores))
    return landmarks, (np.stack(scores) if blendshapes else None), truths


# --- tables and JSON ---------------------------------------------------------------------------------


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return "-" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence], digits: int = 2) -> dict:
    """Print an aligned text table; returns it as {"title", "headers", "rows"} for JSON."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return {"title": title, "headers": list(headers), "rows": [[_plain(v) for v in row] for row in rows]}


def machine_info() -> dict:
    import torch  # noqa: PLC0415

    info = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    try:
        import mediapipe  # noqa: PLC0415

        info["mediapipe"] = mediapipe.__version__
    except Exception:  # noqa: BLE001  informational only
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    return info


def print_load(label: str) -> list[float] | None:
    """Print (and return) the 1/5/15-minute load average: timings on a busy machine are slower."""
    if not hasattr(os, "getloadavg"):
        return None
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"load average {label}: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    return load


def write_json(path: Path | None, benchmark: str, tables: list[dict], extra: dict | None = None) -> None:
    if path is None:
        return
    payload = {"benchmark": benchmark, "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
               "tables": tables, **(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=_plain))
    print(f"\nwrote {path}")


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- timing --------------------------------------------------------------------------------------------


def time_calls(fn: Callable[[], object], repeats: int = 50, warmup: int = 5) -> dict:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times; per-call ms statistics."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return timing_stats(times)


def timing_stats(seconds: Sequence[float]) -> dict:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {"n": int(len(ms)), "mean_ms": float(ms.mean()), "p50_ms": float(np.median(ms)),
            "p90_ms": float(np.percentile(ms, 90)), "min_ms": float(ms.min())}


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds``"""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def save_figure(fig, path: str) -> None:
    """Write a matplotlib figure (PNG) and say where."""
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")
