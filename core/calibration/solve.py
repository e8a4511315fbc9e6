"""Camera calibration from a checkerboard or ChArUco board: OpenCV's calibration, guided.

The tracker cannot measure the focal length well from face landmarks alone (MediaPipe's slow
~2 px bias swamps the 0.03-0.1 px a 3 % focal change makes), so users who need metric,
undistorted geometry calibrate. This module does the parts around OpenCV's solver:

1. **Detect** a board per frame (:func:`detect_board`): ``cv2.findChessboardCorners`` +
   ``cv2.cornerSubPix`` for checkerboards (``findChessboardCornersSB`` as the fallback; whole
   pattern), ``cv2.aruco.CharucoDetector`` for ChArUco boards (partial views allowed, so the
   image corners get covered too), whose corners are then re-located on the two chessboard edges
   through them only (:func:`refine_grid_corners`: OpenCV's window reaches into the markers and
   biases them; refined they are as accurate as the checkerboard's, ~0.07-0.08 px on our renders).
2. **Pick views** that constrain the camera: a live :class:`CalibrationSession` takes views that
   add something new and tells the user what the guided session (:data:`GUIDED_VIEWS`: the board
   filling the frame tilted ~45° left/right/up/down and ~35° about the diagonals, the image corners
   and edges) still lacks; for files, :func:`select_views` picks greedily the views that most lower
   the expected uncertainty of the intrinsics (Fisher information of each view, its pose eliminated).
3. **Solve** intrinsics and lens distortion (:func:`calibrate`): ``cv2.calibrateCameraExtended``
   (radial-tangential, the coefficients beyond k1 k2 kept only when a likelihood-ratio test says the
   views need them; or the 8-coefficient rational model) or ``cv2.fisheye.calibrate`` (equidistant
   ``k1..k4``, very wide HMC lenses), from two starts (OpenCV's, and one grown from the large views,
   which avoids the local minima of flipped board poses under strong distortion). Views whose
   error is far above the others are dropped and the solve repeated once.
4. **Judge**: report the RMS reprojection error and an honest 1σ of every parameter — the larger of
   OpenCV's (residuals and Jacobian; assumes independent corner errors) and the leave-one-view-out
   jackknife's (errors shared by a view's corners, a view that carries the solution alone) — and
   refuse a poor calibration with :class:`CalibrationError` saying why: too few views, board too
   small in the frame, all views face-on (focal length not determined), RMS above the threshold,
   focal length too uncertain. When the views cannot locate the principal point (narrow lenses: its
   σ above 1 % of the image), it is fixed at the image centre and the result says so; a focal
   length or principal point less certain than ``CalibrationCriteria.warn_*`` comes with a warning
   saying which views would help.

Conventions: every pixel coordinate here is flamecam's (pixel ``i`` covers ``[i, i+1)``), so
detections are shifted by +0.5 from OpenCV's integer-centred corners as soon as they are found,
and OpenCV's solver then returns flamecam intrinsics directly (its camera model does not care
where the origin is; only its initial guess does). Board coordinates: metres, x right and y
down on the printed board, z into it.

The end of the module renders boards with the project's renderer (``core.render``) for tests
and benchmarks (:class:`BoardRenderer`: the board as a mesh of uniformly coloured rectangles, drawn
by the exact pinhole renderer with 4x MSAA on an ideal canvas and, with a lens, remapped by
``core.distortion.LensRemap``) at poses of a user following the guidance
(:func:`guided_board_poses`) or random ones (:func:`random_board_poses`), and
:meth:`BoardSpec.image` gives a printable board (``flamecam calibrate --print-board``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from core.camera import (backproject, default_intrinsics, intrinsics_from_matrix, intrinsics_matrix,
                         project_perspective)
from core.distortion import FISHEYE_COEFF_NAMES, OPENCV_COEFF_NAMES, LensDistortion

CALIBRATION_MODELS = ("opencv", "rational", "fisheye")
_ZONE_NAMES = (("top-left", "top", "top-right"), ("left", "centre", "right"),
               ("bottom-left", "bottom", "bottom-right"))


class CalibrationError(ValueError):
    """A calibration refused or impossible, with the reason and what to do about it."""


# --- boards ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardSpec:
    """A calibration board as printed.

    ``squares_x`` × ``squares_y`` squares (a 10×7 checkerboard has 9×6 inner corners);
    ``square_m``: side of a square in metres (measure the print!); ChArUco: ``marker_m`` the
    marker side, ``dictionary`` an OpenCV ArUco dictionary name, ``legacy`` for boards made by
    OpenCV < 4.6 with an even number of rows.
    """

    kind: str = "charuco"  # checkerboard | charuco; the default fits A4 paper (27 x 18 cm)
    squares_x: int = 9
    squares_y: int = 6
    square_m: float = 0.03
    marker_m: float | None = 0.022
    dictionary: str = "DICT_5X5_100"
    legacy: bool = False

    def __post_init__(self):
        if self.kind not in ("checkerboard", "charuco"):
            raise ValueError(f"board kind {self.kind!r}: expected checkerboard or charuco")
        if self.squares_x < 3 or self.squares_y < 3:
            raise ValueError(f"a board needs at least 3x3 squares, got {self.squares_x}x{self.squares_y}")
        if not self.square_m > 0:
            raise ValueError("the square size must be positive (metres)")
        if self.kind == "charuco":
            if self.marker_m is None or not 0 < self.marker_m < self.square_m:
                raise ValueError("a ChArUco board needs 0 < marker < square")
            import cv2  # noqa: PLC0415

            if not hasattr(cv2.aruco, self.dictionary):
                raise ValueError(f"unknown ArUco dictionary {self.dictionary!r} (e.g. DICT_4X4_50, DICT_5X5_100)")

    @classmethod
    def parse(cls, text: str) -> "BoardSpec":
        """``charuco:7x5,square=0.04,marker=0.03[,dict=DICT_5X5_100][,legacy=1]`` or
        ``checkerboard:10x7,square=0.025`` (counts are squares, sizes in metres; ``mm`` suffix allowed)."""
        kind, _, rest = text.partition(":")
        kind = kind.strip().lower()
        if kind in ("chess", "chessboard"):
            kind = "checkerboard"
        parts = [p.strip() for p in rest.split(",") if p.strip()]
        if not parts or not re.fullmatch(r"\d+x\d+", parts[0]):
            raise ValueError(f"board {text!r}: expected KIND:NXxNY,square=SIZE[,...], e.g. "
                             "charuco:7x5,square=0.04,marker=0.03 or checkerboard:10x7,square=0.025")
        nx, ny = (int(v) for v in parts[0].split("x"))
        values: dict = {"kind": kind, "squares_x": nx, "squares_y": ny}
        for part in parts[1:]:
            key, _, raw = part.partition("=")
            key = key.strip().lower()
            if key in ("square", "marker"):
                values[f"{key}_m"] = _length_m(raw)
            elif key in ("dict", "dictionary"):
                values["dictionary"] = raw.strip().upper()
            elif key == "legacy":
                values["legacy"] = raw.strip().lower() in ("1", "true", "yes")
            else:
                raise ValueError(f"board option {key!r}: expected square, marker, dict or legacy")
        if kind == "checkerboard":
            values.setdefault("marker_m", None)
        if "square_m" not in values:
            raise ValueError(f"board {text!r}: give square=SIZE (metres, or e.g. 25mm)")
        return cls(**values)

    def __str__(self) -> str:
        size = f"{self.squares_x}x{self.squares_y},square={self.square_m:g}"
        if self.kind == "checkerboard":
            return f"checkerboard:{size}"
        return f"charuco:{size},marker={self.marker_m:g},dict={self.dictionary}" + (",legacy=1" if self.legacy else "")

    @property
    def inner_corners(self) -> tuple[int, int]:
        return self.squares_x - 1, self.squares_y - 1

    @property
    def num_corners(self) -> int:
        nx, ny = self.inner_corners
        return nx * ny

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_m, self.squares_y * self.square_m

    def corner_points(self) -> np.ndarray:
        """(N, 3) board coordinates of every inner corner, indexed by corner id (row-major)."""
        nx, ny = self.inner_corners
        gx, gy = np.meshgrid(np.arange(1, nx + 1), np.arange(1, ny + 1))
        pts = np.stack([gx.ravel(), gy.ravel(), np.zeros(nx * ny)], -1) * self.square_m
        return pts.astype(np.float32)

    def cv_board(self):
        """The ``cv2.aruco.CharucoBoard`` (ChArUco only)."""
        import cv2  # noqa: PLC0415

        if self.kind != "charuco":
            raise ValueError("only ChArUco boards have an aruco board object")
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        board = cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, dictionary)
        board.setLegacyPattern(self.legacy)
        return board

    def image(self, px_per_square: int = 100, margin_squares: float = 0.5) -> np.ndarray:
        """The board as a grey uint8 image with a white margin (for printing and rendering)."""
        import cv2  # noqa: PLC0415

        w, h = self.squares_x * px_per_square, self.squares_y * px_per_square
        if self.kind == "charuco":
            inner = self.cv_board().generateImage((w, h), marginSize=0, borderBits=1)
        else:
            ix, iy = np.meshgrid(np.arange(w) // px_per_square, np.arange(h) // px_per_square)
            inner = np.where((ix + iy) % 2 == 0, 0, 255).astype(np.uint8)
        m = int(round(margin_squares * px_per_square))
        return cv2.copyMakeBorder(inner, m, m, m, m, cv2.BORDER_CONSTANT, value=255)


def _length_m(raw: str) -> float:
    raw = raw.strip().lower()
    scale = 1.0
    for suffix, s in (("mm", 1e-3), ("cm", 1e-2), ("m", 1.0)):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)], s
            break
    try:
        return float(raw) * scale
    except ValueError:
        raise ValueError(f"expected a length such as 0.025 or 25mm, got {raw!r}") from None


# --- detection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardDetection:
    """Board corners found in one frame. Pixels in flamecam's convention (see the module docstring)."""

    image_points: np.ndarray  # (N, 2) float64 pixels
    object_points: np.ndarray  # (N, 3) float32 board metres
    ids: np.ndarray  # (N,) corner ids
    image_size: tuple[int, int]  # (W, H)
    frame_index: int = -1

    @property
    def num_corners(self) -> int:
        return len(self.ids)

    @property
    def area_fraction(self) -> float:
        """Area of the corners' convex hull over the image area."""
        import cv2  # noqa: PLC0415

        hull = cv2.convexHull(self.image_points.astype(np.float32))
        w, h = self.image_size
        return float(cv2.contourArea(hull)) / (w * h)

    @property
    def centre_norm(self) -> np.ndarray:
        """(2,) mean corner position in [0, 1] image coordinates."""
        return self.image_points.mean(0) / np.asarray(self.image_size, np.float64)


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2  # noqa: PLC0415

    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return img


