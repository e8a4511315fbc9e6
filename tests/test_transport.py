"""Playing files: exact seeks in video files and image folders, the transport's pacing, pause, step,
seek and end, the engine's cuts (the pose restarts, identity and focal length stay)."""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.sources import ImageFolderSource, VideoFileSource
from core.transport import PlaybackReader, Transport

REAL_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "webcam_400x300_a.mp4"


def write_numbered_video(path: Path, count: int, fps: float = 25.0, size=(160, 120), fourcc: str = "mp4v") -> None:
    """Frames that differ from each other everywhere (a moving gradient and the index in blocks), so a
    decoded frame can only be mistaken for another by a wrong seek."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    w, h = size
    x = np.arange(w)[None, :]
    for i in range(count):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = (x * 2 + i * 9) % 256
        img[..., 1] = (np.arange(h)[:, None] * 2 + i * 5) % 256
        img[: h // 4, :, 2] = 40 + 200 * ((i >> (np.arange(w) * 8 // w)) & 1)[None, :]  # 8 bits of the index
        writer.write(img)
    writer.release()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "numbered.mp4"
    write_numbered_video(path, 90)  # mp4v: a keyframe every 12 frames, so seeks decode from keyframes
    return path


def sequential_frames(path: Path) -> list:
    source = VideoFileSource(path)
    try:
        return list(source)
    finally:
        source.close()


# --- seeking in files -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["rendered", "real"])
def test_video_seek_delivers_the_frame_a_sequential_read_gives(clip, which):
    path = clip if which == "rendered" else REAL_VIDEO
    if not path.exists():
        pytest.skip(f"{path} is not here (the real clips live in ../shared/data/real)")
    frames = sequential_frames(path)
    source = VideoFileSource(path)
    source.keep_recent(8.0)
    try:
        assert source.seekable and source.num_frames == len(frames)
        n = len(frames)
        rng = np.random.default_rng(0)
        targets = [n - 1, 0, 1, n // 2, n // 2 - 1, n // 2 - 2, n // 2 + 30, 5] + rng.integers(0, n, 12).tolist()
        for target in targets:
            source.seek(target)
            frame = source.read()
            assert frame.index == target and frame.timestamp_s == frames[target].timestamp_s
            np.testing.assert_array_equal(frame.rgb, frames[target].rgb, err_msg=f"seek to {target}")
            follow = source.read()  # reading goes on from the seek
            if target + 1 < n:
                np.testing.assert_array_equal(follow.rgb, frames[target + 1].rgb)
            else:
                assert follow is None
        assert source.seeks["capture"] >= 5  # far jumps went through OpenCV's seek (and were checked)
        assert source.seeks["grabbed"] >= 1  # a short jump ahead decoded on
        assert source.seeks["fallback"] == 0
    finally:
        source.close()


class _SkewedCapture:
    """A capture whose seeks land ``skew`` frames late (as OpenCV's can on some files)."""

    def __init__(self, cap, skew: int):
        self.cap, self.skew = cap, skew

    def set(self, prop, value):
        if prop == cv2.CAP_PROP_POS_FRAMES and value > 0:
            value += self.skew
        return self.cap.set(prop, value)

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_a_seek_that_lands_elsewhere_is_caught_and_served_exactly(clip):
    frames = sequential_frames(clip)
    source = VideoFileSource(clip)
    source._cap = _SkewedCapture(source._cap, skew=3)  # noqa: SLF001  (fault injection)
    try:
        for target in (60, 20, 75, 40):
            source.seek(target)
            frame = source.read()
            assert frame.index == target
            np.testing.assert_array_equal(frame.rgb, frames[target].rgb, err_msg=f"seek to {target}")
        assert source.seeks["fallback"] >= 1  # the skewed landing was detected
    finally:
        source.close()



STOCK_VIDEO = REAL_VIDEO.with_name("stock_1280x720.mp4")  # H.264 with a single keyframe, at frame 0


def keyframes_of(source: VideoFileSource) -> list[int] | None:
    source.find_keyframes().join(timeout=10.0)  # what the first seek starts in the background
    return source.keyframe_packets


def test_a_jump_ahead_with_no_keyframe_between_decodes_on(clip):
    """OpenCV's seek decodes from the keyframe before the target: with one between the capture and a
    target far ahead the source seeks; with none it decodes on (never more work). Either way the
    frame is exact."""
    frames = sequential_frames(clip)
    source = VideoFileSource(clip)
    try:
        source.read()
        assert source._keyframe_scan is None  # noqa: SLF001  (read straight through: no scan)
        keys = keyframes_of(source)
        assert keys is not None and keys[0] == 0 and len(keys) >= 5  # mp4v: a keyframe every dozen frames
        target = keys[3] + 2
        assert target - 1 > VideoFileSource.GRAB_AHEAD_MAX
        source.seek(target)
        np.testing.assert_array_equal(source.read().rgb, frames[target].rgb)
        assert source.seeks == {"capture": 1, "grabbed": 0, "fallback": 0}
        source.keyframe_packets = [0]  # as if the file had no keyframe after its first frame
        source.seek(target + 40)
        np.testing.assert_array_equal(source.read().rgb, frames[target + 40].rgb)
        assert source.seeks == {"capture": 1, "grabbed": 1, "fallback": 0}
        source.seek(10)  # behind: only a seek gets there
        np.testing.assert_array_equal(source.read().rgb, frames[10].rgb)
        assert source.seeks == {"capture": 2, "grabbed": 1, "fallback": 0}
    finally:
        source.close()


def test_a_real_video_with_one_keyframe_is_decoded_on_for_jumps_ahead():
    if not STOCK_VIDEO.exists():
        pytest.skip(f"{STOCK_VIDEO} is not here (the real clips live in ../shared/data/real)")
    frames = sequential_frames(STOCK_VIDEO)
    source = VideoFileSource(STOCK_VIDEO)
    try:
        assert keyframes_of(source) == [0]
        for target in (40, 150, 260):
            source.seek(target)
            frame = source.read()
            assert frame.index == target
            np.testing.assert_array_equal(frame.rgb, frames[target].rgb)
        assert source.seeks == {"capture": 0, "grabbed": 3, "fallback": 0}
    finally:
        source.close()

def test_image_folder_seeks(tmp_path):
    for i in range(6):
        img = np.full((8, 10, 3), 40 * i, np.uint8)
        assert cv2.imwrite(str(tmp_path / f"f{i}.png"), img)
    source = ImageFolderSource(tmp_path, fps=10.0)
    assert source.seekable
    source.seek(4)
    frame = source.read()
    assert frame.index == 4 and frame.name == "f4.png" and frame.timestamp_s == pytest.approx(0.4)
    assert int(frame.rgb[0, 0, 0]) == 160
    assert [f.index for f in source] == [5]  # iteration goes on from the position
    source.seek(1)
    assert [f.index for f in source] == [1, 2, 3, 4, 5]


# --- the transport ----------------------------------------------------------------------------------


class Player:
    """A PlaybackReader on its own thread; frames go to ``out`` as (monotonic time, frame, generation, cut)."""

    def __init__(self, source, transport: Transport, consume_s: float = 0.0):
        self.source, self.transport, self.stop = source, transport, threading.Event()
        self.out: queue.Queue = queue.Queue()
        self.consume_s = consume_s
        self.reader = PlaybackReader(source, transport, self.stop)
        self.thread = threading.Thread(target=self._run, name="test-player")
        self.thread.start()

    def _run(self):
        for frame, generation, cut in self.reader:
            self.out.put((time.monotonic(), frame, generation, cut))
            if self.consume_s:
                self.stop.wait(self.consume_s)  # a slow consumer

    def take(self, timeout: float = 10.0):
        return self.out.get(timeout=timeout)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def test_plays_at_the_file_rate_when_the_consumer_is_faster(clip):
    source = VideoFileSource(clip)
    player = Player(source, Transport())
    try:
        got = [player.take() for _ in range(50)]
    finally:
        player.close()
        source.close()
    times = np.array([g[0] for g in got])
    indices = [g[1].index for g in got]
    # The video advances at its own 25 frames per second (not as fast as frames can be read: 1000+ here) ...
    video_rate = (indices[-1] - indices[0]) / (times[-1] - times[0])
    assert 24.0 <= video_rate <= 26.0, video_rate
    # ... and a consumer this fast sees every frame: none is passed over, except when the reading thread
    # itself was kept off the CPU for two frame times (a busy machine) and caught up.
    assert indices[:3] == [0, 1, 2] and len(got) >= 0.9 * (indices[-1] - indices[0] + 1), indices


def test_a_slow_consumer_gets_the_frame_of_now(clip):
    """Playing at 25 fps with a consumer taking 0.1 s a frame: frames are passed over so the picture
    keeps to the file's clock (latest wins)."""
    source = VideoFileSource(clip)
    player = Player(source, Transport(), consume_s=0.1)
    try:
        got = [player.take() for _ in range(12)]
    finally:
        player.close()
        source.close()
    start_t, start = got[0][0], got[0][1].index
    for t, frame, _, _ in got[1:]:
        due = start + (t - start_t) * 25.0
        assert due - 2 <= frame.index <= due + 1, (frame.index, due)
    indices = [g[1].index for g in got]
    passed_over = indices[-1] - indices[0] - (len(indices) - 1)
    assert passed_over >= 10 and player.reader.dropped >= passed_over  # ~1.5 of every 2.5 frames


def test_as_fast_as_possible_delivers_every_frame_without_waiting(clip):
    source = VideoFileSource(clip)
    player = Player(source, Transport(realtime=False))
    try:
        got = [player.take() for _ in range(90)]
    finally:
        player.close()
        source.close()
    assert [g[1].index for g in got] == list(range(90))
    assert got[-1][0] - got[0][0] < 89 / 25.0  # faster than the file's own rate
    assert player.reader.dropped == 0


def test_pause_step_seek_and_the_end(clip):
    frames = sequential_frames(clip)
    source = VideoFileSource(clip)
    transport = Transport(playing=False, realtime=False)
    states = []
    transport.add_listener(states.append)
    player = Player(source, transport)
    try:
        with pytest.raises(queue.Empty):
            player.take(timeout=0.5)  # paused from the start: nothing is read
        transport.seek(30)  # paused: exactly that frame, as a cut
        _, frame, generation, cut = player.take()
        assert frame.index == 30 and cut and transport.is_current(generation)
        np.testing.assert_array_equal(frame.rgb, frames[30].rgb)
        transport.step(30, 1)  # the next frame: read on, no cut
        _, frame, _, cut = player.take()
        assert frame.index == 31 and not cut
        transport.step(31, -1)  # back: a jump
        _, frame, _, cut = player.take()
        assert frame.index == 30 and cut
        with pytest.raises(queue.Empty):
            player.take(timeout=0.5)  # still paused
        old_generation = transport.generation
        transport.seek(85)
        assert not transport.is_current(old_generation)  # frames read before a seek are stale
        transport.play()
        indices = [player.take()[1].index for _ in range(5)]
        assert indices == [85, 86, 87, 88, 89]
        with pytest.raises(queue.Empty):
            player.take(timeout=0.5)  # the end: playing stops there
        state = transport.state()
        assert state.at_end and not state.playing and state.position == 89 and state.num_frames == 90
        transport.play()  # from the start again
        _, frame, _, cut = player.take()
        assert frame.index == 0 and cut
        transport.pause()
    finally:
        player.close()
        source.close()
    assert any(s.playing for s in states) and states[-1].playing is False


# --- the engine: a cut restarts the pose, identity and focal length stay -------------------------------


def test_reset_pose_keeps_identity_and_focal(ict_model):
    from core.synthetic import SyntheticOptions
    from core.tracker import Tracker, TrackerOptions
    from tests.test_tracker import ExactLandmarks

    opts = SyntheticOptions(width=512, height=512, focal=700, frames=200)
    src = ExactLandmarks(ict_model, opts, noise_px=0.3)
    tracker = Tracker(ict_model, src.emb, (512, 512), TrackerOptions())
    for i in range(40):
        before = tracker.step(src.frame(i)[0], i / 30, i)
    shape, focal = tracker.shape.clone(), tracker.focal_px
    keyframes = list(tracker.keyframes)
    tracker.reset_pose()
    assert tracker.state is None
    assert tracker.focal_px == focal and bool((tracker.shape == shape).all())
    assert tracker.keyframes == keyframes  # the shared estimate of the footage stays
    assert tracker.step(None, 41 / 30, 41).tracking_state == "no_face"  # no old pose carried over the cut
    uv, gt = src.frame(150)  # far on in the footage
    result = tracker.step(uv, 150 / 30, 150)
    # placed afresh, and at once as good a fit as the continuous track had before the cut
    assert result.tracking_state == "tracking" and result.fit_error_px < 1.1 * before.fit_error_px
    assert result.focal_px == pytest.approx(focal, rel=0.05)  # focal length kept, not re-estimated


def test_the_engine_treats_a_seek_as_a_cut(monkeypatch, tmp_path):
    """A real session on a rendered video: a seek makes the next result a cut (pose reset once, the
    frame sought) while identity and focal length are kept."""
    from core.session import SessionOptions, build_session

    from tests.clips import render_head_video

    video = render_head_video(tmp_path / "head.mp4", frames=40)
    session = build_session(SessionOptions(source=str(video), device="cpu"), log=lambda *_: None, with_mesh=True)
    transport = Transport(realtime=False)
    session.pipeline.transport = transport
    resets = []
    real_reset = session.tracker.reset_pose
    monkeypatch.setattr(session.tracker, "reset_pose", lambda: (resets.append(1), real_reset()))
    results = []
    try:
        for result in session.pipeline.run():
            results.append(result)
            if len(results) == 12:
                focal_before = session.tracker.focal_px
                transport.seek(30)
            if result.cut:
                session.pipeline.stop.set()
    finally:
        session.close()
    cut = [r for r in results if r.cut]
    assert len(cut) == 1 and cut[0].frame.index == 30 and len(resets) == 1
    k = results.index(cut[0])
    before = [r.frame.index for r in results[:k]]
    assert before == list(range(k)) and k < 30  # frames read before the seek but not yet tracked: dropped
    assert all(r.frame.index > 30 for r in results[k + 1:])  # then on from the frame sought
    assert cut[0].track.tracking_state == "tracking" and cut[0].mesh_vertices_cam is not None
    assert cut[0].track.focal_px == pytest.approx(focal_before, rel=0.1)
