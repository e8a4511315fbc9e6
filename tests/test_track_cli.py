"""End-to-end tests of ``flamecam track`` (and ``flamecam export`` of its output).

Real MediaPipe landmarker, real tracker, tiny synthetic sources (320x240, a few dozen frames).
In-process runs go through ``app.cli.main``; the kill / Ctrl+C tests run the console script
as a subprocess and signal it while it records.
"""
from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from core.recording import FOCAL_STATES, RecordingFormatError, load

REPO = Path(__file__).resolve().parents[1]
SMALL = "synthetic:frames={n},width=320,height=240,still=0.2"  # the head moves after 0.2 s
HAPPY_FRAMES = 30
FLOAT_FIELDS = ("expr", "jaw_pose", "neck_pose", "eyes_pose", "rotation", "translation", "fx", "fy", "cx", "cy",
                "rho_per_m", "focal_sigma_px", "fit_error_px", "confidence")


def track(*args: str) -> int:
    return main(["track", *map(str, args), "--quiet"])


def error_lines(stderr: str, command: str = "track") -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"flamecam {command}: error:")]


def tracked(rec) -> np.ndarray:
    names = np.array(rec.tracking_state_names())
    return (names == "tracking") | (names == "reacquired")


def assert_finite_where_tracked(rec) -> None:
    mask = tracked(rec)
    assert mask.any(), "no tracked frames"
    for name in FLOAT_FIELDS:
        values = getattr(rec, name)[mask]
        assert np.isfinite(values).all(), f"non-finite {name} in tracked frames"
    if rec.landmarks_px is not None:
        assert np.isfinite(rec.landmarks_px[mask]).all(), "non-finite landmarks in tracked frames"


# --- happy path ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def happy(tmp_path_factory):
    """One default run (auto focal, perspective, landmarks stored); shared by several tests."""
    out = tmp_path_factory.mktemp("happy") / "happy.fcrec"
    source = SMALL.format(n=HAPPY_FRAMES)
    code = track(source, "-o", out)
    return code, out, source


def test_track_happy_path(happy, builtin_model):
    code, out, source = happy
    assert code == 0
    rec = load(out)
    assert rec.complete and rec.discarded_bytes == 0
    assert len(rec) == HAPPY_FRAMES
    np.testing.assert_array_equal(rec.frame_index, np.arange(HAPPY_FRAMES))
    assert np.all(np.diff(rec.timestamp_s) > 0)
    assert rec.summary["frames"] == HAPPY_FRAMES and rec.summary["frames_with_face"] == HAPPY_FRAMES

    states = rec.tracking_state_names()
    assert states.count("tracking") >= 0.8 * HAPPY_FRAMES, states
    assert_finite_where_tracked(rec)
    mask = tracked(rec)
    assert np.all(np.isnan(rec.scale_px_per_m))  # perspective mode has no weak-perspective scale
    # Against the synthetic source's exact truth.
    truths = synthetic_truths(source)
    f_true = truths[0].intrinsics[0]
    idx = np.flatnonzero(mask)
    rot_err = [rotation_error_deg(rec.rotation[i], truths[i].rotation) for i in idx]
    # The coarse built-in model seen through MediaPipe carries a steady pose offset of a few degrees.
    assert np.median(rot_err) < 5.0 and max(rot_err) < 8.0, rot_err
    centre_err = [np.linalg.norm(project_centre(rec, i, builtin_model) - project_point(truths[i].head_center_cam,
                                                                                      truths[i].intrinsics))
                  for i in np.flatnonzero(mask)]
    assert np.median(centre_err) < 3.0, centre_err  # px, on a ~110 px face
    # The focal length's truth lies within its reported 2σ, and ρ is the one that focal implies
    # (the face's image scale is right: ρ·f agrees with the truth's).
    last = np.flatnonzero(mask)[-1]
    f_est, sigma_rel = rec.fx[last], rec.focal_sigma_px[last] / rec.fx[last]
    assert abs(np.log(f_est / f_true)) <= 2 * sigma_rel + 0.02, (f_est, f_true, sigma_rel)
    scale_ratio = rec.rho_per_m[mask] * rec.fx[mask] / np.array([t.rho_per_m * f_true for t in np.array(truths)[mask]])
    assert np.all(np.abs(np.log(scale_ratio)) < 0.08), scale_ratio
    assert np.median(rec.fit_error_px[mask]) < 2.0

    focal_states = rec.focal_state_names()
    assert set(focal_states) <= set(FOCAL_STATES) - {"fixed"}, focal_states  # auto focal is never "fixed"
    assert np.all(rec.fx > 0) and np.all(rec.focal_sigma_px[mask] > 0)
    np.testing.assert_allclose(rec.cx, 160.0)
    np.testing.assert_allclose(rec.cy, 120.0)

    # Landmarks stored: 478 per frame, a face-sized point set centred on the image (a close face
    # may reach past the image edge, so only the centroid must be inside).
    assert rec.meta.landmark_count == 478
    assert rec.landmarks_px is not None and rec.landmarks_px.shape == (HAPPY_FRAMES, 478, 2)
    lm = rec.landmarks_px[mask]
    centre = lm.mean(axis=1)
    assert np.all((centre > 0) & (centre < [320, 240]))
    assert np.ptp(lm[:, :, 1], axis=1).min() > 60

    m = rec.meta
    assert m.model_kind == "builtin" and m.model_path == "builtin"
    assert m.model_sha256 == builtin_model.source_sha256
    assert (m.num_shape, m.num_expr) == (builtin_model.num_shape, builtin_model.num_expr)
    assert (m.image_width, m.image_height) == (320, 240)
    assert m.source.startswith("synthetic") and "frames=30" in m.source and "still=0.2" in m.source
    assert m.camera_mode == "perspective"
    assert m.focal_mode == "auto"
    assert m.focal_prior is not None and m.focal_prior["focal_px"] > 0

    # Identity: at least one record, from frame 0, finite, and every frame has one in effect.
    assert len(rec.identity_frame_index) >= 1
    assert rec.identity_frame_index[0] == 0
    assert np.isfinite(rec.identity_shape).all()
    assert rec.shape_per_frame.shape == (HAPPY_FRAMES, m.num_shape)
    np.testing.assert_array_equal(rec.shape, rec.identity_shape[-1])


