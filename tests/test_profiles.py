"""Camera profiles (JSON store, scaling, import/export) and the one place that picks intrinsics."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.camera import opencv_camera_matrix
from core.distortion import LensDistortion, undistort_points
from core.profiles import (PROFILE_FORMAT, CameraProfile, ProfileError, export_npz, export_opencv_yaml,
                           find_profile, import_npz, import_opencv_yaml, list_profiles, load_profile_spec,
                           profile_path, save_profile)

LENS = LensDistortion.opencv(-0.21, 0.06, 0.0007, -0.0004, -0.01)


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Profiles go to a private config folder."""
    folder = tmp_path / "config"
    monkeypatch.setenv("FLAMECAM_CONFIG", str(folder))
    return folder


def make_profile(name="Test Cam", size=(1280, 720), intr=(910.0, 912.0, 641.3, 358.2), lens=LENS, **kw):
    return CameraProfile(name=name, image_size=size, intrinsics=intr, lens=lens,
                         uncertainty={"fx": 0.8, "fy": 0.8, "cx": 1.1, "cy": 0.9, "k1": 0.002}, rms_px=0.18,
                         num_views=15, board="charuco:9x6,square=0.03,marker=0.022,dict=DICT_5X5_100", **kw)


def test_json_round_trip_and_format(tmp_path):
    p = make_profile()
    path = p.save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    assert data["format"] == PROFILE_FORMAT and data["version"] == 1
    assert data["intrinsics"] == {"fx": 910.0, "fy": 912.0, "cx": 641.3, "cy": 358.2}
    assert data["distortion"]["model"] == "opencv" and data["distortion"]["names"] == ["k1", "k2", "p1", "p2", "k3"]
    assert "[i, i+1)" in data["pixel_convention"]
    back = CameraProfile.load(path)
    assert back == p and back.path == str(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(version=2), "newer"),
    (lambda d: d.pop("format"), "not a flamecam camera profile"),
    (lambda d: d["intrinsics"].pop("fx"), "malformed"),
    (lambda d: d.update(distortion={"model": "opencv", "coefficients": [1, 2, 3]}), "malformed"),
])
def test_bad_profiles_are_refused(tmp_path, mutate, message):
    data = make_profile().to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=message):
        CameraProfile.load(path)


def test_scaling_to_another_resolution_is_exact():
    """In flamecam's pixel convention a resize scales every intrinsic: the scaled profile undistorts the
    resized image's points exactly where the original put the original ones (scaled)."""
    p = make_profile()
    half = p.scaled_to((640, 360))
    assert half.intrinsics == pytest.approx(tuple(v / 2 for v in p.intrinsics))
    assert half.scaled_from == (1280, 720) and half.uncertainty["fx"] == pytest.approx(0.4)
    pts = np.random.default_rng(0).uniform([0, 0], [1280, 720], (100, 2))
    np.testing.assert_allclose(undistort_points(pts / 2, half.intrinsics, half.lens),
                               undistort_points(pts, p.intrinsics, p.lens) / 2, atol=1e-7)
    with pytest.raises(ProfileError, match="different aspect ratio"):
        p.scaled_to((640, 480))


def test_store_lookup_by_name_and_resolution(config_dir):
    save_profile(make_profile())
    save_profile(make_profile(name="Other", size=(640, 480), intr=(500, 500, 320, 240), lens=LensDistortion()))
    assert profile_path("Test Cam", (1280, 720)).is_file()
    (config_dir / "cameras" / "broken.json").write_text("{not json")
    assert sorted(p.name for p in list_profiles()) == ["Other", "Test Cam"]  # the broken file is skipped
    exact = find_profile("Test Cam", (1280, 720))
    assert exact.profile is not None and exact.profile.scaled_from is None
    scaled = find_profile("Test Cam", (1920, 1080))
    assert scaled.profile.intrinsics[0] == pytest.approx(910 * 1.5) and scaled.profile.scaled_from == (1280, 720)
    refused = find_profile("Test Cam", (640, 480))
    assert refused.profile is None and "aspect ratio" in refused.message
    assert find_profile("Nobody", (640, 480)).profile is None
    assert load_profile_spec("Test Cam", (640, 360)).intrinsics[0] == pytest.approx(455)
    with pytest.raises(ProfileError, match="no camera profile named 'Nope'.*known: Other"):
        load_profile_spec("Nope", (640, 480))
    with pytest.raises(ProfileError, match="aspect"):
        load_profile_spec("Test Cam", (640, 480))
    with pytest.raises(ProfileError, match="not found"):
        load_profile_spec("missing/profile.json")


