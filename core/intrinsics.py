"""How a session's camera intrinsics are decided: fixed, calibrated profile, metadata or estimated.

One place for the focal-length modes (:func:`resolve_intrinsics`) and what follows from them:
the tracker's fixed intrinsics or focal prior, the landmark undistortion of a calibrated lens,
and the description the recording and the app show.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from core.distortion import NO_DISTORTION, LensDistortion, LensRemap, Undistorter
from core.profiles import CameraProfile, ProfileError, camera_name_for_source, find_profile, load_profile_spec
from core.sources import FrameSource
from core.tracker.types import FocalPrior, default_focal_prior, fuse_focal_priors


FOV_RANGE_DEG = (1.0, 170.0)  # a pinhole camera; wider lenses are fisheyes: calibrate those


def check_fixed_focal(focal: str = "auto", fov_deg: float | None = None) -> None:
    """Raise ValueError (one line, with the fix) for a focal length or field of view that no camera has."""
    if fov_deg is not None:
        lo, hi = FOV_RANGE_DEG
        if not math.isfinite(fov_deg) or not lo <= fov_deg <= hi:
            raise ValueError(f"--fov {fov_deg:g}: the horizontal field of view must be between {lo:g} and {hi:g} "
                             "degrees (a pinhole camera; calibrate a fisheye lens with flamecam calibrate)")
    if focal != "auto":
        try:
            value = float(focal)
        except ValueError:
            raise ValueError(f"--focal {focal!r}: expected 'auto' or a focal length in pixels") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"--focal {focal}: must be a positive focal length in pixels")


def fixed_focal_px(options, width: int) -> float | None:
    """The fixed focal length the user asked for (``options.focal`` px or ``options.fov_deg``), or None for auto."""
    from core.camera import fov_deg_to_focal  # noqa: PLC0415

    check_fixed_focal(options.focal, options.fov_deg)
    if options.fov_deg is not None:
        return float(fov_deg_to_focal(options.fov_deg, width))
    return None if options.focal == "auto" else float(options.focal)


FOCAL_MODES = ("fixed", "profile", "metadata", "table", "auto")


@dataclass(frozen=True)
class IntrinsicsPlan:
    """How a session's camera intrinsics were decided, and everything that follows from it.

    ``mode``: ``fixed`` (the user typed a focal length or field of view), ``profile`` (a camera
    calibration: fixed focal, principal point, pixel aspect and lens distortion), ``metadata``
    (photo/video metadata gave a focal prior; the tracker still estimates it), ``table`` (the camera
    table knows the device) or ``auto`` (only the device class's broad range). In the last three the
    tracker estimates the focal length under ``focal_prior``, the fusion of ``evidence``, with the
    regressor's beliefs and the landmark data. See :func:`resolve_intrinsics`.
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
    evidence: tuple[FocalPrior, ...] = ()  # the pieces fused into focal_prior (see focal_evidence)

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
            "evidence": [{"source": p.source, "detail": p.detail, "focal_px": p.focal_px, "sigma_rel": p.sigma_rel}
                         for p in self.evidence],
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
            prior_dict = {"focal_px": prior.focal_px, "sigma_rel": prior.sigma_rel, "source": prior.source,
                          "detail": prior.detail, "parts": [list(part) for part in prior.shares]}
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


def resolve_intrinsics(options, source: FrameSource, log=print) -> IntrinsicsPlan:
    """Decide the tracker's intrinsics, in this order of precedence:

    1. ``--focal PX`` / ``--fov DEG`` → ``fixed`` (square pixels, centred principal point);
    2. ``--camera-profile NAME|PATH`` → ``profile``; else, unless ``--no-profile``, the stored
       profile of the camera that opened (by name and resolution; scaled for another resolution
       of the same aspect ratio, refused otherwise) → ``profile``: fixed focal, principal point,
       pixel aspect and lens distortion (landmarks are undistorted before fitting);
    3. photo/video focal-length metadata (``core.metadata``) → ``metadata``; else a device the camera
       table knows (webcam name from the OS, or make/model in the file's metadata) → ``table``; else
       ``auto``. All three fuse their evidence with the device class's range into a prior
       (:func:`focal_evidence`); the tracker still estimates the focal length.

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
    mode, evidence = focal_evidence(source, size, options.use_metadata, log=log)
    prior = fuse_focal_priors(evidence)
    text = "; ".join(f"{p.detail}: {p.focal_px:.0f} px ± {p.sigma_rel:.0%}" for p in evidence)
    if mode != "auto":
        log(f"note: focal-length prior {prior.focal_px:.0f} px ± {prior.sigma_rel:.0%} from {prior.detail} "
            "(a prior: the focal length is still estimated)")
    return IntrinsicsPlan(mode, size, focal_prior=prior, focal_sigma_rel=prior.sigma_rel, source_text=text,
                          notes=tuple(notes), evidence=tuple(evidence))


def focal_evidence(source: FrameSource, size: tuple[int, int], use_metadata: bool = True,
                   log=print) -> tuple[str, list[FocalPrior]]:
    """What is known about the focal length before tracking, as independent log-normal pieces of
    evidence, and the mode they make (``metadata``, ``table`` or ``auto``).

    Always the device class's range: webcams, or any camera (a file's lens may be zoomed or cropped,
    so a phone's main-camera range would be overconfident; the camera table knows the phones it
    knows); plus the file's focal-length metadata (EXIF, QuickTime: ±4-15 %), or else, when the
    metadata or the OS names a device the camera table knows, the maker's published field of view
    (±8 % or wider).
    """
    from core.camera_table import device_class_prior, lookup_device, lookup_make_model  # noqa: PLC0415
    from core.sources import WebcamSource  # noqa: PLC0415

    kind, specific, mode = "unknown", None, "auto"
    if isinstance(source, WebcamSource):
        from core.profiles import webcam_device_name  # noqa: PLC0415

        kind = "webcam"
        name = webcam_device_name(source.index)
        match = lookup_device(name, size) if name else None
        if match is not None:
            specific, mode = FocalPrior(match.focal_px, match.sigma_rel, "camera_table",
                                        f"camera table ({match.camera})"), "table"
    else:
        path = _source_file(source) if use_metadata else None
        meta = None
        if path is not None:
            from core.metadata import read_camera_metadata  # noqa: PLC0415

            meta = read_camera_metadata(path)
        if meta is not None:
            estimate = meta.focal_estimate(size)
            what = "EXIF" if meta.kind == "exif" else "video metadata"
            device = meta.camera_name or "camera"
            if estimate is not None:
                lens = f", {meta.focal_35mm:g} mm eq." if meta.focal_35mm else ""
                specific, mode = FocalPrior(estimate.focal_px, estimate.sigma_rel, "metadata",
                                            f"{what} ({device}{lens})"), "metadata"
            elif meta.make or meta.model:
                match = lookup_make_model(meta.make, meta.model, size, meta.is_video, meta.camera_position)
                if match is not None and not match.from_class_prior:
                    specific, mode = FocalPrior(match.focal_px, match.sigma_rel, "camera_table",
                                                f"camera table ({match.camera}, named by {what})"), "table"
            elif meta.focal_35mm and meta.recorded_size:
                log(f"note: {Path(path).name}: focal length metadata ignored: the image was cropped after capture")
    base = device_class_prior(kind, size)
    evidence = [FocalPrior(base.focal_px, base.sigma_rel, "device_class", f"{base.camera} (class range)")]
    return mode, evidence + ([specific] if specific is not None else [])
