"""Camera calibration on boards rendered by the project's renderer with a known camera and lens:
recover fx, fy, cx, cy and the distortion tightly; refuse poor calibrations with the reason."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.calibration import (GUIDED_VIEWS, BoardDetection, BoardDetector, BoardRenderer, BoardSpec,
                              CalibrationCriteria, CalibrationError, CalibrationSession, board_mesh, calibrate,
                              coverage_grid, covered_points, distortion_error_px, guided_board_poses, image_grid,
                              random_board_poses, render_board_views, select_views, view_geometry)
from core.distortion import LensDistortion

SIZE = (640, 480)
CHARUCO = BoardSpec.parse("charuco:9x6,square=0.03,marker=0.022,dict=DICT_5X5_100")
CHECKER = BoardSpec.parse("checkerboard:10x7,square=25mm")

CASES = {
    # name: (board, true intrinsics, lens, calibration model)
    "charuco_radial": (CHARUCO, (600.0, 602.0, 327.3, 236.1), LensDistortion.opencv(-0.31, 0.11, 0.0009, -0.0011, -0.02),
                       "opencv"),
    "checker_pinhole": (CHECKER, (820.0, 820.0, 316.2, 244.8), LensDistortion.opencv(), "opencv"),
    "checker_fisheye": (CHECKER, (330.0, 331.0, 322.4, 238.1), LensDistortion.fisheye(0.06, -0.03, 0.012, -0.002),
                        "fisheye"),
}


@pytest.fixture(scope="module")
def rendered():
    """15 rendered views per case (detected once, shared by the tests)."""
    out = {}
    for name, (board, intr, lens, _) in CASES.items():
        images = render_board_views(board, intr, SIZE, 15, lens, seed=1)
        detector = BoardDetector(board)
        out[name] = (images, [d for d in (detector.detect(im, i) for i, im in enumerate(images)) if d is not None])
    return out


def test_board_spec_parse_and_print():
    spec = BoardSpec.parse("charuco:11x8,square=24mm,marker=0.018,dict=DICT_4X4_100,legacy=1")
    assert (spec.squares_x, spec.squares_y, spec.legacy, spec.dictionary) == (11, 8, True, "DICT_4X4_100")
    assert spec.square_m == pytest.approx(0.024) and spec.marker_m == pytest.approx(0.018)
    assert BoardSpec.parse(str(spec)) == spec
    assert CHECKER.inner_corners == (9, 6) and CHECKER.num_corners == 54
    for bad in ("charuco:9x6", "checkerboard:9,square=0.02", "charuco:9x6,square=0.02,marker=0.03",
                "dots:9x6,square=0.02", "charuco:9x6,square=0.03,marker=0.02,dict=DICT_NOPE"):
        with pytest.raises(ValueError):
            BoardSpec.parse(bad)


def test_board_mesh_is_the_board_image():
    """Each board pixel is covered by exactly one uniformly coloured quad of its colour."""
    mesh = board_mesh(CHARUCO, px_per_square=40)
    img = CHARUCO.image(40)
    m = 20
    area = np.zeros(img.shape, np.float64)
    unit = CHARUCO.square_m / 40
    quads = mesh.vertices.reshape(-1, 4, 3)
    colours = mesh.rgb.reshape(-1, 4, 3)
    assert np.ptp(colours, axis=1).max() == 0  # uniform per quad: no colour blends across an edge
    for q, c in zip(quads, colours[:, 0, 0]):
        x0, y0 = np.round(q[0, :2] / unit).astype(int) + m
        x1, y1 = np.round(q[2, :2] / unit).astype(int) + m
        assert (img[y0:y1, x0:x1] == round(c * 255)).all()
        area[y0:y1, x0:x1] += 1
    assert (area == 1).all()


@pytest.mark.parametrize("name", list(CASES))
def test_calibration_recovers_the_rendering_camera(rendered, name):
    board, intr, lens, model = CASES[name]
    _, views = rendered[name]
    assert len(views) >= 14
    cal = calibrate(views, model, board=board)
    fx, fy, cx, cy = cal.intrinsics
    assert abs(fx - intr[0]) / intr[0] < 0.005 and abs(fy - intr[1]) / intr[1] < 0.005, cal.summary()
    assert abs(cx - intr[2]) < 2.0 and abs(cy - intr[3]) < 2.0, cal.summary()  # the target; +0.5 included
    assert cal.rms_px < 0.3 and not cal.principal_point_fixed
    covered = covered_points(image_grid(SIZE), views)
    assert len(covered) > 0.4 * len(image_grid(SIZE))
    assert distortion_error_px((intr, lens), (cal.intrinsics, cal.lens), covered) < 0.5, cal.summary()
    # the reported 1σ are finite and honest about the actual error (well inside 4σ)
    for i, key in enumerate(("fx", "fy", "cx", "cy")):
        sigma = cal.sigmas[key]
        assert 0 < sigma < 0.01 * intr[i] + 2
        assert abs(cal.intrinsics[i] - intr[i]) < 4 * sigma + 0.3, (key, cal.summary())
    assert cal.lens.model == lens.model and set(cal.lens.coeff_names) <= set(cal.sigmas)


def test_ignoring_the_lens_model_is_worse(rendered):
    """Same views, fisheye camera solved with the radial-tangential model: measurably worse distortion fit
    (shows the fisheye test above can fail)."""
    board, intr, lens, _ = CASES["checker_fisheye"]
    _, views = rendered["checker_fisheye"]
    fisheye = calibrate(views, "fisheye", board=board)
    pinhole = calibrate(views, "opencv", board=board, criteria=CalibrationCriteria(max_rms_px=5))
    assert pinhole.rms_px >= fisheye.rms_px


def _synthetic_views(intr, lens, count, noise_px, seed, board=CHECKER, size=SIZE, **kw):
    """Exact corner projections (no rendering) plus Gaussian noise, as detections."""
    with_renderer = BoardRenderer.__new__(BoardRenderer)  # only project(); no GL context needed
    with_renderer.intrinsics, with_renderer.lens = np.asarray(intr, np.float64), lens
    rng = np.random.default_rng(seed)
    poses = random_board_poses(board, intr, size, count, rng, lens, **kw)
    obj = board.corner_points()
    views = []
    for i, (r, t) in enumerate(poses):
        uv = with_renderer.project(r, t, obj) + rng.normal(0, noise_px, (len(obj), 2))
        views.append(BoardDetection(uv, obj, np.arange(len(obj)), size, i))
    return views


@pytest.mark.parametrize("model, lens", [("opencv", LensDistortion.opencv(-0.2, 0.05, 0.0, 0.0, 0.0)),
                                         ("fisheye", LensDistortion.fisheye(0.05, -0.02, 0.01, 0.0))])
def test_reported_uncertainty_matches_the_scatter(model, lens):
    """Repeat the calibration on fresh noise: the spread of fx, cx and k1 matches the reported 1σ."""
    intr = (500.0, 500.0, 318.0, 243.0)
    fx, cx, k1, sig = [], [], [], {"fx": [], "cx": [], "k1": []}
    for trial in range(24):
        views = _synthetic_views(intr, lens, 12, 0.3, seed=100 + trial)
        cal = calibrate(views, model, principal_point="free")
        fx.append(cal.intrinsics[0])
        cx.append(cal.intrinsics[2])
        k1.append(cal.lens.coeffs[0])
        for key in sig:
            sig[key].append(cal.sigmas[key])
    for key, values in (("fx", fx), ("cx", cx), ("k1", k1)):
        ratio = np.std(values) / np.mean(sig[key])
        assert 0.6 < ratio < 1.6, (key, np.std(values), np.mean(sig[key]))


def test_very_wide_fisheye_lens():
    """A 141° (horizontal) HMC-style fisheye, beyond what a pinhole canvas can render: corners projected
    by OpenCV's fisheye model plus 0.2 px noise. The fisheye model recovers it; the RMS is the noise."""
    intr = (260.0, 260.0, 321.0, 242.0)
    lens = LensDistortion.fisheye(0.02, -0.01, 0.003, -0.0005)
    views = _synthetic_views(intr, lens, 15, 0.2, seed=1)
    cal = calibrate(views, "fisheye")
    assert np.abs(cal.intrinsics[:2] - intr[:2]).max() / intr[0] < 0.005
    assert np.abs(cal.intrinsics[2:] - intr[2:]).max() < 2.0
    assert cal.rms_px == pytest.approx(0.2 * math.sqrt(2), rel=0.15)
    assert distortion_error_px((intr, lens), (cal.intrinsics, cal.lens), covered_points(image_grid(SIZE), views)) < 0.5


