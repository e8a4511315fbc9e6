"""Frame sources: synthetic options and ground truth, synthetic frames, video files, image folders, errors."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from core import camera
from core.sources import ImageFolderSource, SourceError, VideoFileSource, open_source, parse_options
from core.synthetic import SyntheticOptions, SyntheticSource, Trajectory
from core.synthetic_render import PLAIN_BACKGROUND



# --- options ------------------------------------------------------------------------------------


def test_options_parse_values_and_keep_defaults():
    opts = SyntheticOptions.from_text("focal=900,distance=0.4,yaw=10")
    assert (opts.focal, opts.distance, opts.yaw) == (900.0, 0.4, 10.0)
    assert isinstance(opts.focal, float) and isinstance(opts.width, int)
    assert opts.focal_px() == 900.0 and opts.distance_m() == 0.4
    assert (opts.width, opts.height, opts.pitch, opts.seed) == (640, 480, 8.0, 0)  # untouched defaults
    np.testing.assert_allclose(opts.intrinsics(), [900, 900, 320, 240])
    flags = SyntheticOptions.from_text(" expressions=0 , realtime=yes, width=320, background=random ")
    assert flags.expressions is False and flags.realtime is True and flags.width == 320
    assert flags.background == "random"


def test_options_overrides_win_over_text():
    opts = SyntheticOptions.from_text("width=320,frames=5", width=200, fps=None)
    assert opts.width == 200 and opts.frames == 5 and opts.fps == 30.0


def test_unknown_option_names_the_valid_keys():
    with pytest.raises(SourceError, match="unknown synthetic option 'zoom'") as info:
        SyntheticOptions.from_text("focal=900,zoom=2")
    for key in ("focal", "fov", "distance", "background", "seed"):
        assert key in str(info.value)


@pytest.mark.parametrize("text, key", [("width=abc", "width"), ("focal=wide", "focal"), ("seed=1.5", "seed")])
def test_bad_option_value_is_named(text, key):
    with pytest.raises(SourceError, match=key):
        SyntheticOptions.from_text(text)


@pytest.mark.parametrize("text", ["width=0", "height=-4", "fps=0", "focal=-600", "distance=0", "period=0",
                                  "background=forest", "lighting=disco"])
def test_out_of_range_options_are_errors(text):
    with pytest.raises(SourceError):
        SyntheticOptions.from_text(text)


def test_focal_and_fov_together_is_an_error():
    with pytest.raises(SourceError, match="focal or fov"):
        SyntheticOptions.from_text("focal=900,fov=60")
    with pytest.raises(SourceError, match="focal or fov"):
        SyntheticOptions(focal=900.0, fov=60.0).focal_px()


@pytest.mark.parametrize("fov, width", [(90.0, 640), (60.0, 640), (40.0, 512)])
def test_fov_gives_the_focal_length(fov, width):
    opts = SyntheticOptions.from_text(f"fov={fov},width={width}")
    expected = (width / 2) / math.tan(math.radians(fov) / 2)
    assert opts.focal_px() == pytest.approx(expected, rel=1e-6)
    assert float(camera.focal_to_fov_deg(opts.focal_px(), width)) == pytest.approx(fov, abs=1e-4)


def test_default_distance_follows_focal():
    near, far = SyntheticOptions.from_text("focal=600,width=512,height=512"), SyntheticOptions.from_text(
        "focal=1200,width=512,height=512")
    assert near.distance_m() == pytest.approx(0.3) and far.distance_m() == pytest.approx(0.6)


def test_parse_options():
    assert parse_options("a=1, b = x ,") == {"a": "1", "b": "x"}
    assert parse_options("") == {}
    assert parse_options("model=/a=b/c.npz") == {"model": "/a=b/c.npz"}  # only the first '=' splits
    with pytest.raises(SourceError, match="expected key=value"):
        parse_options("a=1,b")
    with pytest.raises(SourceError, match="expected key=value"):
        open_source("synthetic:focal")


# --- trajectory ground truth ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trajectory(builtin_model):
    return Trajectory(SyntheticOptions(fps=30.0, still=1.0, period=4.0), builtin_model)


@pytest.mark.parametrize("index", [0, 20, 45, 77, 130])
def test_ground_truth_is_consistent(trajectory, builtin_model, index):
    gt = trajectory.at(index)
    assert gt.rho_per_m == pytest.approx(1.0 / float(gt.head_center_cam[2]), rel=1e-6)
    centre = camera.model_to_camera(torch.as_tensor(builtin_model.head_center, dtype=torch.float64)[None],
                                    torch.as_tensor(gt.translation, dtype=torch.float64),
                                    torch.as_tensor(gt.rotation, dtype=torch.float64))[0]
    np.testing.assert_allclose(centre.numpy(), gt.head_center_cam, atol=1e-5)
    np.testing.assert_array_equal(gt.intrinsics, trajectory.opts.intrinsics())
    assert gt.shape.shape == (builtin_model.num_shape,) and gt.expr.shape == (builtin_model.num_expr,)
    assert 0.5 * trajectory.distance < gt.head_center_cam[2] < 1.5 * trajectory.distance


def test_still_segment_is_still(trajectory):
    frames = [trajectory.at(i) for i in range(30)]  # still=1 s at 30 fps
    assert all(f.still for f in frames)
    for f in frames[1:]:
        for name in ("rotation", "translation", "expr", "jaw_pose", "head_center_cam"):
            np.testing.assert_array_equal(getattr(f, name), getattr(frames[0], name))
    later = trajectory.at(60)
    assert not later.still and not trajectory.at(30).still
    assert not np.allclose(later.rotation, frames[0].rotation)


def test_yaw_sweep_reaches_its_amplitude(builtin_model):
    opts = SyntheticOptions(yaw=25.0, pitch=0.0, roll=0.0, period=2.0, still=0.0, fps=30.0)
    traj = Trajectory(opts, builtin_model)
    rotations = np.stack([traj.at(i).rotation for i in range(60)])  # one period
    yaw_deg = np.degrees(rotations[:, 1])
    assert yaw_deg.max() == pytest.approx(25.0, abs=0.05) and yaw_deg.min() == pytest.approx(-25.0, abs=0.05)
    np.testing.assert_allclose(rotations[:, [0, 2]], 0.0, atol=1e-6)  # pure yaw about model y


def test_identity_depends_on_seed(builtin_model):
    a = Trajectory(SyntheticOptions(seed=1), builtin_model).at(0).shape
    b = Trajectory(SyntheticOptions(seed=2), builtin_model).at(0).shape
    mean = Trajectory(SyntheticOptions(identity=0.0), builtin_model).at(0).shape
    assert not np.allclose(a, b) and np.all(mean == 0)


# --- synthetic frames ----------------------------------------------------------------------------


def _frames(text: str, indices) -> list:
    source = open_source(f"synthetic:{text}")
    try:
        wanted, out = set(indices), {}
        for frame in source:
            if frame.index in wanted:
                out[frame.index] = frame
            if len(out) == len(wanted):
                break
        return [out[i] for i in indices]
    finally:
        source.close()


def test_synthetic_frames_are_rgb_of_the_requested_size_and_move():
    first, moved = _frames("width=160,height=120,still=0,period=2,seed=3", [0, 15])  # 15: the yaw peak
    for frame in (first, moved):
        assert frame.rgb.shape == (120, 160, 3) and frame.rgb.dtype == np.uint8
        assert frame.truth is not None
    assert moved.timestamp_s == pytest.approx(15 / 30.0)
    diff = np.abs(first.rgb.astype(int) - moved.rgb.astype(int))
    assert diff.mean() > 2.0  # the head moved
    # plain background in the corner, the face (not the background) in the middle
    np.testing.assert_allclose(first.rgb[2, 2], np.array(PLAIN_BACKGROUND) * 255, atol=2)
    assert np.abs(first.rgb[60, 80].astype(float) - np.array(PLAIN_BACKGROUND) * 255).max() > 20


def test_synthetic_frames_are_deterministic_per_seed():
    a = _frames("width=160,height=120,still=0,seed=5,lighting=random", [0, 6])
    b = _frames("width=160,height=120,still=0,seed=5,lighting=random", [0, 6])
    c = _frames("width=160,height=120,still=0,seed=6,lighting=random", [0, 6])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.rgb, y.rgb)
    assert np.abs(a[1].rgb.astype(int) - c[1].rgb.astype(int)).mean() > 1.0


def test_random_background_differs_from_plain():
    plain, = _frames("width=160,height=120", [0])
    busy, = _frames("width=160,height=120,background=random", [0])
    corners = (slice(0, 15), slice(0, 15))
    assert np.abs(plain.rgb[corners].astype(int) - busy.rgb[corners].astype(int)).mean() > 5
    assert plain.rgb[corners].reshape(-1, 3).std(0).max() < 1.0 and busy.rgb.reshape(-1, 3).std(0).min() > 10  # a busy, coloured room


def test_frames_option_limits_iteration():
    source = open_source("synthetic:width=96,height=64,frames=4")
    try:
        assert source.num_frames == 4 and source.size == (96, 64) and source.fps == 30.0
        frames = list(source)
    finally:
        source.close()
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.timestamp_ms for f in frames] == [0, 33, 67, 100]
    assert isinstance(source, SyntheticSource) and "frames=4" in source.name


def test_vertices_cam_project_onto_the_rendered_head():
    source = SyntheticSource(SyntheticOptions(width=160, height=120, frames=1))
    try:
        frame = next(iter(source))
        verts = source.vertices_cam(frame.truth)
    finally:
        source.close()
    assert verts.shape == (source.head.num_vertices, 3)
    uv = camera.project_perspective(torch.as_tensor(verts[:468])[None], torch.as_tensor(frame.truth.intrinsics))[0]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 160) & (uv[:, 1] >= 0) & (uv[:, 1] < 120)
    px = uv[inside].long().numpy()
    colours = frame.rgb[px[:, 1], px[:, 0]].astype(float)
    # pixels under the projected face vertices are not the background
    off_background = np.abs(colours - np.array(PLAIN_BACKGROUND) * 255).max(1) > 20
    assert inside.float().mean() > 0.9 and off_background.mean() > 0.9


# --- video files -----------------------------------------------------------------------------------


def _write_video(path, count: int, size=(160, 120), fourcc="MJPG", fps=25.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), (10 * i, 128, 250 - 10 * i), np.uint8))  # BGR
    writer.release()


@pytest.mark.parametrize("suffix, fourcc", [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_video_file_round_trip(tmp_path, suffix, fourcc):
    path = tmp_path / f"clip{suffix}"
    _write_video(path, 20, fourcc=fourcc)
    source = open_source(str(path))
    try:
        assert isinstance(source, VideoFileSource)
        assert source.size == (160, 120) and source.fps == pytest.approx(25.0) and source.num_frames == 20
        frames = list(source)
    finally:
        source.close()
    assert len(frames) == 20
    assert [f.index for f in frames] == list(range(20))
    stamps = np.array([f.timestamp_s for f in frames])
    assert np.all(np.diff(stamps) > 0)
    assert stamps[-1] == pytest.approx(19 / 25.0, abs=0.05)
    for i, frame in enumerate(frames):
        assert frame.rgb.shape == (120, 160, 3) and frame.rgb.dtype == np.uint8
        np.testing.assert_allclose(frame.rgb.reshape(-1, 3).mean(0), (250 - 10 * i, 128, 10 * i), atol=6)  # RGB


def test_text_file_named_mp4_is_refused(tmp_path):
    fake = tmp_path / "x.mp4"
    fake.write_text("this is not a video\n" * 10)
    with pytest.raises(SourceError, match="cannot open|no readable frames") as info:
        open_source(str(fake))
    assert "x.mp4" in str(info.value)


def test_missing_paths_are_errors(tmp_path):
    with pytest.raises(SourceError, match="source not found"):
        open_source(str(tmp_path / "nowhere.mp4"))
    with pytest.raises(SourceError, match="not found"):
        VideoFileSource(tmp_path / "nowhere.mp4")


# --- image folders -----------------------------------------------------------------------------------


def _write_png(path, rgb_colour, size=(40, 30)):
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[:] = rgb_colour
    assert cv2.imwrite(str(path), img[..., ::-1])


def test_image_folder_natural_order(tmp_path):
    colours = {"img10.png": (200, 0, 0), "img2.png": (0, 200, 0), "img1.png": (0, 0, 200), "IMG3.jpg": (90, 90, 90)}
    for name, colour in colours.items():
        _write_png(tmp_path / name, colour)
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path), fps=10.0)
    assert isinstance(source, ImageFolderSource) and source.num_frames == 4 and source.size == (40, 30)
    frames = list(source)
    assert [f.name for f in frames] == ["img1.png", "img2.png", "IMG3.jpg", "img10.png"]
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    for frame in frames:
        np.testing.assert_allclose(frame.rgb[15, 20], colours[frame.name], atol=3)  # RGB, not BGR


def test_single_image_file(tmp_path):
    path = tmp_path / "face.png"
    _write_png(path, (10, 20, 30), size=(64, 48))
    source = open_source(str(path))
    frames = list(source)
    assert isinstance(source, ImageFolderSource) and len(frames) == 1 and source.size == (64, 48)
    np.testing.assert_array_equal(frames[0].rgb[0, 0], (10, 20, 30))


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))


def test_corrupt_image_is_named(tmp_path):
    _write_png(tmp_path / "img1.png", (1, 2, 3))
    (tmp_path / "img2.png").write_bytes(b"\x89PNG but not really")
    source = open_source(str(tmp_path))
    frames = iter(source)
    assert next(frames).name == "img1.png"
    with pytest.raises(SourceError, match="img2.png"):
        next(frames)
    # a corrupt first image is reported when opening
    first_bad = tmp_path / "bad"
    first_bad.mkdir()
    (first_bad / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(SourceError, match="a.jpg"):
        open_source(str(first_bad))


# --- webcams -----------------------------------------------------------------------------------------


def test_missing_webcam_is_an_error():
    with pytest.raises(SourceError, match="no camera at index 57"):
        open_source("webcam:57")