class BoardDetector:
    """Finds a :class:`BoardSpec` in frames (reuses OpenCV's detector objects between calls).

    ``refine`` (default: ChArUco boards only): re-locate the corners with :func:`refine_grid_corners`
    after OpenCV's detection. OpenCV's ChArUco refinement window reaches the markers, whose edges lie
    only ``(square - marker) / 2`` from each chessboard corner, and they pull the corner off by up to
    ~1 px: RMS 0.18 px on our renders against 0.08 px for a checkerboard; refined, 0.07-0.08 px, also
    with blur and noise. Checkerboards gain little (0.08 -> 0.07 px on clean renders, worse on blurred
    noisy ones), so they keep ``cv2.cornerSubPix``.
    """

    def __init__(self, board: BoardSpec, refine: bool | None = None):
        self.board = board
        self.refine = board.kind == "charuco" if refine is None else refine
        self._charuco = None
        # half the gap between a chessboard edge and the nearest other edge (a marker's), per square side
        self._band_frac = 0.08 if board.kind == "checkerboard" else 0.5 * (1 - board.marker_m / board.square_m) / 2
        if board.kind == "charuco":
            import cv2  # noqa: PLC0415

            cv_board = board.cv_board()
            params = cv2.aruco.DetectorParameters()
            params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
            self._charuco = cv2.aruco.CharucoDetector(cv_board, cv2.aruco.CharucoParameters(), params)
            self._charuco_points = np.asarray(cv_board.getChessboardCorners(), np.float32)
            self._cv_board = cv_board

    def detect(self, image: np.ndarray, frame_index: int = -1) -> BoardDetection | None:
        """Corners of the board in an RGB or grey uint8 image, or None when it is not found."""
        import cv2  # noqa: PLC0415

        grey = _grey(image)
        size = (grey.shape[1], grey.shape[0])
        if self._charuco is None:
            # The classic detector + cornerSubPix is fast and, on our renders, a little more accurate
            # than the sector-based one (0.08 vs 0.11 px); the latter copes better with blur and
            # uneven light, so it is the fallback.
            flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
            found, corners = cv2.findChessboardCorners(grey, self.board.inner_corners, flags=flags)
            if found:
                nx = self.board.inner_corners[0]
                grid = corners.reshape(-1, nx, 2)
                spacing = min(np.linalg.norm(np.diff(grid, axis=1), axis=2).min(),
                              np.linalg.norm(np.diff(grid, axis=0), axis=2).min() if len(grid) > 1 else np.inf)
                win = int(np.clip(spacing * 0.4, 2, 10))  # stay inside the neighbouring squares
                corners = cv2.cornerSubPix(grey, corners, (win, win), (-1, -1),
                                           (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-4))
            else:
                flags = cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY | cv2.CALIB_CB_NORMALIZE_IMAGE
                found, corners = cv2.findChessboardCornersSB(grey, self.board.inner_corners, flags=flags)
                if not found:
                    return None
            ids = np.arange(self.board.num_corners)
            obj = self.board.corner_points()
        else:
            corners, ids, _, _ = self._charuco.detectBoard(grey)
            if ids is None or len(ids) < 6:
                return None
            ids = ids.ravel()
            if self._cv_board.checkCharucoCornersCollinear(ids.reshape(-1, 1)):
                return None
            # cv_board corners start at (square, square) like corner_points(); same frame.
            obj = self._charuco_points[ids]
        pts = corners.reshape(-1, 2).astype(np.float64)
        if self.refine:
            pts = refine_grid_corners(grey, pts, ids, self.board.inner_corners, self._band_frac)
        pts = pts + 0.5  # OpenCV integer centres -> flamecam pixels
        return BoardDetection(pts, obj.astype(np.float32), ids.astype(np.int32), size, frame_index)


def _grid_axes(points: np.ndarray, ids: np.ndarray, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) image step per board column and per row at each corner (NaN where the detected
    neighbours do not determine them), from a least-squares affine fit to its 8-neighbourhood."""
    col, row = ids % nx, ids // nx
    step_x = np.full((len(ids), 2), np.nan)
    step_y = np.full((len(ids), 2), np.nan)
    for k in range(len(ids)):
        near = (np.abs(col - col[k]) <= 1) & (np.abs(row - row[k]) <= 1)
        near[k] = False
        if near.sum() < 2:
            continue
        grid = np.stack([col[near] - col[k], row[near] - row[k]], -1).astype(np.float64)
        if np.linalg.matrix_rank(grid) < 2:
            continue
        sol = np.linalg.lstsq(grid, points[near] - points[k], rcond=None)[0]  # (2, 2): rows = d/dcol, d/drow
        step_x[k], step_y[k] = sol[0], sol[1]
    return step_x, step_y


def refine_grid_corners(grey: np.ndarray, points: np.ndarray, ids: np.ndarray, inner_corners: tuple[int, int],
                        band_frac: float = 0.08, radius_frac: float = 0.75, max_radius_px: float = 30.0,
                        min_band_px: float = 1.0, iterations: int = 10) -> np.ndarray:
    """Sub-pixel chessboard corners from the two edges that cross at them only.

    ``cv2.cornerSubPix`` solves ``Σ g gᵀ (q - p) = 0`` over every pixel ``p`` of a square window
    (``g`` the image gradient): any other edge in the window biases ``q``. On a ChArUco board the
    markers sit ``(square - marker) / 2`` from each corner, so a window small enough to miss them
    sees only a few pixels of the corner. Here the same equation runs over the pixels within
    ``band_frac`` squares (at least ``min_band_px``) of the two chessboard edges through the corner
    (their directions from the neighbouring corners) and within ``radius_frac`` squares of it —
    long stretches of clean edge, no marker. Iterated as the corner moves.

    grey: (H, W) uint8; points: (N, 2) OpenCV pixels (integer centres); ids: (N,) row-major corner
    ids on the ``inner_corners`` = (nx, ny) grid. Returns (N, 2) float64; corners without two
    detected neighbours, too near the image border, or that would move by more than the band keep
    their input position.
    """
    import cv2  # noqa: PLC0415

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    ids = np.asarray(ids).ravel().astype(np.int64)
    g = np.asarray(grey, np.float32)
    h, w = g.shape
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    step_x, step_y = _grid_axes(pts, ids, inner_corners[0])
    out = pts.copy()
    for k in range(len(pts)):
        if not (np.isfinite(step_x[k]).all() and np.isfinite(step_y[k]).all()):
            continue
        spacing = float(min(np.linalg.norm(step_x[k]), np.linalg.norm(step_y[k])))
        if spacing < 4:
            continue
        radius = min(radius_frac * spacing, max_radius_px)
        band = max(band_frac * spacing, min_band_px)
        dx, dy = step_x[k] / np.linalg.norm(step_x[k]), step_y[k] / np.linalg.norm(step_y[k])
        x0, x1 = int(math.floor(pts[k, 0] - radius - band)), int(math.ceil(pts[k, 0] + radius + band))
        y0, y1 = int(math.floor(pts[k, 1] - radius - band)), int(math.ceil(pts[k, 1] + radius + band))
        if x0 < 1 or y0 < 1 or x1 > w - 2 or y1 > h - 2:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
        px, py = gx[y0:y1 + 1, x0:x1 + 1].astype(np.float64), gy[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
        # the pixels the corner can use as long as it moves less than the band (the most it may)
        rx, ry = xs - pts[k, 0], ys - pts[k, 1]
        reach = ((rx * rx + ry * ry <= (radius + band) ** 2)
                 & ((np.abs(rx * dx[1] - ry * dx[0]) <= 2 * band) | (np.abs(rx * dy[1] - ry * dy[0]) <= 2 * band)))
        xs, ys, px, py = xs[reach], ys[reach], px[reach], py[reach]
        pxx, pxy, pyy = px * px, px * py, py * py
        q = pts[k].copy()
        ok = True
        for _ in range(iterations):
            rx, ry = xs - q[0], ys - q[1]
            m = ((rx * rx + ry * ry <= radius * radius)
                 & ((np.abs(rx * dx[1] - ry * dx[0]) <= band) | (np.abs(rx * dy[1] - ry * dy[0]) <= band)))
            a = np.array([[pxx[m].sum(), pxy[m].sum()], [pxy[m].sum(), pyy[m].sum()]])
            b = np.array([(pxx[m] * xs[m] + pxy[m] * ys[m]).sum(), (pxy[m] * xs[m] + pyy[m] * ys[m]).sum()])
            eig = np.linalg.eigvalsh(a)
            if not eig[0] > 1e-3 * eig[1]:  # one edge only (or none): no corner to locate
                ok = False
                break
            new = np.linalg.solve(a, b)
            moved = float(np.linalg.norm(new - q))
            q = new
            if moved < 1e-3 or np.linalg.norm(q - pts[k]) > band:
                break
        if ok and np.linalg.norm(q - pts[k]) <= band:
            out[k] = q
    return out


def detect_board(image: np.ndarray, board: BoardSpec, frame_index: int = -1) -> BoardDetection | None:
    """One-off :meth:`BoardDetector.detect`."""
    return BoardDetector(board).detect(image, frame_index)


# --- view geometry and selection -----------------------------------------------------------------


@dataclass(frozen=True)
class ViewGeometry:
    """Where a view puts the board: for spreading views and for the user's guidance."""

    centre: np.ndarray  # (2,) in [0, 1]
    area_fraction: float
    tilt_x_deg: float  # board normal's rotation about the image x axis: > 0 the top edge is farther away
    tilt_y_deg: float  # about the image y axis: > 0 the side on the image's left is farther away
    extent: np.ndarray | None = None  # (4,) corners' bounding box x0, y0, x1, y1 in [0, 1]

    @property
    def tilt_deg(self) -> float:
        return float(math.degrees(math.acos(min(1.0, math.cos(math.radians(self.tilt_x_deg))
                                                 * math.cos(math.radians(self.tilt_y_deg))))))

    def features(self) -> np.ndarray:
        """A vector whose distances say how different two views are (position, size, tilt)."""
        return np.array([self.centre[0], self.centre[1], 0.25 * math.log(max(self.area_fraction, 1e-4)),
                         self.tilt_x_deg / 40.0, self.tilt_y_deg / 40.0])