@pytest.mark.parametrize("lens", [LENS, LensDistortion.fisheye(0.04, -0.01, 0.002, 0.0)])
def test_opencv_yaml_round_trip_uses_opencv_pixels(tmp_path, lens):
    import cv2

    p = make_profile(lens=lens)
    path = export_opencv_yaml(p, tmp_path / "cam.yaml")
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    k = fs.getNode("camera_matrix").mat()
    fisheye_flag = int(fs.getNode("fisheye_model").real())
    fs.release()
    assert k[0, 2] == pytest.approx(641.3 - 0.5) and k[1, 2] == pytest.approx(358.2 - 0.5)
    assert fisheye_flag == (lens.model == "fisheye")
    back = import_opencv_yaml(path)
    assert back.image_size == (1280, 720) and back.name == "Test Cam"
    np.testing.assert_allclose(back.intrinsics, p.intrinsics, atol=1e-9)
    assert back.lens.model == lens.model
    np.testing.assert_allclose(back.lens.coeffs, lens.coeffs)
    assert back.rms_px == pytest.approx(0.18)


def test_ros_camera_info_yaml(tmp_path):
    path = tmp_path / "ros.yaml"
    path.write_text("image_width: 640\nimage_height: 480\ncamera_name: hmc_left\n"
                    "camera_matrix:\n  rows: 3\n  cols: 3\n  data: [600.5, 0, 319.5, 0, 601.0, 239.5, 0, 0, 1]\n"
                    "distortion_model: equidistant\n"
                    "distortion_coefficients:\n  rows: 1\n  cols: 4\n  data: [0.05, -0.01, 0.002, 0.0]\n")
    p = import_opencv_yaml(path)
    assert p.name == "hmc_left" and p.image_size == (640, 480)
    assert p.intrinsics == pytest.approx((600.5, 601.0, 320.0, 240.0))
    assert p.lens.model == "fisheye" and p.lens.coeffs == pytest.approx((0.05, -0.01, 0.002, 0.0))


def test_npz_round_trip_and_plain_k_dist(tmp_path):
    p = make_profile()
    back = import_npz(export_npz(p, tmp_path / "cam.npz"))
    np.testing.assert_allclose(back.intrinsics, p.intrinsics)
    assert back.image_size == p.image_size and back.lens == p.lens
    plain = tmp_path / "plain.npz"
    np.savez(plain, K=opencv_camera_matrix((500, 500, 320, 240)), dist=np.array([[-0.1, 0.01, 0, 0, 0]]))
    with pytest.raises(ProfileError, match="image size"):
        import_npz(plain)
    q = load_profile_spec(str(plain), (640, 480))
    assert q.intrinsics == pytest.approx((500, 500, 320, 240)) and q.lens.coeffs[0] == pytest.approx(-0.1)
    assert import_npz(plain, image_size=(640, 480), lens_model="fisheye").lens.model == "fisheye"
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, A=np.eye(2))
    with pytest.raises(ProfileError, match="no 3x3 camera matrix"):
        import_npz(wrong, image_size=(640, 480))


# --- focal-length modes, one place ----------------------------------------------------------------------


class _Src:
    """A stand-in frame source: only what resolve_intrinsics reads."""

    def __init__(self, size=(640, 480)):
        self.size = size
        self.name = "stand-in"


