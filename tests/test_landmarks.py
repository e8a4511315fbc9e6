"""The real MediaPipe Face Landmarker on renders of the built-in head (exact ground truth)."""
from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np
import pytest
import torch

from core import camera
from core.landmarks import (MEDIAPIPE_BLENDSHAPE_NAMES, NUM_LANDMARKS, NUM_SURFACE_LANDMARKS, FaceLandmarker,
                            LandmarkerOptions, arkit_name, select_faces)
from core.synthetic import SyntheticOptions, SyntheticSource

pytestmark = pytest.mark.slow
JAW_OPEN = MEDIAPIPE_BLENDSHAPE_NAMES.index("jawOpen")


@dataclasses.dataclass
class Scene:
    source: SyntheticSource
    neutral: object  # GroundTruth: still head, no expression
    neutral_rgb: np.ndarray
    jaw_rgb: np.ndarray

    def projected(self, truth, count: int) -> np.ndarray:
        verts = torch.as_tensor(self.source.vertices_cam(truth)[:count])
        return camera.project_perspective(verts[None], torch.as_tensor(truth.intrinsics))[0].numpy()


@pytest.fixture(scope="module")
def scene():
    # 0.4 m: the whole face, chin included, inside the frame (the default 0.32 m crops the chin at 640x480)
    source = SyntheticSource(SyntheticOptions(width=640, height=480, focal=600.0, distance=0.4))
    neutral = source.trajectory.at(0)  # inside the still segment: zero pose and expression
    assert neutral.still and not neutral.expr.any()
    expr = np.zeros_like(neutral.expr)
    expr[source.head.expression_names.index("jawOpen")] = 0.8
    jaw = dataclasses.replace(neutral, expr=expr)
    yield Scene(source, neutral, source.render(neutral), source.render(jaw))
    source.close()


@pytest.fixture(scope="module")
def image_landmarker():
    with FaceLandmarker(LandmarkerOptions(running_mode="image")) as lm:
        yield lm