def test_principal_point_fixed_when_the_views_cannot_tell():
    """A very narrow lens (f = 4000 px on 640 px: 9°) leaves cx, cy uncertain by more than 1 % of the image:
    'auto' fixes them at the centre and says so; 'free' keeps the (noisy) estimate."""
    intr = (4000.0, 4000.0, 320.0, 240.0)
    views = _synthetic_views(intr, LensDistortion.opencv(), 15, 0.15, seed=5)
    auto = calibrate(views)
    free = calibrate(views, principal_point="free")
    assert not free.principal_point_fixed and free.sigmas["cx"] > 0.01 * SIZE[0]
    assert auto.principal_point_fixed and auto.intrinsics[2:].tolist() == [320.0, 240.0]
    assert any("principal point" in w for w in auto.warnings) and math.isnan(auto.sigmas["cx"])
    assert abs(auto.intrinsics[0] - 4000) / 4000 < 0.01


def test_refuses_too_few_views(rendered):
    _, views = rendered["charuco_radial"]
    with pytest.raises(CalibrationError, match="too few views: 5"):
        calibrate(views[:5])


def test_refuses_a_board_too_small_in_frame():
    intr = (600.0, 600.0, 320.0, 240.0)
    views = _synthetic_views(intr, LensDistortion.opencv(), 12, 0.1, seed=3, fill=(0.08, 0.12))
    assert max(v.area_fraction for v in views) < 0.03
    with pytest.raises(CalibrationError, match="board too small in frame"):
        calibrate(views)