def test_resolve_intrinsics_precedence(config_dir, tmp_path):
    from core.intrinsics import resolve_intrinsics
    from core.session import SessionOptions
    from tests.test_metadata import write_jpeg

    save_profile(make_profile(name="Canon EOS R5", size=(800, 600), intr=(700, 701, 401, 299)))
    logs = []
    # fixed beats everything; contradictory choices are refused
    plan = resolve_intrinsics(SessionOptions(focal="900"), _Src(), log=logs.append)
    assert plan.mode == "fixed" and plan.focal_px == 900 and plan.undistorter() is None
    with pytest.raises(ValueError, match="not both"):
        resolve_intrinsics(SessionOptions(fov_deg=60, camera_profile="Canon EOS R5"), _Src())
    # an explicit profile (scaled to this resolution), with lens distortion
    plan = resolve_intrinsics(SessionOptions(camera_profile="Canon EOS R5"), _Src((400, 300)), log=logs.append)
    assert plan.mode == "profile" and plan.focal_px == pytest.approx(350)
    assert plan.tracker_fields() == {"focal_px": pytest.approx(350), "focal_prior": None,
                                     "principal_px": pytest.approx((200.5, 149.5)), "pixel_aspect": pytest.approx(701 / 700)}
    assert plan.undistorter() is not None and plan.lens_remap() is not None
    with pytest.raises(ValueError, match="no camera profile named"):
        resolve_intrinsics(SessionOptions(camera_profile="nope"), _Src())
    # photos of the profiled camera pick its profile automatically (by EXIF make/model) ...
    from core.sources import ImageFolderSource

    folder = tmp_path / "photos"
    folder.mkdir()
    write_jpeg(folder / "1.jpg", size=(800, 600), make="Canon", model="EOS R5", f35=35, exif_size=(800, 600))
    src = ImageFolderSource(folder)
    plan = resolve_intrinsics(SessionOptions(), src, log=logs.append)
    assert plan.mode == "profile" and plan.profile.name == "Canon EOS R5"
    # ... unless told not to: then the metadata gives a prior (not a fixed value), fused with the
    # device class's broad range: the metadata carries almost all of it
    plan = resolve_intrinsics(SessionOptions(auto_profile=False), src, log=logs.append)
    assert plan.mode == "metadata" and plan.focal_px is None
    exif = 35 * 1000 / 43.2666
    (meta_piece,) = [p for p in plan.evidence if p.source == "metadata"]
    assert meta_piece.focal_px == pytest.approx(exif, rel=1e-3) and meta_piece.sigma_rel == pytest.approx(0.08)
    assert "EXIF (Canon EOS R5, 35 mm eq.)" == meta_piece.detail
    assert plan.focal_prior.focal_px == pytest.approx(exif, rel=0.02) and plan.focal_prior.sigma_rel < 0.08
    assert dict(plan.focal_prior.shares)[meta_piece.detail] > 0.95
    assert any("focal-length prior" in line and "EXIF (Canon EOS R5" in line for line in logs), logs
    plan = resolve_intrinsics(SessionOptions(auto_profile=False, use_metadata=False), src)
    assert plan.mode == "auto" and [p.source for p in plan.evidence] == ["device_class"]
    assert plan.focal_prior.sigma_rel > 0.5  # any camera: 20-120° at ±2σ


def test_auto_profile_refused_on_aspect_change(config_dir, tmp_path):
    from core.intrinsics import resolve_intrinsics
    from core.session import SessionOptions
    from core.sources import ImageFolderSource
    from tests.test_metadata import write_jpeg

    save_profile(make_profile(name="Canon EOS R5", size=(800, 600), intr=(700, 701, 401, 299)))
    folder = tmp_path / "wide"
    folder.mkdir()
    write_jpeg(folder / "1.jpg", size=(800, 450), make="Canon", model="EOS R5")
    plan = resolve_intrinsics(SessionOptions(), ImageFolderSource(folder), log=lambda *_: None)
    assert plan.mode == "auto" and any("aspect ratio" in n for n in plan.notes)


def test_recording_states_mode_and_uncertainty(config_dir):
    from core.recording import RecordingMeta
    from core.intrinsics import resolve_intrinsics
    from core.session import SessionOptions

    save_profile(make_profile())
    plan = resolve_intrinsics(SessionOptions(camera_profile="Test Cam"), _Src((1280, 720)), log=lambda *_: None)
    fields = plan.recording_fields()
    meta = RecordingMeta(model_kind="builtin", model_name="x", model_path="builtin", model_sha256="", num_shape=1,
                         num_expr=1, image_width=1280, image_height=720, **fields)
    data = json.loads(json.dumps(meta.to_dict(), allow_nan=False))
    assert data["focal_mode"] == "profile"
    assert data["focal_prior"]["sigma_rel"] == pytest.approx(0.8 / 910)
    intr = data["extra"]["intrinsics"]
    assert intr["mode"] == "profile" and intr["landmarks_undistorted"] is True
    assert intr["distortion"]["coefficients"] == pytest.approx(list(LENS.coeffs))
    assert intr["profile"]["name"] == "Test Cam" and intr["principal_px"] == pytest.approx([641.3, 358.2])
    auto = resolve_intrinsics(SessionOptions(), _Src(), log=lambda *_: None).recording_fields()
    assert auto["focal_mode"] == "auto" and auto["focal_prior"]["source"] == "device_class"
    assert [e["source"] for e in auto["extra"]["intrinsics"]["evidence"]] == ["device_class"]
    assert auto["extra"]["intrinsics"]["distortion"]["model"] == "none"


def test_the_session_uses_the_profile(config_dir):
    from core.session import SessionOptions, build_session

    save_profile(make_profile(name="cam", size=(640, 480), intr=(520.0, 522.6, 322.0, 238.5)))
    session = build_session(SessionOptions(camera_profile="cam"), source=_Src(), log=lambda *_: None)
    np.testing.assert_allclose(session.tracker.intrinsics(), (520.0, 522.6, 322.0, 238.5))
    assert session.tracker.focal_fixed and session.focal_mode == "profile"
    assert session.plan.undistorter() is not None and session.pipeline.undistort is not None
    assert session.regressor_prior is not None and not session.regressor_prior.estimate_focal  # a fixed focal
