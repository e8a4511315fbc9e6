"""Wiring shared by ``flamecam track`` and the GUI: source, model, embedding, tracker, recorder."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.distortion import NO_DISTORTION, LensDistortion, LensRemap, Undistorter
from core.embedding import LandmarkEmbedding, embedding_for
from core.head_model import HeadModel
from core.model_io import load_head_model
from core.profiles import CameraProfile, ProfileError, camera_name_for_source, find_profile, load_profile_spec
from core.sources import FrameSource, list_webcams, open_source
from core.tracker import FocalPrior, Tracker, TrackerOptions, default_focal_prior

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
    camera_profile: str | None = None  # a stored profile's name or a file (.json, OpenCV .yaml, K/dist .npz)
    auto_profile: bool = True  # use the stored profile of the camera that opened, if there is one
    use_metadata: bool = True  # photo/video focal-length metadata as the focal prior
    regressor: str = "auto"  # auto: the model's trained regressor if any (core.regressor lookup) | none | a .onnx path


def set_tracker_threads(count: int | None = None) -> int:
    """Torch intra-op threads for the tracker: half the cores (1 on 2 cores; FLAMECAM_TORCH_THREADS
    overrides). The tracker runs many small ops; when its threads compete with the UI, the landmark
    thread and the source, each op waits at the thread pool's barrier for a descheduled worker.
    Measured here (2 cores, busy machine): 2 threads 190-360 ms per tracker step, 1 thread 33 ms.
    Both the app and ``flamecam track`` call it."""
    import os  # noqa: PLC0415

    import torch  # noqa: PLC0415

    if count is None:
        env = os.environ.get("FLAMECAM_TORCH_THREADS")
        count = int(env) if env else max(1, min(4, (os.cpu_count() or 2) // 2))
    torch.set_num_threads(count)
    return count


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
    if options.embedding is None:
        log(f"landmark embedding for {head.name}: cached, or learned once from renders (~30 s)")
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
                 focal_prior: FocalPrior | None = None, plan: "IntrinsicsPlan | None" = None, log=None) -> Tracker:
    """The tracker for a session. Intrinsics come from ``plan`` (default: :func:`resolve_intrinsics`);
    an explicit ``focal_prior`` (e.g. the regressor's) replaces the plan's prior in auto/metadata
    modes. The plan is kept as ``tracker.intrinsics_plan``: pass ``plan.undistorter()`` to the
    ``TrackingPipeline`` and ``plan.recording_fields()`` to the ``RecordingMeta``."""
    width, height = source.size
    if plan is None:
        plan = resolve_intrinsics(options, source, log=log or (lambda *_: None))
    fields = plan.tracker_fields()
    if focal_prior is not None and fields["focal_px"] is None:
        fields["focal_prior"] = focal_prior
    topts = TrackerOptions(camera_mode=options.camera_mode, device=options.device, keep_history=options.keep_history,
                           **{**fields, **options.tracker_overrides})
    if topts.camera_mode == "ortho" and topts.focal_px is None:
        # Weak perspective has no focal length; a nominal one only converts its scale to a depth.
        topts = TrackerOptions(**{**topts.__dict__, "focal_px": (topts.focal_prior or default_focal_prior(width, height)).focal_px})
    tracker = Tracker(head, embedding, (width, height), topts)
    tracker.intrinsics_plan = plan
    attach_regressor(tracker, options, log=log or (lambda *_: None))
    return tracker


def attach_regressor(tracker: Tracker, options: SessionOptions, log=print) -> None:
    """Give the tracker its per-frame regressor (``tracker.regressor_prior``, a ``TrackingPipeline``
    prior_fn that ``TrackingPipeline`` uses when given none) and say which, or that there is none
    (``tracker.regressor_message``). An explicit ``--regressor`` file that does not fit is a ValueError."""
    from core.regressor import NO_REGRESSOR_MESSAGE, RegressorError, RegressorPrior, load_regressor  # noqa: PLC0415

    tracker.regressor_prior = None
    if options.regressor == "none":
        tracker.regressor_message = f"{NO_REGRESSOR_MESSAGE} (--regressor none)"
    else:
        explicit = None if options.regressor == "auto" else options.regressor
        try:
            regressor, tracker.regressor_message = load_regressor(tracker.head, explicit, tracker.options.camera_mode,
                                                                  device=options.device)
        except RegressorError as exc:
            raise ValueError(str(exc)) from None
        if regressor is not None:
            tracker.regressor_prior = RegressorPrior(tracker, regressor)
    log(f"note: {tracker.regressor_message}")


def focal_mode(tracker: Tracker) -> str:
    plan = getattr(tracker, "intrinsics_plan", None)
    if plan is not None:
        return plan.mode
    if tracker.focal_fixed:
        return "fixed"
    return {"default": "auto", "regressor": "auto+regressor"}.get(tracker.focal_prior.source, tracker.focal_prior.source)


# --- focal-length modes, one place ------------------------------------------------------------------

FOCAL_MODES = ("fixed", "profile", "metadata", "auto")


@dataclass(frozen=True)
class IntrinsicsPlan:
    """How a session's camera intrinsics were decided, and everything that follows from it.

    ``mode``: ``fixed`` (the user typed a focal length or field of view), ``profile`` (a camera
    calibration: fixed focal, principal point, pixel aspect and lens distortion), ``metadata``
    (photo/video metadata gave a focal prior; the tracker still estimates it) or ``auto`` (the
    tracker estimates the focal length from a broad default prior). See :func:`resolve_intrinsics`.
    """

    mode: str
    image_size: tuple[int, int]
    focal_px: float | None = None  # fixed focal length (fixed, profile); None: estimated
    principal_px: tuple[float, float] | None = None  # None: image centre
    pixel_aspect: float = 1.0
    focal_prior: FocalPrior | None = None  # metadata / auto (None: the tracker's default)
    focal_sigma_rel: float | None = None  # 1σ of the focal length as known before tracking (None: unknown)
    lens: LensDistortion = NO_DISTORTION
    profile: CameraProfile | None = None
    source_text: str = ""  # where the intrinsics came from, for people
    notes: tuple[str, ...] = ()

    def tracker_fields(self) -> dict:
        """The :class:`core.tracker.TrackerOptions` fields this plan sets."""
        return {"focal_px": self.focal_px, "focal_prior": self.focal_prior, "principal_px": self.principal_px,
                "pixel_aspect": self.pixel_aspect}

    def undistorter(self) -> Undistorter | None:
        """The ``TrackingPipeline(undistort=...)`` hook (None without lens distortion)."""
        if self.lens.is_identity or self.profile is None:
            return None
        return Undistorter(self.profile.intrinsics, self.lens)

    def lens_remap(self) -> LensRemap | None:
        """Image warps for the viewer: show the video undistorted, or draw the overlay distorted."""
        if self.lens.is_identity or self.profile is None:
            return None
        return LensRemap(self.profile.intrinsics, self.lens, self.image_size)

    def intrinsics_record(self) -> dict:
        """``RecordingMeta.extra["intrinsics"]`` (documented in ``resolve_intrinsics``)."""
        w, h = self.image_size
        prior = self.focal_prior
        return {
            "mode": self.mode,
            "source": self.source_text,
            "image_size": [w, h],
            "focal_px": self.focal_px if self.focal_px is not None else (prior.focal_px if prior else None),
            "focal_sigma_rel": self.focal_sigma_rel,
            "principal_px": list(self.principal_px) if self.principal_px is not None else [w / 2, h / 2],
            "pixel_aspect": self.pixel_aspect,
            "distortion": self.lens.to_dict(),
            "landmarks_undistorted": self.undistorter() is not None,
            "profile": self.profile.to_dict() if self.profile is not None else None,
            "profile_scaled_from": (list(self.profile.scaled_from) if self.profile and self.profile.scaled_from
                                    else None),
            "convention": "pixel i covers [i, i+1); the per-frame fx, fy, cx, cy are the ideal pinhole camera; "
                          "with landmarks_undistorted, the stored landmarks_px are undistorted too (apply "
                          "core.distortion.distort_points to draw them on the raw video)",
        }

    def recording_fields(self) -> dict:
        """``focal_mode``, ``focal_prior`` and ``extra`` for :class:`core.recording.RecordingMeta`."""
        prior = self.focal_prior
        if self.mode == "profile":
            prior_dict = {"focal_px": self.focal_px, "sigma_rel": self.focal_sigma_rel, "source": "profile"}
        elif self.mode == "fixed":
            prior_dict = None
        else:
            prior = prior or default_focal_prior(*self.image_size)
            prior_dict = {"focal_px": prior.focal_px, "sigma_rel": prior.sigma_rel, "source": prior.source}
        return {"focal_mode": self.mode, "focal_prior": prior_dict, "extra": {"intrinsics": self.intrinsics_record()}}

    def describe(self) -> str:
        if self.mode in ("fixed", "profile"):
            sigma = f" ± {self.focal_sigma_rel:.2%}" if self.focal_sigma_rel else ""
            text = f"intrinsics: {self.mode}, focal {self.focal_px:.1f} px{sigma} ({self.source_text})"
            if not self.lens.is_identity:
                text += f"; lens distortion {self.lens.model} corrected on landmarks"
            return text
        prior = self.focal_prior or default_focal_prior(*self.image_size)
        return (f"intrinsics: {self.mode}, focal estimated online from a prior of {prior.focal_px:.0f} px "
                f"± {prior.sigma_rel:.0%} ({self.source_text})")


def _source_file(source: FrameSource) -> Path | None:
    from core.sources import ImageFolderSource, VideoFileSource  # noqa: PLC0415

    if isinstance(source, ImageFolderSource):
        return source.paths[0]
    if isinstance(source, VideoFileSource):
        return source.path
    return None


def resolve_intrinsics(options: SessionOptions, source: FrameSource, log=print) -> IntrinsicsPlan:
    """Decide the tracker's intrinsics, in this order of precedence:

    1. ``--focal PX`` / ``--fov DEG`` → ``fixed`` (square pixels, centred principal point);
    2. ``--camera-profile NAME|PATH`` → ``profile``; else, unless ``--no-profile``, the stored
       profile of the camera that opened (by name and resolution; scaled for another resolution
       of the same aspect ratio, refused otherwise) → ``profile``: fixed focal, principal point,
       pixel aspect and lens distortion (landmarks are undistorted before fitting);
    3. photo/video focal-length metadata (``core.metadata``) → ``metadata``: a prior, the focal
       length is still estimated online;
    4. otherwise → ``auto``: estimated online from the tracker's broad default prior.

    Raises ValueError (with the reason) for contradictory or unusable choices. The recording
    states the outcome: ``focal_mode``, ``focal_prior`` and ``extra["intrinsics"]`` =
    ``{mode, source, image_size, focal_px, focal_sigma_rel, principal_px, pixel_aspect,
    distortion: {model, coefficients, names}, landmarks_undistorted, profile (the profile JSON or
    null), profile_scaled_from, convention}`` (see :meth:`IntrinsicsPlan.intrinsics_record`).
    """
    size = tuple(int(v) for v in source.size)
    user_focal = fixed_focal_px(options, size[0])
    if user_focal is not None:
        if options.camera_profile:
            raise ValueError("give either a fixed focal length (--focal/--fov) or --camera-profile, not both")
        text = f"--fov {options.fov_deg:g}°" if options.fov_deg is not None else f"--focal {options.focal}"
        return IntrinsicsPlan("fixed", size, focal_px=user_focal, source_text=f"typed by the user: {text}")
    notes: list[str] = []
    profile = None
    if options.camera_profile:
        try:
            profile = load_profile_spec(options.camera_profile, size)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
        origin = f"--camera-profile {options.camera_profile}"
    elif options.auto_profile:
        name = camera_name_for_source(source)
        if name is not None:
            match = find_profile(name, size)
            if match.profile is not None:
                profile = match.profile
                origin = f"stored profile for {name!r}"
            elif "aspect" in match.message:
                notes.append(match.message)
                log(f"note: {match.message}")
    if profile is not None:
        if profile.scaled_from:
            log(f"note: camera profile {profile.name!r} scaled from {profile.scaled_from[0]}x{profile.scaled_from[1]} "
                f"to {size[0]}x{size[1]} (same aspect ratio)")
        plan = IntrinsicsPlan("profile", size, focal_px=profile.intrinsics[0], principal_px=profile.principal_px,
                              pixel_aspect=profile.pixel_aspect, focal_sigma_rel=profile.focal_sigma_rel,
                              lens=profile.lens, profile=profile,
                              source_text=f"{origin}: {profile.describe()}"
                              + (f" [{profile.path}]" if profile.path else ""),
                              notes=tuple(notes))
        log(f"note: {plan.describe()}")
        return plan
    path = _source_file(source) if options.use_metadata else None
    if path is not None:
        from core.metadata import focal_from_metadata  # noqa: PLC0415

        estimate, message = focal_from_metadata(path, size)
        if estimate is not None:
            log(f"note: {message} (a prior: the focal length is still estimated)")
            return IntrinsicsPlan("metadata", size, focal_prior=estimate.prior(), focal_sigma_rel=estimate.sigma_rel,
                                  source_text=message, notes=tuple(notes))
    prior = default_focal_prior(*size)
    return IntrinsicsPlan("auto", size, focal_prior=None, focal_sigma_rel=prior.sigma_rel,
                          source_text="default prior (no profile or metadata)", notes=tuple(notes))


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
