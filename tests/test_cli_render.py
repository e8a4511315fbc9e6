"""``flamecam --help`` and ``flamecam render``: a source to a readable video, errors as exit codes."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from core.synthetic_render import PLAIN_BACKGROUND

SMALL = "synthetic:width=160,height=120,seed=2"


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[..., ::-1])
    cap.release()
    return frames


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("track", "render", "export", "convert-ict"):
        assert command in out
    assert "Render a source" in out


def test_render_help(capsys):
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    out = capsys.readouterr().out
    for option in ("--source", "--output", "--frames", "--overlay", "--fps", "wireframe", "landmarks"):
        assert option in out


@pytest.mark.parametrize("suffix, fps", [(".mp4", None), (".avi", 12.0)])
def test_render_writes_a_readable_video(tmp_path, capsys, suffix, fps):
    out = tmp_path / f"demo{suffix}"
    argv = ["render", "--source", SMALL, "-o", str(out), "--frames", "10"] + (["--fps", str(fps)] if fps else [])
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert str(out) in captured.out and "10 frames" in captured.out
    frames = read_video(out)
    assert len(frames) == 10
    assert all(f.shape == (120, 160, 3) for f in frames)
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps or 30.0, abs=0.01)
    cap.release()
    background = np.array(PLAIN_BACKGROUND) * 255
    assert np.abs(frames[0][3, 3] - background).max() < 12  # the plain background in the corner ...
    assert np.abs(frames[0][60, 80] - background).max() > 30  # ... and the head in the middle
    assert "frame" in captured.err  # the progress bar goes to stderr


def _green(frame: np.ndarray) -> int:
    rgb = frame.astype(int)
    return int(((rgb[..., 1] > rgb[..., 0] + 60) & (rgb[..., 1] > rgb[..., 2] + 60)).sum())


def test_overlays_draw_over_the_frames(tmp_path):
    videos = {}
    for overlay in ("none", "wireframe", "landmarks"):
        out = tmp_path / f"{overlay}.avi"
        assert main(["render", "--source", SMALL + ",background=plain", "-o", str(out), "--frames", "3",
                     "--overlay", overlay, "--quiet"]) == 0
        videos[overlay] = read_video(out)
        assert len(videos[overlay]) == 3
    plain, wire, marks = videos["none"][1], videos["wireframe"][1], videos["landmarks"][1]
    assert _green(plain) < 20 and _green(wire) > 500  # green mesh edges over the face
    changed = np.abs(marks.astype(int) - plain.astype(int)).max(-1) > 60
    assert changed.sum() > 100
    rows, cols = np.nonzero(changed)
    # the landmark dots sit on the face (the middle of the frame), never in the corners
    assert 30 < cols.mean() < 130 and 20 < rows.mean() < 110
    assert not changed[:12, :12].any() and not changed[:12, -12:].any()


def test_render_a_video_file_source(tmp_path, capsys):
    first = tmp_path / "first.avi"
    assert main(["render", "--source", SMALL, "-o", str(first), "--frames", "6", "--quiet"]) == 0
    second = tmp_path / "second.mp4"
    assert main(["render", "--source", str(first), "-o", str(second), "--quiet"]) == 0  # whole file by default
    assert "6 frames" in capsys.readouterr().out
    assert len(read_video(second)) == 6


def test_bad_source_exits_2_with_the_message(tmp_path, capsys):
    out = tmp_path / "x.mp4"
    assert main(["render", "--source", "synthetic:zoom=2", "-o", str(out), "--frames", "2"]) == 2
    err = capsys.readouterr().err
    assert "unknown synthetic option 'zoom'" in err and "valid:" in err
    assert main(["render", "--source", str(tmp_path / "missing.mp4"), "-o", str(out)]) == 2
    assert "source not found" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--frames", "0"], "--frames must be at least 1"),
    (["--fps", "-3"], "--fps must be positive"),
    (["-o", "clip.gif"], "unsupported video type"),
    (["-o", "no/such/folder/clip.mp4"], "not an existing folder"),
])
def test_bad_arguments_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    args = ["render", "--source", SMALL, "-o", "out.mp4", "--frames", "2", "--quiet"] + argv
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_overlay_needs_a_synthetic_source(tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    assert main(["render", "--source", SMALL, "-o", str(clip), "--frames", "2", "--quiet"]) == 0
    assert main(["render", "--source", str(clip), "-o", str(tmp_path / "o.avi"), "--overlay", "wireframe"]) == 2
    assert "synthetic" in capsys.readouterr().err


def test_existing_output_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "keep.avi"
    out.write_bytes(b"precious")
    assert main(["render", "--source", SMALL, "-o", str(out), "--frames", "2", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert main(["render", "--source", SMALL, "-o", str(out), "--frames", "2", "--quiet", "--overwrite"]) == 0
    assert len(read_video(out)) == 2


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to simulate a full disk")
def test_write_failure_exits_1(tmp_path, capsys):
    out = tmp_path / "full.avi"
    out.symlink_to("/dev/full")
    assert main(["render", "--source", SMALL, "-o", str(out), "--frames", "5", "--quiet", "--overwrite"]) == 1
    assert "flamecam render: error:" in capsys.readouterr().err