def synthetic_truths(spec: str) -> list:
    """The exact ground truth of every frame of a synthetic source spec (deterministic)."""
    from core.sources import open_source

    source = open_source(spec)
    try:
        return [frame.truth for frame in source]
    finally:
        source.close()


def rotation_error_deg(a, b) -> float:
    from core.camera import axis_angle_to_matrix, matrix_to_axis_angle

    rel = axis_angle_to_matrix(np.asarray(a, np.float64)).T @ axis_angle_to_matrix(np.asarray(b, np.float64))
    return float(np.degrees(np.linalg.norm(matrix_to_axis_angle(rel))))


def project_point(point_cam, intrinsics) -> np.ndarray:
    from core.camera import project_perspective

    return project_perspective(np.asarray(point_cam, np.float64)[None], np.asarray(intrinsics, np.float64))[0]


def project_centre(rec, i: int, head) -> np.ndarray:
    """Where the recorded head centre of frame ``i`` projects with the recorded intrinsics."""
    from core.camera import axis_angle_to_matrix, head_center_cam

    centre = head_center_cam(head.head_center.astype(np.float64), axis_angle_to_matrix(rec.rotation[i].astype(np.float64)),
                             rec.translation[i].astype(np.float64))
    return project_point(centre, [rec.fx[i], rec.fy[i], rec.cx[i], rec.cy[i]])


def test_track_prints_summary(tmp_path, capsys):
    out = tmp_path / "s.fcrec"
    assert track(SMALL.format(n=4), "-o", out) == 0
    captured = capsys.readouterr()
    assert "tracked 4 frames (4 with a face)" in captured.out
    assert f"recording: {out}" in captured.out
    assert not error_lines(captured.err)


def test_track_no_landmarks_max_frames(tmp_path):
    out = tmp_path / "nolm.fcrec"
    assert track(SMALL.format(n=9), "-o", out, "--no-landmarks", "--max-frames", "5") == 0
    rec = load(out)
    assert len(rec) == 5 and rec.complete
    np.testing.assert_array_equal(rec.frame_index, np.arange(5))
    assert rec.meta.landmark_count == 0
    assert rec.landmarks_px is None
    assert_finite_where_tracked(rec)