def test_refuses_high_rms():
    intr = (600.0, 600.0, 320.0, 240.0)
    views = _synthetic_views(intr, LensDistortion.opencv(), 12, 2.5, seed=4)
    with pytest.raises(CalibrationError, match=r"RMS reprojection error .* above the 1.00 px threshold"):
        calibrate(views)
    assert calibrate(views, criteria=CalibrationCriteria(max_rms_px=5.0, max_focal_sigma_rel=0.2)).rms_px > 1.5


def test_refuses_face_on_views():
    intr = (600.0, 600.0, 320.0, 240.0)
    views = _synthetic_views(intr, LensDistortion.opencv(), 12, 0.1, seed=6, max_tilt_deg=4)
    with pytest.raises(CalibrationError, match="face-on"):
        calibrate(views)


def test_select_views_spreads_and_skips_duplicates():
    intr = (600.0, 600.0, 320.0, 240.0)
    views = _synthetic_views(intr, LensDistortion.opencv(), 12, 0.1, seed=8)
    duplicates = [BoardDetection(v.image_points + 0.3, v.object_points, v.ids, v.image_size, 100 + i)
                  for i, v in enumerate(views)]
    chosen = select_views(views + duplicates, max_views=30)
    picked = [(views + duplicates)[i] for i in chosen]
    assert len(chosen) == len(views)  # one of each pair: near-duplicates add nothing
    centres = np.array([view_geometry(v).centre for v in picked])
    assert np.ptp(centres[:, 0]) > 0.4 and np.ptp(centres[:, 1]) > 0.3
    assert len(select_views(views, max_views=5)) == 5


def test_session_guides_and_solves(rendered):
    board, intr, lens, model = CASES["charuco_radial"]
    images, _ = rendered["charuco_radial"]
    session = CalibrationSession(board, SIZE, model, target_views=12, still_px=None)
    assert "Hold the charuco board" in session.guidance()[0]
    blank = np.full((SIZE[1], SIZE[0], 3), 128, np.uint8)
    assert session.process(blank).message == "no board found"
    fb = session.process(images[0])
    assert fb.accepted and fb.num_views == 1
    grid = session.coverage()
    assert grid.sum() == fb.detection.num_corners and grid.shape == (6, 8)
    tips = " ".join(session.guidance())
    assert "Move the board to the" in tips and "1 of 12 views" in tips
    again = session.process(images[0])
    assert not again.accepted and "similar" in again.message
    for im in images[1:]:
        session.process(im)
    assert len(session.views) >= 12 and session.ready
    assert np.count_nonzero(session.coverage()) > np.count_nonzero(grid)
    assert "ready to solve" in session.guidance()[-1]
    cal = session.solve()
    assert abs(cal.intrinsics[0] - intr[0]) / intr[0] < 0.006