def view_geometry(det: BoardDetection, intrinsics_guess: Sequence[float] | None = None) -> ViewGeometry:
    """Board pose from a rough camera (default: focal = the longer image side, no distortion)."""
    import cv2  # noqa: PLC0415

    w, h = det.image_size
    k = intrinsics_matrix(intrinsics_guess if intrinsics_guess is not None else default_intrinsics(max(w, h), w, h))
    tilt_x = tilt_y = 0.0
    ok, rvec, _ = cv2.solvePnP(det.object_points.astype(np.float64), det.image_points, k, None,
                               flags=cv2.SOLVEPNP_IPPE)
    if ok:
        normal = cv2.Rodrigues(rvec)[0][:, 2]  # board z axis in camera space
        if normal[2] < 0:
            normal = -normal
        tilt_y = math.degrees(math.atan2(normal[0], normal[2]))
        tilt_x = math.degrees(math.atan2(normal[1], normal[2]))
    lo, hi = det.image_points.min(0) / np.array([w, h]), det.image_points.max(0) / np.array([w, h])
    return ViewGeometry(det.centre_norm, det.area_fraction, tilt_x, tilt_y, np.concatenate([lo, hi]))


def _spread_views(feats: np.ndarray, counts: np.ndarray, max_views: int, min_distance: float) -> list[int]:
    """Greedy farthest-point selection on view features (the first: most corners)."""
    first = int(np.argmax(counts + 1e-3 * feats[:, 2]))
    chosen = [first]
    dist = np.linalg.norm(feats - feats[first], axis=1)
    while len(chosen) < min(max_views, len(feats)):
        # Prefer far views; among similar distances, more corners (partial ChArUco views count less).
        score = dist * (0.5 + 0.5 * counts / counts.max())
        nxt = int(np.argmax(score))
        if dist[nxt] < min_distance:
            break
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[nxt], axis=1))
    return chosen


def view_information(det: BoardDetection, intrinsics: Sequence[float], lens: LensDistortion | None = None
                     ) -> np.ndarray | None:
    """(9, 9) Fisher information one view gives on (fx, fy, cx, cy, k1, k2, p1, p2, k3) of the opencv
    model, for 1 px corner noise, its board pose eliminated (Schur complement); None if its pose
    cannot be found. The board pose comes from ``cv2.solvePnP`` with the given camera."""
    import cv2  # noqa: PLC0415

    k = intrinsics_matrix(intrinsics)
    dist = np.zeros(5) if lens is None or lens.model != "opencv" else np.array((lens.coeffs + (0.0,) * 5)[:5])
    obj = det.object_points.reshape(-1, 1, 3).astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, det.image_points.reshape(-1, 1, 2), k, dist, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    _, jac = cv2.projectPoints(obj, rvec, tvec, k, dist)
    jac = np.asarray(jac)
    j_ext, j_int = jac[:, :6], jac[:, 6:15]
    a = j_ext.T @ j_ext + 1e-9 * np.eye(6)
    c = j_int.T @ j_ext
    return j_int.T @ j_int - c @ np.linalg.solve(a, c.T)


def select_views(detections: Sequence[BoardDetection], max_views: int = 25, min_area_fraction: float = 0.03,
                 min_distance: float = 0.08, intrinsics_guess: Sequence[float] | None = None,
                 lens_guess: LensDistortion | None = None) -> list[int]:
    """Indices of the views among ``detections`` that constrain the camera most (greedy, by the
    expected uncertainty of the intrinsics).

    A rough camera comes first (``intrinsics_guess`` / ``lens_guess``, or a quick k1 k2 calibration
    on a well-spread subset); each view then gives its Fisher information on (fx, fy, cx, cy, k1, k2,
    p1, p2, k3) (:func:`view_information`), and views are added one at a time, each the one that
    most lowers the expected error the intrinsics cause in the image: ``Var(fx)·(W/2f)² +
    Var(fy)·(H/2f)² + Var(cx) + Var(cy) + Σ Var(k)·(its shift at the image corner)²``. This favours
    what a calibration needs rather than mere variety: big strongly tilted views (focal length,
    principal point), views reaching the image corners (distortion), views tilted about the axis
    the others lack. Views smaller than ``min_area_fraction`` of the image are left out, and so is
    any view within ``min_distance`` (position / size / tilt features) of a chosen one
    (near-duplicates, e.g. consecutive video frames); selection stops at ``max_views`` or when no
    view is left. Without a usable rough camera: greedy farthest-point selection on those features.
    """
    usable = [i for i, d in enumerate(detections) if d.area_fraction >= min_area_fraction]
    if not usable:
        return []
    dets = [detections[i] for i in usable]
    feats = np.stack([view_geometry(d, intrinsics_guess).features() for d in dets])
    counts = np.array([d.num_corners for d in dets], np.float64)
    w, h = dets[0].image_size
    intr, lens = intrinsics_guess, lens_guess
    if intr is None:
        spread = _spread_views(feats, counts, 20, min_distance)
        try:
            rough = _solve([dets[i] for i in spread], (w, h), "opencv", "radial2")
            intr, lens = rough.intrinsics, rough.lens
        except Exception:  # noqa: BLE001  (any solver failure: fall back to spreading)
            intr = None
        if intr is None or not np.isfinite(intr).all() or not 0.1 * max(w, h) < intr[0] < 20 * max(w, h):
            return sorted(usable[i] for i in _spread_views(feats, counts, max_views, min_distance))
    infos = [view_information(d, intr, lens) for d in dets]
    valid = np.array([x is not None and np.isfinite(x).all() for x in infos])
    if not valid.any():
        return sorted(usable[i] for i in _spread_views(feats, counts, max_views, min_distance))
    info = np.stack([x if ok else np.zeros((9, 9)) for x, ok in zip(infos, valid)])
    f = float(intr[0])
    r2 = (w * w + h * h) / 4 / (f * f)  # the image corner's squared normalised radius
    corner_px = math.sqrt(r2) * f
    weights = np.array([(w / 2 / f) ** 2, (h / 2 / f) ** 2, 1.0, 1.0, (r2 * corner_px) ** 2,
                        (r2 * r2 * corner_px) ** 2, (3 * r2 * f) ** 2, (3 * r2 * f) ** 2, (r2 ** 3 * corner_px) ** 2])
    # a weak prior so that the first views already give a finite objective: f ± 50 %, c ± 25 % of the image, k ± 1
    prior = np.diag(1 / np.array([0.5 * f, 0.5 * f, 0.25 * w, 0.25 * h, 1, 1, 1, 1, 1]) ** 2)
    scale = 1 / np.sqrt(np.diag(prior))  # condition the 9x9 inverses (fx ~1e3 px, k ~1)
    total = prior.copy()
    chosen: list[int] = []
    available = valid.copy()
    while len(chosen) < max_views and available.any():
        cand = np.flatnonzero(available)
        trial = (total[None] + info[cand]) * np.outer(scale, scale)[None]
        cov = np.linalg.inv(trial) * np.outer(scale, scale)[None]
        cost = np.einsum("nii,i->n", cov, weights)
        pick = int(cand[int(np.argmin(cost))])
        chosen.append(pick)
        total += info[pick]
        available &= np.linalg.norm(feats - feats[pick], axis=1) >= min_distance
    return sorted(usable[i] for i in chosen)


def coverage_grid(detections: Iterable[BoardDetection], image_size: tuple[int, int],
                  cells: tuple[int, int] = (8, 6)) -> np.ndarray:
    """(rows, cols) count of detected corners per image cell, ``cells`` = (cols, rows)."""
    cols, rows = cells
    grid = np.zeros((rows, cols), np.int64)
    w, h = image_size
    for det in detections:
        ix = np.clip((det.image_points[:, 0] / w * cols).astype(int), 0, cols - 1)
        iy = np.clip((det.image_points[:, 1] / h * rows).astype(int), 0, rows - 1)
        np.add.at(grid, (iy, ix), 1)
    return grid


@dataclass(frozen=True)
class GuidedView:
    """One step of the guided calibration session (:data:`GUIDED_VIEWS`): where and how to hold the board.

    centre: board centre in [0, 1] of the image (0 / 1: pushed against that border); fill: board
    width / image width; tilt_x_deg, tilt_y_deg: in :class:`ViewGeometry`'s convention (tilt_x > 0:
    the top edge farther from the camera; tilt_y > 0: the side on the image's left farther);
    instruction: what the session asks the user.
    """

    key: str
    instruction: str
    centre: tuple[float, float]
    fill: float
    tilt_x_deg: float
    tilt_y_deg: float

    @property
    def at_border(self) -> bool:
        return self.centre[0] in (0.0, 1.0) or self.centre[1] in (0.0, 1.0)

    def matches(self, geom: ViewGeometry) -> bool:
        """Whether a taken view did this step (roughly: the user's hands are not a robot's)."""
        if self.at_border:  # a corner / border view: corners reach that border, the board tilted somewhat
            x0, y0, x1, y1 = geom.extent if geom.extent is not None else (*geom.centre, *geom.centre)
            reach = {0.0: (x0 <= 0.15, y0 <= 0.15), 1.0: (x1 >= 0.85, y1 >= 0.85)}
            ok_x = reach[self.centre[0]][0] if self.centre[0] in reach else abs(geom.centre[0] - self.centre[0]) <= 0.25
            ok_y = reach[self.centre[1]][1] if self.centre[1] in reach else abs(geom.centre[1] - self.centre[1]) <= 0.25
            return bool(ok_x and ok_y and geom.tilt_deg >= 15)
        if geom.area_fraction < (0.2 if self.tilt_x_deg == self.tilt_y_deg == 0 else 0.1):
            return False  # not filling the frame
        if self.tilt_x_deg == self.tilt_y_deg == 0:
            return geom.tilt_deg <= 20
        for want, got in ((self.tilt_x_deg, geom.tilt_x_deg), (self.tilt_y_deg, geom.tilt_y_deg)):
            if want and not (np.sign(got) == np.sign(want) and abs(got) >= 0.65 * abs(want)):
                return False
            if not want and abs(got) > 20:
                return False
        return True


