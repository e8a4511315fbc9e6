"""Segments: shot cuts and other people start a new identity (and after a cut a new focal length);
the tracked person is chosen by the --face rule and then followed; recordings and exports keep them.

Footage: synthetic heads cut together or composited into one frame (always), and the real clips of
../shared/data/real cut together (skipped when absent). Runs go through the app's session
(``tests.media.track_frames``) with the joint refinement unthrottled, so a run of a clip alone and
the same clip inside a longer take can be compared.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.recording import KIND_SEGMENT, FrameRecord, RecordingMeta, RecordingWriter, load, scan_records
from tests.media import paste, read_frames, real_clip, synthetic_frames, track_frames, write_video

REPO = Path(__file__).resolve().parents[1]


def starts(results):
    """[(frame index, kind, reset_focal)] of every segment start in a run."""
    return [(r.track.frame_index, r.track.segment_start.kind, r.track.segment_start.reset_focal)
            for r in results if r.track.segment_start is not None]


def relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    """|a - b| / |b|: how far an identity is from a reference one, relative to its norm."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def followed_centre(result) -> np.ndarray | None:
    face = result.landmarks.face
    return None if face is None else face.box_px[:2] + face.box_px[2:] / 2


# --- cuts between synthetic takes (no ../shared needed) -------------------------------------------------

SIZE = dict(width=480, height=360)


@pytest.fixture(scope="module")
def two_shots():
    """Two takes by two cameras: other heads, other focal lengths, other (random) backgrounds."""
    a = synthetic_frames(40, seed=1, identity=1.5, focal=400, background="random", still=0.3, **SIZE)
    b = synthetic_frames(40, seed=2, identity=1.5, focal=800, background="random", still=0.3, **SIZE)
    return a, b


def test_a_shot_cut_starts_a_segment_with_its_own_identity_and_focal(two_shots):
    a, b = two_shots
    both, alone_a, alone_b = track_frames(a + b, 30), track_frames(a, 30), track_frames(b, 30)
    assert starts(both) == [(0, "start", True), (40, "scene_cut", True)]
    assert [r.track.segment_id for r in both] == [0] * 40 + [1] * 40
    assert "shot cut" in both[40].track.segment_start.reason
    # each segment is what a run on that take alone gives: identity within 10 % of its norm, the same focal
    for seg_last, alone in ((both[39].track, alone_a[-1].track), (both[-1].track, alone_b[-1].track)):
        assert relative_gap(seg_last.shape, alone.shape) < 0.10
        assert seg_last.focal_px == pytest.approx(alone.focal_px, rel=0.02)
    # and the second segment did not inherit the first one's identity or focal length
    assert relative_gap(both[-1].track.shape, alone_a[-1].track.shape) > 0.3
    assert abs(np.log(both[-1].track.focal_px / alone_a[-1].track.focal_px)) > 0.1


def test_another_person_in_the_same_shot_keeps_the_focal_length():
    """Person B takes A's place (further away) in the same shot: a new identity, the same camera."""
    a = synthetic_frames(40, seed=1, identity=1.5, still=0.3, **SIZE)
    b = synthetic_frames(40, seed=2, identity=1.5, still=0.3, distance=0.6, **SIZE)
    fixed = dict(focal="450")  # the truth: 600 px at 640 wide; fixed, so identities compare alone vs in the take
    both, alone_b = track_frames(a + b, 30, **fixed), track_frames(b, 30, **fixed)
    assert starts(both) == [(0, "start", True), (40, "person_change", False)]
    assert relative_gap(both[-1].track.shape, alone_b[-1].track.shape) < 0.10
    # estimated focal length: kept across the change (not back to the prior as after a cut)
    auto, auto_b = track_frames(a + b, 30), track_frames(b, 30)
    assert starts(auto)[1][1:] == ("person_change", False)
    kept = abs(np.log(auto[40].track.focal_px / auto[39].track.focal_px))
    fresh = abs(np.log(auto_b[0].track.focal_px / auto[39].track.focal_px))
    assert kept < 0.05 and kept < fresh, (auto[39].track.focal_px, auto[40].track.focal_px, auto_b[0].track.focal_px)


