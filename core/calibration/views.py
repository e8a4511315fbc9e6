"""Board views: where a view puts the board (:func:`view_geometry`), what it tells about the camera
(:func:`view_information`: its Fisher information on the intrinsics, its pose eliminated), which
views to use (:func:`select_views`: greedily the ones that most lower the expected uncertainty of
the intrinsics) and how much of the image they cover (:func:`coverage_grid`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from core.calibration.detect import BoardDetection
from core.camera import default_intrinsics, intrinsics_matrix
from core.distortion import LensDistortion


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
        from core.calibration.solve import _solve  # noqa: PLC0415  (solve imports this module)

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