@pytest.fixture(scope="module")
def two_faces(scene):
    """A wide image: a large head on the left, a smaller one exactly at the image centre."""
    source = SyntheticSource(SyntheticOptions(width=320, height=320, focal=600.0, distance=0.45))
    try:
        head = source.render(source.trajectory.at(0))
    finally:
        source.close()
    small = cv2.resize(head, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    canvas = np.full((320, 960, 3), 107, np.uint8)
    canvas[:, :320] = head
    h, w = small.shape[:2]
    y0, x0 = (320 - h) // 2, (960 - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = small
    return canvas


def _box_centre(face) -> np.ndarray:
    return face.box_px[:2] + face.box_px[2:] / 2


def test_face_found_with_478_landmarks_inside_the_image(scene, image_landmarker):
    result = image_landmarker.detect(scene.neutral_rgb)
    assert result.num_faces == 1 and result.face is not None and result.others == ()
    assert result.image_size == (640, 480)
    face = result.face
    assert face.landmarks_px.shape == (NUM_LANDMARKS, 2) and face.landmarks_px.dtype == np.float32
    assert np.all(face.landmarks_px >= 0) and np.all(face.landmarks_px[:, 0] < 640)
    assert np.all(face.landmarks_px[:, 1] < 480)
    assert face.presence.shape == (NUM_LANDMARKS,) and np.all((face.presence >= 0) & (face.presence <= 1))
    assert face.depth_px.shape == (NUM_LANDMARKS,) and np.isfinite(face.depth_px).all()
    assert face.blendshapes.shape == (52,) and np.all((face.blendshapes >= 0) & (face.blendshapes <= 1))
    lo, hi = face.landmarks_px.min(0), face.landmarks_px.max(0)
    np.testing.assert_allclose(face.box_px, [*lo, *(hi - lo)], atol=1e-3)


def test_landmarks_match_the_projected_ground_truth(scene, image_landmarker):
    face = image_landmarker.detect(scene.neutral_rgb).face
    truth = scene.projected(scene.neutral, NUM_SURFACE_LANDMARKS)  # built-in model: landmark i = vertex i
    error = np.linalg.norm(face.landmarks_px[:NUM_SURFACE_LANDMARKS] - truth, axis=1)
    assert error.mean() < 8.0, f"mean landmark error {error.mean():.2f} px"
    assert np.median(error) < 6.0
    # and not merely near the face: a 10 px shift of the truth would be clearly worse
    shifted = np.linalg.norm(face.landmarks_px[:NUM_SURFACE_LANDMARKS] - (truth + [10.0, 0.0]), axis=1)
    assert shifted.mean() > error.mean() + 3.0


def test_jaw_open_scores_higher_on_an_open_jaw(scene, image_landmarker):
    neutral = image_landmarker.detect(scene.neutral_rgb).face.blendshapes
    jaw = image_landmarker.detect(scene.jaw_rgb).face.blendshapes
    assert jaw[JAW_OPEN] > neutral[JAW_OPEN] + 0.2, (neutral[JAW_OPEN], jaw[JAW_OPEN])


def test_blank_image_has_no_face(image_landmarker):
    result = image_landmarker.detect(np.full((480, 640, 3), 128, np.uint8))
    assert result.face is None and result.num_faces == 0 and result.others == ()


def test_bad_image_is_refused(image_landmarker):
    with pytest.raises(ValueError, match="RGB uint8"):
        image_landmarker.detect(np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        image_landmarker.detect(np.zeros((48, 64, 3), np.float32))


def test_two_faces_largest_is_selected(two_faces, image_landmarker):
    result = image_landmarker.detect(two_faces)
    assert result.num_faces == 2 and len(result.others) == 1
    big, other = result.face, result.others[0]
    assert _box_centre(big)[0] < 320 and abs(_box_centre(other)[0] - 480) < 60
    assert big.box_px[2] * big.box_px[3] > 1.5 * other.box_px[2] * other.box_px[3]


def test_two_faces_centre_rule_picks_the_central_one(two_faces):
    with FaceLandmarker(LandmarkerOptions(running_mode="image", select="centre")) as lm:
        result = lm.detect(two_faces)
    assert result.num_faces == 2
    assert abs(_box_centre(result.face)[0] - 480) < 60 and _box_centre(result.others[0])[0] < 320


def test_select_faces_rules():
    from core.landmarks import FaceObservation

    def face(x, y, w, h):
        z = np.zeros(NUM_LANDMARKS, np.float32)
        return FaceObservation(np.zeros((NUM_LANDMARKS, 2), np.float32), z, z, np.zeros(52, np.float32),
                               np.array([x, y, w, h], np.float32))

    faces = [face(0, 0, 50, 50), face(280, 200, 80, 80), face(500, 10, 120, 120)]
    assert select_faces(faces, (640, 480), "largest") == [2, 1, 0]
    assert select_faces(faces, (640, 480), "centre") == [1, 2, 0]  # box centres 0, 294 and 365 px away
    with pytest.raises(ValueError, match="largest"):
        select_faces(faces, (640, 480), "leftmost")


def test_video_mode_forces_increasing_timestamps(scene):
    with FaceLandmarker(LandmarkerOptions(running_mode="video")) as lm:
        stamps = [lm.detect(scene.neutral_rgb, ts).timestamp_ms for ts in (100, 100, 50, 200, None)]
        results = [lm.detect(scene.jaw_rgb, 200)]
    assert stamps == [100, 101, 102, 200, 201]
    assert results[0].timestamp_ms == 202 and results[0].face is not None
    with pytest.raises(RuntimeError, match="detect_async"):
        with FaceLandmarker(LandmarkerOptions(running_mode="live_stream")) as lm:
            lm.detect(scene.neutral_rgb, 0)


def test_live_stream_delivers_results(scene):
    with FaceLandmarker(LandmarkerOptions(running_mode="live_stream")) as lm:
        assert lm.latest() is None
        for i in range(4):
            lm.detect_async(scene.neutral_rgb, i * 33)
        deadline, result = time.monotonic() + 20.0, None
        while time.monotonic() < deadline:
            result = lm.latest()
            if result is not None and result.timestamp_ms == 99:
                break
            time.sleep(0.02)
    assert result is not None and result.face is not None and result.num_faces == 1
    assert result.image_size == (640, 480) and result.timestamp_ms in (0, 33, 66, 99)
    assert result.face.landmarks_px.shape == (NUM_LANDMARKS, 2)


def test_arkit_name():
    assert arkit_name("mouthSmileLeft") == "mouthSmile_L"
    assert arkit_name("eyeBlinkRight") == "eyeBlink_R"
    assert arkit_name("mouthSmile_L") == "mouthSmile_L"  # already in ARKit spelling
    assert arkit_name("jawOpen") == "jawOpen"
    for whole in ("jawLeft", "jawRight", "mouthLeft", "mouthRight"):
        assert arkit_name(whole) == whole  # a direction, not a side


def test_mediapipe_names_map_onto_the_builtin_expressions(scene):
    mapped = [arkit_name(n) for n in MEDIAPIPE_BLENDSHAPE_NAMES[1:]]  # all but "_neutral"
    assert len(set(mapped)) == 51
    assert sorted(mapped) == sorted(scene.source.head.expression_names)


def _same_result(a, b) -> bool:
    if (a.timestamp_ms, a.image_size, a.num_faces) != (b.timestamp_ms, b.image_size, b.num_faces):
        return False
    same = lambda x, y: np.array_equal(x, y) and x.dtype == y.dtype  # noqa: E731
    return all(all(same(getattr(fa, name), getattr(fb, name))
                   for name in ("landmarks_px", "depth_px", "presence", "blendshapes", "box_px"))
               for fa, fb in zip((a.face, *a.others), (b.face, *b.others)) if fa is not None or fb is not None)


@pytest.mark.parametrize("mode", ["image", "video"])
def test_direct_c_calls_give_the_wrappers_numbers(scene, two_faces, mode):
    """Image and video mode call MediaPipe's C entry points directly (DirectCalls) on this MediaPipe
    build; their results are MediaPipe's Python wrapper's, value for value."""
    images = [scene.neutral_rgb, scene.jaw_rgb, two_faces, np.zeros((120, 160, 3), np.uint8), scene.neutral_rgb]
    results = {}
    for path in ("direct", "wrapper"):
        with FaceLandmarker(LandmarkerOptions(running_mode=mode)) as lm:
            assert lm._direct is not None  # the pinned MediaPipe has the C API it uses
            if path == "wrapper":
                lm._direct = None
            results[path] = [lm.detect(rgb, 40 * i) for i, rgb in enumerate(images)]
    assert [r.num_faces for r in results["direct"]] == [1, 1, 2, 0, 1]
    assert results["direct"][1].face.blendshapes[JAW_OPEN] > 0.3
    for direct, wrapper in zip(results["direct"], results["wrapper"]):
        assert _same_result(direct, wrapper)


def test_a_direct_call_reports_mediapipes_error_and_a_closed_landmarker(scene):
    with FaceLandmarker(LandmarkerOptions(running_mode="video")) as lm:
        image = lm._image(scene.neutral_rgb)
        lm._direct.detect(image, 500)
        with pytest.raises((ValueError, RuntimeError), match="(?i)timestamp"):
            lm._direct.detect(image, 400)  # MediaPipe's own status, raised as its wrapper raises it
        assert lm.detect(scene.neutral_rgb, 600).face is not None  # and the landmarker still works
    with pytest.raises(RuntimeError, match="closed"):
        lm.detect(scene.neutral_rgb, 700)
