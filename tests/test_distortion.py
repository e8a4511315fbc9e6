"""Lens distortion: OpenCV's models in flamecam's pixel convention, image warps, and the tracker
fed undistorted landmarks of a distorted camera."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.camera import intrinsics_from_opencv, opencv_camera_matrix
from core.distortion import (LensDistortion, LensRemap, Undistorter, distort_points, distort_vertices_cam,
                             max_displacement_px, pixel_centres, undistort_points)

INTR = (480.0, 483.0, 327.4, 236.9)
SIZE = (640, 480)
LENSES = {
    "opencv": LensDistortion.opencv(-0.28, 0.09, 0.0012, -0.0008, -0.01),
    "rational": LensDistortion("opencv", (-0.2, 0.05, 0.001, 0.0005, 0.0, 0.05, 0.01, 0.0)),
    "fisheye": LensDistortion.fisheye(0.05, -0.02, 0.008, -0.001),
}


@pytest.mark.parametrize("name", list(LENSES))
def test_undistort_inverts_distort(name):
    lens = LENSES[name]
    pts = np.random.default_rng(0).uniform([0, 0], SIZE, (500, 2))
    ideal = undistort_points(pts, INTR, lens)
    assert np.abs(ideal - pts).max() > 5  # the lens does something
    np.testing.assert_allclose(distort_points(ideal, INTR, lens), pts, atol=1e-6)
    np.testing.assert_allclose(undistort_points(distort_points(pts, INTR, lens), INTR, lens), pts, atol=1e-6)


@pytest.mark.parametrize("name", list(LENSES))
def test_matches_opencv_projection_with_the_half_pixel_shift(name):
    """distort_points of flamecam pinhole pixels == OpenCV's own projection with K from
    opencv_camera_matrix, plus 0.5 (OpenCV puts pixel centres on integers)."""
    import cv2

    lens = LENSES[name]
    rng = np.random.default_rng(1)
    cam = np.stack([rng.uniform(-0.4, 0.4, 200), rng.uniform(-0.3, 0.3, 200), rng.uniform(0.8, 1.5, 200)], -1)
    fx, fy, cx, cy = INTR
    pinhole = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)
    k_cv = opencv_camera_matrix(INTR)
    if lens.model == "fisheye":
        ref, _ = cv2.fisheye.projectPoints(cam.reshape(1, -1, 3), np.zeros(3), np.zeros(3), k_cv, lens.as_array())
    else:
        ref, _ = cv2.projectPoints(cam, np.zeros(3), np.zeros(3), k_cv, lens.as_array())
    np.testing.assert_allclose(distort_points(pinhole, INTR, lens), ref.reshape(-1, 2) + 0.5, atol=1e-9)
    np.testing.assert_allclose(intrinsics_from_opencv(k_cv), INTR)


def test_identity_nan_rows_and_undistorter_hook():
    pts = np.array([[10.0, 20.0], [np.nan, np.nan], [300.5, 200.25]], np.float32)
    np.testing.assert_array_equal(undistort_points(pts, INTR, LensDistortion()), pts.astype(np.float64))
    hook = Undistorter(INTR, LENSES["opencv"])
    out = hook(pts)
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    np.testing.assert_allclose(out[[0, 2]], undistort_points(pts[[0, 2]], INTR, LENSES["opencv"]), atol=1e-4)
    assert LensDistortion.opencv().is_identity and not LensDistortion.fisheye().is_identity


@pytest.mark.parametrize("model, coeffs", [("opencv", (0.1, 0.2, 0.3)), ("fisheye", (0.1,)), ("nope", ()),
                                           ("opencv", (float("nan"), 0, 0, 0))])
def test_bad_lens_is_refused(model, coeffs):
    with pytest.raises(ValueError):
        LensDistortion(model, coeffs)


def _blob(size, centre, sigma=1.5):
    w, h = size
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)  # flamecam pixel centres
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def _centroid(img):
    h, w = img.shape
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    return np.array([(img * xs).sum(), (img * ys).sum()]) / img.sum()


@pytest.mark.parametrize("name", ["opencv", "fisheye"])
def test_distort_image_puts_content_where_the_points_go(name):
    """A blob drawn on the ideal canvas lands, after the warp, where distort_points says (sub-0.05 px):
    checks the canvas offset and both half-pixel conversions of the remap."""
    lens = LENSES[name]
    remap = LensRemap(INTR, lens, SIZE)
    canvas = remap.canvas
    assert canvas.size[0] > SIZE[0] and canvas.size[1] > SIZE[1]  # barrel: the frame sees more than the pinhole
    for target in ([40.0, 35.0], [320.3, 240.7], [600.2, 450.1], [100.7, 400.2]):
        ideal = undistort_points(np.array([target]), INTR, lens)[0]
        on_canvas = ideal - np.array(canvas.offset_px)
        warped = remap.distort_image(_blob(canvas.size, on_canvas))
        assert np.abs(_centroid(warped) - target).max() < 0.05, (target, _centroid(warped))


def test_undistort_image_inverts_distort_image():
    lens = LENSES["opencv"]
    remap = LensRemap(INTR, lens, SIZE)
    canvas = remap.canvas
    rng = np.random.default_rng(2)
    import cv2

    smooth = cv2.GaussianBlur(rng.uniform(0, 1, (canvas.size[1], canvas.size[0])).astype(np.float32), (0, 0), 4)
    frame = remap.distort_image(smooth)
    back = remap.undistort_image(frame)  # the ideal view with the camera's own intrinsics
    ox, oy = (int(v) for v in canvas.offset_px)
    expected = smooth[-oy:-oy + SIZE[1], -ox:-ox + SIZE[0]]
    inner = (slice(60, 420), slice(80, 560))  # away from the border the frame does not cover
    assert np.abs(back[inner] - expected[inner]).max() < 0.01
    assert np.abs(frame[inner] - expected[inner]).max() > 0.05  # (the warp is not the identity)


def test_distorted_vertices_project_to_distorted_points():
    lens = LENSES["opencv"]
    rng = np.random.default_rng(3)
    cam = np.stack([rng.uniform(-0.3, 0.3, 50), rng.uniform(-0.2, 0.2, 50), rng.uniform(0.6, 1.0, 50)], -1)
    fx, fy, cx, cy = INTR

    def project(v):
        return np.stack([fx * v[:, 0] / v[:, 2] + cx, fy * v[:, 1] / v[:, 2] + cy], -1)

    moved = distort_vertices_cam(cam, INTR, lens)
    np.testing.assert_allclose(moved[:, 2], cam[:, 2])
    np.testing.assert_allclose(project(moved), distort_points(project(cam), INTR, lens), atol=1e-9)


def test_distort_render_result_keeps_depth_and_coverage_consistent():
    from core.render import RenderResult, distort_render_result

    lens = LENSES["opencv"]
    remap = LensRemap(INTR, lens, SIZE)
    cw, ch = remap.canvas.size
    cov = np.zeros((ch, cw), np.float32)
    cov[200:400, 250:450] = 1
    res = RenderResult(rgb=np.zeros((ch, cw, 3), np.uint8), alpha=cov.copy(), coverage=cov,
                       depth_m=np.where(cov > 0, 0.7, np.inf).astype(np.float32))
    out = distort_render_result(res, remap)
    assert out.rgb.shape == (SIZE[1], SIZE[0], 3) and out.depth_m.shape == (SIZE[1], SIZE[0])
    assert set(np.unique(out.depth_m[np.isfinite(out.depth_m)])) == {np.float32(0.7)}  # nearest: no invented depth
    assert ((out.coverage > 0.5) == np.isfinite(out.depth_m)).mean() > 0.99


def test_max_displacement():
    assert max_displacement_px(INTR, LensDistortion(), SIZE) == 0.0
    assert 20 < max_displacement_px(INTR, LENSES["opencv"], SIZE) < 200
    assert pixel_centres(3, 2)[0].tolist() == [0.5, 0.5]


# --- end to end: the tracker on a distorted camera ---------------------------------------------------


def _face_errors(head, results, truths):
    from core import camera
    from core.head_model import HeadModelLayer
    from core.metrics import aligned_vertex_error_mm, vertex_error_mm

    face = head.regions.get("face", np.arange(head.num_vertices))
    layer = HeadModelLayer(head, face)

    def meshes(items):
        t = lambda name: torch.as_tensor(np.stack([np.asarray(getattr(r, name), np.float32) for r in items]))  # noqa: E731
        with torch.no_grad():
            v = layer(t("shape"), t("expr"), t("rotation"), t("neck_pose"), t("jaw_pose"), t("eyes_pose"))
            return camera.model_to_camera(v, t("translation")).numpy()

    pred, gt = meshes(results), meshes(truths)
    return float(vertex_error_mm(pred, gt).mean()), float(aligned_vertex_error_mm(pred, gt).mean())


def test_tracker_on_undistorted_landmarks_matches_the_pinhole_camera(ict_model):
    """Exact landmarks of a strongly distorted 450 px camera, undistorted by the calibration before
    fitting, give the same fit and vertex errors as the same camera without distortion (same noise);
    feeding the distorted landmarks unchanged does clearly worse."""
    from core.synthetic import SyntheticOptions
    from core.tracker import Tracker, TrackerOptions
    from tests.test_tracker import ExactLandmarks

    opts = SyntheticOptions(width=640, height=480, focal=450, frames=32)
    lens = LensDistortion.opencv(-0.32, 0.11, 0.0008, -0.0006, -0.015)
    intr = opts.intrinsics()
    assert max_displacement_px(intr, lens, SIZE) > 40
    hook = Undistorter(intr, lens)
    runs = {}
    for mode in ("pinhole", "undistorted", "ignored"):
        src = ExactLandmarks(ict_model, opts, noise_px=0.0)
        noise = np.random.default_rng(7)
        # These "landmarks" are random vertices over the whole head, a set ~1.4x the size of MediaPipe's
        # face landmarks: the landmark noise model (a fraction of that size) is scaled to match a face.
        tracker = Tracker(ict_model, src.emb, (640, 480), TrackerOptions(
            focal_px=450.0, smoothing=False, landmark_sigma_rel=TrackerOptions.landmark_sigma_rel / 1.4))
        results, truths = [], []
        for i in range(32):
            uv, gt = src.frame(i)
            if mode != "pinhole":
                uv = distort_points(uv, intr, lens)  # what the lens shows
            uv = uv + noise.normal(0, 0.5, uv.shape)  # detector noise, on the image
            if mode == "undistorted":
                uv = hook(uv)
            results.append(tracker.step(uv, i / 30, i))
            truths.append(gt)
        fit = float(np.mean([r.fit_error_px for r in results[8:]]))
        runs[mode] = (fit, *_face_errors(ict_model, results[8:], truths[8:]))
    (fit_p, cam_p, al_p), (fit_u, cam_u, al_u), (fit_i, _cam_i, al_i) = runs["pinhole"], runs["undistorted"], runs["ignored"]
    assert abs(fit_u - fit_p) < 0.15 * fit_p + 0.05, runs
    assert abs(cam_u - cam_p) < 0.15 * cam_p + 0.2, runs
    assert abs(al_u - al_p) < 0.15 * al_p + 0.1, runs
    assert fit_i > 1.3 * fit_p and al_i > al_p + 0.4, runs  # the test can tell distortion from none


@pytest.mark.slow
def test_real_landmarker_on_distorted_frames(ict_path, ict_model):
    """Rendered frames through a strongly distorted lens, the real landmarker, the pipeline's undistort
    hook and the calibrated intrinsics: fit and vertex errors stay close to the same sequence through an
    ideal pinhole (the remaining difference is MediaPipe on a resampled, reshaped face; the benchmark
    measures it over more frames and seeds)."""
    from dataclasses import replace

    from core.embedding import embedding_for
    from core.landmarks import LandmarkerOptions
    from core.pipeline import TrackingPipeline
    from core.synthetic import SyntheticOptions, SyntheticSource
    from core.tracker import Tracker, TrackerOptions

    base = SyntheticOptions(model=str(ict_path), width=640, height=480, focal=450, frames=24, still=0.2, seed=1)
    emb = embedding_for(ict_model)
    runs = {}
    for name, opts in (("pinhole", base), ("undistorted", replace(base, k1=-0.3, k2=0.1))):
        source = SyntheticSource(opts)
        hook = Undistorter(opts.intrinsics(), source.lens) if not source.lens.is_identity else None
        tracker = Tracker(source.head, emb, (640, 480), TrackerOptions(focal_px=450.0))
        pipe = TrackingPipeline(source, tracker, LandmarkerOptions(running_mode="video", max_faces=1), undistort=hook)
        results = list(pipe.run())
        source.close()
        assert all(r.track.tracking_state in ("tracking", "reacquired") for r in results[1:])
        if hook is not None:  # the hook ran: the tracker saw undistorted points, not the raw detections
            moved = np.linalg.norm(results[5].track.landmarks_px - results[5].landmarks.face.landmarks_px, axis=1)
            assert moved.max() > 2.0
        tail = results[8:]
        fit = float(np.mean([r.track.fit_error_px for r in tail]))
        runs[name] = (fit, *_face_errors(ict_model, [r.track for r in tail], [r.frame.truth for r in tail]))
    (fit_p, cam_p, al_p), (fit_u, cam_u, al_u) = runs["pinhole"], runs["undistorted"]
    assert abs(fit_u - fit_p) < 0.3 * fit_p, runs
    assert abs(cam_u - cam_p) < 0.3 * cam_p, runs
    assert abs(al_u - al_p) < 0.3 * al_p, runs
