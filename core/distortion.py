"""Lens distortion: OpenCV's two models, in flamecam's pixel convention.

flamecam's camera is an ideal pinhole (``core.camera.project_perspective``). A real lens
bends rays first; a calibration (``core.calibration``) measures how. This module maps
between the two, always through OpenCV's own functions (no re-written distortion formulas):

* ``"opencv"``: the standard radial-tangential model of ``cv2.projectPoints``, coefficients
  ``(k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4[, τx, τy]]]])`` (4, 5, 8, 12 or 14).
* ``"fisheye"``: the equidistant model of ``cv2.fisheye`` (``θ_d = θ(1 + k1θ² + k2θ⁴ + k3θ⁶ +
  k4θ⁸)``), coefficients ``(k1, k2, k3, k4)``, for very wide (HMC) lenses.
* ``"none"``: no distortion.

Pixel convention. flamecam pixels cover ``[i, i+1)`` (centre of pixel i at i + 0.5); OpenCV
puts pixel centres on integers. Distortion acts on normalised coordinates
``x = (u - cx) / fx``, so points and intrinsics given in the *same* convention give the same
answer: the point functions here take flamecam points and flamecam intrinsics and pass both
to OpenCV unchanged. Only image maps (``cv2.remap`` samples at integer centres) and imported or
exported camera matrices need the half-pixel shift (:func:`core.camera.opencv_camera_matrix`).

Images. :class:`LensRemap` warps whole images both ways:

* ``undistort_image``: the camera frame as an ideal pinhole would have seen it, with the same
  intrinsics (``cv2.initUndistortRectifyMap``) — the "show the video undistorted" view on which
  the tracker's own intrinsics draw the overlay exactly.
* ``distort_image``: content rendered by an ideal pinhole camera (on :attr:`LensRemap.canvas`,
  a canvas large enough that every distorted pixel finds its source) warped to look as the lens
  sees it. For each output pixel centre the ideal position comes from ``cv2.undistortPoints``
  (iterated to ~1e-9 px), then ``cv2.remap`` samples bilinearly. Used to render synthetic frames
  with distortion and to draw the overlay distorted over the raw video.

:func:`distort_vertices_cam` is the alternative for meshes: it moves camera-space vertices so
that the pinhole projection lands on the distorted position (depth kept). Exact at the
vertices, straight between them; fine for finely tessellated meshes, and cheaper than a remap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.camera import backproject, intrinsics_matrix, opencv_camera_matrix, pixels_to_rays, project_perspective

LENS_MODELS = ("none", "opencv", "fisheye")
OPENCV_COEFF_NAMES = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6", "s1", "s2", "s3", "s4", "tx", "ty")
FISHEYE_COEFF_NAMES = ("k1", "k2", "k3", "k4")
_OPENCV_LENGTHS = (4, 5, 8, 12, 14)
# Iterative undistortion: tight enough that distort(undistort(p)) == p to ~1e-6 px.
_CRITERIA = (3, 50, 1e-10)  # cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS


@dataclass(frozen=True)
class LensDistortion:
    """A lens distortion model and its coefficients (see the module docstring for the order)."""

    model: str = "none"
    coeffs: tuple[float, ...] = ()

    def __post_init__(self):
        if self.model not in LENS_MODELS:
            raise ValueError(f"lens model {self.model!r}: expected one of {', '.join(LENS_MODELS)}")
        coeffs = tuple(float(c) for c in self.coeffs)
        object.__setattr__(self, "coeffs", coeffs)
        if not all(math.isfinite(c) for c in coeffs):
            raise ValueError(f"lens coefficients must be finite, got {coeffs}")
        if self.model == "none" and coeffs and any(coeffs):
            raise ValueError("lens model 'none' takes no coefficients")
        if self.model == "opencv" and len(coeffs) not in _OPENCV_LENGTHS:
            raise ValueError(f"the opencv lens model takes 4, 5, 8, 12 or 14 coefficients "
                             f"(k1, k2, p1, p2[, k3[, k4, k5, k6[, s1..s4[, tx, ty]]]]), got {len(coeffs)}")
        if self.model == "fisheye" and len(coeffs) != 4:
            raise ValueError(f"the fisheye lens model takes 4 coefficients (k1, k2, k3, k4), got {len(coeffs)}")

    @classmethod
    def opencv(cls, k1=0.0, k2=0.0, p1=0.0, p2=0.0, k3=0.0) -> "LensDistortion":
        return cls("opencv", (k1, k2, p1, p2, k3))

    @classmethod
    def fisheye(cls, k1=0.0, k2=0.0, k3=0.0, k4=0.0) -> "LensDistortion":
        return cls("fisheye", (k1, k2, k3, k4))

    @property
    def is_identity(self) -> bool:
        """True when points pass through unchanged (no model, or the opencv model with zeros).

        The fisheye model with zero coefficients is *not* a pinhole (it is equidistant).
        """
        return self.model == "none" or (self.model == "opencv" and not any(self.coeffs))

    @property
    def coeff_names(self) -> tuple[str, ...]:
        names = FISHEYE_COEFF_NAMES if self.model == "fisheye" else OPENCV_COEFF_NAMES
        return names[: len(self.coeffs)]

    def as_array(self) -> np.ndarray:
        """Coefficients as OpenCV wants them: (K,) float64."""
        return np.asarray(self.coeffs, np.float64)

    def to_dict(self) -> dict:
        return {"model": self.model, "coefficients": list(self.coeffs), "names": list(self.coeff_names)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "LensDistortion":
        if not data:
            return cls()
        return cls(str(data.get("model", "opencv")), tuple(data.get("coefficients", ())))


NO_DISTORTION = LensDistortion()


def _k(intrinsics: Sequence[float]) -> np.ndarray:
    # OpenCV's point functions only scale and shift by K here, so flamecam's own K keeps its convention.
    return intrinsics_matrix(np.asarray(intrinsics, np.float64))


def _finite_rows(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) pixels, got {pts.shape}")
    return pts, np.isfinite(pts).all(axis=1)


def distort_points(points_px: np.ndarray, intrinsics: Sequence[float], lens: LensDistortion) -> np.ndarray:
    """Ideal pinhole pixels -> where the lens puts them. (N, 2) -> (N, 2); NaN rows stay NaN."""
    import cv2  # noqa: PLC0415

    pts, ok = _finite_rows(points_px)
    out = pts.copy()
    if lens.is_identity or not ok.any():
        return out
    norm = pixels_to_rays(pts[ok], intrinsics)
    if lens.model == "fisheye":
        res = cv2.fisheye.distortPoints(norm[:, None, :], _k(intrinsics), lens.as_array())
    else:
        rays = np.concatenate([norm, np.ones((len(norm), 1))], 1)
        res, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), _k(intrinsics), lens.as_array())
    out[ok] = res.reshape(-1, 2)
    return out


def undistort_points(points_px: np.ndarray, intrinsics: Sequence[float], lens: LensDistortion) -> np.ndarray:
    """Observed (distorted) pixels -> ideal pinhole pixels of the same intrinsics. (N, 2) -> (N, 2).

    NaN rows stay NaN. Inverse of :func:`distort_points` inside the lens's valid region.
    """
    import cv2  # noqa: PLC0415

    pts, ok = _finite_rows(points_px)
    out = pts.copy()
    if lens.is_identity or not ok.any():
        return out
    k = _k(intrinsics)
    src = pts[ok][:, None, :]
    if lens.model == "fisheye":
        res = cv2.fisheye.undistortPoints(src, k, lens.as_array(), R=np.eye(3), P=k, criteria=_CRITERIA)
    else:
        res = cv2.undistortPoints(src, k, lens.as_array(), R=None, P=k, criteria=_CRITERIA)
    out[ok] = res.reshape(-1, 2)
    return out


class Undistorter:
    """The ``TrackingPipeline(undistort=...)`` hook: (N, 2) detected pixels -> ideal pinhole pixels."""

    def __init__(self, intrinsics: Sequence[float], lens: LensDistortion):
        self.intrinsics = tuple(float(v) for v in intrinsics)
        self.lens = lens

    def __call__(self, points_px: np.ndarray) -> np.ndarray:
        return undistort_points(points_px, self.intrinsics, self.lens).astype(np.asarray(points_px).dtype, copy=False)

    def __repr__(self) -> str:
        return f"Undistorter({self.lens.model}, {self.lens.coeffs})"


def distort_vertices_cam(vertices_cam: np.ndarray, intrinsics: Sequence[float], lens: LensDistortion) -> np.ndarray:
    """Camera-space vertices (V, 3) moved so that an ideal pinhole renders them where the lens would.

    Depth is kept (so z-buffering is unchanged); vertices at or behind the camera are left alone.
    Straight edges stay straight between vertices, so tessellate finely for strong distortion.
    """
    v = np.asarray(vertices_cam, np.float64)
    if lens.is_identity:
        return v.copy()
    out = v.copy()
    front = v[:, 2] > 1e-9
    uv_d = distort_points(project_perspective(v[front], intrinsics), intrinsics, lens)
    out[front] = backproject(uv_d, v[front, 2], intrinsics)
    return out


def pixel_centres(width: int, height: int) -> np.ndarray:
    """(H·W, 2) flamecam coordinates of every pixel centre, row-major."""
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([xs.ravel(), ys.ravel()], -1)


def max_displacement_px(intrinsics: Sequence[float], lens: LensDistortion, size: tuple[int, int],
                        samples: int = 41) -> float:
    """Largest distance between a pixel and its undistorted position over the image (a size of the effect)."""
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w, samples), np.linspace(0, h, samples))
    pts = np.stack([xs.ravel(), ys.ravel()], -1)
    ideal = undistort_points(pts, intrinsics, lens)
    return float(np.nanmax(np.linalg.norm(ideal - pts, axis=1)))


@dataclass(frozen=True)
class Canvas:
    """An ideal pinhole image that covers a distorted frame: render on it, then :meth:`LensRemap.distort_image`."""

    size: tuple[int, int]  # (W, H)
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy of the canvas (same focal, shifted principal point)
    offset_px: tuple[float, float]  # canvas pixel = frame ideal pixel - offset


class LensRemap:
    """Image warps between a camera's distorted frames and its ideal pinhole images (cached maps).

    intrinsics: (4,) flamecam (fx, fy, cx, cy) of the camera (the ideal pinhole the tracker uses);
    size: (W, H) of the camera frames. ``max_canvas_scale`` caps the ideal canvas (a wide fisheye
    maps its borders far out; those pixels get the border colour).
    """

    def __init__(self, intrinsics: Sequence[float], lens: LensDistortion, size: tuple[int, int],
                 max_canvas_scale: float = 3.0, margin_px: int = 2):
        self.intrinsics = np.asarray([float(v) for v in intrinsics])
        self.lens, self.size = lens, (int(size[0]), int(size[1]))
        self.max_canvas_scale, self.margin_px = max_canvas_scale, margin_px
        self._undistort_maps = None
        self._distort_maps = None
        self._canvas: Canvas | None = None

    @property
    def canvas(self) -> Canvas:
        """Where to render ideal content so that :meth:`distort_image` fills the whole frame."""
        if self._canvas is None:
            w, h = self.size
            if self.lens.is_identity:
                self._canvas = Canvas((w, h), self.intrinsics.copy(), (0.0, 0.0))
            else:
                t = np.linspace(0, 1, 257)
                zero, one = np.zeros_like(t), np.ones_like(t)
                border = np.concatenate([np.stack([t * w, zero], -1), np.stack([t * w, one * h], -1),
                                         np.stack([zero, t * h], -1), np.stack([one * w, t * h], -1)])
                ideal = undistort_points(border, self.intrinsics, self.lens)
                ideal = ideal[np.isfinite(ideal).all(1)]
                s, m = self.max_canvas_scale, self.margin_px
                x0 = max(min(0.0, float(ideal[:, 0].min())) - m, -(s - 1) * w / 2)
                y0 = max(min(0.0, float(ideal[:, 1].min())) - m, -(s - 1) * h / 2)
                x1 = min(max(float(w), float(ideal[:, 0].max())) + m, w + (s - 1) * w / 2)
                y1 = min(max(float(h), float(ideal[:, 1].max())) + m, h + (s - 1) * h / 2)
                x0, y0 = math.floor(x0), math.floor(y0)  # integer offsets keep pixel grids aligned
                cw, ch = math.ceil(x1) - x0, math.ceil(y1) - y0
                intr = self.intrinsics - np.array([0.0, 0.0, x0, y0])
                self._canvas = Canvas((cw, ch), intr, (float(x0), float(y0)))
        return self._canvas

    def _maps_undistort(self):
        import cv2  # noqa: PLC0415

        if self._undistort_maps is None:
            k_cv = opencv_camera_matrix(self.intrinsics)
            if self.lens.model == "fisheye":
                maps = cv2.fisheye.initUndistortRectifyMap(k_cv, self.lens.as_array(), np.eye(3), k_cv, self.size,
                                                           cv2.CV_32FC1)
            else:
                maps = cv2.initUndistortRectifyMap(k_cv, self.lens.as_array(), np.eye(3), k_cv, self.size,
                                                   cv2.CV_32FC1)
            self._undistort_maps = maps
        return self._undistort_maps

    def _maps_distort(self):
        if self._distort_maps is None:
            w, h = self.size
            ideal = undistort_points(pixel_centres(w, h), self.intrinsics, self.lens)
            ox, oy = self.canvas.offset_px
            # flamecam canvas coordinate -> OpenCV's (integer pixel centres) for cv2.remap
            map_x = (ideal[:, 0] - ox - 0.5).reshape(h, w).astype(np.float32)
            map_y = (ideal[:, 1] - oy - 0.5).reshape(h, w).astype(np.float32)
            bad = ~np.isfinite(map_x) | ~np.isfinite(map_y)
            map_x[bad] = map_y[bad] = -1e6
            self._distort_maps = (map_x, map_y)
        return self._distort_maps

    def undistort_image(self, image: np.ndarray, interpolation: int | None = None, border_value=0) -> np.ndarray:
        """A distorted camera frame (H, W[, C]) -> the ideal pinhole view with the same intrinsics."""
        import cv2  # noqa: PLC0415

        if self.lens.is_identity:
            return np.array(image, copy=True)
        self._check_size(image, self.size, "camera frame")
        mx, my = self._maps_undistort()
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR if interpolation is None else interpolation,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)

    def distort_image(self, canvas_image: np.ndarray, interpolation: int | None = None, border_value=0) -> np.ndarray:
        """An image rendered on :attr:`canvas` (ideal pinhole) -> the frame the lens would record (H, W[, C])."""
        import cv2  # noqa: PLC0415

        self._check_size(canvas_image, self.canvas.size, "canvas image")
        if self.lens.is_identity:
            return np.array(canvas_image, copy=True)
        mx, my = self._maps_distort()
        return cv2.remap(canvas_image, mx, my, cv2.INTER_LINEAR if interpolation is None else interpolation,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)

    @staticmethod
    def _check_size(image: np.ndarray, size: tuple[int, int], what: str) -> None:
        h, w = np.asarray(image).shape[:2]
        if (w, h) != tuple(size):
            raise ValueError(f"{what} is {w}x{h}, expected {size[0]}x{size[1]}")