# The guided session: 15 views that pin down the focal length and the principal point (boards filling
# the frame, tilted ~45° about both axes and the diagonals: the perspective that separates focal length
# from distance and locates the principal point) and the lens distortion (the image corners). Ordered
# by importance; a narrow lens needs the big tilted views most, distortion the corner views.
GUIDED_VIEWS: tuple[GuidedView, ...] = (
    GuidedView("face-on", "hold the board face-on in the middle, filling most of the frame", (0.5, 0.5), 0.85, 0, 0),
    GuidedView("left", "turn the board ~45° about its vertical axis, the image-left side farther away (fill the "
               "frame)", (0.5, 0.5), 0.8, 0, 45),
    GuidedView("right", "turn the board ~45° about its vertical axis, the image-right side farther away (fill the "
               "frame)", (0.5, 0.5), 0.8, 0, -45),
    GuidedView("top", "tilt the board ~45° about its horizontal axis, the top edge farther away (fill the frame)",
               (0.5, 0.5), 0.8, 45, 0),
    GuidedView("bottom", "tilt the board ~45° about its horizontal axis, the bottom edge farther away (fill the "
               "frame)", (0.5, 0.5), 0.8, -45, 0),
    GuidedView("corner-tl", "move the board into the top-left corner of the image, turned ~30° to face the middle",
               (0.0, 0.0), 0.5, -30, -30),
    GuidedView("corner-tr", "move the board into the top-right corner of the image, turned ~30° to face the middle",
               (1.0, 0.0), 0.5, -30, 30),
    GuidedView("corner-bl", "move the board into the bottom-left corner of the image, turned ~30° to face the "
               "middle", (0.0, 1.0), 0.5, 30, -30),
    GuidedView("corner-br", "move the board into the bottom-right corner of the image, turned ~30° to face the "
               "middle", (1.0, 1.0), 0.5, 30, 30),
    GuidedView("top-left", "tilt the board ~35° about a diagonal, its top-left corner farther away", (0.5, 0.5),
               0.75, 35, 35),
    GuidedView("top-right", "tilt the board ~35° about a diagonal, its top-right corner farther away", (0.5, 0.5),
               0.75, 35, -35),
    GuidedView("bottom-left", "tilt the board ~35° about a diagonal, its bottom-left corner farther away",
               (0.5, 0.5), 0.75, -35, 35),
    GuidedView("bottom-right", "tilt the board ~35° about a diagonal, its bottom-right corner farther away",
               (0.5, 0.5), 0.75, -35, -35),
    GuidedView("edge-left", "hold the board at the left edge of the image, turned ~45° to face the middle",
               (0.0, 0.5), 0.6, 0, -45),
    GuidedView("edge-right", "hold the board at the right edge of the image, turned ~45° to face the middle",
               (1.0, 0.5), 0.6, 0, 45),
)


# --- solving -----------------------------------------------------------------------------------


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


# (distortion terms of the opencv model) name -> the coefficients estimated; the others are held at 0
OPENCV_TERMS = {"radial2": ("k1", "k2"), "radial3": ("k1", "k2", "k3"), "tangential": ("k1", "k2", "p1", "p2"),
                "full": ("k1", "k2", "p1", "p2", "k3")}
DISTORTION_CHOICES = ("auto",) + tuple(OPENCV_TERMS)
OPENCV_COEFF_NAMES_8 = OPENCV_COEFF_NAMES[:8]  # the rational model's


@dataclass
class _Solution:
    """One run of a solver: the camera, OpenCV-style 1σ (residual variance × (JᵀJ)⁻¹) and the fit."""

    intrinsics: np.ndarray  # (4,) flamecam fx fy cx cy
    lens: LensDistortion
    sigmas: dict[str, float]  # NaN for parameters held fixed
    per_view: np.ndarray  # (V,) RMS reprojection error per view (px per corner)
    counts: np.ndarray  # (V,) corners per view
    terms: tuple[str, ...]  # distortion coefficients estimated
    fixed_pp: bool
    rvecs: list = field(default_factory=list)  # per view, board -> camera
    tvecs: list = field(default_factory=list)

    @property
    def sq_error(self) -> float:
        """Sum of squared residuals, px² (both coordinates)."""
        return float(np.sum(self.per_view ** 2 * self.counts))

    @property
    def num_params(self) -> int:
        return (2 if self.fixed_pp else 4) + len(self.terms) + 6 * len(self.counts)

    @property
    def dof(self) -> int:
        return max(int(2 * self.counts.sum()) - self.num_params, 1)

    def vector(self) -> np.ndarray:
        return np.concatenate([self.intrinsics, self.lens.coeffs])


def _cv_lists(views: Sequence[BoardDetection]):
    obj = [v.object_points.reshape(-1, 1, 3).astype(np.float64) for v in views]
    img = [v.image_points.reshape(-1, 1, 2).astype(np.float64) for v in views]
    return obj, img


def _solve_opencv(views, size, rational: bool, terms: str = "full", fix_pp: bool = False,
                  guess: _Solution | None = None, focal_guess: float | None = None) -> _Solution:
    """``terms``: the distortion coefficients to estimate (:data:`OPENCV_TERMS`; the rational model
    always estimates its 8). ``fix_pp``: principal point held at the guess's or, without one, the image
    centre (focal initialised at ``focal_guess``). ``guess``: start from this solution (jackknife)."""
    import cv2  # noqa: PLC0415

    obj, img = _cv_lists(views)
    flags = cv2.CALIB_RATIONAL_MODEL if rational else 0
    names = OPENCV_COEFF_NAMES_8 if rational else OPENCV_TERMS[terms]
    if not rational:
        if "p1" not in names:
            flags |= cv2.CALIB_ZERO_TANGENT_DIST
        if "k3" not in names:
            flags |= cv2.CALIB_FIX_K3
    k0 = d0 = None
    if guess is not None:
        flags |= cv2.CALIB_USE_INTRINSIC_GUESS
        k0, d0 = intrinsics_matrix(guess.intrinsics), np.array(guess.lens.coeffs, np.float64)
    elif fix_pp:
        flags |= cv2.CALIB_USE_INTRINSIC_GUESS
        k0, d0 = intrinsics_matrix(default_intrinsics(focal_guess, *size)), np.zeros(8 if rational else 5)
    if fix_pp:
        flags |= cv2.CALIB_FIX_PRINCIPAL_POINT
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    obj32 = [o.astype(np.float32) for o in obj]
    img32 = [i.astype(np.float32) for i in img]
    _, k, dist, rvecs, tvecs, std_intr, _, per_view = cv2.calibrateCameraExtended(
        obj32, img32, size, k0, d0, flags=flags, criteria=criteria)
    n = 8 if rational else 5
    coeffs = tuple(float(c) for c in np.asarray(dist).ravel()[:n])
    lens = LensDistortion("opencv", coeffs)
    std = np.asarray(std_intr).ravel()
    sigmas = {name: float(std[i]) for i, name in enumerate(("fx", "fy", "cx", "cy") + lens.coeff_names)}
    for name in lens.coeff_names:
        if name not in names:
            sigmas[name] = float("nan")  # held at zero, not estimated
    if fix_pp:
        sigmas["cx"] = sigmas["cy"] = float("nan")
    intr = intrinsics_from_matrix(k)
    return _Solution(intr, lens, sigmas, np.asarray(per_view, np.float64).ravel(),
                     np.array([v.num_corners for v in views], np.float64), tuple(names), fix_pp, list(rvecs),
                     list(tvecs))


def _solve_fisheye(views, size, fix_pp: bool = False, guess: _Solution | None = None,
                   focal_guess: float | None = None) -> _Solution:
    import cv2  # noqa: PLC0415

    # cv2.fisheye wants (1, N, 3) / (1, N, 2) arrays per view
    obj = [v.object_points.reshape(1, -1, 3).astype(np.float64) for v in views]
    img = [v.image_points.reshape(1, -1, 2).astype(np.float64) for v in views]
    flags = cv2.CALIB_RECOMPUTE_EXTRINSIC | cv2.CALIB_FIX_SKEW
    k0, d0 = np.eye(3), np.zeros((4, 1))
    if guess is not None:
        flags |= cv2.CALIB_USE_INTRINSIC_GUESS
        k0, d0 = intrinsics_matrix(guess.intrinsics), np.array(guess.lens.coeffs, np.float64).reshape(4, 1)
    elif fix_pp:
        flags |= cv2.CALIB_USE_INTRINSIC_GUESS
        k0 = intrinsics_matrix(default_intrinsics(focal_guess, *size))
    if fix_pp:
        flags |= cv2.CALIB_FIX_PRINCIPAL_POINT
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    try:
        _, k, dist, rvecs, tvecs = cv2.fisheye.calibrate(obj, img, size, k0, d0, flags=flags, criteria=criteria)
    except cv2.error as exc:
        raise CalibrationError(f"the fisheye solver failed ({str(exc).strip().splitlines()[-1]}); add more varied "
                               "views, or use the opencv model for lenses under ~120° field of view") from exc
    intr = intrinsics_from_matrix(k)
    lens = LensDistortion("fisheye", tuple(float(c) for c in np.asarray(dist).ravel()[:4]))
    # OpenCV's fisheye solver gives no uncertainties: same estimate as calibrateCameraExtended's,
    # from the projection Jacobians with each view's pose eliminated (Schur complement).
    n_int = 8 if not fix_pp else 6
    jtj = np.zeros((n_int, n_int))
    sq, count, per_view = 0.0, 0, []
    blocks = []
    for o, i, r, t in zip(obj, img, rvecs, tvecs):
        proj, jac = cv2.fisheye.projectPoints(o, r, t, k, dist)
        res = (proj - i).reshape(-1)
        jac = np.asarray(jac).reshape(-1, 15)  # columns: fx fy cx cy k1..k4, rvec, tvec, alpha (verified)
        j_int, j_ext = jac[:, 0:8], jac[:, 8:14]
        if fix_pp:
            j_int = j_int[:, [0, 1, 4, 5, 6, 7]]  # cx, cy not estimated
        blocks.append((j_int, j_ext))
        sq += float(res @ res)
        count += len(res)
        per_view.append(math.sqrt(float(res @ res) / (len(res) / 2)))
    for j_int, j_ext in blocks:
        a = j_ext.T @ j_ext
        c = j_int.T @ j_ext
        jtj += j_int.T @ j_int - c @ np.linalg.solve(a + 1e-12 * np.eye(6), c.T)
    dof = max(count - n_int - 6 * len(obj), 1)
    cov = np.linalg.pinv(jtj) * (sq / dof)
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    names = ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4") if not fix_pp else ("fx", "fy", "k1", "k2", "k3", "k4")
    sigmas = {"cx": float("nan"), "cy": float("nan")}
    sigmas.update(zip(names, (float(s) for s in std)))
    return _Solution(intr, lens, sigmas, np.asarray(per_view), np.array([v.num_corners for v in views], np.float64),
                     FISHEYE_COEFF_NAMES, fix_pp, list(rvecs), list(tvecs))


