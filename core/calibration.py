"""Camera calibration from a checkerboard or ChArUco board: OpenCV's calibration, guided.

The tracker cannot measure the focal length well from face landmarks alone (MediaPipe's slow
~2 px bias swamps the 0.03-0.1 px a 3 % focal change makes), so users who need metric,
undistorted geometry calibrate. This module does the parts around OpenCV's solver:

1. **Detect** a board per frame (:func:`detect_board`): ``cv2.findChessboardCornersSB`` for
   checkerboards (sub-pixel, whole pattern), ``cv2.aruco.CharucoDetector`` for ChArUco boards
   (partial views allowed, so corners of the image get covered).
2. **Pick views** that are spread over the image and over board tilts
   (:func:`select_views`, greedy farthest-point on position / size / tilt), or accept them live
   when they add something new (:class:`CalibrationSession`, which also keeps a coverage map
   and writes guidance for the user).
3. **Solve** intrinsics and lens distortion (:func:`calibrate`): ``cv2.calibrateCameraExtended``
   (radial-tangential ``k1 k2 p1 p2 k3``, or the 8-coefficient rational model) or
   ``cv2.fisheye.calibrate`` (equidistant ``k1..k4``, very wide HMC lenses). Views whose error is
   far above the others are dropped and the solve repeated once.
4. **Judge**: report the RMS reprojection error and 1σ of every parameter (from the residuals
   and the Jacobian, as OpenCV does; assumes independent corner errors), and refuse a poor
   calibration with :class:`CalibrationError` saying why — too few views, board too small in the
   frame, all views face-on (focal length not determined), RMS above the threshold, focal length
   too uncertain.

Conventions: every pixel coordinate here is flamecam's (pixel ``i`` covers ``[i, i+1)``), so
detections are shifted by +0.5 from OpenCV's integer-centred corners as soon as they are found,
and OpenCV's solver then returns flamecam intrinsics directly (its camera model does not care
where the origin is; only its initial guess does). Board coordinates: metres, x right and y
down on the printed board, z into it.

The end of the module renders boards with the project's renderer (``core.render``) for tests,
benchmarks and a printable board image (``flamecam calibrate --print-board``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from core.distortion import LensDistortion

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
    """Finds a :class:`BoardSpec` in frames (reuses OpenCV's detector objects between calls)."""

    def __init__(self, board: BoardSpec):
        self.board = board
        self._charuco = None
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
        pts = corners.reshape(-1, 2).astype(np.float64) + 0.5  # OpenCV integer centres -> flamecam pixels
        return BoardDetection(pts, obj.astype(np.float32), ids.astype(np.int32), size, frame_index)


def detect_board(image: np.ndarray, board: BoardSpec, frame_index: int = -1) -> BoardDetection | None:
    """One-off :meth:`BoardDetector.detect`."""
    return BoardDetector(board).detect(image, frame_index)


# --- view geometry and selection -----------------------------------------------------------------


@dataclass(frozen=True)
class ViewGeometry:
    """Where a view puts the board: for spreading views and for the user's guidance."""

    centre: np.ndarray  # (2,) in [0, 1]
    area_fraction: float
    tilt_x_deg: float  # board normal's rotation about the image x axis (tilted up/down)
    tilt_y_deg: float  # about the image y axis (turned left/right)

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
    fx, fy, cx, cy = intrinsics_guess if intrinsics_guess is not None else (max(w, h), max(w, h), w / 2, h / 2)
    k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
    tilt_x = tilt_y = 0.0
    ok, rvec, _ = cv2.solvePnP(det.object_points.astype(np.float64), det.image_points, k, None,
                               flags=cv2.SOLVEPNP_IPPE)
    if ok:
        normal = cv2.Rodrigues(rvec)[0][:, 2]  # board z axis in camera space
        if normal[2] < 0:
            normal = -normal
        tilt_y = math.degrees(math.atan2(normal[0], normal[2]))
        tilt_x = math.degrees(math.atan2(normal[1], normal[2]))
    return ViewGeometry(det.centre_norm, det.area_fraction, tilt_x, tilt_y)


def select_views(detections: Sequence[BoardDetection], max_views: int = 25, min_area_fraction: float = 0.03,
                 min_distance: float = 0.08, intrinsics_guess: Sequence[float] | None = None) -> list[int]:
    """Indices of well-spread views among ``detections`` (greedy farthest-point selection).

    Views smaller than ``min_area_fraction`` of the image are left out; selection stops at
    ``max_views`` or when every remaining view is within ``min_distance`` of a chosen one
    (near-duplicates, e.g. consecutive video frames). Starts from the view with most corners.
    """
    usable = [i for i, d in enumerate(detections) if d.area_fraction >= min_area_fraction]
    if not usable:
        return []
    feats = np.stack([view_geometry(detections[i], intrinsics_guess).features() for i in usable])
    counts = np.array([detections[i].num_corners for i in usable], np.float64)
    first = int(np.argmax(counts + 1e-3 * feats[:, 2]))
    chosen = [first]
    dist = np.linalg.norm(feats - feats[first], axis=1)
    while len(chosen) < min(max_views, len(usable)):
        # Prefer far views; among similar distances, more corners (partial ChArUco views count less).
        score = dist * (0.5 + 0.5 * counts / counts.max())
        nxt = int(np.argmax(score))
        if dist[nxt] < min_distance:
            break
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[nxt], axis=1))
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
        coeffs = "  ".join(f"{n} = {c:+.5f} {pm(n, 5)}" for n, c in zip(self.lens.coeff_names, self.lens.coeffs))
        lines = [f"{self.num_views} views, {self.image_size[0]}x{self.image_size[1]}, board {self.board}",
                 f"RMS reprojection error {self.rms_px:.3f} px",
                 f"fx = {fx:.2f} {pm('fx')} px   fy = {fy:.2f} {pm('fy')} px", centre,
                 f"lens: {self.lens.model}  {coeffs}",
                 f"coverage {self.coverage:.0%} of the image, max board tilt {self.max_tilt_deg:.0f}°"]
        if self.dropped_views:
            lines.append(f"dropped outlier views (frames): {self.dropped_views}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _cv_lists(views: Sequence[BoardDetection]):
    obj = [v.object_points.reshape(-1, 1, 3).astype(np.float64) for v in views]
    img = [v.image_points.reshape(-1, 1, 2).astype(np.float64) for v in views]
    return obj, img


def _k_guess(size, focal_guess):
    w, h = size
    return np.array([[focal_guess, 0, w / 2], [0, focal_guess, h / 2], [0, 0, 1]], np.float64)  # flamecam centre


def _solve_opencv(views, size, rational: bool, fix_focal_guess: float | None = None):
    """``fix_focal_guess``: solve with the principal point fixed at the image centre (focal initialised here)."""
    import cv2  # noqa: PLC0415

    obj, img = _cv_lists(views)
    flags = cv2.CALIB_RATIONAL_MODEL if rational else 0
    k0 = None
    if fix_focal_guess is not None:
        flags |= cv2.CALIB_USE_INTRINSIC_GUESS | cv2.CALIB_FIX_PRINCIPAL_POINT
        k0 = _k_guess(size, fix_focal_guess)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    obj32 = [o.astype(np.float32) for o in obj]
    img32 = [i.astype(np.float32) for i in img]
    rms, k, dist, rvecs, tvecs, std_intr, _, per_view = cv2.calibrateCameraExtended(
        obj32, img32, size, k0, None, flags=flags, criteria=criteria)
    n = 8 if rational else 5
    coeffs = tuple(float(c) for c in np.asarray(dist).ravel()[:n])
    std = np.asarray(std_intr).ravel()
    names = ("fx", "fy", "cx", "cy") + LensDistortion("opencv", coeffs).coeff_names
    sigmas = {name: float(std[i]) for i, name in enumerate(names)}
    if fix_focal_guess is not None:
        sigmas["cx"] = sigmas["cy"] = float("nan")  # not estimated
    intr = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
    return intr, LensDistortion("opencv", coeffs), sigmas, np.asarray(per_view).ravel(), rvecs, tvecs


def _solve_fisheye(views, size, fix_focal_guess: float | None = None):
    import cv2  # noqa: PLC0415

    # cv2.fisheye wants (1, N, 3) / (1, N, 2) arrays per view
    obj = [v.object_points.reshape(1, -1, 3).astype(np.float64) for v in views]
    img = [v.image_points.reshape(1, -1, 2).astype(np.float64) for v in views]
    flags = cv2.CALIB_RECOMPUTE_EXTRINSIC | cv2.CALIB_FIX_SKEW
    k0 = np.eye(3)
    if fix_focal_guess is not None:
        flags |= cv2.CALIB_USE_INTRINSIC_GUESS | cv2.CALIB_FIX_PRINCIPAL_POINT
        k0 = _k_guess(size, fix_focal_guess)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    try:
        _, k, dist, rvecs, tvecs = cv2.fisheye.calibrate(obj, img, size, k0, np.zeros((4, 1)), flags=flags,
                                                          criteria=criteria)
    except cv2.error as exc:
        raise CalibrationError(f"the fisheye solver failed ({str(exc).strip().splitlines()[-1]}); add more varied "
                               "views, or use the opencv model for lenses under ~120° field of view") from exc
    intr = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
    lens = LensDistortion("fisheye", tuple(float(c) for c in np.asarray(dist).ravel()[:4]))
    # OpenCV's fisheye solver gives no uncertainties: same estimate as calibrateCameraExtended's,
    # from the projection Jacobians with each view's pose eliminated (Schur complement).
    n_int = 8 if fix_focal_guess is None else 6
    jtj = np.zeros((n_int, n_int))
    sq, count, per_view = 0.0, 0, []
    blocks = []
    for o, i, r, t in zip(obj, img, rvecs, tvecs):
        proj, jac = cv2.fisheye.projectPoints(o, r, t, k, dist)
        res = (proj - i).reshape(-1)
        jac = np.asarray(jac).reshape(-1, 15)  # columns: fx fy cx cy k1..k4, rvec, tvec, alpha (verified)
        j_int, j_ext = jac[:, 0:8], jac[:, 8:14]
        if fix_focal_guess is not None:
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
    names = ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4") if fix_focal_guess is None else \
        ("fx", "fy", "k1", "k2", "k3", "k4")
    sigmas = {"cx": float("nan"), "cy": float("nan")}
    sigmas.update(zip(names, (float(s) for s in std)))
    return intr, lens, sigmas, np.asarray(per_view), rvecs, tvecs


def _solve(views, size, model, fix_focal_guess: float | None = None):
    if model == "fisheye":
        return _solve_fisheye(views, size, fix_focal_guess)
    return _solve_opencv(views, size, rational=model == "rational", fix_focal_guess=fix_focal_guess)


def calibrate(views: Sequence[BoardDetection], model: str = "opencv",
              criteria: CalibrationCriteria = CalibrationCriteria(), board: BoardSpec | str = "",
              principal_point: str = "auto") -> Calibration:
    """Solve intrinsics and distortion from board views; raise :class:`CalibrationError` when poor.

    model: ``opencv`` (k1 k2 p1 p2 k3), ``rational`` (k1..k6 p1 p2; strong distortion) or
    ``fisheye`` (equidistant k1..k4; > ~120° lenses). principal_point: ``free`` (estimated),
    ``centre`` (fixed at the image centre) or ``auto`` (estimated, unless the views leave it more
    uncertain than ``criteria.max_principal_sigma_rel`` of the image size — typical of narrow
    lenses — in which case it is fixed at the centre, with a warning).
    """
    if model not in CALIBRATION_MODELS:
        raise ValueError(f"calibration model {model!r}: expected one of {', '.join(CALIBRATION_MODELS)}")
    if principal_point not in ("auto", "free", "centre"):
        raise ValueError(f"principal_point {principal_point!r}: expected auto, free or centre")
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
            "determined; tilt the board 20-45° left/right and up/down in several views")
    intr, lens, sigmas, per_view, _, _ = _solve(views, size, model)
    dropped: list[int] = []
    median = float(np.median(per_view))
    bad = [i for i, e in enumerate(per_view) if e > c.outlier_factor * max(median, 0.05)]
    if bad and len(views) - len(bad) >= c.min_views:
        dropped = [views[i].frame_index for i in bad]
        views = [v for i, v in enumerate(views) if i not in set(bad)]
        geoms = [g for i, g in enumerate(geoms) if i not in set(bad)]
        intr, lens, sigmas, per_view, _, _ = _solve(views, size, model)
    fixed_pp = principal_point == "centre"
    note = None
    if principal_point == "auto":
        w, h = size
        rel = max(sigmas.get("cx", 0.0) / w, sigmas.get("cy", 0.0) / h)
        if not rel <= c.max_principal_sigma_rel:
            fixed_pp = True
            note = (f"the views leave the principal point uncertain (±{sigmas['cx']:.1f}, ±{sigmas['cy']:.1f} px, "
                    "typical of narrow lenses), so it is fixed at the image centre; for a measured one add strongly "
                    "tilted views near the image corners (or force it with principal_point=free)")
    if fixed_pp:
        intr, lens, sigmas, per_view, _, _ = _solve(views, size, model, fix_focal_guess=float(intr[0]))
    total = sum(v.num_corners for v in views)
    rms = float(math.sqrt(sum(e ** 2 * v.num_corners for e, v in zip(per_view, views)) / total))
    cov_grid = coverage_grid(views, size)
    result = Calibration(size, intr, lens, rms, sigmas, [float(e) for e in per_view],
                         [v.frame_index for v in views], str(board), float((cov_grid > 0).mean()),
                         float(max(g.tilt_deg for g in geoms)), dropped, principal_point_fixed=fixed_pp)
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
                               "add views with the board tilted and nearer the image corners")
    if result.coverage < c.warn_coverage:
        result.warnings.append(f"the board reached only {result.coverage:.0%} of the image; distortion near the "
                               "uncovered borders is extrapolated — add views near the corners")
    return result


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
    what to do next; ``ready`` says a solve is worth trying; ``solve()`` returns a
    :class:`Calibration` or raises :class:`CalibrationError`. For files, ``add_candidates`` +
    :func:`select_views` pick the views afterwards instead. Pure Python/OpenCV (no Qt).
    """

    def __init__(self, board: BoardSpec, image_size: tuple[int, int], model: str = "opencv",
                 criteria: CalibrationCriteria = CalibrationCriteria(), target_views: int = 15,
                 min_novelty: float = 0.15, still_px: float | None = 1.5, cells: tuple[int, int] = (8, 6)):
        if model not in CALIBRATION_MODELS:
            raise ValueError(f"calibration model {model!r}: expected one of {', '.join(CALIBRATION_MODELS)}")
        self.board, self.image_size, self.model, self.criteria = board, tuple(image_size), model, criteria
        self.target_views, self.min_novelty, self.still_px, self.cells = target_views, min_novelty, still_px, cells
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

    def _tilted(self, axis: str) -> int:
        t = self.criteria.min_tilt_deg
        return sum(abs(g.tilt_y_deg if axis == "y" else g.tilt_x_deg) >= t for g in self.geometries)

    @property
    def ready(self) -> bool:
        """Enough views, tilts and coverage that a solve is worth trying."""
        tilted = sum(g.tilt_deg >= self.criteria.min_tilt_deg for g in self.geometries)
        c = self.criteria
        return (len(self.views) >= max(c.min_views, self.target_views) and tilted >= c.min_tilted_views
                and self.coverage_fraction() >= c.warn_coverage)

    def guidance(self) -> list[str]:
        """What the user should do next, most important first (plain sentences)."""
        tips: list[str] = []
        n, target = len(self.views), max(self.criteria.min_views, self.target_views)
        if not self.views:
            tips.append(f"Hold the {self.board.kind} board in view, about half the frame wide, and keep it still "
                        "for a moment at each position.")
        missing = self._missing_zones()
        if self.views and missing:
            tips.append("Move the board to the " + ", ".join(missing) + " of the image (not covered yet).")
        if self.views and self._tilted("y") < 2:
            tips.append("Turn the board 20-45° left or right (about its vertical axis).")
        if self.views and self._tilted("x") < 2:
            tips.append("Tilt the board 20-45° up or down (about its horizontal axis).")
        if self.views and max(g.area_fraction for g in self.geometries) < 0.2:
            tips.append("Bring the board closer so it fills more of the frame in some views.")
        if self.ready:
            tips.append(f"{n} views: ready to solve (more varied views can still help).")
        else:
            tips.append(f"{n} of {target} views.")
        return tips

    # -- solving ----------------------------------------------------------------------------------

    def solve(self) -> Calibration:
        self.result = calibrate(self.views, self.model, self.criteria, self.board)
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


def random_board_poses(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], count: int,
                       rng: np.random.Generator, lens: LensDistortion | None = None, max_tilt_deg: float = 45.0,
                       fill: tuple[float, float] = (0.35, 0.7), margin_px: float = 8.0,
                       partial: bool | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` board poses (rvec, tvec) as a careful user would show them: centres on a jittered
    4x3 grid of the (distorted) image, tilted up to ``max_tilt_deg`` (every fourth view nearer
    face-on), board width ``fill`` × image width, the whole board inside the frame. ``partial``
    (default: for ChArUco boards) lets every third view hang over the image border, with at least
    half of its corners inside, so the image corners get covered too."""
    import cv2  # noqa: PLC0415

    from core.distortion import distort_points, undistort_points  # noqa: PLC0415

    lens = lens or LensDistortion()
    partial = board.kind == "charuco" if partial is None else partial
    w, h = size
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    bw, bh = board.size_m
    centre_board = np.array([bw / 2, bh / 2, 0.0])
    pad = 0.6 * board.square_m  # the printed margin, plus a little
    outline = np.array([[-pad, -pad, 0], [bw + pad, -pad, 0], [bw + pad, bh + pad, 0], [-pad, bh + pad, 0]])
    corners = board.corner_points().astype(np.float64)
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
        half_x = 0.5 * frac * (0.3 if hang else 1.0)
        half_y = 0.5 * frac * (bh / bw) * (w / h) * (0.3 if hang else 1.0)
        ux = ((k % gx) + 0.5) / gx + rng.uniform(-0.1, 0.1)
        uy = ((k // gx) + 0.5) / gy + rng.uniform(-0.1, 0.1)
        if len(poses) >= gx * gy:
            ux, uy = rng.uniform(0.0, 1.0, 2)
        target_px = np.array([[half_x + (1 - 2 * half_x) * float(np.clip(ux, 0, 1)),
                               half_y + (1 - 2 * half_y) * float(np.clip(uy, 0, 1))]]) * np.array([w, h])
        ideal = undistort_points(target_px, intrinsics, lens)[0]  # aim at the distorted image position
        if not np.isfinite(ideal).all():
            continue
        depth = fx * bw / (frac * w)
        target = np.array([(ideal[0] - cx) / fx * depth, (ideal[1] - cy) / fy * depth, depth])
        tilt_x, tilt_y = rng.uniform(-max_tilt_deg, max_tilt_deg, 2)
        if len(poses) % 4 == 0:  # some views nearer face-on, as people show boards
            tilt_x, tilt_y = tilt_x / 3, tilt_y / 3
        roll = rng.uniform(-20, 20)
        rot = (cv2.Rodrigues(np.array([math.radians(tilt_x), 0, 0]))[0]
               @ cv2.Rodrigues(np.array([0, math.radians(tilt_y), 0]))[0]
               @ cv2.Rodrigues(np.array([0, 0, math.radians(roll)]))[0])
        tvec = target - rot @ centre_board

        def image_of(points):
            cam = points @ rot.T + tvec
            if (cam[:, 2] < 0.05).any():
                return None
            uv = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)
            return distort_points(uv, intrinsics, lens)

        def inside(uv):
            return np.isfinite(uv).all(1) & (uv[:, 0] >= margin_px) & (uv[:, 1] >= margin_px) \
                & (uv[:, 0] <= w - margin_px) & (uv[:, 1] <= h - margin_px)

        if hang:
            uv = image_of(corners)
            if uv is None or not 0.5 <= inside(uv).mean() <= 0.9:
                continue
        else:
            uv = image_of(outline)
            if uv is None or not inside(uv).all():
                continue
        poses.append((cv2.Rodrigues(rot)[0].ravel(), tvec))
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
        fx, fy, cx, cy = self.intrinsics
        uv = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)
        return distort_points(uv, self.intrinsics, self.lens)

    def release(self) -> None:
        self.renderer.release()

    def __enter__(self) -> "BoardRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def render_board_views(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], count: int,
                       lens: LensDistortion | None = None, seed: int = 0, **pose_kwargs) -> list[np.ndarray]:
    """``count`` rendered views of ``board`` (RGB uint8) at :func:`random_board_poses`."""
    rng = np.random.default_rng(seed)
    poses = random_board_poses(board, intrinsics, size, count, rng, lens, **pose_kwargs)
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
    fx, fy, cx, cy = (float(v) for v in k_true)
    norm = np.stack([(ideal_true[:, 0] - cx) / fx, (ideal_true[:, 1] - cy) / fy], -1)
    d_true = distort_points(ideal_true, k_true, lens_true) - ideal_true
    ex, ey, ecx, ecy = (float(v) for v in k_est)
    ideal_est = np.stack([norm[:, 0] * ex + ecx, norm[:, 1] * ey + ecy], -1)
    d_est = (distort_points(ideal_est, k_est, lens_est) - ideal_est) * np.array([fx / ex, fy / ey])
    return float(np.nanmax(np.linalg.norm(d_true - d_est, axis=1)))