# --- camera options -----------------------------------------------------------------------------------


def test_track_fixed_focal(tmp_path):
    out = tmp_path / "f600.fcrec"
    assert track(SMALL.format(n=6), "-o", out, "--focal", "600") == 0
    rec = load(out)
    assert len(rec) == 6
    np.testing.assert_array_equal(rec.fx, 600.0)
    np.testing.assert_array_equal(rec.fy, 600.0)
    assert set(rec.focal_state_names()) == {"fixed"}
    assert rec.meta.focal_mode == "fixed"
    assert_finite_where_tracked(rec)


def test_track_fov(tmp_path):
    out = tmp_path / "fov.fcrec"
    assert track("synthetic:frames=3,width=640,height=480", "-o", out, "--fov", "60") == 0
    rec = load(out)
    assert len(rec) == 3 and (rec.meta.image_width, rec.meta.image_height) == (640, 480)
    expected = 320.0 / math.tan(math.radians(30.0))  # ≈ 554.26 px
    np.testing.assert_allclose(rec.fx, expected, rtol=1e-5)
    assert set(rec.focal_state_names()) == {"fixed"}
    assert rec.meta.focal_mode == "fixed"


def test_track_ortho(tmp_path):
    out = tmp_path / "ortho.fcrec"
    assert track(SMALL.format(n=8), "-o", out, "--camera", "ortho") == 0
    rec = load(out)
    assert len(rec) == 8 and rec.meta.camera_mode == "ortho"
    mask = tracked(rec)
    assert mask.sum() >= 6
    np.testing.assert_array_equal(rec.rho_per_m, 0.0)
    assert np.all(np.isfinite(rec.scale_px_per_m[mask])) and np.all(rec.scale_px_per_m[mask] > 0)
    assert_finite_where_tracked(rec)


def _image_folder(folder: Path, frames: int, no_face: tuple[int, ...]) -> Path:
    """Synthetic renders (``SMALL``) as PNGs, with plain grey images (no face) at the ``no_face`` positions."""
    import cv2

    from core.sources import open_source

    folder.mkdir()
    source = open_source(SMALL.format(n=frames))
    try:
        for frame in source:
            bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
            if frame.index in no_face:
                bgr[:] = 128
            assert cv2.imwrite(str(folder / f"frame{frame.index}.png"), bgr)
    finally:
        source.close()
    return folder


def test_track_refine_keeps_every_frame_and_improves_the_track(tmp_path, builtin_model):
    # The joint refinement only sees frames with a face; the rewritten recording must still hold
    # every source frame (the face-less ones as the online tracker recorded them).
    frames, no_face = 14, (2, 3)
    folder = _image_folder(tmp_path / "images", frames, no_face=no_face)
    out, online_out = tmp_path / "refined.fcrec", tmp_path / "online.fcrec"
    assert track(folder, "-o", out, "--refine") == 0
    assert track(folder, "-o", online_out) == 0
    rec = load(out)
    assert rec.complete and rec.discarded_bytes == 0
    assert rec.summary.get("refined") is True
    np.testing.assert_array_equal(rec.frame_index, np.arange(frames))
    states = rec.tracking_state_names()
    assert states[2] == states[3] == "lost", states
    assert tracked(rec).sum() == frames - len(no_face)
    assert_finite_where_tracked(rec)
    # Refining improved the track: head rotations nearer the exact truth than the online ones.
    truths = synthetic_truths(SMALL.format(n=frames))
    online = load(online_out)
    err = {name: np.mean([rotation_error_deg(r.rotation[i], truths[i].rotation) for i in np.flatnonzero(tracked(r))])
           for name, r in (("refined", rec), ("online", online))}
    assert err["refined"] < err["online"], err
    # One identity for the whole refined sequence.
    assert len(rec.identity_frame_index) >= 1 and rec.identity_frame_index[0] == 0
    np.testing.assert_array_equal(rec.shape_per_frame, np.broadcast_to(rec.shape, rec.shape_per_frame.shape))
    assert not list(tmp_path.glob("*.refining")), "temporary file left behind"


# --- bad input ------------------------------------------------------------------------------------------


def _grey_video(path: Path, frames: int = 10, size=(160, 120)) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for _ in range(frames):
        writer.write(np.full((size[1], size[0], 3), 128, np.uint8))
    writer.release()
    return path