def _solve_once(views, size, model, terms: str = "full", fix_pp: bool = False, guess: _Solution | None = None,
                focal_guess: float | None = None) -> _Solution:
    if model == "fisheye":
        return _solve_fisheye(views, size, fix_pp, guess, focal_guess)
    return _solve_opencv(views, size, model == "rational", terms, fix_pp, guess, focal_guess)


def _solve(views, size, model, terms: str = "full", fix_pp: bool = False, guess: _Solution | None = None,
           focal_guess: float | None = None) -> _Solution:
    """The best (smallest reprojection error) of two starts: OpenCV's own initialisation, and one
    grown from the larger half of the views.

    OpenCV initialises each board pose from a distortion-free homography. Under strong distortion a
    view near the image border can start on the wrong side of the planar pose ambiguity (tilted +θ
    instead of -θ, nearly alike through a narrow lens) and the solver then stops in a local minimum
    (RMS 0.5-1.3 px where 0.1 px fits; half of the synthetic 15-view sets of a 12 % barrel lens at
    f = 1600-2400 px on 640x480). The second start solves the larger half of the views, drops any whose
    error stands out (a flipped pose) and re-solves, then starts all views from those intrinsics and
    lens, which put every pose on the right side."""
    import cv2  # noqa: PLC0415

    if guess is not None:
        return _solve_once(views, size, model, terms, fix_pp, guess, focal_guess)
    errors: list[Exception] = []
    best = None
    try:
        best = _solve_once(views, size, model, terms, fix_pp, None, focal_guess)
    except (cv2.error, CalibrationError) as exc:
        errors.append(exc)

    def standouts(sol: _Solution) -> np.ndarray:
        return sol.per_view > 3 * max(float(np.median(sol.per_view)), 0.05)

    areas = np.array([v.area_fraction for v in views])
    subset = [v for v in views if v.area_fraction >= np.median(areas)]
    minimum = max(4, len(views) // 3)
    if minimum <= len(subset) < len(views):
        try:
            start = None
            for _ in range(3):
                if len(subset) < minimum:
                    break
                start = _solve_once(subset, size, model, terms, fix_pp, start, focal_guess)
                bad = standouts(start)
                if not bad.any():
                    break
                subset = [v for v, b in zip(subset, bad) if not b]
            for _ in range(2):  # all views from there; once more without any view that still stands out
                if start is None or not np.isfinite(start.vector()).all():
                    break
                other = _solve_once(views, size, model, terms, fix_pp, start, focal_guess)
                if best is None or other.sq_error < best.sq_error:
                    best = other
                bad = standouts(other)
                if not bad.any() or len(views) - int(bad.sum()) < minimum:
                    break
                start = _solve_once([v for v, b in zip(views, bad) if not b], size, model, terms, fix_pp, other,
                                    focal_guess)
        except (cv2.error, CalibrationError) as exc:
            errors.append(exc)
    if best is None:
        raise errors[0]
    return best


def _select_terms(views, size, criteria: CalibrationCriteria) -> _Solution:
    """The opencv model's distortion terms by likelihood-ratio tests against ``k1 k2`` (see :func:`calibrate`)."""
    from statistics import NormalDist  # noqa: PLC0415

    def chi2_isf(alpha: float, q: int) -> float:  # the χ² quantile for the 1 or 2 added coefficients
        return NormalDist().inv_cdf(1 - alpha / 2) ** 2 if q == 1 else -2 * math.log(alpha)

    fits = {"radial2": _solve(views, size, "opencv", "radial2")}
    for name in ("radial3", "tangential", "full"):  # nested models: start from the k1 k2 solution
        fits[name] = _solve_once(views, size, "opencv", name, guess=fits["radial2"])
    full = fits["full"]
    variance = full.sq_error / full.dof * criteria.noise_inflation ** 2

    def better(big: str, small: str) -> bool:
        q = len(OPENCV_TERMS[big]) - len(OPENCV_TERMS[small])
        stat = (fits[small].sq_error - fits[big].sq_error) / variance
        return bool(stat > chi2_isf(criteria.distortion_test_alpha, q))

    tangential = better("tangential", "radial2") or better("full", "radial3")
    k3 = better("radial3", "radial2") or better("full", "tangential")
    terms = {(False, False): "radial2", (False, True): "radial3", (True, False): "tangential",
             (True, True): "full"}[(tangential, k3)]
    return fits[terms]


def _view_jacobians(views, sol: _Solution):
    """Per view: residuals (2N,), Jacobian of the estimated intrinsics (2N, P) and of the pose (2N, 6)."""
    import cv2  # noqa: PLC0415

    k = intrinsics_matrix(sol.intrinsics)
    dist = np.array(sol.lens.coeffs, np.float64)
    names = ("fx", "fy", "cx", "cy") + sol.lens.coeff_names
    keep = [i for i, n in enumerate(names) if math.isfinite(sol.sigmas.get(n, float("nan")))]
    out = []
    for v, r, t in zip(views, sol.rvecs, sol.tvecs):
        obj = v.object_points.reshape(-1, 1, 3).astype(np.float64)
        if sol.lens.model == "fisheye":
            proj, jac = cv2.fisheye.projectPoints(obj, r, t, k, dist)
            jac = np.asarray(jac).reshape(-1, 15)  # fx fy cx cy k1..k4, rvec, tvec, alpha (see _solve_fisheye)
            j_int, j_ext = jac[:, 0:8], jac[:, 8:14]
        else:
            proj, jac = cv2.projectPoints(obj, r, t, k, dist)
            jac = np.asarray(jac)  # rvec, tvec, fx, fy, cx, cy, the distortion coefficients
            j_int, j_ext = jac[:, 6:6 + len(names)], jac[:, 0:6]
        res = (proj.reshape(-1, 2) - v.image_points).reshape(-1)
        out.append((res, j_int[:, keep], j_ext))
    return [names[i] for i in keep], out


def _jackknife_sigmas(views, sol: _Solution) -> dict[str, float]:
    """Leave-one-view-out (jackknife) 1σ of every estimated parameter, ``(n-1)/n Σ (θ₍ᵢ₎ - θ̄)²``, each
    ``θ₍ᵢ₎`` one Gauss-Newton step from the solution without view ``i`` (its pose eliminated).

    Unlike the Jacobian's σ it does not assume independent corner errors or a complete lens model:
    errors shared by a view's corners (blur, a bent board, a detector bias) and views that carry
    the solution alone (the one strongly tilted view) show up as spread between the leave-one-out
    solutions. (To first order this is the view-clustered sandwich covariance.)"""
    names, blocks = _view_jacobians(views, sol)
    p = len(names)
    reduced, scores = [], []
    for res, j_int, j_ext in blocks:
        a = j_ext.T @ j_ext + 1e-12 * np.eye(6)
        c = j_int.T @ j_ext
        reduced.append(j_int.T @ j_int - c @ np.linalg.solve(a, c.T))
        scores.append(j_int.T @ res - c @ np.linalg.solve(a, j_ext.T @ res))
    total = np.sum(reduced, axis=0)
    scale = np.sqrt(np.clip(np.diag(total), 1e-300, None))  # equilibrate: fx ~1e3 px, k's ~1
    steps = []
    for s_i, g_i in zip(reduced, scores):
        m = (total - s_i) / np.outer(scale, scale)
        try:
            steps.append(np.linalg.solve(m + 1e-12 * np.eye(p), g_i / scale) / scale)
        except np.linalg.LinAlgError:
            return {n: float("nan") for n in names}
    n = len(steps)
    arr = np.array(steps)
    std = np.sqrt((n - 1) / n * ((arr - arr.mean(0)) ** 2).sum(0))
    return {name: float(x) for name, x in zip(names, std)}


def calibrate(views: Sequence[BoardDetection], model: str = "opencv",
              criteria: CalibrationCriteria = CalibrationCriteria(), board: BoardSpec | str = "",
              principal_point: str = "auto", distortion: str = "auto") -> Calibration:
    """Solve intrinsics and distortion from board views; raise :class:`CalibrationError` when poor.

    model: ``opencv`` (radial-tangential k1 k2 p1 p2 k3), ``rational`` (k1..k6 p1 p2; strong
    distortion) or ``fisheye`` (equidistant k1..k4; > ~120° lenses).

    distortion (opencv model): which coefficients to estimate — ``auto`` (default): k1 k2, plus the
    tangential p1 p2 and/or k3 when a likelihood-ratio test on the reprojection errors says the
    views need them (``criteria.distortion_test_alpha``); or ``radial2`` / ``radial3`` /
    ``tangential`` / ``full`` (:data:`OPENCV_TERMS`). Terms a lens does not need cost accuracy: the
    tangential terms trade off against the principal point (3-4x its uncertainty on a narrow lens),
    which is why other tools (MATLAB, Bouguet's toolbox) leave them out by default.

    principal_point: ``free`` (estimated), ``centre`` (fixed at the image centre) or ``auto``
    (estimated, unless the views leave it more uncertain than ``criteria.max_principal_sigma_rel``
    of the image size — typical of narrow lenses — in which case it is fixed at the centre, with a
    warning).

    The reported 1σ (``Calibration.sigmas``) are the larger of OpenCV's (from the Jacobian, which
    assumes independent corner errors and the right lens model) and the leave-one-view-out
    jackknife's (which assumes neither); see ``benchmarks/intrinsics.py`` for their coverage.
    """
    if model not in CALIBRATION_MODELS:
        raise ValueError(f"calibration model {model!r}: expected one of {', '.join(CALIBRATION_MODELS)}")
    if principal_point not in ("auto", "free", "centre"):
        raise ValueError(f"principal_point {principal_point!r}: expected auto, free or centre")
    if distortion not in DISTORTION_CHOICES:
        raise ValueError(f"distortion {distortion!r}: expected one of {', '.join(DISTORTION_CHOICES)}")
    if distortion != "auto" and model != "opencv":
        raise ValueError(f"distortion={distortion!r} applies to the opencv model only (not {model})")
    views = list(views)
    c = criteria
    if len(views) < c.min_views:
        raise CalibrationError(f"too few views: {len(views)} usable board views, at least {c.min_views} needed; "
                               "show the board in more positions and tilts")
    sizes = {v.image_size for v in views}
    if len(sizes) != 1:
        raise CalibrationError(f"views come from different image sizes {sorted(sizes)}; calibrate one resolution")
    size = sizes.pop()
    big = [v for v in views if v.area_fraction >= c.min_area_fraction]
    if len(big) < c.min_views:
        median = float(np.median([v.area_fraction for v in views]))
        raise CalibrationError(
            f"board too small in frame: only {len(big)} of {len(views)} views show the board over at least "
            f"{c.min_area_fraction:.0%} of the image (median {median:.1%}); move the board closer or print it larger")
    views = big
    geoms = [view_geometry(v) for v in views]
    tilts = np.array([g.tilt_deg for g in geoms])
    if int((tilts >= c.min_tilt_deg).sum()) < c.min_tilted_views:
        raise CalibrationError(
            f"views are nearly face-on (only {int((tilts >= c.min_tilt_deg).sum())} tilted by "
            f"{c.min_tilt_deg:.0f}° or more, {c.min_tilted_views} needed): the focal length cannot be "
            "determined; tilt the board ~45° left/right and up/down in several views")

    def solve_free(vs):
        if model == "opencv" and distortion == "auto":
            return _select_terms(vs, size, c)
        return _solve(vs, size, model, distortion if model == "opencv" else "full")

    sol = solve_free(views)
    dropped: list[int] = []
    median = float(np.median(sol.per_view))
    bad = [i for i, e in enumerate(sol.per_view) if e > c.outlier_factor * max(median, 0.05)]
    if bad and len(views) - len(bad) >= c.min_views:
        dropped = [views[i].frame_index for i in bad]
        views = [v for i, v in enumerate(views) if i not in set(bad)]
        geoms = [g for i, g in enumerate(geoms) if i not in set(bad)]
        sol = solve_free(views)
    jacobian = dict(sol.sigmas)
    sigmas = _honest_sigmas(sol, _jackknife_sigmas(views, sol))
    fixed_pp = principal_point == "centre"
    note = None
    if principal_point == "auto":
        w, h = size
        rel = max(sigmas.get("cx", 0.0) / w, sigmas.get("cy", 0.0) / h)
        if not rel <= c.max_principal_sigma_rel:
            fixed_pp = True
            note = (f"the views leave the principal point uncertain (±{sigmas['cx']:.1f}, ±{sigmas['cy']:.1f} px, "
                    "typical of narrow lenses), so it is fixed at the image centre; for a measured one add views "
                    "filling the frame tilted ~45° left/right/up/down (or keep the estimate: --principal-point free)")
    if fixed_pp:
        sol = _solve(views, size, model, _terms_key(sol), fix_pp=True, focal_guess=float(sol.intrinsics[0]))
        jacobian = dict(sol.sigmas)
        sigmas = _honest_sigmas(sol, _jackknife_sigmas(views, sol))
    intr, lens, per_view = sol.intrinsics, sol.lens, sol.per_view
    total = sum(v.num_corners for v in views)
    rms = float(math.sqrt(sum(e ** 2 * v.num_corners for e, v in zip(per_view, views)) / total))
    cov_grid = coverage_grid(views, size)
    result = Calibration(size, intr, lens, rms, sigmas, [float(e) for e in per_view],
                         [v.frame_index for v in views], str(board), float((cov_grid > 0).mean()),
                         float(max(g.tilt_deg for g in geoms)), dropped, principal_point_fixed=fixed_pp,
                         distortion_terms=sol.terms if model == "opencv" else lens.coeff_names,
                         sigmas_jacobian=jacobian)
    if note:
        result.warnings.append(note)
    if not np.isfinite(intr).all() or intr[0] <= 0 or intr[1] <= 0:
        raise CalibrationError("the solver diverged (non-finite or negative focal length); add more varied views")
    if rms > c.max_rms_px:
        raise CalibrationError(
            f"RMS reprojection error {rms:.2f} px is above the {c.max_rms_px:.2f} px threshold: check the board "
            "size/spec, that it is flat, in focus and held still, or try the "
            + ("fisheye" if model != "fisheye" else "rational") + " model")
    sigma_rel = sigmas.get("fx", float("inf")) / intr[0]
    if not sigma_rel <= c.max_focal_sigma_rel:
        raise CalibrationError(f"focal length too uncertain (±{sigma_rel:.1%}, limit ±{c.max_focal_sigma_rel:.1%}); "
                               "add views filling the frame with the board tilted ~45° left/right/up/down, and views "
                               "near the image corners")
    if sigma_rel > c.warn_focal_sigma_rel:
        result.warnings.append(f"focal length uncertain by ±{sigma_rel:.2%} (1σ): add views filling the frame with the "
                               "board tilted ~45° left/right/up/down")
    pp_sigma = max(sigmas.get("cx", 0.0), sigmas.get("cy", 0.0))
    if not fixed_pp and pp_sigma > c.warn_principal_sigma_px:
        result.warnings.append(f"principal point uncertain by ±{pp_sigma:.1f} px (1σ; a narrow lens shows little "
                               "perspective): add views filling the frame tilted ~45° left/right/up/down, or fix it "
                               "at the centre (--principal-point centre) if the lens is known to be centred")
    if result.coverage < c.warn_coverage:
        result.warnings.append(f"the board reached only {result.coverage:.0%} of the image; distortion near the "
                               "uncovered borders is extrapolated — add views near the corners")
    return result


def _terms_key(sol: _Solution) -> str:
    return next((k for k, v in OPENCV_TERMS.items() if v == sol.terms), "full")


def _honest_sigmas(sol: _Solution, jackknife: dict[str, float]) -> dict[str, float]:
    """Per parameter, the larger of the Jacobian's and the jackknife's 1σ (NaN stays NaN: not estimated)."""
    out = {}
    for name, s in sol.sigmas.items():
        j = jackknife.get(name, float("nan"))
        out[name] = s if not math.isfinite(s) else (max(s, j) if math.isfinite(j) else s)
    return out


# --- a guided session (live camera, video, GUI) --------------------------------------------------


@dataclass(frozen=True)
class FrameFeedback:
    """What one frame did to a :class:`CalibrationSession`."""

    detection: BoardDetection | None
    accepted: bool
    message: str  # short, for a status line: why the frame was (not) taken
    num_views: int


class CalibrationSession:
    """Collects board views frame by frame, keeps a coverage map and tells the user what is missing.

    ``process(image)`` per frame (live camera, video, GUI): detects the board, and takes the view
    when it is big enough, still (``still_px``: mean corner motion since the previous frame; None
    for unrelated images) and different enough from the views already taken. ``guidance()`` lists
    what to do next (the steps of :data:`GUIDED_VIEWS` still missing, :meth:`missing_steps`, and the
    image regions not covered yet); ``ready`` says a solve is worth trying; ``solve()`` returns a
    :class:`Calibration` or raises :class:`CalibrationError`. For files, :meth:`collect` every frame and
    :meth:`select` well-spread views afterwards instead. Pure Python/OpenCV (no Qt).
    """

    def __init__(self, board: BoardSpec, image_size: tuple[int, int], model: str = "opencv",
                 criteria: CalibrationCriteria = CalibrationCriteria(), target_views: int = 15,
                 min_novelty: float = 0.15, still_px: float | None = 1.5, cells: tuple[int, int] = (8, 6),
                 principal_point: str = "auto"):
        if model not in CALIBRATION_MODELS:
            raise ValueError(f"calibration model {model!r}: expected one of {', '.join(CALIBRATION_MODELS)}")
        self.board, self.image_size, self.model, self.criteria = board, tuple(image_size), model, criteria
        self.target_views, self.min_novelty, self.still_px, self.cells = target_views, min_novelty, still_px, cells
        self.principal_point = principal_point
        self.detector = BoardDetector(board)
        self.views: list[BoardDetection] = []
        self.geometries: list[ViewGeometry] = []
        self.candidates: list[BoardDetection] = []  # collect(): every detection, for select()
        self.frames_seen = 0
        self.frames_with_board = 0
        self.last_feedback: FrameFeedback | None = None
        self.result: Calibration | None = None
        self._previous: BoardDetection | None = None

    # -- frames ---------------------------------------------------------------------------------

    def process(self, image: np.ndarray, frame_index: int | None = None) -> FrameFeedback:
        """Detect the board in one frame and take the view if it adds something."""
        h, w = np.asarray(image).shape[:2]
        if (w, h) != self.image_size:
            raise ValueError(f"frame is {w}x{h} but this session calibrates {self.image_size[0]}x{self.image_size[1]}")
        index = self.frames_seen if frame_index is None else frame_index
        self.frames_seen += 1
        det = self.detector.detect(image, index)
        return self.add_detection(det)

    def add_detection(self, det: BoardDetection | None) -> FrameFeedback:
        previous, self._previous = self._previous, det
        if det is None:
            return self._feedback(None, False, "no board found")
        self.frames_with_board += 1
        area = det.area_fraction
        if area < self.criteria.min_area_fraction:
            return self._feedback(det, False, f"board too small ({area:.1%} of the frame): move it closer")
        if self.still_px is not None:  # needs the board in the previous frame too, nearly unmoved
            common, ia, ib = (np.intersect1d(det.ids, previous.ids, return_indices=True) if previous is not None
                              else (np.zeros(0), None, None))
            if len(common) < 4:
                return self._feedback(det, False, "hold the board still")
            motion = float(np.linalg.norm(det.image_points[ia] - previous.image_points[ib], axis=1).mean())
            if motion > self.still_px * max(self.image_size) / 640:
                return self._feedback(det, False, "hold the board still")
        geom = view_geometry(det)
        if self.geometries:
            dist = min(float(np.linalg.norm(geom.features() - g.features())) for g in self.geometries)
            if dist < self.min_novelty:
                return self._feedback(det, False, "similar to a view already taken: move or tilt the board")
        self.views.append(det)
        self.geometries.append(geom)
        return self._feedback(det, True, f"took view {len(self.views)}")

    def collect(self, image: np.ndarray, frame_index: int, max_motion_px: float | None = 3.0) -> BoardDetection | None:
        """Files: detect and keep every view of the board for :meth:`select`, except where the board
        moved more than ``max_motion_px`` per frame (at 640 px width) since the previous detection
        (motion blur). ``max_motion_px`` None for unrelated images."""
        self.frames_seen += 1
        det = self.detector.detect(image, frame_index)
        previous, self._previous = self._previous, det
        if det is None:
            return None
        self.frames_with_board += 1
        if max_motion_px is not None and previous is not None and frame_index > previous.frame_index >= 0:
            common, ia, ib = np.intersect1d(det.ids, previous.ids, return_indices=True)
            if len(common) >= 4:
                motion = float(np.linalg.norm(det.image_points[ia] - previous.image_points[ib], axis=1).mean())
                if motion / (frame_index - previous.frame_index) > max_motion_px * max(self.image_size) / 640:
                    return None
        self.candidates.append(det)
        return det

    def select(self, max_views: int | None = None) -> list[BoardDetection]:
        """Files: choose well-spread views among the collected ones (:func:`select_views`) as :attr:`views`."""
        chosen = select_views(self.candidates, max_views or max(self.target_views, self.criteria.min_views),
                              self.criteria.min_area_fraction)
        self.views = [self.candidates[i] for i in chosen]
        self.geometries = [view_geometry(v) for v in self.views]
        return self.views

    def _feedback(self, det, accepted, message) -> FrameFeedback:
        self.last_feedback = FrameFeedback(det, accepted, message, len(self.views))
        return self.last_feedback

    # -- state for the user -----------------------------------------------------------------------

    def coverage(self) -> np.ndarray:
        """(rows, cols) corner counts over the image grid (``cells`` = (cols, rows))."""
        return coverage_grid(self.views, self.image_size, self.cells)

    def coverage_fraction(self) -> float:
        return float((self.coverage() > 0).mean())

    def _missing_zones(self) -> list[str]:
        grid = coverage_grid(self.views, self.image_size, (3, 3))
        return [_ZONE_NAMES[r][c] for r in range(3) for c in range(3) if grid[r, c] == 0]

    def missing_steps(self) -> list[GuidedView]:
        """The steps of the guided session (:data:`GUIDED_VIEWS`) no view taken so far has done, in order."""
        return [step for step in GUIDED_VIEWS if not any(step.matches(g) for g in self.geometries)]

    @property
    def ready(self) -> bool:
        """Enough views, tilts and coverage that a solve is worth trying."""
        tilted = sum(g.tilt_deg >= self.criteria.min_tilt_deg for g in self.geometries)
        c = self.criteria
        return (len(self.views) >= max(c.min_views, self.target_views) and tilted >= c.min_tilted_views
                and self.coverage_fraction() >= c.warn_coverage)

    def guidance(self) -> list[str]:
        """What the user should do next, most important first (plain sentences): the steps of the
        guided session still missing (:meth:`missing_steps`) — the ~45° tilts filling the frame that
        fix the focal length and principal point first, then the image corners for the distortion —
        and the image regions no corner has reached."""
        tips: list[str] = []
        n, target = len(self.views), max(self.criteria.min_views, self.target_views)
        if not self.views:
            tips.append(f"Hold the {self.board.kind} board in view, about half the frame wide, and keep it still "
                        "for a moment at each position.")
            return tips + [f"0 of {target} views."]
        missing = {step.key for step in self.missing_steps()}

        def named(keys_words: Sequence[tuple[str, str]]) -> list[str]:
            return [word for key, word in keys_words if key in missing]

        tilts = named((("left", "left side"), ("right", "right side"), ("top", "top edge"), ("bottom", "bottom edge")))
        if tilts:
            tips.append("Tilt the board ~45° left / right / up / down, filling most of the frame: still missing with "
                        f"its {', '.join(tilts)} farther from the camera (one view each).")
        corners = named((("corner-tl", "top-left"), ("corner-tr", "top-right"), ("corner-bl", "bottom-left"),
                         ("corner-br", "bottom-right")))
        if corners:
            tips.append(f"Move the board into the {', '.join(corners)} corner{'s' if len(corners) > 1 else ''} of the "
                        "image, turned ~30° to face the middle.")
        zones = self._missing_zones()
        if zones:
            tips.append("Move the board to the " + ", ".join(zones) + " of the image (not covered yet).")
        diagonals = named((("top-left", "top-left"), ("top-right", "top-right"), ("bottom-left", "bottom-left"),
                           ("bottom-right", "bottom-right")))
        if diagonals:
            tips.append("Tilt the board ~35° about a diagonal, filling most of the frame: still missing with its "
                        f"{', '.join(diagonals)} corner farther away.")
        edges = named((("edge-left", "left"), ("edge-right", "right")))
        if edges:
            tips.append(f"Hold the board at the {' and '.join(edges)} edge{'s' if len(edges) > 1 else ''} of the image, "
                        "turned ~45° to face the middle.")
        if "face-on" in missing:
            tips.append("Hold the board face-on in the middle, filling most of the frame.")
        if max(g.area_fraction for g in self.geometries) < 0.2:
            tips.append("Bring the board closer so it fills more of the frame in some views.")
        if self.ready:
            tips.append(f"{n} views: ready to solve" + (" (the views above would still make it more accurate)."
                                                        if missing else "."))
        else:
            tips.append(f"{n} of {target} views.")
        return tips

    # -- solving ----------------------------------------------------------------------------------

    def solve(self) -> Calibration:
        self.result = calibrate(self.views, self.model, self.criteria, self.board, self.principal_point)
        return self.result


# --- synthetic boards (tests, benchmarks) ---------------------------------------------------------


@dataclass(frozen=True)
class BoardMesh:
    """A board as a triangle mesh of uniformly coloured rectangles (crisp edges, no texture needed)."""

    vertices: np.ndarray  # (V, 3) board metres (z = 0)
    faces: np.ndarray  # (F, 3)
    rgb: np.ndarray  # (V, 3) in [0, 1]


def board_mesh(board: BoardSpec, px_per_square: int | None = None, margin_squares: float = 0.5) -> BoardMesh:
    """The board image (:meth:`BoardSpec.image`) as rectangles: runs of equal pixels in a row, merged
    with identical runs of the rows below, each become one quad with its own four vertices, so
    colours never blend across an edge. ``px_per_square`` None: 6 image pixels per marker bit."""
    if px_per_square is None:
        px_per_square = 8
        if board.kind == "charuco":
            bits = board.cv_board().getDictionary().markerSize + 2
            px_per_square = max(8, int(round(6 * bits * board.square_m / board.marker_m)))
    img = board.image(px_per_square, margin_squares)
    m = int(round(margin_squares * px_per_square))
    unit = board.square_m / px_per_square
    rects: list[tuple[int, int, int, int, int]] = []  # x0, x1, y0, y1, value
    open_runs: dict[tuple[int, int, int], int] = {}
    for y, row in enumerate(img):
        change = np.flatnonzero(np.diff(row.astype(np.int16))) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(row)]])
        still_open = {}
        for x0, x1 in zip(starts.tolist(), ends.tolist()):
            key = (x0, x1, int(row[x0]))
            if key in open_runs:
                idx = open_runs[key]
                x0_, x1_, y0_, _, v = rects[idx]
                rects[idx] = (x0_, x1_, y0_, y + 1, v)
            else:
                idx = len(rects)
                rects.append((x0, x1, y, y + 1, int(row[x0])))
            still_open[key] = idx
        open_runs = still_open
    r = np.asarray(rects, np.float64)
    x0, x1, y0, y1 = ((r[:, i] - m) * unit for i in range(4))
    z = np.zeros_like(x0)
    verts = np.stack([np.stack([x0, y0, z], -1), np.stack([x1, y0, z], -1), np.stack([x1, y1, z], -1),
                      np.stack([x0, y1, z], -1)], 1).reshape(-1, 3)
    base = np.arange(len(r))[:, None] * 4
    faces = np.concatenate([base + [0, 1, 2], base + [0, 2, 3]], 1).reshape(-1, 3)
    rgb = np.repeat(np.repeat(r[:, 4] / 255.0, 4)[:, None], 3, axis=1)
    return BoardMesh(verts.astype(np.float32), faces.astype(np.int32), rgb.astype(np.float32))