def test_session_waits_for_a_still_board(rendered):
    images, _ = rendered["checker_pinhole"]
    board = CASES["checker_pinhole"][0]
    session = CalibrationSession(board, SIZE)
    first = session.process(images[0])
    assert not first.accepted and "still" in first.message  # no previous frame to compare yet
    second = session.process(images[1])  # the board jumped: moving
    assert not second.accepted and "still" in second.message
    third = session.process(images[1])  # same position again: still
    assert third.accepted


def test_coverage_grid_counts_corners():
    det = BoardDetection(np.array([[1.0, 1.0], [639.0, 479.0], [2.0, 3.0]]), np.zeros((3, 3), np.float32),
                         np.arange(3), SIZE)
    grid = coverage_grid([det], SIZE, (8, 6))
    assert grid[0, 0] == 2 and grid[5, 7] == 1 and grid.sum() == 3


def test_distortion_error_metric():
    intr = (600.0, 600.0, 320.0, 240.0)
    lens = LensDistortion.opencv(-0.2, 0.05)
    pts = image_grid(SIZE)
    assert distortion_error_px((intr, lens), (intr, lens), pts) < 1e-9
    # the same lens with a slightly different focal length (intrinsics are not counted)
    assert distortion_error_px((intr, lens), ((606.0, 606.0, 321.0, 240.0), lens), pts) < 1e-6
    assert distortion_error_px((intr, lens), (intr, LensDistortion.opencv(-0.19, 0.05)), pts) > 1.0


# --- accuracy: corners, views, distortion terms, local minima, honest σ ------------------------------------


def _projector(intr, lens):
    renderer = BoardRenderer.__new__(BoardRenderer)  # only project(); no GL context needed
    renderer.intrinsics, renderer.lens = np.asarray(intr, np.float64), lens
    return renderer


def _views_at(poses, intr, lens, noise_px, seed, board=CHECKER, size=SIZE):
    """Detections of ``board`` at ``poses``: exact projections + noise, corners outside the image dropped."""
    rng = np.random.default_rng(seed)
    projector = _projector(intr, lens)
    obj = board.corner_points()
    views = []
    for i, (r, t) in enumerate(poses):
        uv = projector.project(r, t, obj)
        inside = (uv[:, 0] > 2) & (uv[:, 0] < size[0] - 2) & (uv[:, 1] > 2) & (uv[:, 1] < size[1] - 2)
        uv = uv + rng.normal(0, noise_px, uv.shape)
        views.append(BoardDetection(uv[inside], obj[inside], np.arange(len(obj))[inside], size, i))
    return [v for v in views if v.num_corners >= 6]


def test_charuco_corners_as_accurate_as_the_checkerboard():
    """OpenCV's ChArUco refinement reaches into the markers (0.18 px RMS on these renders); refined on the
    chessboard edges only, ChArUco corners are as good as the checkerboard's (which keeps cornerSubPix)."""
    intr = (700.0, 700.0, 321.0, 242.0)
    rms = {}
    for name, board, refine in (("charuco", CHARUCO, None), ("charuco-opencv", CHARUCO, False),
                                ("checker", CHECKER, None)):
        rng = np.random.default_rng(4)
        poses = random_board_poses(board, intr, SIZE, 6, rng)
        detector = BoardDetector(board, refine=refine)
        errors = []
        with BoardRenderer(board, intr, SIZE) as renderer:
            for r, t in poses:
                det = detector.detect(renderer.render(r, t))
                assert det is not None
                errors.append(det.image_points - renderer.project(r, t, det.object_points))
        e = np.concatenate(errors)
        rms[name] = float(np.sqrt((e ** 2).sum(1).mean()))
    assert rms["charuco"] < 0.1 and rms["checker"] < 0.12, rms
    assert rms["charuco"] < 1.2 * rms["checker"], rms
    assert rms["charuco-opencv"] > 1.6 * rms["charuco"], rms  # what the refinement fixes