def _crop(frame: np.ndarray) -> np.ndarray:
    return frame[60:300, 120:360]  # the synthetic head with a little background around it


def _segment_kinds(frames, results, seek_at=None):
    """The segment starts a fresh Segmenter finds in these frames (faces as the run detected them),
    with a seek (``Segmenter.jumped``) before frame ``seek_at``."""
    from core.segments import Segmenter

    segmenter, kinds = Segmenter(), []
    for i, (rgb, result) in enumerate(zip(frames, results)):
        if i == seek_at:
            segmenter.jumped()
        lm = result.landmarks
        faces = () if lm.face is None else (lm.face, *lm.others)
        decision = segmenter.update(segmenter.look(rgb, faces), i / 30, i)
        if decision.start is not None:
            kinds.append((i, decision.start.kind))
    return kinds


def test_a_seek_in_the_app_is_no_new_person_but_a_cut_across_it_still_is(two_shots):
    """A seek (the app's timeline) breaks the face's continuity without a change of person; a shot
    cut across the seek is still found from the background."""
    a = synthetic_frames(40, seed=1, identity=1.5, still=0.3, **SIZE)
    b = synthetic_frames(40, seed=2, identity=1.5, still=0.3, distance=0.6, **SIZE)
    frames = a + b[:10]
    results = track_frames(frames, 30, focal="450")
    assert _segment_kinds(frames, results) == [(0, "start"), (40, "person_change")]  # played through
    assert _segment_kinds(frames, results, seek_at=40) == [(0, "start")]  # jumped there
    shots = two_shots[0] + two_shots[1][:10]
    shot_results = track_frames(shots, 30)
    assert _segment_kinds(shots, shot_results, seek_at=40) == [(0, "start"), (40, "scene_cut")]


def two_people(left_px: list[int], right_px: list[int]) -> list[np.ndarray]:
    """640x360 frames of two synthetic people side by side (centres at x 170 and 470), each frame's
    heads pasted ``left_px[i]`` and ``right_px[i]`` wide."""
    n = len(left_px)
    left = synthetic_frames(n, seed=1, still=0, **SIZE)
    right = synthetic_frames(n, seed=3, still=0, background="random", **SIZE)
    frames = []
    for i in range(n):
        canvas = np.full((360, 640, 3), 90, np.uint8)
        paste(canvas, _crop(left[i]), (170, 180), left_px[i])
        paste(canvas, _crop(right[i]), (470, 180), right_px[i])
        frames.append(canvas)
    return frames


def test_the_person_is_followed_not_re_picked_when_another_face_grows():
    """Two people; the left one is larger at the start (--face largest picks it), then the right one
    grows larger: tracking stays on the left one."""
    n = 40
    growth = [100 * i / (n - 1) for i in range(n)]
    frames = two_people([int(260 - g) for g in growth], [int(160 + g) for g in growth])
    results = track_frames(frames, 30)
    assert all(r.landmarks.num_faces == 2 for r in results)
    sizes = [sorted([r.landmarks.face.box_px[2], r.landmarks.others[0].box_px[2]]) for r in results]
    assert results[-1].landmarks.face.box_px[2] == sizes[-1][0]  # the followed face ends as the smaller one
    assert all(followed_centre(r)[0] < 320 for r in results)
    assert starts(results) == [(0, "start", True)]
    assert all(r.track.tracking_state in ("tracking", "reacquired") for r in results)


@pytest.fixture(scope="module")
def stage():
    """A performer, then a cut to the audience: a small blurred face at the back where the performer
    was, and two people in front (the right one the largest)."""
    import cv2

    n = 30
    performer = synthetic_frames(n, seed=1, identity=1.5, still=0, width=640, height=360)
    people = [synthetic_frames(n, seed=s, still=0, **SIZE) for s in (2, 3, 4)]
    hall = cv2.GaussianBlur(np.random.default_rng(5).integers(0, 255, (360, 640, 3)).astype(np.uint8), (0, 0), 6)
    audience = []
    for i in range(n):
        canvas = hall.copy()
        paste(canvas, _crop(people[0][i]), (320, 150), 110, blur=2)
        paste(canvas, _crop(people[1][i]), (150, 250), 200)
        paste(canvas, _crop(people[2][i]), (490, 260), 230)
        audience.append(canvas)
    return performer, audience