def _board_pose(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], lens: LensDistortion,
                centre_uv: tuple[float, float], frac: float, tilt_x_deg: float, tilt_y_deg: float, roll_deg: float,
                hang: bool, margin_px: float, hang_inset: float = 0.3, hang_max_inside: float = 0.9):
    """One board pose (rvec, tvec), or None when it does not fit the frame.

    centre_uv: where the board's centre goes, in [0, 1] of the range that keeps the (untilted) board
    inside the image; frac: board width / image width (before tilting); tilts in :class:`ViewGeometry`'s
    convention (tilt_x > 0: top edge farther, tilt_y > 0: the image-left side farther); hang: the
    board may stick out of the frame (from 50 % to ``hang_max_inside`` of its corners inside), otherwise
    all of it is inside by ``margin_px``; a hanging board's centre may come within ``hang_inset`` × its
    half size of the border.
    """
    import cv2  # noqa: PLC0415

    from core.distortion import distort_points, undistort_points  # noqa: PLC0415

    w, h = size
    fx = float(intrinsics[0])
    bw, bh = board.size_m
    half_x = 0.5 * frac * (hang_inset if hang else 1.0)
    half_y = 0.5 * frac * (bh / bw) * (w / h) * (hang_inset if hang else 1.0)
    ux, uy = (float(np.clip(v, 0, 1)) for v in centre_uv)
    target_px = np.array([[half_x + (1 - 2 * half_x) * ux, half_y + (1 - 2 * half_y) * uy]]) * np.array([w, h])
    ideal = undistort_points(target_px, intrinsics, lens)[0]  # aim at the distorted image position
    if not np.isfinite(ideal).all():
        return None
    depth = fx * bw / (frac * w)
    target = backproject(ideal[None], np.array([depth]), intrinsics)[0]
    rot = (cv2.Rodrigues(np.array([math.radians(-tilt_x_deg), 0, 0]))[0]
           @ cv2.Rodrigues(np.array([0, math.radians(tilt_y_deg), 0]))[0]
           @ cv2.Rodrigues(np.array([0, 0, math.radians(roll_deg)]))[0])
    tvec = target - rot @ np.array([bw / 2, bh / 2, 0.0])
    if hang:
        points = board.corner_points().astype(np.float64)
    else:
        pad = 0.6 * board.square_m  # the printed margin, plus a little
        points = np.array([[-pad, -pad, 0], [bw + pad, -pad, 0], [bw + pad, bh + pad, 0], [-pad, bh + pad, 0]])
    cam = points @ rot.T + tvec
    if (cam[:, 2] < 0.05).any():
        return None
    uv = distort_points(project_perspective(cam, intrinsics), intrinsics, lens)
    inside = (np.isfinite(uv).all(1) & (uv[:, 0] >= margin_px) & (uv[:, 1] >= margin_px)
              & (uv[:, 0] <= w - margin_px) & (uv[:, 1] <= h - margin_px))
    if not (0.5 <= inside.mean() <= hang_max_inside if hang else inside.all()):
        return None
    return cv2.Rodrigues(rot)[0].ravel(), tvec


