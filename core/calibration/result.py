"""What a calibration gives: :class:`Calibration` (intrinsics, lens, honest 1σ, warnings; its
:meth:`~Calibration.summary` for people), or :class:`CalibrationError` saying why it was refused
under the :class:`CalibrationCriteria`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core.distortion import LensDistortion


class CalibrationError(ValueError):
    """A calibration refused or impossible, with the reason and what to do about it."""


@dataclass(frozen=True)
class CalibrationCriteria:
    """When a calibration is refused (:class:`CalibrationError`) or comes with warnings."""

    min_views: int = 8
    min_area_fraction: float = 0.03  # a view's board (corner hull) must cover this much of the image
    max_rms_px: float = 1.0
    min_tilted_views: int = 3  # views tilted by at least min_tilt_deg (face-on views cannot fix f)
    min_tilt_deg: float = 15.0
    max_focal_sigma_rel: float = 0.02
    outlier_factor: float = 3.0  # drop views whose RMS exceeds this times the median (then re-solve)
    warn_coverage: float = 0.5  # warn when corners reached fewer of the 8x6 image cells
    # principal_point="auto": fix it at the image centre when the free solve leaves it more uncertain
    # than this fraction of the image size (narrow lenses): a real camera's offset is usually smaller.
    max_principal_sigma_rel: float = 0.01
    # warnings (not refusals) when the honest 1σ exceed these: the focal length relative, the principal point in px
    warn_focal_sigma_rel: float = 0.0025
    warn_principal_sigma_px: float = 1.0
    # distortion="auto": keep p1 p2 / k3 when the likelihood-ratio test rejects "they are zero" at this level,
    # with the residual variance scaled by noise_inflation² (corner errors are not quite independent)
    distortion_test_alpha: float = 1e-3
    noise_inflation: float = 1.0


@dataclass
class Calibration:
    """A solved camera: ideal pinhole intrinsics (flamecam convention) + lens distortion."""

    image_size: tuple[int, int]
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy
    lens: LensDistortion
    rms_px: float
    sigmas: dict[str, float]  # 1σ of fx, fy, cx, cy and each distortion coefficient
    per_view_rms_px: list[float]
    frame_indices: list[int]  # source frames of the views used
    board: str = ""
    coverage: float = 0.0  # fraction of 8x6 image cells with corners
    max_tilt_deg: float = 0.0
    dropped_views: list[int] = field(default_factory=list)  # frame indices removed as outliers
    warnings: list[str] = field(default_factory=list)
    principal_point_fixed: bool = False  # True: cx, cy are the image centre, not measured (sigmas NaN)
    distortion_terms: tuple[str, ...] = ()  # coefficients estimated; the others are held at 0 (sigmas NaN)
    sigmas_jacobian: dict[str, float] = field(default_factory=dict)  # OpenCV's 1σ (independent corner errors)

    @property
    def num_views(self) -> int:
        return len(self.frame_indices)

    def summary(self) -> str:
        fx, fy, cx, cy = self.intrinsics

        def pm(name: str, digits: int = 2) -> str:
            return f"± {self.sigmas.get(name, float('nan')):.{digits}f}"

        if self.principal_point_fixed:
            centre = f"cx = {cx:.2f} px   cy = {cy:.2f} px   (fixed at the image centre)"
        else:
            centre = f"cx = {cx:.2f} {pm('cx')} px   cy = {cy:.2f} {pm('cy')} px   (pixel i covers [i, i+1))"
        coeffs = "  ".join(f"{n} = {c:+.5f} {pm(n, 5)}" if not self.distortion_terms or n in self.distortion_terms
                           else f"{n} = 0 (held)" for n, c in zip(self.lens.coeff_names, self.lens.coeffs))
        lines = [f"{self.num_views} views, {self.image_size[0]}x{self.image_size[1]}, board {self.board}",
                 f"RMS reprojection error {self.rms_px:.3f} px",
                 f"fx = {fx:.2f} {pm('fx')} px   fy = {fy:.2f} {pm('fy')} px", centre,
                 f"lens: {self.lens.model}  {coeffs}",
                 f"coverage {self.coverage:.0%} of the image, max board tilt {self.max_tilt_deg:.0f}°"]
        ratios = [self.sigmas[k] / self.sigmas_jacobian[k] for k in ("fx", "cx", "cy")
                  if self.sigmas_jacobian.get(k, 0) > 0 and math.isfinite(self.sigmas.get(k, float("nan")))]
        if ratios and max(ratios) > 1.5:
            lines.append(f"1σ from the leave-one-view-out jackknife, up to {max(ratios):.1f}x OpenCV's: corner errors "
                         "are shared within views (blur, motion, a bent board?) or a few views carry the result")
        if self.dropped_views:
            lines.append(f"dropped outlier views (frames): {self.dropped_views}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)
