"""Finding a board in a frame: :class:`BoardDetector` / :func:`detect_board` -> :class:`BoardDetection`.

``cv2.findChessboardCorners`` + ``cv2.cornerSubPix`` for checkerboards (``findChessboardCornersSB``
as the fallback; whole pattern), ``cv2.aruco.CharucoDetector`` for ChArUco boards (partial views
allowed, so the image corners get covered too), whose corners are then re-located on the two
chessboard edges through them only (:func:`refine_grid_corners`: OpenCV's window reaches into the
markers and biases them; refined they are as accurate as the checkerboard's, ~0.07-0.08 px on our
renders). Detections are in flamecam pixels (pixel ``i`` covers ``[i, i+1)``): shifted by +0.5 from
OpenCV's integer-centred corners as soon as they are found.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.calibration.board import BoardSpec


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
