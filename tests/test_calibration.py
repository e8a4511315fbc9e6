"""Camera calibration on boards rendered by the project's renderer with a known camera and lens:
recover fx, fy, cx, cy and the distortion tightly; refuse poor calibrations with the reason."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.calibration import (BoardDetection, BoardDetector, BoardRenderer, BoardSpec, CalibrationCriteria,
                              CalibrationError, CalibrationSession, board_mesh, calibrate, coverage_grid,
                              covered_points, distortion_error_px, image_grid, random_board_poses,
                              render_board_views, select_views, view_geometry)
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
    """A narrow lens (f = 2400 px on 640 px: 15°) leaves cx, cy uncertain by more than 1 % of the image:
    'auto' fixes them at the centre and says so; 'free' keeps the (noisy) estimate."""
    intr = (2400.0, 2400.0, 320.0, 240.0)
    views = _synthetic_views(intr, LensDistortion.opencv(), 15, 0.15, seed=5)
    auto = calibrate(views)
    free = calibrate(views, principal_point="free")
    assert not free.principal_point_fixed and free.sigmas["cx"] > 0.01 * SIZE[0]
    assert auto.principal_point_fixed and auto.intrinsics[2:].tolist() == [320.0, 240.0]
    assert any("principal point" in w for w in auto.warnings) and math.isnan(auto.sigmas["cx"])
    assert abs(auto.intrinsics[0] - 2400) / 2400 < 0.01


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