@pytest.mark.parametrize("rule, expected_x", [("largest", 490), ("centre", 320)])
def test_after_a_cut_the_face_rule_picks_among_everyone_in_view(stage, rule, expected_x):
    performer, audience = stage
    results = track_frames(performer + audience, 30, face=rule)
    n = len(performer)
    assert starts(results) == [(0, "start", True), (n, "scene_cut", True)]
    assert all(r.landmarks.num_faces == 3 for r in results[n + 1:])  # a crowd: more than 2 faces looked for
    for r in results[n:]:
        assert abs(followed_centre(r)[0] - expected_x) < 40, (rule, followed_centre(r))
    # the audience member starts afresh: identity as a run on the audience alone, not the performer's
    alone = track_frames(audience, 30, face=rule)
    assert relative_gap(results[-1].track.shape, alone[-1].track.shape) < 0.10
    assert results[-1].track.focal_px == pytest.approx(alone[-1].track.focal_px, rel=0.02)


def test_when_the_person_leaves_other_faces_take_over_after_a_while():
    """A and B side by side; A leaves: frames say other_faces (no pose) for switch_after_s, then B is
    followed in a new segment (same shot: the focal length is kept)."""
    n, gone = 60, 20
    a = synthetic_frames(n, seed=1, still=0, **SIZE)
    b = synthetic_frames(n, seed=3, still=0, **SIZE)
    frames = []
    for i in range(n):
        canvas = np.full((360, 640, 3), 90, np.uint8)
        if i < gone:
            paste(canvas, _crop(a[i]), (170, 180), 250)
        paste(canvas, _crop(b[i]), (470, 180), 200)
        frames.append(canvas)
    results = track_frames(frames, 30)
    switch = next(r.track.frame_index for r in results if r.track.segment_id == 1)
    assert starts(results) == [(0, "start", True), (switch, "person_change", False)]
    assert abs((switch - (gone - 1)) - 30) <= 2  # SegmentOptions.switch_after_s = 1 s after A was last seen
    waiting = [r.track for r in results[gone:switch]]
    assert {t.tracking_state for t in waiting} == {"other_faces"}
    assert all(np.isnan(t.rotation).all() and np.isnan(t.translation).all() for t in waiting)
    assert all(followed_centre(r)[0] > 320 for r in results[switch:])


# --- the real clips (../shared/data/real) -----------------------------------------------------------------

CLIPS = ["webcam_400x300_a.mp4", "webcam_320x240_b.mp4", "crop_480_expressions.mp4", "crop_512_c.mp4",
         "crop_480_d.mp4", "stock_1280x720.mp4", "talking_crop_e.mp4", "talking_crop_f.mp4"]


@pytest.mark.parametrize("name", CLIPS)
def test_a_real_clip_is_one_segment(name):
    """No false cuts on real footage: head turns, expressions, a hand-held camera, auto exposure."""
    from core.landmarks import FaceLandmarker, LandmarkerOptions
    from core.segments import Segmenter

    frames = read_frames(real_clip(name), (640, 360) if "1280" in name else _native(name), count=200)
    segmenter = Segmenter()
    with FaceLandmarker(LandmarkerOptions(running_mode="video")) as landmarker:
        for i, rgb in enumerate(frames):
            lm = landmarker.detect(rgb, i * 40)
            faces = [] if lm.face is None else [lm.face, *lm.others]
            decision = segmenter.update(segmenter.look(rgb, faces), i / 25, i)
            assert decision.face is not None or not faces
    assert [(s.frame_index, s.kind) for s in segmenter.segments] == [(0, "start")]


def _native(name: str) -> tuple[int, int]:
    import cv2

    cap = cv2.VideoCapture(str(real_clip(name)))
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    return size