def random_board_poses(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], count: int,
                       rng: np.random.Generator, lens: LensDistortion | None = None, max_tilt_deg: float = 45.0,
                       fill: tuple[float, float] = (0.35, 0.7), margin_px: float = 8.0,
                       partial: bool | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` board poses (rvec, tvec) shown at random: centres on a jittered 4x3 grid of the
    (distorted) image, tilted up to ``max_tilt_deg`` about each axis (every fourth view nearer
    face-on), board width ``fill`` × image width, the whole board inside the frame. ``partial``
    (default: for ChArUco boards) lets every third view hang over the image border, with at least
    half of its corners inside, so the image corners get covered too. A user following the
    session's guidance shows :func:`guided_board_poses` instead."""
    lens = lens or LensDistortion()
    partial = board.kind == "charuco" if partial is None else partial
    gx, gy = 4, 3
    poses = []
    attempts = 0
    while len(poses) < count:
        attempts += 1
        if attempts > 500 * count:
            raise RuntimeError("could not place the board in the frame; use a smaller board or a wider camera")
        k = len(poses) % (gx * gy)
        hang = partial and len(poses) % 3 == 1
        frac = rng.uniform(*fill)
        ux = ((k % gx) + 0.5) / gx + rng.uniform(-0.1, 0.1)
        uy = ((k // gx) + 0.5) / gy + rng.uniform(-0.1, 0.1)
        if len(poses) >= gx * gy:
            ux, uy = rng.uniform(0.0, 1.0, 2)
        tilt_x, tilt_y = rng.uniform(-max_tilt_deg, max_tilt_deg, 2)
        if len(poses) % 4 == 0:  # some views nearer face-on, as people show boards
            tilt_x, tilt_y = tilt_x / 3, tilt_y / 3
        roll = rng.uniform(-20, 20)
        pose = _board_pose(board, intrinsics, size, lens, (ux, uy), frac, -tilt_x, tilt_y, roll, hang, margin_px)
        if pose is not None:
            poses.append(pose)
    return poses


def guided_board_poses(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], count: int,
                       rng: np.random.Generator, lens: LensDistortion | None = None,
                       steps: Sequence[GuidedView] = GUIDED_VIEWS, margin_px: float = 8.0,
                       partial: bool | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` board poses (rvec, tvec) of a user following the guided session (:data:`GUIDED_VIEWS`,
    in order, repeated when ``count`` is larger), with a human's imprecision: each tilt 0.8-1.2 × the
    asked one plus ±8° about the other axis, roll ±15°, position ±0.08 of the image, board size
    0.85-1.1 × the asked one; a view that does not fit the frame is retried a little smaller and nearer
    the middle (the
    user steps back and in). ``partial`` (default: ChArUco boards) lets corner and border views hang out of
    the frame (at least 50 % of the corners inside), as ChArUco allows."""
    lens = lens or LensDistortion()
    partial = board.kind == "charuco" if partial is None else partial
    poses = []
    for i in range(count):
        step = steps[i % len(steps)]
        for attempt in range(400):
            back = min(attempt / 200, 1.0)  # retries: a little smaller, a little nearer the middle
            frac = step.fill * rng.uniform(0.85, 1.1) * (1 - 0.5 * back)
            tilt_x = step.tilt_x_deg * rng.uniform(0.8, 1.2) + rng.uniform(-8, 8)
            tilt_y = step.tilt_y_deg * rng.uniform(0.8, 1.2) + rng.uniform(-8, 8)
            roll = rng.uniform(-15, 15)
            centre = tuple(c + (0.5 - c) * 0.4 * back + rng.uniform(-0.08, 0.08) for c in step.centre)
            pose = _board_pose(board, intrinsics, size, lens, centre, frac, tilt_x, tilt_y, roll,
                               partial and step.at_border, margin_px, hang_inset=0.6, hang_max_inside=1.0)
            if pose is not None:
                poses.append(pose)
                break
        else:
            raise RuntimeError(f"could not place the board for the guided view {step.key!r}; use a smaller board "
                               "or a wider camera")
    return poses


class BoardRenderer:
    """Renders a board seen by a known camera, optionally through a lens (``core.distortion.LensRemap``:
    rendered by the exact pinhole renderer on a larger ideal canvas, then remapped)."""

    def __init__(self, board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int],
                 lens: LensDistortion | None = None, px_per_square: int | None = None,
                 background: tuple[float, float, float] = (0.55, 0.55, 0.55)):
        from core.distortion import LensRemap  # noqa: PLC0415
        from core.render import Lighting, OffscreenRenderer  # noqa: PLC0415

        self.board, self.size = board, tuple(size)
        self.intrinsics = np.asarray(intrinsics, np.float64)
        self.lens = lens or LensDistortion()
        self.mesh = board_mesh(board, px_per_square)
        self.remap = LensRemap(self.intrinsics, self.lens, self.size)
        canvas = self.remap.canvas
        self.renderer = OffscreenRenderer(*canvas.size)
        self.lighting = Lighting(directions_to_light=((0.0, 0.0, -1.0),), diffuse=(0.25,), ambient=0.7)
        self.background = background

    def render(self, rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of the board at pose X_cam = R(rvec)·X_board + tvec."""
        import cv2  # noqa: PLC0415

        rot = cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
        verts = self.mesh.vertices.astype(np.float64) @ rot.T + np.asarray(tvec, np.float64)
        canvas = self.remap.canvas
        rgb = self.renderer.render(verts.astype(np.float32), self.mesh.faces, canvas.intrinsics.astype(np.float32),
                                   vertex_rgb=self.mesh.rgb, lighting=self.lighting, background=self.background).rgb
        if self.lens.is_identity:
            return rgb
        grey = int(round(self.background[0] * 255))
        return self.remap.distort_image(rgb, border_value=(grey, grey, grey))

    def project(self, rvec, tvec, object_points: np.ndarray) -> np.ndarray:
        """Exact (distorted) pixel positions of board points at a pose: (N, 3) -> (N, 2)."""
        import cv2  # noqa: PLC0415

        from core.distortion import distort_points  # noqa: PLC0415

        rot = cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
        cam = np.asarray(object_points, np.float64) @ rot.T + np.asarray(tvec, np.float64)
        return distort_points(project_perspective(cam, self.intrinsics), self.intrinsics, self.lens)

    def release(self) -> None:
        self.renderer.release()

    def __enter__(self) -> "BoardRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def render_board_views(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], count: int,
                       lens: LensDistortion | None = None, seed: int = 0, poses: str = "random",
                       **pose_kwargs) -> list[np.ndarray]:
    """``count`` rendered views of ``board`` (RGB uint8) at :func:`random_board_poses` (``poses="random"``)
    or :func:`guided_board_poses` (``poses="guided"``)."""
    if poses not in ("random", "guided"):
        raise ValueError(f"poses {poses!r}: expected random or guided")
    rng = np.random.default_rng(seed)
    make = guided_board_poses if poses == "guided" else random_board_poses
    poses = make(board, intrinsics, size, count, rng, lens, **pose_kwargs)
    with BoardRenderer(board, intrinsics, size, lens) as renderer:
        return [renderer.render(r, t) for r, t in poses]


