"""Wiring shared by ``flamecam track`` and the GUI: source, model, embedding, tracker, recorder."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.embedding import LandmarkEmbedding, embedding_for
from core.head_model import HeadModel
from core.model_io import load_head_model
from core.sources import FrameSource, list_webcams, open_source
from core.tracker import FocalPrior, Tracker, TrackerOptions

COARSE_NOTICE = ("note: using the built-in head model, a coarse fallback made from MediaPipe's canonical face "
                 "mesh; FLAME is recommended (--model generic_model.pkl; free for research at "
                 "https://flame.is.tue.mpg.de).")


@dataclass(frozen=True)
class SessionOptions:
    """What the user chose; the CLI and the GUI both fill one of these."""

    source: str = "auto"  # auto: the first webcam, else the synthetic source
    model: str = "builtin"
    camera_mode: str = "perspective"  # perspective | ortho
    focal: str = "auto"  # auto | a focal length in pixels
    fov_deg: float | None = None  # fixed focal given as horizontal field of view
    landmarker: str | None = None
    embedding: str | None = None
    device: str = "cpu"
    max_frames: int | None = None
    store_landmarks: bool = True
    keep_history: bool = False
    tracker_overrides: dict = field(default_factory=dict)


def resolve_source(spec: str) -> tuple[str, str | None]:
    """'auto' -> the first webcam or 'synthetic' (with a notice); other specs unchanged."""
    if spec != "auto":
        return spec, None
    cams = list_webcams()
    if cams:
        return f"webcam:{cams[0]}", None
    return "synthetic", "no webcam found; using the synthetic source (a rendered head with known ground truth)"


def load_model_and_embedding(options: SessionOptions, log=print) -> tuple[HeadModel, LandmarkEmbedding]:
    head = load_head_model(None if options.model == "builtin" else options.model)
    if head.is_coarse:
        log(COARSE_NOTICE)
    if head.kind != "builtin" and options.embedding is None:
        log(f"landmark embedding for {head.name}: cached, or computed once from renders (a few seconds)")
    return head, embedding_for(head, user_file=options.embedding)


def fixed_focal_px(options: SessionOptions, width: int) -> float | None:
    """The fixed focal length the user asked for, or None for auto."""
    from core.camera import fov_deg_to_focal  # noqa: PLC0415

    if options.fov_deg is not None:
        return float(fov_deg_to_focal(options.fov_deg, width))
    if options.focal == "auto":
        return None
    try:
        value = float(options.focal)
    except ValueError:
        raise ValueError(f"--focal {options.focal!r}: expected 'auto' or a focal length in pixels") from None
    if value <= 0:
        raise ValueError("--focal must be positive (pixels)")
    return value


def make_tracker(head: HeadModel, embedding: LandmarkEmbedding, source: FrameSource, options: SessionOptions,
                 focal_prior: FocalPrior | None = None) -> Tracker:
    width, height = source.size
    topts = TrackerOptions(camera_mode=options.camera_mode, focal_px=fixed_focal_px(options, width),
                           focal_prior=focal_prior, device=options.device, keep_history=options.keep_history,
                           **options.tracker_overrides)
    if topts.camera_mode == "ortho" and topts.focal_px is None:
        # Weak perspective has no focal length; a nominal one only converts its scale to a depth.
        from core.tracker import default_focal_prior  # noqa: PLC0415

        topts = TrackerOptions(**{**topts.__dict__, "focal_px": (focal_prior or default_focal_prior(width, height)).focal_px})
    return Tracker(head, embedding, (width, height), topts)


def focal_mode(tracker: Tracker) -> str:
    if tracker.focal_fixed:
        return "fixed"
    return {"default": "auto", "regressor": "auto+regressor"}.get(tracker.focal_prior.source, tracker.focal_prior.source)


def open_session_source(options: SessionOptions, log=print) -> FrameSource:
    spec, notice = resolve_source(options.source)
    if notice:
        log(f"note: {notice}")
    return open_source(spec)


def eprint(*args) -> None:
    print(*args, file=sys.stderr)


def default_output(path: str | None) -> Path:
    from datetime import datetime  # noqa: PLC0415

    if path:
        return Path(path)
    return Path(f"flamecam_{datetime.now():%Y%m%d_%H%M%S}.fcrec")