@pytest.mark.parametrize("first, second", [("talking_crop_e.mp4", "crop_480_d.mp4"),
                                           ("webcam_400x300_a.mp4", "webcam_320x240_b.mp4")])
def test_real_clips_cut_together_give_one_segment_each(first, second):
    """Two real clips at one size, cut together: a shot cut at the join, and each segment's identity
    within 10 % of a run on that clip alone (the second one's focal length too)."""
    size = (480, 480) if "crop" in first else (400, 300)
    a = read_frames(real_clip(first), size, count=60)
    b = read_frames(real_clip(second), size, count=60)
    both, alone_a, alone_b = track_frames(a + b), track_frames(a), track_frames(b)
    assert starts(both) == [(0, "start", True), (60, "scene_cut", True)]
    assert relative_gap(both[59].track.shape, alone_a[-1].track.shape) < 0.10
    assert relative_gap(both[-1].track.shape, alone_b[-1].track.shape) < 0.10
    assert both[-1].track.focal_px == pytest.approx(alone_b[-1].track.focal_px, rel=0.05)


def test_track_cli_records_and_reports_segments(tmp_path):
    """End to end: ``flamecam track`` on a cut video writes SEGMENT records, prints the segments and
    closes with them in the END summary; the loader gives each frame's segment and each segment's identity."""
    a = read_frames(real_clip("talking_crop_e.mp4"), (480, 480), count=50)
    b = read_frames(real_clip("crop_480_d.mp4"), (480, 480), count=50)
    video = write_video(a + b, tmp_path / "cut.mp4", fps=25)
    out = tmp_path / "cut.fcrec"
    proc = subprocess.run([sys.executable, "-m", "app.cli", "track", str(video), "-o", str(out), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "2 segments" in proc.stdout and "segment 1: frames 50-99" in proc.stdout and "shot cut" in proc.stdout
    rec = load(out)
    assert rec.segment_ids == [0, 1]
    np.testing.assert_array_equal(rec.segment_id, [0] * 50 + [1] * 50)
    assert [s["kind"] for s in rec.segments] == ["start", "scene_cut"] and rec.segments[1]["reset_focal"]
    assert [s["segment_id"] for s in rec.summary["segments"]] == [0, 1]
    shapes = rec.segment_shape()
    np.testing.assert_array_equal(shapes[1], rec.shape_per_frame[-1])
    assert relative_gap(shapes[0], shapes[1]) > 0.3  # two people, two identities
    assert "segments: 2" in rec.describe()


# --- the recording format ------------------------------------------------------------------------------


def _write_segmented(path: Path, head, frames: int = 12, cut: int = 5, model_path="builtin"):
    """A hand-written take: segment 0 (identity refined once), a scene cut at ``cut`` (segment 1)."""
    from core.segments import SegmentStart

    rng = np.random.default_rng(0)
    meta = RecordingMeta.for_model(head, model_path, 320, 240, source="test", frame_rate_hz=25.0)
    ids = {0: rng.normal(0, 1, head.num_shape), 2: rng.normal(0, 1, head.num_shape),
           cut: rng.normal(0, 1, head.num_shape), cut + 3: rng.normal(0, 1, head.num_shape)}
    with RecordingWriter(path, meta) as writer:
        writer.write_segment(SegmentStart(0, 0, 0.0, "start", True, "the first frame").to_dict())
        for i in range(frames):
            if i == cut:
                writer.write_segment(SegmentStart(1, cut, cut / 25, "scene_cut", True, "shot cut: test").to_dict())
            if i in ids:
                writer.write_identity(i, ids[i])
            writer.write_frame(FrameRecord(
                frame_index=i, timestamp_s=i / 25, expr=rng.normal(0, 0.3, head.num_expr),
                rotation=rng.normal(0, 0.2, 3), translation=np.array([0.0, 0.0, 0.5]) + rng.normal(0, 0.01, 3),
                fx=300.0, fy=300.0, cx=160.0, cy=120.0))
    return ids


def test_segment_records_round_trip_and_old_readers_skip_them(tmp_path, builtin_model, monkeypatch):
    path = tmp_path / "seg.fcrec"
    ids = _write_segmented(path, builtin_model)
    kinds = [kind for _, kind, _ in scan_records(path)]
    assert kinds.count(KIND_SEGMENT) == 2 and kinds.index(KIND_SEGMENT) < kinds.index(3)  # before the frames
    rec = load(path)
    np.testing.assert_array_equal(rec.segment_id, [0] * 5 + [1] * 7)
    assert rec.segment_info(1)["reason"] == "shot cut: test" and rec.summary["segment_count"] == 2
    shapes = rec.segment_shape()  # each segment's last identity
    np.testing.assert_allclose(shapes[0], ids[2], rtol=1e-6)
    np.testing.assert_allclose(shapes[1], ids[8], rtol=1e-6)
    npz = tmp_path / "seg.npz"
    rec.to_npz(npz)
    with np.load(npz) as data:
        np.testing.assert_array_equal(data["segment_id"], rec.segment_id)
        assert [s["kind"] for s in json.loads(str(data["segments_json"]))] == ["start", "scene_cut"]
    # a reader of format 1.0 does not know kind 5: it skips the records and reads every frame
    import core.recording.reader as reader

    monkeypatch.setattr(reader, "KIND_SEGMENT", 250)
    old = load(path)
    assert old.skipped_records == 2 and len(old) == 12 and old.complete
    assert set(old.segment_id.tolist()) == {0}


def test_a_recording_without_segment_records_is_one_segment(tmp_path, builtin_model):
    path = tmp_path / "plain.fcrec"
    meta = RecordingMeta.for_model(builtin_model, "builtin", 320, 240)
    with RecordingWriter(path, meta) as writer:
        for i in range(3):
            writer.write_frame(FrameRecord(i, i / 30, np.zeros(builtin_model.num_expr), np.zeros(3),
                                           np.array([0, 0, 0.5]), 300.0, 300.0, 160.0, 120.0))
    rec = load(path)
    assert rec.segment_ids == [0] and rec.segment_info(0)["kind"] == "start" and rec.segments == []


def test_gltf_gives_each_segment_its_identity(tmp_path):
    """A FLAME-like take of two segments: the glTF's meshes equal flamecam's with each segment's
    last identity (skin joints included), through identity_segment_K morph targets."""
    import dataclasses

    from app.cli import main
    from core.export import mesh_batches
    from core.model_io import load_head_model
    from tests.fixtures_flame import flame_like_arrays, write_flame_variant
    from tests.test_export_formats import CV_FROM_GLTF_WORLD, GltfScene

    model_path = tmp_path / "generic_model.pkl"
    write_flame_variant(model_path, "2023_open", flame_like_arrays(n_vert=60))
    head = load_head_model(model_path, num_shape=8, num_expr=6)
    take = tmp_path / "take.fcrec"
    _write_segmented(take, head, model_path=model_path)
    target = tmp_path / "take.glb"
    assert main(["export", str(take), "--gltf", str(target)]) == 0
    rec = load(take)
    shapes = rec.segment_shape()
    rec = dataclasses.replace(rec, shape_per_frame=np.stack([shapes[int(s)] for s in rec.segment_id]))
    reference = np.zeros((len(rec), head.num_vertices, 3), np.float32)
    for idx, verts in mesh_batches(rec, head):
        reference[idx] = verts
    scene = GltfScene(target)
    names = scene.gltf.meshes[0].extras["targetNames"]
    assert "identity_segment_0" in names and "identity_segment_1" in names
    for key in (0, 4, 5, 11):
        np.testing.assert_allclose(scene.world_vertices(key) * CV_FROM_GLTF_WORLD, reference[key], atol=2e-6)


def test_flame_npz_carries_the_segments(tmp_path):
    from core.export import flame_arrays
    from core.model_io import load_head_model
    from tests.fixtures_flame import flame_like_arrays, write_flame_variant

    model_path = tmp_path / "generic_model.pkl"
    write_flame_variant(model_path, "2023_open", flame_like_arrays(n_vert=60))
    head = load_head_model(model_path, num_shape=8, num_expr=6)
    ids = _write_segmented(tmp_path / "t.fcrec", head, model_path=model_path)
    arrays = flame_arrays(load(tmp_path / "t.fcrec"), head)
    np.testing.assert_array_equal(arrays["segment_id"], [0] * 5 + [1] * 7)
    np.testing.assert_allclose(arrays["betas"][4], ids[2], rtol=1e-6)
    np.testing.assert_allclose(arrays["betas"][5], ids[5], rtol=1e-6)



def test_segments_can_be_switched_off():
    """SegmentOptions(enabled=False): one segment whatever happens, the rule picks in every frame."""
    from core.segments import SegmentOptions, Segmenter

    frames = synthetic_frames(6, seed=1, still=0, background="random", **SIZE)
    frames += synthetic_frames(6, seed=2, still=0, background="random", **SIZE)
    from core.landmarks import FaceLandmarker, LandmarkerOptions

    on, off = Segmenter(), Segmenter(SegmentOptions(enabled=False))
    with FaceLandmarker(LandmarkerOptions(running_mode="video")) as landmarker:
        for i, rgb in enumerate(frames):
            lm = landmarker.detect(rgb, i * 33)
            faces = [] if lm.face is None else [lm.face, *lm.others]
            on.update(on.look(rgb, faces), i / 30, i)
            assert off.update(off.look(rgb, faces), i / 30, i).face is (lm.face if faces else None)
    assert [s.kind for s in off.segments] == ["start"]
    assert [s.kind for s in on.segments] == ["start", "scene_cut"]  # the same frames with segments on


def test_the_decimated_frame_is_the_strided_selection_as_one_contiguous_copy():
    from core.segments import _decimated

    frame = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    crop = frame[37:311, 101:389]  # a face crop: a view with the frame's row stride
    for image, size, step in ((frame, (48, 36), 3), (crop, (24, 24), 2), (frame[::-1], (48, 36), 3)):
        small = _decimated(image, *size)
        assert small.flags.c_contiguous and small.dtype == np.uint8
        np.testing.assert_array_equal(small, image[::step, ::step])
    grey = frame[..., 0].astype(np.float32)  # other layouts: the strided view itself
    np.testing.assert_array_equal(_decimated(grey, 48, 36), grey[::3, ::3])


def test_a_look_is_all_the_segmenter_decides_from():
    """``Segmenter.update`` takes one input, the frame's look, which carries the frame's size (the
    ``--face centre`` rule measures from it) and, with segments off, no thumbnails or features."""
    from core.segments import SegmentOptions, Segmenter

    rgb = np.zeros((360, 640, 3), np.uint8)
    on, off = Segmenter(), Segmenter(SegmentOptions(enabled=False))
    look_on, look_off = on.look(rgb, ()), off.look(rgb, ())
    assert look_on.size == look_off.size == (640, 360)
    assert look_on.thumb is not None and look_off.thumb is None and look_off.features == ()
    decision = on.update(look_on, 0.0, 0)
    assert decision.face is None and decision.start.kind == "start"


def test_with_max_faces_1_mediapipe_looks_for_one_face_among_two_people():
    """``--max-faces 1`` (footage of one person) reaches MediaPipe through the session: with two people
    in view the engine then sees and tracks one face; by default it sees both."""
    import argparse

    from app.cmd_track import add_tracking_arguments, session_options

    parser = argparse.ArgumentParser()
    add_tracking_arguments(parser)
    parser.add_argument("source")
    assert session_options(parser.parse_args(["x.mp4", "--max-faces", "1"])).max_faces == 1
    assert session_options(parser.parse_args(["x.mp4"])).max_faces == 5
    frames = two_people([240] * 8, [200] * 8)
    both, one = track_frames(frames, 30), track_frames(frames, 30, max_faces=1)
    assert [r.landmarks.num_faces for r in both] == [2] * 8
    assert [r.landmarks.num_faces for r in one] == [1] * 8
    assert all(r.track.tracking_state in ("tracking", "reacquired") for r in one[1:])