def image_grid(size: tuple[int, int], samples: int = 33) -> np.ndarray:
    """(samples², 2) pixel positions on a regular grid over the whole image, borders included."""
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w, samples), np.linspace(0, h, samples))
    return np.stack([xs.ravel(), ys.ravel()], -1)


def covered_points(points_px: np.ndarray, views: Sequence[BoardDetection]) -> np.ndarray:
    """The rows of ``points_px`` inside the convex hull of every corner the views detected
    (where a calibration is measured rather than extrapolated)."""
    import cv2  # noqa: PLC0415

    hull = cv2.convexHull(np.concatenate([v.image_points for v in views]).astype(np.float32))
    inside = [cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0 for x, y in points_px]
    return points_px[np.asarray(inside, bool)]


def distortion_error_px(true: tuple[Sequence[float], LensDistortion], est: tuple[Sequence[float], LensDistortion],
                        points_px: np.ndarray) -> float:
    """Max difference between two lenses' distortion at image positions ``points_px`` (N, 2), in
    pixels of the true camera (use :func:`image_grid`, or :func:`covered_points` of it).

    Each lens distorts the same normalised ideal points (those of the true camera at
    ``points_px``); the displacements are compared at the true focal length, so intrinsics
    errors do not count.
    """
    from core.distortion import distort_points, undistort_points  # noqa: PLC0415

    (k_true, lens_true), (k_est, lens_est) = true, est
    ideal_true = undistort_points(np.asarray(points_px, np.float64), k_true, lens_true)
    d_true = distort_points(ideal_true, k_true, lens_true) - ideal_true
    rays = backproject(ideal_true, np.ones(len(ideal_true)), k_true)  # depth 1
    ideal_est = project_perspective(rays, k_est)
    focal_ratio = np.asarray(k_true, np.float64)[:2] / np.asarray(k_est, np.float64)[:2]
    d_est = (distort_points(ideal_est, k_est, lens_est) - ideal_est) * focal_ratio
    return float(np.nanmax(np.linalg.norm(d_true - d_est, axis=1)))
