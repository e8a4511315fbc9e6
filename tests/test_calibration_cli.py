"""``flamecam calibrate`` end to end on rendered boards, and ``flamecam track --camera-profile``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.cli import main
from core.calibration import BoardSpec, render_board_views
from core.distortion import LensDistortion
from core.profiles import CameraProfile, list_profiles

BOARD = "charuco:9x6,square=0.03,marker=0.022,dict=DICT_5X5_100"
INTR = (560.0, 561.0, 323.1, 237.4)
LENS = LensDistortion.opencv(-0.27, 0.09, 0.0006, -0.0009, 0.0)


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    monkeypatch.setenv("FLAMECAM_CONFIG", str(folder))
    return folder


@pytest.fixture(scope="module")
def board_images():
    return render_board_views(BoardSpec.parse(BOARD), INTR, (640, 480), 16, LENS, seed=11)


def write_folder(folder, images):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        cv2.imwrite(str(folder / f"view_{i:02d}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return folder


def test_calibrate_image_folder_stores_a_profile(tmp_path, board_images, capsys):
    folder = write_folder(tmp_path / "views", board_images)
    rc = main(["calibrate", str(folder), "--board", BOARD, "--name", "bench cam", "--quiet",
               "--export-yaml", str(tmp_path / "cam.yaml"), "--export-npz", str(tmp_path / "cam.npz"),
               "-o", str(tmp_path / "cam.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "RMS reprojection error" in out and "fx = " in out and "saved camera profile" in out
    (profile,) = list_profiles()
    assert profile.name == "bench cam" and profile.image_size == (640, 480)
    assert abs(profile.intrinsics[0] - INTR[0]) / INTR[0] < 0.005
    assert abs(profile.intrinsics[2] - INTR[2]) < 2 and abs(profile.intrinsics[3] - INTR[3]) < 2
    assert profile.lens.model == "opencv" and abs(profile.lens.coeffs[0] - LENS.coeffs[0]) < 0.02
    assert profile.rms_px < 0.3 and profile.num_views >= 12
    assert CameraProfile.load(tmp_path / "cam.json") == profile
    assert (tmp_path / "cam.yaml").is_file() and (tmp_path / "cam.npz").is_file()
    assert main(["calibrate", "--list"]) == 0
    assert "bench cam (640x480)" in capsys.readouterr().out


def test_calibrate_a_video_of_the_board(tmp_path, board_images, capsys):
    """A video where the board is held still for a moment at each position (lossless codec)."""
    import cv2

    path = tmp_path / "board.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 15, (640, 480))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write FFV1 video here")
    for im in board_images:
        for _ in range(3):
            writer.write(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    writer.release()
    rc = main(["calibrate", str(path), "--board", BOARD, "--name", "video cam", "--no-save",
               "-o", str(tmp_path / "v.json")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    profile = CameraProfile.load(tmp_path / "v.json")
    assert abs(profile.intrinsics[0] - INTR[0]) / INTR[0] < 0.005
    assert "selected" in captured.err and list_profiles() == []  # --no-save


def test_calibrate_refuses_with_the_reason(tmp_path, board_images, capsys):
    folder = write_folder(tmp_path / "few", board_images[:4])
    assert main(["calibrate", str(folder), "--board", BOARD, "--quiet"]) == 4
    err = capsys.readouterr().err
    assert "calibration refused: too few views: 4" in err
    assert list_profiles() == []


def test_calibrate_bad_input(tmp_path, capsys):
    import cv2

    blank = tmp_path / "blank"
    blank.mkdir()
    cv2.imwrite(str(blank / "a.png"), np.full((48, 64, 3), 127, np.uint8))
    assert main(["calibrate", str(blank), "--board", BOARD, "--quiet"]) == 1
    assert "was not found in any of 1 frames" in capsys.readouterr().err
    assert main(["calibrate", str(blank), "--board", "charuco:9x6"]) == 2
    assert "square" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "nowhere")]) == 2
    assert main(["calibrate"]) == 2


def test_import_and_print_board(tmp_path, capsys):
    import cv2

    yaml = tmp_path / "hmc.yaml"
    fs = cv2.FileStorage(str(yaml), cv2.FILE_STORAGE_WRITE)
    fs.write("camera_matrix", np.array([[400.0, 0, 319.5], [0, 400.0, 239.5], [0, 0, 1]]))
    fs.write("distortion_coefficients", np.array([0.05, -0.01, 0.002, 0.0]))
    fs.release()
    assert main(["calibrate", "--import", str(yaml), "--name", "HMC left", "--lens", "fisheye"]) == 2  # no size
    assert "image size" in capsys.readouterr().err
    assert main(["calibrate", "--import", str(yaml), "--name", "HMC left", "--lens", "fisheye",
                 "--image-size", "640x480"]) == 0
    (profile,) = list_profiles()
    assert profile.name == "HMC left" and profile.lens.model == "fisheye"
    assert profile.intrinsics == pytest.approx((400, 400, 320, 240))
    png = tmp_path / "board.png"
    assert main(["calibrate", "--print-board", str(png), "--board", BOARD, "--dpi", "100"]) == 0
    img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    px = round(0.03 / 0.0254 * 100)
    assert img.shape == (7 * px, 10 * px)  # 9x6 squares plus half a square of margin each side


@pytest.mark.slow
def test_track_with_a_camera_profile_records_it(tmp_path, config_dir):
    """A distorted synthetic camera tracked with its profile: fixed intrinsics from the profile, landmarks
    undistorted, and the recording says so."""
    from core.profiles import save_profile
    from core.recording import load

    size = (320, 240)
    intr = (300.0, 300.0, 160.0, 120.0)
    lens = LensDistortion.opencv(-0.2, 0.04, 0.0, 0.0, 0.0)
    save_profile(CameraProfile("synthetic lens", size, intr, lens, uncertainty={"fx": 0.9}))
    out = tmp_path / "p.fcrec"
    source = "synthetic:frames=12,width=320,height=240,focal=300,still=0.2,k1=-0.2,k2=0.04"
    assert main(["track", source, "--camera-profile", "synthetic lens", "-o", str(out), "--quiet"]) == 0
    rec = load(out)
    assert rec.meta.focal_mode == "profile"
    info = rec.meta.extra["intrinsics"]
    assert info["landmarks_undistorted"] is True and info["distortion"]["coefficients"][:2] == pytest.approx([-0.2, 0.04])
    assert info["focal_sigma_rel"] == pytest.approx(0.9 / 300)
    assert np.allclose(rec.fx, 300.0) and np.allclose(rec.cx, 160.0)
    assert json.loads(json.dumps(rec.meta.extra))  # plain JSON


def test_calibrate_live_camera_until_ready(tmp_path, board_images, monkeypatch, capsys):
    """A live source (stand-in for a webcam) that holds each board position for three frames: views are
    taken once the board is still, guidance is printed, and capture stops by itself when ready."""
    import core.sources
    from core.sources import Frame, FrameSource

    class FakeCamera(FrameSource):
        is_live = True
        size = (640, 480)
        name = "fake camera"
        delivered = 0

        def __iter__(self):
            for i in range(200):
                FakeCamera.delivered += 1
                yield Frame(i, i / 30, board_images[(i // 3) % len(board_images)])

    monkeypatch.setattr(core.sources, "open_source", lambda spec: FakeCamera())
    rc = main(["calibrate", "webcam:7", "--board", BOARD, "--views", "12", "--name", "live cam"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "[1 views] took view 1." in captured.err and "hold the board still" in captured.err
    assert FakeCamera.delivered < 60  # stopped once 12 views were taken and coverage was enough
    (profile,) = list_profiles()
    assert profile.name == "live cam" and abs(profile.intrinsics[0] - INTR[0]) / INTR[0] < 0.006