def test_guided_views_follow_the_guidance_and_calibrate_a_narrow_lens():
    """The guided session's views (GUIDED_VIEWS, as a user would show them: guided_board_poses) each do
    their step, the session's guidance asks for exactly the steps still missing, and the 15 views
    calibrate a narrow lens (f = 1200 px on 640x480, 30°) to the issue's targets."""
    intr = (1200.0, 1201.0, 324.2, 236.9)
    lens = LensDistortion.opencv(-0.3, 0.2)
    images = render_board_views(CHARUCO, intr, SIZE, 15, lens, seed=3, poses="guided")
    detector = BoardDetector(CHARUCO)
    dets = [detector.detect(im, i) for i, im in enumerate(images)]
    assert all(d is not None for d in dets)
    done = [step.matches(view_geometry(d)) for step, d in zip(GUIDED_VIEWS, dets)]
    assert sum(done) >= 13, [s.key for s, ok in zip(GUIDED_VIEWS, done) if not ok]

    session = CalibrationSession(CHARUCO, SIZE, target_views=15, still_px=None)
    session.add_detection(dets[0])  # face-on, filling the frame: every tilt still missing
    tips = " ".join(session.guidance())
    assert "Tilt the board ~45°" in tips and "left side, right side, top edge, bottom edge" in tips, tips
    assert "top-left, top-right, bottom-left, bottom-right corners" in tips
    session.add_detection(dets[1])  # the board turned ~45°, its left side farther
    tips = " ".join(session.guidance())
    assert "its right side, top edge, bottom edge farther" in tips, tips
    for d in dets[2:]:
        session.add_detection(d)
    missing = {s.key for s in session.missing_steps()}
    assert len(missing) <= 2 and not missing & {"left", "right", "top", "bottom"}
    assert "Tilt the board ~45°" not in " ".join(session.guidance())

    cal = calibrate(dets, board=CHARUCO)
    err = cal.intrinsics - np.array(intr)
    assert abs(err[0]) / intr[0] < 0.005 and np.abs(err[2:]).max() < 2.0, cal.summary()
    assert cal.distortion_terms == ("k1", "k2") and not cal.principal_point_fixed


def test_distortion_terms_chosen_by_significance():
    """k1 k2 unless the views need more: a radial lens gets k1 k2 (tangential and k3 held at 0, which on a
    narrow lens keeps the principal point 2-4x better determined); a decentred lens keeps p1 p2."""
    radial = LensDistortion.opencv(-0.25, 0.08)
    views = _synthetic_views((600.0, 600.0, 322.0, 238.0), radial, 15, 0.1, seed=21)
    cal = calibrate(views)
    assert cal.distortion_terms == ("k1", "k2") and cal.lens.coeffs[2:] == (0.0, 0.0, 0.0)
    assert math.isnan(cal.sigmas["p1"]) and "p1 = 0 (held)" in cal.summary()
    assert cal.lens.coeffs[0] == pytest.approx(-0.25, abs=0.01)

    decentred = LensDistortion.opencv(-0.25, 0.08, 0.002, -0.0015)
    views = _synthetic_views((600.0, 600.0, 322.0, 238.0), decentred, 15, 0.1, seed=22)
    cal = calibrate(views)
    assert {"p1", "p2"} <= set(cal.distortion_terms), cal.summary()
    for i, name in ((2, "p1"), (3, "p2")):
        assert abs(cal.lens.coeffs[i] - decentred.coeffs[i]) < 4 * cal.sigmas[name] + 1e-4

    narrow = _synthetic_views((1600.0, 1600.0, 322.0, 238.0), LensDistortion.opencv(), 15, 0.1, seed=23)
    auto = calibrate(narrow, principal_point="free")
    full = calibrate(narrow, principal_point="free", distortion="full")
    assert auto.distortion_terms == ("k1", "k2")
    assert auto.sigmas_jacobian["cx"] < 0.4 * full.sigmas_jacobian["cx"]
    assert auto.sigmas_jacobian["cy"] < 0.65 * full.sigmas_jacobian["cy"]
    with pytest.raises(ValueError, match="distortion"):
        calibrate(narrow, distortion="k1")
    with pytest.raises(ValueError, match="opencv model only"):
        calibrate(narrow, "fisheye", distortion="radial2")


