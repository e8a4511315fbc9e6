"""Recording format (.fcrec): round trip, crash tails, corruption, full disk, kill -9, exports."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from core.recording import (
    FOCAL_STATES, HEADER, KIND_END, KIND_FRAME, KIND_IDENTITY, TRACKING_STATES, FrameRecord, RecordingError,
    RecordingFormatError, RecordingMeta, RecordingWriter, frame_dtype, load, scan_records,
)

REPO = Path(__file__).resolve().parents[1]
S, E, L = 10, 5, 478


# --- deterministic test data (also used by the subprocess scripts below) -----------------------------


def make_meta(num_shape: int = S, num_expr: int = E, landmark_count: int = L, **kw) -> RecordingMeta:
    base = dict(model_kind="flame", model_name="generic_model.pkl", model_path="/models/generic_model.pkl",
                model_sha256="ab" * 32, num_shape=num_shape, num_expr=num_expr, image_width=640, image_height=480,
                expression_names=[f"e{i}" for i in range(num_expr)], source="test", landmark_count=landmark_count)
    base.update(kw)
    return RecordingMeta(**base)


def make_frame(i: int, num_expr: int = E, landmark_count: int = L) -> FrameRecord:
    t = i / 30.0
    lmk = (np.arange(landmark_count * 2, dtype=np.float32).reshape(-1, 2) * 0.5 + i) if landmark_count else None
    return FrameRecord(
        frame_index=i, timestamp_s=t, expr=np.linspace(-1, 1, num_expr) * np.sin(0.1 * i),
        rotation=np.array([0.02 * np.sin(0.2 * i), 0.3 * np.sin(0.05 * i), 0.01]),
        translation=np.array([0.01 * i % 0.05, -0.02, 0.45 + 0.001 * i]), fx=900 + i, fy=901 + i, cx=320.5, cy=240.25,
        jaw_pose=np.array([0.1 + 0.001 * i, 0, 0]), neck_pose=np.array([0, 0.05, 0]),
        eyes_pose=np.array([0.01, 0.02, 0, 0.01, 0.02, 0]) * (i % 3), rho_per_m=1 / (0.45 + 0.001 * i),
        focal_sigma_px=50.0 / (1 + i), focal_state=FOCAL_STATES[i % 4], fit_error_px=1.0 + 0.01 * i,
        confidence=0.9, tracking_state=TRACKING_STATES[i % 4], landmarks_px=lmk)


def assert_frame_equal(rec, pos: int, expected: FrameRecord) -> None:
    assert rec.frame_index[pos] == expected.frame_index
    assert rec.timestamp_s[pos] == expected.timestamp_s  # float64: exact
    for name in ("expr", "rotation", "translation", "jaw_pose", "neck_pose", "eyes_pose"):
        np.testing.assert_array_equal(getattr(rec, name)[pos], np.asarray(getattr(expected, name), np.float32), name)
    for name in ("fx", "fy", "cx", "cy", "rho_per_m", "focal_sigma_px", "fit_error_px", "confidence"):
        assert getattr(rec, name)[pos] == np.float32(getattr(expected, name)), name
    assert rec.focal_state_names()[pos] == expected.focal_state
    assert rec.tracking_state_names()[pos] == expected.tracking_state
    if expected.landmarks_px is not None:
        np.testing.assert_array_equal(rec.landmarks_px[pos], expected.landmarks_px)


# --- round trip ---------------------------------------------------------------------------------------


def test_round_trip_metadata_identities_and_frames(tmp_path):
    path = tmp_path / "take.fcrec"
    meta = make_meta(focal_mode="profile", focal_prior={"focal_px": 900.0, "sigma_rel": 0.1},
                     extra={"note": "ü", "arr": np.arange(3), "nan": float("nan")}, frame_rate_hz=30.0)
    shape_a, shape_b, shape_c = (np.full(S, v, np.float32) for v in (0.5, -0.25, 2.0))
    with RecordingWriter(path, meta) as writer:
        assert writer.write_identity(0, shape_a)
        for i in range(5):
            writer.write_frame(make_frame(i))
        assert writer.write_identity(5, shape_b)
        assert not writer.write_identity(7, shape_b)  # unchanged: not stored again
        for i in range(5, 10):
            writer.write_frame(make_frame(i))
        no_face = make_frame(10)
        no_face.landmarks_px, no_face.tracking_state = None, "no_face"
        writer.write_frame(no_face)
        assert writer.write_identity(0, shape_c)  # a refined identity for the frames before index 5
        writer.close({"operator": "test"})

    rec = load(path)
    assert len(rec) == 11 and rec.complete and rec.discarded_bytes == 0 and rec.stop_reason == ""
    for field_name in ("model_kind", "model_name", "model_path", "model_sha256", "num_shape", "num_expr",
                       "image_width", "image_height", "expression_names", "source", "frame_rate_hz", "camera_mode",
                       "focal_mode", "focal_prior", "landmark_count", "created_utc", "app_version"):
        assert getattr(rec.meta, field_name) == getattr(meta, field_name), field_name
    assert rec.meta.extra == {"note": "ü", "arr": [0, 1, 2], "nan": None}
    assert rec.meta.app_version == "0.1.0"  # importlib.metadata of the installed package
    assert rec.meta_dict["enums"]["tracking_state"] == list(TRACKING_STATES)
    for i in range(10):
        assert_frame_equal(rec, i, make_frame(i))
    assert np.isnan(rec.landmarks_px[10]).all() and rec.tracking_state_names()[10] == "no_face"
    assert rec.landmarks_px.shape == (11, L, 2) and rec.expr.shape == (11, E) and rec.eyes_pose.shape == (11, 6)

    np.testing.assert_array_equal(rec.identity_frame_index, [0, 5, 0])
    np.testing.assert_array_equal(rec.shape, shape_c)  # the last identity in the file
    # frames 0-4: the later record starting at 0 (c) wins; frames 5-10: b
    np.testing.assert_array_equal(rec.shape_per_frame[:5], np.tile(shape_c, (5, 1)))
    np.testing.assert_array_equal(rec.shape_per_frame[5:], np.tile(shape_b, (6, 1)))
    assert rec.summary["operator"] == "test" and rec.summary["frame_count"] == 11
    assert rec.summary["identity_count"] == 3 and rec.summary["last_frame_index"] == 10

    again = rec.frame(3)
    assert again.frame_index == 3 and FOCAL_STATES[again.focal_state] == make_frame(3).focal_state
    np.testing.assert_array_equal(rec.frame_range(3, 6).frame_index, [3, 4, 5])


def test_shape_per_frame_follows_an_identity_update(tmp_path):
    path = tmp_path / "id.fcrec"
    first, second = np.arange(S, dtype=np.float32), -np.arange(S, dtype=np.float32)
    with RecordingWriter(path, make_meta(landmark_count=0)) as writer:
        writer.write_identity(0, first)
        for i in range(20):
            if i == 12:
                writer.write_identity(12, second)
            writer.write_frame(make_frame(i, landmark_count=0))
    rec = load(path)
    assert rec.landmarks_px is None
    expected = np.where((np.arange(20) < 12)[:, None], first, second)
    np.testing.assert_array_equal(rec.shape_per_frame, expected)


def test_frame_layout_matches_the_documented_size():
    assert frame_dtype(E, L).itemsize == 126 + 4 * E + 8 * L
    assert frame_dtype(0, 0).itemsize == 126
    assert frame_dtype(50, 478).fields["landmarks_px"][1] == 126 + 4 * 50


def test_wrong_sizes_are_refused_before_anything_is_written(tmp_path):
    with RecordingWriter(tmp_path / "x.fcrec", make_meta()) as writer:
        bad = make_frame(0)
        bad.expr = np.zeros(E + 1)
        with pytest.raises(ValueError, match="expr has 6 values"):
            writer.write_frame(bad)
        with pytest.raises(ValueError, match="shape has 3"):
            writer.write_identity(0, np.zeros(3))
        with pytest.raises(ValueError, match="tracking_state 'gone'"):
            writer.write_frame(FrameRecord(**{**make_frame(0).__dict__, "tracking_state": "gone"}))
        writer.write_frame(make_frame(0))
    assert len(load(tmp_path / "x.fcrec")) == 1


# --- incremental writing -------------------------------------------------------------------------------


def test_flushes_on_its_own_when_the_interval_passes(tmp_path):
    now = [0.0]
    path = tmp_path / "auto.fcrec"
    writer = RecordingWriter(path, make_meta(), flush_interval_s=1.0, clock=lambda: now[0])
    for i in range(5):
        writer.write_frame(make_frame(i))
    assert writer.frames_flushed == 0 and len(load(path)) == 0  # still buffered
    now[0] = 1.01
    writer.write_frame(make_frame(5))
    assert writer.frames_flushed == 6
    rec = load(path)  # readable while the writer is still open
    assert len(rec) == 6 and not rec.complete and rec.discarded_bytes == 0
    writer.write_frame(make_frame(6))
    assert writer.frames_flushed == 6
    writer.close()
    assert len(load(path)) == 7 and load(path).complete


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "exists.fcrec"
    path.write_bytes(b"precious")
    with pytest.raises(RecordingError, match="already exists"):
        RecordingWriter(path, make_meta())
    assert path.read_bytes() == b"precious"
    with RecordingWriter(path, make_meta(), overwrite=True) as writer:
        writer.write_frame(make_frame(0))
    assert len(load(path)) == 1


# --- crash tails and corruption ---------------------------------------------------------------------------


def _records(path):
    return scan_records(path)


def test_truncation_at_every_byte_of_the_last_records(tmp_path):
    path = tmp_path / "full.fcrec"
    with RecordingWriter(path, make_meta(landmark_count=0)) as writer:
        writer.write_identity(0, np.ones(S))
        for i in range(12):
            if i == 9:
                writer.write_identity(9, np.full(S, 3.0))
            writer.write_frame(make_frame(i, landmark_count=0))
    data = path.read_bytes()
    records = _records(path)
    assert [k for _, k, _ in records].count(KIND_FRAME) == 12 and records[-1][1] == KIND_END
    frame_ends = [off + 9 + n for off, k, n in records if k == KIND_FRAME]
    record_ends = [HEADER.size] + [off + 9 + n for off, _, n in records]
    assert record_ends[-1] == len(data)
    first_cut = [off for off, k, _ in records if k == KIND_FRAME][-4]  # the last 4 frames, an identity, the end
    cut_path = tmp_path / "cut.fcrec"
    for cut in range(first_cut, len(data)):
        cut_path.write_bytes(data[:cut])
        rec = load(cut_path)
        expected = sum(end <= cut for end in frame_ends)
        assert len(rec) == expected, cut
        assert not rec.complete
        assert rec.discarded_bytes == cut - max(e for e in record_ends if e <= cut), cut
        assert (rec.discarded_bytes > 0) == bool(rec.stop_reason)
        np.testing.assert_array_equal(rec.frame_index, np.arange(expected))
        shape9 = np.full(S, 3.0, np.float32) if any(k == KIND_IDENTITY and off + 9 + n <= cut
                                                    for off, k, n in records[2:]) else np.ones(S, np.float32)
        np.testing.assert_array_equal(rec.shape, shape9)
    full = load(path)
    assert full.complete and len(full) == 12


def test_truncation_with_landmarks_sampled_offsets(tmp_path):
    path = tmp_path / "lmk.fcrec"
    with RecordingWriter(path, make_meta()) as writer:
        for i in range(6):
            writer.write_frame(make_frame(i))
    data = path.read_bytes()
    frame_ends = [off + 9 + n for off, k, n in _records(path) if k == KIND_FRAME]
    rng = np.random.default_rng(0)
    cut_path = tmp_path / "cut.fcrec"
    for cut in sorted(rng.integers(frame_ends[2] - 5, len(data), 60)):
        cut_path.write_bytes(data[:cut])
        rec = load(cut_path)
        n = sum(end <= cut for end in frame_ends)
        assert len(rec) == n and not rec.complete
        for i in range(n):
            assert_frame_equal(rec, i, make_frame(i))


@pytest.mark.parametrize("where", ["payload", "length", "crc"])
def test_a_corrupt_byte_stops_the_reader_at_that_record(tmp_path, where):
    path = tmp_path / "c.fcrec"
    with RecordingWriter(path, make_meta()) as writer:
        for i in range(20):
            writer.write_frame(make_frame(i))
    data = bytearray(path.read_bytes())
    frames = [(off, n) for off, k, n in _records(path) if k == KIND_FRAME]
    off, n = frames[9]
    target = {"payload": off + 5 + n // 2, "length": off, "crc": off + 5 + n + 1}[where]
    data[target] ^= 0xFF
    path.write_bytes(bytes(data))
    rec = load(path)  # no exception
    assert len(rec) == 9  # frames 0..8, nothing from the damaged record or after it
    np.testing.assert_array_equal(rec.frame_index, np.arange(9))
    assert_frame_equal(rec, 8, make_frame(8))
    assert not rec.complete and rec.summary is None
    assert rec.discarded_bytes == len(data) - off
    assert f"at byte {off}" in rec.stop_reason


def test_files_that_are_not_recordings(tmp_path):
    empty = tmp_path / "empty.fcrec"
    empty.write_bytes(b"")
    with pytest.raises(RecordingFormatError, match="too short"):
        load(empty)
    other = tmp_path / "other.fcrec"
    other.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(RecordingFormatError, match="not a flamecam recording"):
        load(other)
    good = tmp_path / "good.fcrec"
    with RecordingWriter(good, make_meta()):
        pass
    data = bytearray(good.read_bytes())
    data[HEADER.size + 20] ^= 0x01  # inside the metadata JSON
    bad_meta = tmp_path / "badmeta.fcrec"
    bad_meta.write_bytes(bytes(data))
    with pytest.raises(RecordingFormatError, match="metadata"):
        load(bad_meta)
    import struct
    import zlib
    newer = bytearray(good.read_bytes())
    newer[8:10] = struct.pack("<H", 2)
    newer[12:16] = struct.pack("<I", zlib.crc32(bytes(newer[:12])))
    (tmp_path / "newer.fcrec").write_bytes(bytes(newer))
    with pytest.raises(RecordingFormatError, match="newer flamecam"):
        load(tmp_path / "newer.fcrec")


# --- full disk ----------------------------------------------------------------------------------------------


def test_disk_full_during_write_keeps_the_flushed_frames(tmp_path, monkeypatch):
    path = tmp_path / "full_disk.fcrec"
    writer = RecordingWriter(path, make_meta(), flush_interval_s=None)
    for i in range(10):
        writer.write_frame(make_frame(i))
    writer.flush()
    for i in range(10, 15):
        writer.write_frame(make_frame(i))
    calls = []

    def write_half_then_fail(data):  # what a filling disk does: a short write, then ENOSPC
        calls.append(len(data))
        if len(calls) == 1:
            return os.write(writer._fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_raw_write", write_half_then_fail)
    with pytest.raises(RecordingError) as info:
        writer.flush()
    message = str(info.value)
    assert "disk full" in message and str(path) in message
    assert "10 frames up to t=0.300 s" in message and "saved and readable" in message
    assert "5 buffered frames could not be written" in message
    assert info.value.frames_saved == 10 and info.value.errno == errno.ENOSPC
    assert len(calls) == 2
    with pytest.raises(RecordingError, match="stopped earlier"):
        writer.write_frame(make_frame(15))
    writer.close()  # quiet after the failure
    rec = load(path)
    assert len(rec) == 10 and not rec.complete
    assert rec.discarded_bytes == 0  # the partial record was cut off again
    for i in range(10):
        assert_frame_equal(rec, i, make_frame(i))


def test_fsync_failure_is_not_a_silent_loss(tmp_path, monkeypatch):
    path = tmp_path / "fsync.fcrec"
    writer = RecordingWriter(path, make_meta(), flush_interval_s=0)
    writer.write_frame(make_frame(0))
    writer.write_frame(make_frame(1))

    def fail():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_raw_fsync", fail)
    with pytest.raises(RecordingError, match=r"disk full .* 2 frames up to t=0.033 s"):
        writer.write_frame(make_frame(2))
    rec = load(path)
    assert len(rec) == 2 and rec.discarded_bytes == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_real_enospc_from_dev_full_at_creation():
    with pytest.raises(RecordingError, match="disk full while writing /dev/full; nothing was saved"):
        RecordingWriter("/dev/full", make_meta(), overwrite=True)
    assert Path("/dev/full").exists()


EFBIG_SCRIPT = textwrap.dedent("""
    import json, resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from tests.test_recording import make_frame, make_meta
    from core.recording import RecordingError, RecordingWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (120_000, 120_000))
    writer = RecordingWriter(sys.argv[1], make_meta(), flush_interval_s=None)
    try:
        for i in range(1000):
            writer.write_frame(make_frame(i))
            if i % 7 == 6:
                writer.flush()
    except RecordingError as exc:
        print(json.dumps({"message": str(exc), "saved": exc.frames_saved, "errno": exc.errno}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics checked on Linux")
def test_real_os_write_error_mid_recording(tmp_path):
    """A real short write + EFBIG from the kernel (file size limit), mid-recording."""
    path = tmp_path / "limit.fcrec"
    out = subprocess.run([sys.executable, "-c", EFBIG_SCRIPT, str(path), str(REPO)], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["errno"] == errno.EFBIG and "write error" in report["message"]
    assert report["saved"] > 0 and report["saved"] % 7 == 0
    assert f"{report['saved']} frames up to t=" in report["message"]
    rec = load(path)
    assert len(rec) == report["saved"] and not rec.complete and rec.discarded_bytes == 0
    assert path.stat().st_size < 120_000
    assert_frame_equal(rec, len(rec) - 1, make_frame(len(rec) - 1))


# --- kill -9 -------------------------------------------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from tests.test_recording import make_frame, make_meta
    from core.recording import RecordingWriter
    writer = RecordingWriter(sys.argv[1], make_meta(), flush_interval_s=0.2)
    reported = 0
    i = 0
    while True:
        if i % 50 == 0:
            writer.write_identity(i, [i / 50.0] * 10)
        writer.write_frame(make_frame(i))
        i += 1
        if writer.frames_flushed != reported:
            reported = writer.frames_flushed
            print(reported, flush=True)
        time.sleep(0.002)
""")


def test_kill_9_keeps_every_flushed_frame(tmp_path):
    path = tmp_path / "killed.fcrec"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), str(REPO)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    reported, reports, start = 0, 0, None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer died early: {proc.stderr.read()}")
            reported, reports = max(reported, int(line)), reports + 1
            start = start or time.monotonic()
            if time.monotonic() - start >= 1.0 and reports >= 4:
                break
        else:
            pytest.fail("writer did not report flushes in time")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    for line in proc.stdout.read().split():  # reports printed before the kill but not read yet
        reported = max(reported, int(line))
    proc.stdout.close()
    proc.stderr.close()

    rec = load(path)
    assert reported > 0 and len(rec) >= reported
    assert not rec.complete and rec.summary is None
    np.testing.assert_array_equal(rec.frame_index, np.arange(len(rec)))
    for i in range(0, len(rec), max(1, len(rec) // 25)):
        assert_frame_equal(rec, i, make_frame(i))
    assert_frame_equal(rec, len(rec) - 1, make_frame(len(rec) - 1))
    np.testing.assert_array_equal(rec.shape_per_frame[:, 0], (np.arange(len(rec)) // 50).astype(np.float32))


# --- exports ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flame_model(tmp_path_factory):
    from core.model_io import load_head_model
    from tests.fixtures_flame import flame_like_arrays, write_flame_variant

    folder = tmp_path_factory.mktemp("model")
    path = folder / "generic_model.pkl"
    write_flame_variant(path, "2023_open", flame_like_arrays(n_vert=60))
    other = folder / "other_model.pkl"
    write_flame_variant(other, "2023_open", flame_like_arrays(n_vert=60, seed=1))
    return path, other, load_head_model(path, num_shape=S, num_expr=E)


@pytest.fixture
def model_recording(tmp_path, flame_model):
    """12 frames made with the fixture model; identity changes at frame 6; frame 11 has NaN pose (no face)."""
    model_path, _, head = flame_model
    meta = RecordingMeta.for_model(head, model_path, 640, 480, source="test")
    path = tmp_path / "model.fcrec"
    shapes = {0: np.linspace(-1, 1, S), 6: np.linspace(1, -1, S)}
    with RecordingWriter(path, meta) as writer:
        for i in range(12):
            if i in shapes:
                writer.write_identity(i, shapes[i])
            frame = make_frame(i)
            if i == 11:
                frame.rotation = np.full(3, np.nan)
                frame.tracking_state = "no_face"
            writer.write_frame(frame)
    return path, head, shapes


def _forward(head, i, shapes, space="camera"):
    """The model forward pass of frame i computed on its own (one frame, float32)."""
    import torch

    from core.camera import model_to_camera
    from core.head_model import HeadModelLayer

    f = make_frame(i)
    shape = shapes[0] if i < 6 else shapes[6]
    t = lambda a: torch.as_tensor(np.asarray(a, np.float32))[None]  # noqa: E731
    verts = HeadModelLayer(head)(t(shape), t(f.expr), rotation=t(f.rotation), neck_pose=t(f.neck_pose),
                                 jaw_pose=t(f.jaw_pose), eyes_pose=t(f.eyes_pose))
    if space == "camera":
        verts = model_to_camera(verts, t(f.translation))
    return verts[0].numpy()


def _run_export(argv):
    import argparse

    from app import cmd_export

    parser = argparse.ArgumentParser()
    cmd_export.add_arguments(parser)
    return cmd_export.run(parser.parse_args(argv))


def _read_obj(path):
    verts, faces = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:]])
        elif line.startswith("f "):
            faces.append([int(x) - 1 for x in line.split()[1:]])
    return np.array(verts), np.array(faces)


def _read_ply(path):
    """An independent reader for the binary PLY layout the exporter declares in its header."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    assert "property float x" in header and "property list uchar int vertex_indices" in header
    nv, nf = counts["vertex"], counts["face"]
    verts = np.frombuffer(data, "<f4", nv * 3, end).reshape(nv, 3)
    faces = np.frombuffer(data, np.dtype([("n", "u1"), ("i", "<i4", (3,))]), nf, end + nv * 12)
    assert (faces["n"] == 3).all() and len(data) == end + nv * 12 + nf * 13
    return verts, faces["i"]


def test_obj_export_matches_the_model_forward_pass(tmp_path, model_recording, capsys):
    rec_path, head, shapes = model_recording
    out = tmp_path / "obj"
    assert _run_export([str(rec_path), "--obj", str(out), "--batch-size", "4"]) == 0
    files = sorted(out.glob("*.obj"))
    assert [f.name for f in files] == [f"frame_{i:06d}.obj" for i in range(11)]  # frame 11: NaN pose, skipped
    assert "skipped 1 frames" in capsys.readouterr().err
    for i in (0, 5, 6, 10):  # both identities, several batches
        verts, faces = _read_obj(out / f"frame_{i:06d}.obj")
        np.testing.assert_allclose(verts, _forward(head, i, shapes), atol=1e-6)
        np.testing.assert_array_equal(faces, head.faces)
    assert not list(out.glob("*.part"))
    # a second export into the same folder is refused, then allowed with --overwrite
    assert _run_export([str(rec_path), "--obj", str(out)]) == 2
    assert "would be overwritten" in capsys.readouterr().err
    assert _run_export([str(rec_path), "--obj", str(out), "--overwrite"]) == 0


def test_ply_export_model_space_and_frame_range(tmp_path, model_recording):
    rec_path, head, shapes = model_recording
    out = tmp_path / "ply"
    assert _run_export([str(rec_path), "--ply", str(out), "--space", "model", "--frames", "4:8"]) == 0
    assert sorted(f.name for f in out.iterdir()) == [f"frame_{i:06d}.ply" for i in range(4, 8)]
    for i in (4, 7):
        verts, faces = _read_ply(out / f"frame_{i:06d}.ply")
        np.testing.assert_allclose(verts, _forward(head, i, shapes, space="model"), atol=1e-6)
        np.testing.assert_array_equal(faces, head.faces)
    cam = tmp_path / "ply_cam"
    assert _run_export([str(rec_path), "--ply", str(cam), "--frames", "6"]) == 0
    verts, _ = _read_ply(cam / "frame_000006.ply")
    np.testing.assert_allclose(verts, _forward(head, 6, shapes), atol=1e-6)


def test_npz_export_has_the_same_arrays(tmp_path, model_recording):
    rec_path, _, _ = model_recording
    target = tmp_path / "arrays.npz"
    assert _run_export([str(rec_path), "--npz", str(target)]) == 0
    rec = load(rec_path)
    with np.load(target) as data:
        for name in ("frame_index", "timestamp_s", "expr", "jaw_pose", "neck_pose", "eyes_pose", "rotation",
                     "translation", "fx", "fy", "cx", "cy", "rho_per_m", "focal_sigma_px", "focal_state",
                     "fit_error_px", "confidence", "tracking_state", "landmarks_px", "shape", "shape_per_frame"):
            np.testing.assert_array_equal(data[name], getattr(rec, name), name)
        assert json.loads(str(data["meta_json"]))["model_sha256"] == rec.meta.model_sha256
        assert bool(data["complete"])
    assert _run_export([str(rec_path), "--npz", str(target)]) == 2  # exists


def test_export_refuses_a_different_model(tmp_path, model_recording, flame_model, capsys):
    rec_path, _, _ = model_recording
    _, other_model, _ = flame_model
    out = tmp_path / "mismatch"
    assert _run_export([str(rec_path), "--obj", str(out), "--model", str(other_model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flamecam export: error:") and err.count("\n") == 1
    assert "SHA-256" in err and "--force" in err and "generic_model.pkl" in err
    assert not out.exists() or not list(out.iterdir())
    assert _run_export([str(rec_path), "--obj", str(out), "--model", str(other_model), "--force"]) == 0
    assert len(list(out.glob("*.obj"))) == 11


def test_export_bad_inputs_exit_2(tmp_path, model_recording, flame_model, capsys):
    rec_path, _, _ = model_recording
    assert _run_export([str(tmp_path / "missing.fcrec"), "--npz", str(tmp_path / "a.npz")]) == 2
    assert "recording not found" in capsys.readouterr().err
    junk = tmp_path / "junk.fcrec"
    junk.write_bytes(b"not a recording at all")
    assert _run_export([str(junk), "--npz", str(tmp_path / "a.npz")]) == 2
    assert "not a flamecam recording" in capsys.readouterr().err
    assert _run_export([str(rec_path), "--npz", str(tmp_path / "a.npz"), "--frames", "x:y"]) == 2
    assert _run_export([str(rec_path), "--npz", str(tmp_path / "a.npz"), "--frames", "500:"]) == 2
    assert "no frames" in capsys.readouterr().err
    # the model moved: the recording's path no longer exists
    moved = tmp_path / "moved.fcrec"
    rec = load(rec_path)
    meta = rec.meta
    meta.model_path = str(tmp_path / "gone.pkl")
    with RecordingWriter(moved, meta) as writer:
        writer.write_frame(make_frame(0))
    assert _run_export([str(moved), "--obj", str(tmp_path / "o")]) == 2
    assert "--model PATH" in capsys.readouterr().err
    assert _run_export([str(moved), "--obj", str(tmp_path / "o"), "--model", str(flame_model[0])]) == 0


def test_export_is_registered_in_the_cli(tmp_path, model_recording, capsys):
    from app import cli

    assert ("export", "app.cmd_export", "Export a recording as per-frame OBJ/PLY meshes or one .npz") in cli.COMMANDS
    rec_path, _, _ = model_recording
    assert cli.main(["export", str(rec_path), "--npz", str(tmp_path / "cli.npz")]) == 0
    assert (tmp_path / "cli.npz").exists()


def test_describe_prints_the_format_documentation():
    out = subprocess.run([sys.executable, "-m", "core.recording", "--describe"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0
    assert "126 + 4·E + 8·L" in out.stdout and "CRC-32" in out.stdout and "landmarks_px" in out.stdout


# --- speed figure (printed, not asserted) -----------------------------------------------------------------------


def test_load_speed_10000_frames(tmp_path):
    path = tmp_path / "long.fcrec"
    num_expr = 50
    meta = make_meta(num_shape=100, num_expr=num_expr)
    frames = [make_frame(i, num_expr=num_expr) for i in range(64)]
    t0 = time.perf_counter()
    with RecordingWriter(path, meta) as writer:
        writer.write_identity(0, np.zeros(100))
        for i in range(10_000):
            frame = frames[i % 64]
            frame.frame_index, frame.timestamp_s = i, i / 30.0
            writer.write_frame(frame)
    t1 = time.perf_counter()
    rec = load(path)
    t2 = time.perf_counter()
    size_mb = path.stat().st_size / 1e6
    print(f"\n10,000 frames (E=50, 478 landmarks): write {t1 - t0:.2f} s, load {t2 - t1:.3f} s, file {size_mb:.1f} MB")
    assert len(rec) == 10_000 and rec.complete
    np.testing.assert_array_equal(rec.frame_index, np.arange(10_000))
    np.testing.assert_array_equal(rec.landmarks_px[9_999], frames[9_999 % 64].landmarks_px)