def _bad_case(name: str, tmp: Path) -> tuple[list[str], str]:
    """(extra track arguments, a phrase the error must contain)."""
    src = SMALL.format(n=3)
    if name == "missing_file":
        return [str(tmp / "nope.mp4")], "not found"
    if name == "empty_folder":
        (tmp / "empty").mkdir()
        return [str(tmp / "empty")], "no images"
    if name == "text_as_mp4":
        (tmp / "fake.mp4").write_text("this is not a video\n")
        return [str(tmp / "fake.mp4")], "cannot open this video"
    if name == "random_npz":
        np.savez(tmp / "random.npz", a=np.random.default_rng(0).random(5))
        return [src, "--model", str(tmp / "random.npz")], "random.npz"
    if name == "pkl_list":
        with open(tmp / "list.pkl", "wb") as fh:
            pickle.dump([1, 2, 3], fh)
        return [src, "--model", str(tmp / "list.pkl")], "not a FLAME model"
    if name == "missing_model":
        return [src, "--model", str(tmp / "missing.pkl")], "model file not found"
    if name == "focal_abc":
        return [src, "--focal", "abc"], "--focal"
    if name == "max_frames_0":
        return [src, "--max-frames", "0"], "--max-frames"
    if name == "max_faces_0":
        return [src, "--max-faces", "0"], "--max-faces"
    raise AssertionError(name)


@pytest.mark.parametrize("case", ["missing_file", "empty_folder", "text_as_mp4", "random_npz", "pkl_list",
                                  "missing_model", "focal_abc", "max_frames_0", "max_faces_0"])
