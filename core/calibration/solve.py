"""Solving and judging a calibration: :func:`calibrate` -> :class:`~core.calibration.result.Calibration`,
or :class:`~core.calibration.result.CalibrationError` saying why not.

**Solve** intrinsics and lens distortion: ``cv2.calibrateCameraExtended`` (radial-tangential, the
coefficients beyond k1 k2 kept only when a likelihood-ratio test says the views need them; or the
8-coefficient rational model) or ``cv2.fisheye.calibrate`` (equidistant ``k1..k4``, very wide HMC
lenses), from two starts (OpenCV's, and one grown from the large views, which avoids the local
minima of flipped board poses under strong distortion). Views whose error is far above the others
are dropped and the solve repeated once.

**Judge**: report the RMS reprojection error and an honest 1σ of every parameter — the larger of
OpenCV's (residuals and Jacobian; assumes independent corner errors) and the leave-one-view-out
jackknife's (errors shared by a view's corners, a view that carries the solution alone) — and
refuse a poor calibration with :class:`CalibrationError` saying why: too few views, board too
small in the frame, all views face-on (focal length not determined), RMS above the threshold,
focal length too uncertain. When the views cannot locate the principal point (narrow lenses: its
σ above 1 % of the image), it is fixed at the image centre and the result says so; a focal
length or principal point less certain than ``CalibrationCriteria.warn_*`` comes with a warning
saying which views would help.

The detections are in flamecam pixels, so OpenCV's solver takes and returns flamecam K matrices
(``core.camera.intrinsics_matrix`` / ``intrinsics_from_matrix``, not the ``opencv_*`` conversions):
its camera model does not care where the pixel origin is; only its initial guess does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from core.calibration.board import BoardSpec
from core.calibration.detect import BoardDetection
from core.calibration.result import Calibration, CalibrationCriteria, CalibrationError
from core.calibration.views import coverage_grid, view_geometry
from core.camera import default_intrinsics, intrinsics_from_matrix, intrinsics_matrix
from core.distortion import FISHEYE_COEFF_NAMES, OPENCV_COEFF_NAMES, LensDistortion

CALIBRATION_MODELS = ("opencv", "rational", "fisheye")

# (distortion terms of the opencv model) name -> the coefficients estimated; the others are held at 0
OPENCV_TERMS = {"radial2": ("k1", "k2"), "radial3": ("k1", "k2", "k3"), "tangential": ("k1", "k2", "p1", "p2"),
                "full": ("k1", "k2", "p1", "p2", "k3")}
DISTORTION_CHOICES = ("auto",) + tuple(OPENCV_TERMS)
OPENCV_COEFF_NAMES_8 = OPENCV_COEFF_NAMES[:8]  # the rational model's


# --- OpenCV's solvers --------------------------------------------------------------------------


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


# --- honest uncertainty ------------------------------------------------------------------------


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


def _honest_sigmas(sol: _Solution, jackknife: dict[str, float]) -> dict[str, float]:
    """Per parameter, the larger of the Jacobian's and the jackknife's 1σ (NaN stays NaN: not estimated)."""
    out = {}
    for name, s in sol.sigmas.items():
        j = jackknife.get(name, float("nan"))
        out[name] = s if not math.isfinite(s) else (max(s, j) if math.isfinite(j) else s)
    return out


# --- calibrate ---------------------------------------------------------------------------------


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