def test_solver_escapes_flipped_board_poses():
    """Strong barrel distortion through a narrow lens: OpenCV's distortion-free start puts some border views
    on the wrong side of the planar pose ambiguity and its solver stops in a local minimum; the second
    start (grown from the large views) finds the camera."""
    import core.calibration.solve as calibration

    size, f = SIZE, 1600.0
    intr = (f, f, 318.0, 241.0)
    r2 = (size[0] ** 2 + size[1] ** 2) / 4 / f ** 2
    lens = LensDistortion.opencv(-0.15 / r2, 0.03 / r2 ** 2)  # the benchmark's 12 % barrel lens
    poses = guided_board_poses(CHARUCO, intr, size, 15, np.random.default_rng(2), lens)
    views = [v for v in _views_at(poses, intr, lens, 0.08, seed=2, board=CHARUCO) if v.area_fraction >= 0.03]
    plain = calibration._solve_once(views, size, "opencv", "radial2")
    assert math.sqrt(plain.sq_error / plain.counts.sum()) > 0.3  # OpenCV alone: stuck
    cal = calibrate(views, board=CHARUCO)
    assert cal.rms_px < 0.15 and not cal.dropped_views, cal.summary()
    assert abs(cal.intrinsics[0] - f) / f < 0.005 and np.abs(cal.intrinsics[2:] - intr[2:]).max() < 2.0


def test_select_views_prefers_informative_views():
    """From 60 random views of a narrow lens, the 12 the information-based selection picks pin the camera
    down better than 12 merely well-spread ones (farthest-point on position / size / tilt)."""
    import core.calibration.views as calibration

    intr = (1600.0, 1600.0, 322.0, 243.0)
    lens = LensDistortion.opencv(-0.5, 0.0)
    sigma = {"info": [], "spread": []}
    error = {"info": [], "spread": []}
    for seed in range(4):
        pool = _synthetic_views(intr, lens, 60, 0.1, seed=300 + seed, max_tilt_deg=60, fill=(0.3, 0.9))
        usable = [i for i, d in enumerate(pool) if d.area_fraction >= 0.03]
        feats = np.stack([view_geometry(pool[i]).features() for i in usable])
        counts = np.array([pool[i].num_corners for i in usable], np.float64)
        picks = {"info": select_views(pool, 12),
                 "spread": [usable[i] for i in calibration._spread_views(feats, counts, 12, 0.08)]}
        for key, chosen in picks.items():
            assert len(chosen) == 12
            cal = calibrate([pool[i] for i in chosen], principal_point="free")
            sigma[key].append(max(cal.sigmas_jacobian["cx"], cal.sigmas_jacobian["cy"]))
            error[key].append(float(np.abs(cal.intrinsics[2:] - intr[2:]).max()))
    assert np.mean(sigma["info"]) < 0.8 * np.mean(sigma["spread"]), sigma
    assert np.mean(error["info"]) < np.mean(error["spread"]), error


def test_reported_sigma_covers_errors_shared_by_a_view():
    """Corner errors shared within a view (a slightly bent board; a detector bias that follows the board):
    OpenCV's σ assumes independent corners and is 3-5x too small; the reported σ (with the
    leave-one-view-out jackknife) matches the actual scatter."""
    intr = (500.0, 500.0, 318.0, 243.0)
    lens = LensDistortion.opencv(-0.2, 0.05)
    errors, reported, jacobian = [], [], []
    for trial in range(20):
        views = _synthetic_views(intr, lens, 12, 0.05, seed=200 + trial)
        rng = np.random.default_rng(900 + trial)
        bent = []
        for v in views:
            p = (v.object_points[:, :2] - v.object_points[:, :2].mean(0)) / 0.1
            a = rng.normal(0, 0.25, (2, 3))
            field = a[:, 0] * p[:, :1] ** 2 + a[:, 1] * p[:, 1:] ** 2 + a[:, 2] * p[:, :1] * p[:, 1:]
            bent.append(BoardDetection(v.image_points + field, v.object_points, v.ids, v.image_size, v.frame_index))
        cal = calibrate(bent, principal_point="free")
        errors.append(cal.intrinsics - np.array(intr))
        reported.append([cal.sigmas[k] for k in ("fx", "fy", "cx", "cy")])
        jacobian.append([cal.sigmas_jacobian[k] for k in ("fx", "fy", "cx", "cy")])
    scatter = np.sqrt(np.mean(np.square(errors), axis=0))
    ratio_reported = scatter / np.mean(reported, axis=0)
    ratio_jacobian = scatter / np.mean(jacobian, axis=0)
    assert ((0.6 < ratio_reported) & (ratio_reported < 1.6)).all(), ratio_reported
    assert (ratio_jacobian > 2.0).all(), ratio_jacobian  # what the jackknife adds