def test_track_bad_input(case, tmp_path, capsys):
    args, phrase = _bad_case(case, tmp_path)
    out = tmp_path / "out.fcrec"
    code = main(["track", *args, "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out.exists(), "a failed start must not leave a recording behind"


def test_track_refuses_existing_output(tmp_path, capsys):
    out = tmp_path / "existing.fcrec"
    out.write_bytes(b"precious data")
    before = out.stat().st_mtime_ns
    code = track(SMALL.format(n=3), "-o", out)
    err = capsys.readouterr().err
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and "exists" in lines[0] and "--overwrite" in lines[0], err
    assert out.read_bytes() == b"precious data" and out.stat().st_mtime_ns == before

    # With --overwrite it is replaced by a real recording.
    assert track(SMALL.format(n=3), "-o", out, "--overwrite") == 0
    assert len(load(out)) == 3


def test_track_no_face(tmp_path, capsys):
    video = _grey_video(tmp_path / "grey.avi")
    out = tmp_path / "grey.fcrec"
    code = track(video, "-o", out)
    err = capsys.readouterr().err
    assert code == 3, err
    lines = error_lines(err)
    assert len(lines) == 1 and "no face found" in lines[0], err
    rec = load(out)  # what the message says the recording holds
    assert len(rec) == 10 and rec.complete
    assert set(rec.tracking_state_names()) == {"no_face"}


# --- kill and Ctrl+C while recording ------------------------------------------------------------------


def _spawn(tmp_path: Path, source: str, out: Path) -> subprocess.Popen:
    script = Path(sys.executable).parent / "flamecam"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    # The session's temporary cache (conftest): the child reuses what in-process runs cached (the
    # built-in model's landmark embedding) instead of recomputing it before the first frame.
    env = {**os.environ, "FLAMECAM_NO_DOWNLOAD": "1",
           "FLAMECAM_CACHE": os.environ.get("FLAMECAM_CACHE") or str(tmp_path / "cache")}

    def child_setup():  # a shell may have started us with SIGINT ignored; the child must see Ctrl+C
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with open(tmp_path / "stdout.txt", "wb") as stdout, open(tmp_path / "stderr.txt", "wb") as stderr:
        return subprocess.Popen([*cmd, "track", source, "-o", str(out), "--quiet"], cwd=REPO, env=env,
                                stdout=stdout, stderr=stderr, preexec_fn=child_setup)


def _wait_for_frames(proc: subprocess.Popen, out: Path, tmp_path: Path, frames: int, timeout_s: float = 180.0) -> int:
    """Poll the recording being written until it holds ``frames`` frames; returns the count seen."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = (tmp_path / "stderr.txt").read_text(errors="replace")[-2000:]
            pytest.fail(f"flamecam track exited early with {proc.returncode}: {err}")
        if out.exists():
            try:
                rec = load(out)
            except RecordingFormatError:  # created but header/metadata not yet flushed
                rec = None
            if rec is not None:
                assert not rec.complete
                seen = len(rec)
                if seen >= frames:
                    return seen
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    pytest.fail(f"only {seen} frames recorded after {timeout_s} s")


def test_track_survives_sigkill(tmp_path):
    # Not realtime: a file-like source never drops frames, so indices must be consecutive — a gap
    # in the middle of a killed recording would be a lost record.
    out = tmp_path / "killed.fcrec"
    proc = _spawn(tmp_path, "synthetic:frames=100000,width=320,height=240", out)
    try:
        seen = _wait_for_frames(proc, out, tmp_path, 30)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rec = load(out)
    assert not rec.complete and rec.summary is None
    assert len(rec) >= seen >= 30
    np.testing.assert_array_equal(rec.frame_index, np.arange(len(rec)))
    assert tracked(rec).mean() >= 0.8
    assert_finite_where_tracked(rec)
    assert len(rec.identity_frame_index) >= 1 and np.isfinite(rec.identity_shape).all()


def test_track_ctrl_c_closes_recording(tmp_path):
    # Realtime: a live source (latest frame wins), as when tracking a webcam.
    out = tmp_path / "interrupted.fcrec"
    proc = _spawn(tmp_path, "synthetic:realtime=1,frames=100000,width=320,height=240", out)
    try:
        seen = _wait_for_frames(proc, out, tmp_path, 30)
        os.kill(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (tmp_path / "stderr.txt").read_text(errors="replace")
    assert code == 130, err[-2000:]
    assert "Traceback" not in err
    rec = load(out)
    assert rec.complete and rec.discarded_bytes == 0
    assert len(rec) >= seen >= 30
    assert rec.summary["frames"] == len(rec)
    assert 0 < rec.summary["fps"] < 100  # timing survives the interrupt too
    idx = rec.frame_index
    assert idx[0] == 0 and np.all(np.diff(idx) > 0)
    # A live source may skip frames, but only ones the pipeline counted as dropped.
    assert idx[-1] + 1 - len(rec) <= rec.summary["dropped"]
    np.testing.assert_allclose(rec.timestamp_s, idx / 30.0)
    assert_finite_where_tracked(rec)
    assert "recording:" in (tmp_path / "stdout.txt").read_text()


# --- export ---------------------------------------------------------------------------------------------


def test_export_obj_from_track(happy, tmp_path, capsys, builtin_model):
    code, rec_path, _ = happy
    assert code == 0
    out_dir = tmp_path / "obj"
    assert main(["export", str(rec_path), "--obj", str(out_dir)]) == 0
    files = sorted(out_dir.glob("*.obj"))
    assert [f.name for f in files] == [f"frame_{i:06d}.obj" for i in range(HAPPY_FRAMES)]
    rec = load(rec_path)
    for f in (files[0], files[-1]):
        lines = f.read_text().splitlines()
        verts = np.array([[float(v) for v in line.split()[1:4]] for line in lines if line.startswith("v ")])
        faces = [line for line in lines if line.startswith("f ")]
        assert verts.shape == (builtin_model.num_vertices, 3)
        assert len(faces) == len(builtin_model.faces)
        assert np.isfinite(verts).all()
        # Camera space: the head sits in front of the camera, about where the recording puts it.
        frame = int(f.stem.split("_")[1])
        assert np.all(verts[:, 2] > 0)
        assert abs(np.median(verts[:, 2]) - 1.0 / rec.rho_per_m[frame]) < 0.1 / rec.rho_per_m[frame] + 0.05
    assert f"wrote {HAPPY_FRAMES} OBJ meshes" in capsys.readouterr().out


def test_track_gives_the_tracker_its_thread_count(tmp_path, monkeypatch):
    """On 2 cores the tracker's torch ops must not fight MediaPipe for both (measured: 41 vs 29 fps)."""
    import torch

    monkeypatch.setenv("FLAMECAM_TORCH_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert track(SMALL.format(n=3), "-o", str(tmp_path / "t.fcrec")) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
