"""Live streaming (core.streaming): URLs, the VMC pose and blendshape conventions, the two OSC
address spaces decoded by a real python-osc server on loopback, latest-wins sending, a dead
receiver, and ``flamecam track --stream`` checked frame by frame against its own recording."""
from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import ThreadingOSCUDPServer
from scipy.spatial.transform import Rotation

from core.landmarks import MEDIAPIPE_BLENDSHAPE_NAMES, FaceObservation, LandmarkResult
from core.pipeline import FrameResult
from core.sources import Frame
from core.streaming import (ARKIT_BLENDSHAPE_NAMES, MEDIAPIPE_TO_ARKIT, MIRROR_ORDER, UNITY_FROM_CAMERA,
                            FlamecamEncoder, StreamError, StreamModel, Streamer, StreamSwitch, StreamTarget,
                            VmcEncoder, arkit_weights, head_center_cam, mirrored_arkit_name, perfect_sync_name,
                            vmc_head_pose)
from core.tracker import TrackResult

# --- a real python-osc server on loopback ------------------------------------------------------------


class PacketLog(Dispatcher):
    """Keeps every datagram the server receives as one list of (address, params) (python-osc's parser)."""

    def __init__(self):
        super().__init__()
        self.packets: list[list[tuple[str, list]]] = []
        self._lock = threading.Lock()

    def call_handlers_for_packet(self, data, client_address):
        messages = [(m.message.address, list(m.message.params)) for m in OscPacket(data).messages]
        with self._lock:
            self.packets.append(messages)
        return []

    def snapshot(self) -> list[list[tuple[str, list]]]:
        with self._lock:
            return list(self.packets)

    def frames(self, address: str) -> list[dict[str, list]]:
        """Datagrams holding ``address``, each as {address: params} (Blend/Val as {name: value} under its address)."""
        out = []
        for packet in self.snapshot():
            if any(a == address for a, _ in packet):
                frame: dict = {}
                for a, params in packet:
                    if a == "/VMC/Ext/Blend/Val":
                        frame.setdefault(a, {})[params[0]] = params[1]
                        frame.setdefault("blend_order", []).append(params[0])
                    else:
                        frame[a] = params
                    frame.setdefault("order", []).append(a)
                out.append(frame)
        return out


@contextlib.contextmanager
def osc_server(port: int = 0):
    log = PacketLog()
    server = ThreadingOSCUDPServer(("127.0.0.1", port), log)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], log
    finally:
        server.shutdown()
        server.server_close()  # joins the handler threads
        thread.join()


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- frame results made by hand -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(builtin_model) -> StreamModel:
    return StreamModel.from_head(builtin_model)


def make_result(model: StreamModel, index: int, state: str = "tracking", *, rotation=(0.1, -0.2, 0.05),
                translation=(0.02, -0.01, 0.45), expr=None, blendshapes=None, face: bool = True,
                shape_version: int = 1, shape_value: float = 0.0) -> FrameResult:
    rng = np.random.default_rng(index)
    expr = rng.uniform(-0.2, 1.2, model.num_expr) if expr is None else np.asarray(expr, np.float64)
    track = TrackResult(
        frame_index=index, timestamp_s=index / 30.0, tracking_state=state,
        shape=np.full(model.num_shape, shape_value), expr=expr, rotation=np.asarray(rotation, np.float64),
        translation=np.asarray(translation, np.float64), neck_pose=np.zeros(3), jaw_pose=np.array([0.1, 0, 0]),
        eyes_pose=np.arange(6) / 10, intrinsics=np.array([600.0, 601.0, 320.0, 240.0]), rho_per_m=2.1,
        focal_sigma_px=30.0, focal_state="estimating", fit_error_px=1.0, confidence=0.9,
        landmarks_px=np.zeros((478, 2)), fitted_landmarks_px=np.zeros((478, 2)), shape_version=shape_version)
    observation = None
    if face:
        scores = rng.uniform(0, 1, 52).astype(np.float32) if blendshapes is None else np.asarray(blendshapes, np.float32)
        observation = FaceObservation(np.zeros((478, 2), np.float32), np.zeros(478, np.float32), np.ones(478, np.float32),
                                      scores, np.zeros(4, np.float32))
    landmarks = LandmarkResult(index, (640, 480), observation, int(face))
    return FrameResult(Frame(index, index / 30.0, np.zeros((2, 2, 3), np.uint8)), landmarks, track, 1.0, 1.0, 1.0)


def decode(datagrams: list[bytes]) -> list[list[tuple[str, list]]]:
    return [[(m.message.address, list(m.message.params)) for m in OscPacket(d).messages] for d in datagrams]


# --- names and blendshape maps --------------------------------------------------------------------------


def test_arkit_names_and_perfect_sync_spelling():
    assert len(ARKIT_BLENDSHAPE_NAMES) == len(set(ARKIT_BLENDSHAPE_NAMES)) == 52
    assert "tongueOut" in ARKIT_BLENDSHAPE_NAMES and "_neutral" not in ARKIT_BLENDSHAPE_NAMES
    assert perfect_sync_name("eyeBlinkLeft") == "EyeBlinkLeft" and perfect_sync_name("jawOpen") == "JawOpen"
    assert mirrored_arkit_name("eyeLookInLeft") == "eyeLookInRight"
    assert mirrored_arkit_name("jawLeft") == "jawRight" and mirrored_arkit_name("mouthRight") == "mouthLeft"
    assert mirrored_arkit_name("jawOpen") == "jawOpen"
    assert (MIRROR_ORDER[MIRROR_ORDER] == np.arange(52)).all()  # mirroring twice is nothing
    assert (MIRROR_ORDER != np.arange(52)).sum() == 2 * 20  # 20 left/right pairs (jaw and mouth directions too)


def test_mediapipe_scores_map_onto_arkit():
    weights = MEDIAPIPE_TO_ARKIT
    assert weights.shape == (52, len(MEDIAPIPE_BLENDSHAPE_NAMES))
    assert not weights[:, MEDIAPIPE_BLENDSHAPE_NAMES.index("_neutral")].any()
    assert not weights[ARKIT_BLENDSHAPE_NAMES.index("tongueOut")].any()  # MediaPipe does not measure it
    scores = np.arange(52, dtype=np.float32) / 52
    arkit = weights @ scores
    for name in ("eyeBlinkLeft", "mouthSmileRight", "jawOpen"):
        assert arkit[ARKIT_BLENDSHAPE_NAMES.index(name)] == scores[MEDIAPIPE_BLENDSHAPE_NAMES.index(name)]


def test_model_expressions_map_onto_arkit(builtin_model):
    weights = arkit_weights(builtin_model.expression_names)
    names = builtin_model.expression_names
    expr = np.linspace(0, 1, len(names))
    arkit = weights @ expr
    assert arkit[ARKIT_BLENDSHAPE_NAMES.index("eyeBlinkLeft")] == pytest.approx(expr[names.index("eyeBlink_L")])
    assert arkit[ARKIT_BLENDSHAPE_NAMES.index("jawLeft")] == pytest.approx(expr[names.index("jawLeft")])
    # ICT splits two ARKit shapes by side: their mean stands for ARKit's one
    ict_like = ["browInnerUp_L", "browInnerUp_R", *[n for n in names if n != "browInnerUp"]]
    split = arkit_weights(ict_like)
    values = np.zeros(len(ict_like))
    values[:2] = (0.2, 0.6)
    assert (split @ values)[ARKIT_BLENDSHAPE_NAMES.index("browInnerUp")] == pytest.approx(0.4)
    assert arkit_weights(None) is None  # FLAME: PCA components, no names
    assert arkit_weights(["jawOpen", "eyeBlink_L"]) is None  # too few to call it an ARKit rig


# --- URLs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("vmc://127.0.0.1:39539", StreamTarget("vmc", "127.0.0.1", 39539)),
    ("vmc://localhost", StreamTarget("vmc", "localhost", 39539)),
    ("VMC://10.0.0.2:4000?blendshapes=model&mirror=1&names=arkit",
     StreamTarget("vmc", "10.0.0.2", 4000, blendshapes="model", mirror=True, names="arkit")),
    ("flamecam://127.0.0.1:9000", StreamTarget("flamecam", "127.0.0.1", 9000)),
    ("osc://[::1]:9001", StreamTarget("flamecam", "::1", 9001)),
])
def test_stream_urls_parse(url, expected):
    target = StreamTarget.parse(url)
    assert target == expected
    assert StreamTarget.parse(target.url) == target  # the canonical form reads back


@pytest.mark.parametrize("url, says", [
    ("ftp://127.0.0.1:21", "expected vmc://"),
    ("127.0.0.1:39539", "expected vmc://"),
    ("osc://127.0.0.1", "give the receiver's port"),
    ("vmc://127.0.0.1:70000", "1-65535"),
    ("vmc://127.0.0.1:0", "outside 1-65535"),
    ("vmc://:39539", "no host"),
    ("vmc://127.0.0.1:39539?blendshape=model", "unknown option 'blendshape'"),
    ("vmc://127.0.0.1:39539?blendshapes=flame", "use one of mediapipe, model"),
    ("osc://127.0.0.1:9000?mirror=1", "unknown option 'mirror'"),
    ("vmc://127.0.0.1:39539/path", "only vmc://HOST:PORT"),
])
def test_bad_stream_urls_say_why(url, says):
    with pytest.raises(StreamError, match=None) as info:
        StreamTarget.parse(url)
    message = str(info.value)
    assert says in message and "\n" not in message


def test_model_blendshapes_need_arkit_names(model):
    flame_like = dataclasses.replace(model, kind="flame", name="generic_model", expression_names=None)
    with pytest.raises(StreamError, match="no ARKit-named expressions.*blendshapes=mediapipe"):
        Streamer([StreamTarget.parse("vmc://127.0.0.1:9?blendshapes=model")], flame_like)


# --- the VMC head pose -------------------------------------------------------------------------------


def test_vmc_rotation_is_the_same_rotation_in_avatar_axes():
    """Rotating a model-space vector and then mapping it to the avatar equals mapping then rotating by
    the quaternion (avatar = diag(-1, 1, 1)·model), for any rotation."""
    rng = np.random.default_rng(3)
    to_avatar = np.diag([-1.0, 1.0, 1.0])
    for _ in range(20):
        aa = rng.normal(0, 0.7, 3)
        _, quat = vmc_head_pose(aa, np.zeros(3), np.zeros(3))
        assert quat[3] >= 0 and np.linalg.norm(quat) == pytest.approx(1.0)
        v = rng.normal(size=3)
        rotated_then_mapped = to_avatar @ Rotation.from_rotvec(aa).apply(v)
        np.testing.assert_allclose(Rotation.from_quat(quat).apply(to_avatar @ v), rotated_then_mapped, atol=1e-12)


def test_vmc_head_turns_like_the_subject():
    forward = np.array([0.0, 0.0, 1.0])  # the avatar faces +z (Unity humanoid convention)
    position, quat = vmc_head_pose(np.zeros(3), np.zeros(3), np.zeros(3))
    np.testing.assert_allclose(quat, [0, 0, 0, 1], atol=1e-12)  # looking into the camera: rest pose
    # the subject turns to their own left (about model +y, face towards model +x): the avatar to its left (-x)
    _, quat = vmc_head_pose(np.array([0.0, 0.4, 0.0]), np.zeros(3), np.zeros(3))
    look = Rotation.from_quat(quat).apply(forward)
    assert look[0] < -0.3 and abs(look[1]) < 1e-9
    # the subject looks down (about model +x): so does the avatar
    _, quat = vmc_head_pose(np.array([0.4, 0.0, 0.0]), np.zeros(3), np.zeros(3))
    assert Rotation.from_quat(quat).apply(forward)[1] < -0.3
    # mirror: the reflection across the avatar's x = 0 plane
    _, plain = vmc_head_pose(np.array([0.1, 0.3, -0.2]), np.zeros(3), np.zeros(3))
    _, mirrored = vmc_head_pose(np.array([0.1, 0.3, -0.2]), np.zeros(3), np.zeros(3), mirror=True)
    np.testing.assert_allclose(mirrored, plain * [1, -1, -1, 1], atol=1e-12)


def test_vmc_head_position_follows_the_subject():
    reference = np.array([0.0, 0.0, 0.5])
    # towards image right (+x camera) is the subject's left: the avatar moves to its left (-x)
    position, _ = vmc_head_pose(np.zeros(3), reference + [0.05, 0, 0], reference)
    np.testing.assert_allclose(position, [-0.05, 0, 0], atol=1e-12)
    # up in the image (-y camera): up; towards the camera (-z): towards the viewer (+z, the avatar's front)
    position, _ = vmc_head_pose(np.zeros(3), reference + [0, -0.02, -0.1], reference)
    np.testing.assert_allclose(position, [0, 0.02, 0.1], atol=1e-12)
    position, _ = vmc_head_pose(np.zeros(3), reference + [0.05, 0, 0], reference, mirror=True)
    np.testing.assert_allclose(position, [0.05, 0, 0], atol=1e-12)


# --- encoders --------------------------------------------------------------------------------------------


def test_vmc_bundle_of_a_tracked_frame(model):
    result = make_result(model, 7)
    [packet] = decode(VmcEncoder(StreamTarget.parse("vmc://127.0.0.1"), model).encode(result))
    addresses = [a for a, _ in packet]
    assert addresses[0] == "/VMC/Ext/Bone/Pos" and addresses[-2:] == ["/VMC/Ext/OK", "/VMC/Ext/T"]
    assert addresses.count("/VMC/Ext/Blend/Val") == 52 and addresses.index("/VMC/Ext/Blend/Apply") == 53
    bone = packet[0][1]
    assert bone[0] == "Head" and len(bone) == 8
    np.testing.assert_allclose(bone[1:4], 0.0, atol=1e-7)  # the first tracked frame is the position reference
    _, quat = vmc_head_pose(result.track.rotation, np.zeros(3), np.zeros(3))
    np.testing.assert_allclose(bone[4:], quat, atol=1e-6)
    blend = {p[0]: p[1] for a, p in packet if a == "/VMC/Ext/Blend/Val"}
    assert list(blend) == [perfect_sync_name(n) for n in ARKIT_BLENDSHAPE_NAMES]
    scores = result.landmarks.face.blendshapes
    assert blend["EyeBlinkLeft"] == pytest.approx(scores[MEDIAPIPE_BLENDSHAPE_NAMES.index("eyeBlinkLeft")], abs=1e-6)
    assert blend["TongueOut"] == 0.0
    assert dict(packet)["/VMC/Ext/OK"] == [1, 3, 0, 1]
    assert dict(packet)["/VMC/Ext/T"][0] == pytest.approx(7 / 30, abs=1e-6)


def test_vmc_model_blendshapes_mirrored(model, builtin_model):
    names = builtin_model.expression_names
    expr = np.zeros(model.num_expr)
    expr[names.index("eyeBlink_L")] = 0.8
    expr[names.index("jawLeft")] = 1.7  # clipped to 1
    expr[names.index("mouthSmile_R")] = -0.3  # clipped to 0
    encoder = VmcEncoder(StreamTarget.parse("vmc://127.0.0.1?blendshapes=model&mirror=1&names=arkit"), model)
    [packet] = decode(encoder.encode(make_result(model, 1, expr=expr)))
    blend = {p[0]: p[1] for a, p in packet if a == "/VMC/Ext/Blend/Val"}
    assert blend["eyeBlinkRight"] == pytest.approx(0.8) and blend["eyeBlinkLeft"] == 0.0
    assert blend["jawRight"] == 1.0 and blend["mouthSmileLeft"] == 0.0


@pytest.mark.parametrize("state, kw", [("no_face", {"face": False}), ("lost", {"face": False}),
                                       ("tracking", {"rotation": (np.nan, 0, 0)})])
def test_frames_without_a_tracked_face_send_the_state_but_no_pose(model, state, kw):
    result = make_result(model, 3, state, **kw)
    [vmc] = decode(VmcEncoder(StreamTarget.parse("vmc://127.0.0.1"), model).encode(result))
    assert [a for a, _ in vmc] == ["/VMC/Ext/OK", "/VMC/Ext/T"] and dict(vmc)["/VMC/Ext/OK"] == [1, 3, 0, 0]
    packets = decode(FlamecamEncoder(StreamTarget.parse("osc://127.0.0.1:9"), model).encode(result))
    frame = dict(packets[-1])
    assert list(frame) == ["/flamecam/frame", "/flamecam/intrinsics", "/flamecam/focal"]
    assert frame["/flamecam/frame"] == [1, 3, pytest.approx(0.1), state, 1]
    assert frame["/flamecam/focal"] == [600.0, 30.0, "estimating"]


def test_flamecam_bundle_and_identity_repeats(model):
    now = [100.0]
    encoder = FlamecamEncoder(StreamTarget.parse("flamecam://127.0.0.1:9"), model, clock=lambda: now[0])
    result = make_result(model, 4, shape_value=0.25)
    identity, frame = decode(encoder.encode(result))
    assert dict(identity)["/flamecam/model"] == ["builtin", "builtin", model.num_shape, model.num_expr]
    assert dict(identity)["/flamecam/shape"] == [1, *[0.25] * model.num_shape]
    frame = dict(frame)
    track = result.track
    np.testing.assert_allclose(frame["/flamecam/rotation"], track.rotation, rtol=1e-6)
    np.testing.assert_allclose(frame["/flamecam/translation"], track.translation, rtol=1e-6)
    np.testing.assert_allclose(frame["/flamecam/expr"], track.expr, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(frame["/flamecam/intrinsics"], track.intrinsics)
    np.testing.assert_allclose(frame["/flamecam/pose/eyes"], track.eyes_pose, atol=1e-7)
    assert frame["/flamecam/rho"] == [pytest.approx(2.1)] and frame["/flamecam/frame"][:2] == [1, 4]
    np.testing.assert_allclose(frame["/flamecam/blendshapes"], MEDIAPIPE_TO_ARKIT @ result.landmarks.face.blendshapes,
                               atol=1e-7)
    assert len(encoder.encode(make_result(model, 5))) == 1  # same identity, 0 s later: not repeated
    assert len(encoder.encode(make_result(model, 6, shape_version=2))) == 2  # a new identity: sent at once
    now[0] += 2.5
    assert len(encoder.encode(make_result(model, 7, shape_version=2))) == 2  # repeated after 2 s


# --- sending ---------------------------------------------------------------------------------------------


def test_streamer_delivers_the_newest_frames_over_loopback(model):
    with osc_server() as (port_vmc, vmc_log), osc_server() as (port_osc, osc_log):
        streamer = Streamer([StreamTarget.parse(f"vmc://127.0.0.1:{port_vmc}"),
                             StreamTarget.parse(f"osc://127.0.0.1:{port_osc}")], model)
        for index in range(200):  # as fast as possible: the sender may skip, never queue
            streamer.send(make_result(model, index))
        assert streamer.close() and not streamer.alive
        status = streamer.status
        assert status.submitted == 200 and not status.running
        assert wait_for(lambda: len(osc_log.frames("/flamecam/frame")) == status.targets[1].frames)
        assert wait_for(lambda: len(vmc_log.frames("/VMC/Ext/T")) == status.targets[0].frames)
        received = sorted(f["/flamecam/frame"][1] for f in osc_log.frames("/flamecam/frame"))
        assert received[-1] == 199  # close() sends the newest result still waiting
        assert len(received) == len(set(received)) == 200 - status.skipped  # none twice, skipped ones never
        times = sorted(f["/VMC/Ext/T"][0] for f in vmc_log.frames("/VMC/Ext/T"))
        assert times[-1] == pytest.approx(199 / 30, abs=1e-5)
        assert all(t.refused == t.errors == 0 for t in status.targets)


def test_recenter_makes_the_current_head_position_the_reference(model):
    with osc_server() as (port, log):
        with Streamer([StreamTarget.parse(f"vmc://127.0.0.1:{port}")], model) as streamer:
            for index, x in enumerate((0.0, 0.04)):
                streamer.send(make_result(model, index, translation=(x, 0.0, 0.5)))
                assert wait_for(lambda n=index + 1: len(log.frames("/VMC/Ext/Bone/Pos")) == n)
            streamer.recenter()
            streamer.send(make_result(model, 2, translation=(0.04, 0.0, 0.5)))
            assert wait_for(lambda: len(log.frames("/VMC/Ext/Bone/Pos")) == 3)
    positions = {round(f["/VMC/Ext/T"][0] * 30): f["/VMC/Ext/Bone/Pos"][1:4] for f in log.frames("/VMC/Ext/Bone/Pos")}
    np.testing.assert_allclose(positions[0], 0.0, atol=1e-7)
    np.testing.assert_allclose(positions[1], [-0.04, 0, 0], atol=1e-6)  # 4 cm to the subject's left
    np.testing.assert_allclose(positions[2], 0.0, atol=1e-7)  # the same place, after recentring


def test_a_dead_receiver_costs_nothing_and_raises_nothing(model):
    port = free_udp_port()  # nothing listens here: the kernel answers with ICMP port unreachable
    streamer = Streamer([StreamTarget.parse(f"osc://127.0.0.1:{port}")], model)
    try:
        for index in range(40):
            streamer.send(make_result(model, index))
            time.sleep(0.005)
        assert wait_for(lambda: streamer.status.targets[0].refused > 0, 5.0)
        assert streamer.alive and streamer.status.targets[0].errors == 0
        # the receiver starts late: the same streamer reaches it from then on
        with osc_server(port) as (_, log):
            for index in range(40, 60):
                streamer.send(make_result(model, index))
                time.sleep(0.005)
            assert wait_for(lambda: len(log.frames("/flamecam/frame")) > 0, 5.0)
            assert min(f["/flamecam/frame"][1] for f in log.frames("/flamecam/frame")) >= 40
    finally:
        assert streamer.close()


def test_an_unresolvable_host_is_reported_not_raised(model):
    with Streamer([StreamTarget.parse("vmc://no-such-host.invalid:39539")], model) as streamer:
        streamer.send(make_result(model, 0))
        assert wait_for(lambda: streamer.status.targets[0].errors > 0, 10.0)
    target = streamer.status.targets[0]
    assert target.frames == 0 and "no-such-host.invalid" in target.last_error
    assert "errors, last:" in target.describe()


def test_stream_switch_changes_targets_from_another_thread(model):
    flame_like = dataclasses.replace(model, kind="flame", name="generic_model", expression_names=None)
    with osc_server() as (port_a, log_a), osc_server() as (port_b, log_b):
        switch = StreamSwitch()
        switch.set_model(flame_like)
        switch.send(make_result(model, 0))  # nothing requested: nothing sent
        requester = threading.Thread(target=switch.request, args=(f"vmc://127.0.0.1:{port_a}?blendshapes=model",))
        requester.start()
        requester.join()
        switch.send(make_result(model, 1))
        assert "no ARKit-named expressions" in switch.problem and "MediaPipe" in switch.problem
        switch.request(f"osc://127.0.0.1:{port_b}")
        switch.send(make_result(model, 2))
        switch.request("")
        switch.send(make_result(model, 3))
        assert switch.streamer is None
        switch.close()
        assert wait_for(lambda: log_a.frames("/VMC/Ext/T") and log_b.frames("/flamecam/frame"))
        time.sleep(0.2)
        assert [f["/VMC/Ext/T"][0] for f in log_a.frames("/VMC/Ext/T")] == [pytest.approx(1 / 30)]
        vmc = log_a.frames("/VMC/Ext/T")[0]
        assert len(vmc["/VMC/Ext/Blend/Val"]) == 52  # MediaPipe's, as the problem says
        assert [f["/flamecam/frame"][1] for f in log_b.frames("/flamecam/frame")] == [2]
        switch.request("ftp://x")
        switch.send(make_result(model, 5))
        assert "expected vmc://" in switch.problem and switch.streamer is None
        switch.close()


# --- flamecam track --stream, checked against its own recording --------------------------------------


def test_bad_stream_url_is_one_line_and_exit_2(tmp_path, capsys):
    from app.cli import main

    out = tmp_path / "x.fcrec"
    code = main(["track", "synthetic:frames=2", "-o", str(out), "--quiet", "--stream", "vmc://127.0.0.1:39539",
                 "--stream", "udp://127.0.0.1:9000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("flamecam track: error: stream 'udp://127.0.0.1:9000': expected vmc://")
    assert not out.exists()
    code = main(["track", "synthetic:frames=2", "-o", str(out), "--quiet", "--stream", "vmc://no-such-host.invalid"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot resolve host 'no-such-host.invalid'" in err[0]


@pytest.mark.slow
def test_track_streams_what_it_records(tmp_path, builtin_model, capsys):
    from app.cli import main
    from core.recording import load

    frames = 30
    out = tmp_path / "streamed.fcrec"
    with osc_server() as (p_vmc, vmc), osc_server() as (p_model, vmc_model), osc_server() as (p_osc, osc):
        code = main(["track", f"synthetic:frames={frames},width=320,height=240,still=0.2", "-o", str(out), "--quiet",
                     "--stream", f"vmc://127.0.0.1:{p_vmc}",
                     "--stream", f"vmc://127.0.0.1:{p_model}?blendshapes=model&mirror=1",
                     "--stream", f"osc://127.0.0.1:{p_osc}"])
        assert code == 0
        assert wait_for(lambda: len(osc.frames("/flamecam/frame")) > 0 and len(vmc_model.frames("/VMC/Ext/T")) > 0)
        time.sleep(0.3)
    stdout = capsys.readouterr().out
    assert stdout.count("frames sent to") == 3 and "refused" not in stdout
    rec = load(out)
    assert len(rec) == frames and rec.complete
    row = {int(i): k for k, i in enumerate(rec.frame_index)}
    by_time = lambda t: int(np.argmin(np.abs(rec.timestamp_s - t)))  # noqa: E731
    states = rec.tracking_state_names()

    # flamecam address space: every received frame equals the recorded one
    got = osc.frames("/flamecam/frame")
    assert len(got) >= frames // 2, f"only {len(got)} of {frames} frames arrived"
    shapes = {p["/flamecam/shape"][0]: np.array(p["/flamecam/shape"][1:]) for p in osc.frames("/flamecam/shape")}
    for frame in got:
        version, index, t, state, shape_version = frame["/flamecam/frame"]
        k = row[index]
        assert version == 1 and t == pytest.approx(rec.timestamp_s[k]) and state == states[k]
        np.testing.assert_allclose(frame["/flamecam/intrinsics"], rec.intrinsics[k], rtol=1e-6)
        assert frame["/flamecam/focal"][1] == pytest.approx(rec.focal_sigma_px[k], rel=1e-6)
        assert frame["/flamecam/focal"][2] == rec.focal_state_names()[k]
        if state in ("tracking", "reacquired"):
            for address, values in (("rotation", rec.rotation), ("translation", rec.translation), ("expr", rec.expr),
                                    ("pose/jaw", rec.jaw_pose), ("pose/neck", rec.neck_pose),
                                    ("pose/eyes", rec.eyes_pose)):
                np.testing.assert_allclose(frame[f"/flamecam/{address}"], values[k], rtol=1e-6, atol=1e-7,
                                           err_msg=f"{address} of frame {index}")
            assert frame["/flamecam/rho"][0] == pytest.approx(rec.rho_per_m[k], rel=1e-6)
        if shape_version in shapes:
            np.testing.assert_allclose(shapes[shape_version], rec.shape_per_frame[k], rtol=1e-6, atol=1e-7)
    assert shapes, "the identity never arrived"

    # VMC: the head pose of the recorded rotation and head-centre motion, MediaPipe's blendshapes
    plain = [f for f in vmc.frames("/VMC/Ext/T") if "/VMC/Ext/Bone/Pos" in f]
    assert len(plain) >= frames // 2
    blend_by_index = {f["/flamecam/frame"][1]: f["/flamecam/blendshapes"] for f in got if "/flamecam/blendshapes" in f}
    centers = np.array([head_center_cam(r, t, builtin_model.head_center) for r, t in zip(rec.rotation, rec.translation)])
    first = plain[0]
    k0 = by_time(first["/VMC/Ext/T"][0])
    for frame in plain:
        k = by_time(frame["/VMC/Ext/T"][0])
        assert frame["/VMC/Ext/T"][0] == pytest.approx(rec.timestamp_s[k], abs=1e-5)
        bone = frame["/VMC/Ext/Bone/Pos"]
        _, quat = vmc_head_pose(rec.rotation[k], np.zeros(3), np.zeros(3))
        assert abs(np.dot(bone[4:], quat)) == pytest.approx(1.0, abs=1e-6)
        moved = np.array(bone[1:4]) - np.array(first["/VMC/Ext/Bone/Pos"][1:4])
        np.testing.assert_allclose(moved, UNITY_FROM_CAMERA @ (centers[k] - centers[k0]), atol=2e-6)
        assert frame["blend_order"] == [perfect_sync_name(n) for n in ARKIT_BLENDSHAPE_NAMES]
        assert frame["order"][-3:] == ["/VMC/Ext/Blend/Apply", "/VMC/Ext/OK", "/VMC/Ext/T"]
        values = np.array([frame["/VMC/Ext/Blend/Val"][perfect_sync_name(n)] for n in ARKIT_BLENDSHAPE_NAMES])
        assert ((values >= 0) & (values <= 1)).all() and values[ARKIT_BLENDSHAPE_NAMES.index("tongueOut")] == 0
        index = int(rec.frame_index[k])
        if index in blend_by_index:  # the same MediaPipe scores as the flamecam stream of that frame
            np.testing.assert_allclose(values, blend_by_index[index], atol=1e-7)

    # VMC, model blendshapes, mirrored: the recorded expression through the ARKit map, left and right swapped
    weights = arkit_weights(builtin_model.expression_names)
    mirrored = [f for f in vmc_model.frames("/VMC/Ext/T") if "/VMC/Ext/Bone/Pos" in f]
    assert len(mirrored) >= frames // 2
    plain_quat = {round(f["/VMC/Ext/T"][0], 4): np.array(f["/VMC/Ext/Bone/Pos"][4:]) for f in plain}
    for frame in mirrored:
        k = by_time(frame["/VMC/Ext/T"][0])
        expected = np.clip(weights @ rec.expr[k], 0, 1)
        for j, name in enumerate(ARKIT_BLENDSHAPE_NAMES):
            sent_as = perfect_sync_name(ARKIT_BLENDSHAPE_NAMES[MIRROR_ORDER[j]])
            assert frame["/VMC/Ext/Blend/Val"][sent_as] == pytest.approx(expected[j], abs=1e-6), name
        q = plain_quat.get(round(frame["/VMC/Ext/T"][0], 4))
        if q is not None:
            np.testing.assert_allclose(frame["/VMC/Ext/Bone/Pos"][4:], q * [1, -1, -1, 1], atol=1e-6)


@pytest.mark.slow
@pytest.mark.needs_ict
def test_mediapipe_left_is_the_subjects_left(ict_path):
    """ARKit's, ICT's and MediaPipe's Left is the subject's own left (model +x), so no source is swapped:
    ICT's eyeBlink_L / mouthSmile_L (vertices at model x > 0) make MediaPipe's ...Left respond."""
    from core.landmarks import FaceLandmarker, LandmarkerOptions
    from core.synthetic import SyntheticOptions, SyntheticSource

    source = SyntheticSource(SyntheticOptions(model=str(ict_path), width=512, height=512))
    head, names = source.head, source.head.expression_names
    index = MEDIAPIPE_BLENDSHAPE_NAMES.index
    try:
        with FaceLandmarker(LandmarkerOptions(running_mode="image")) as landmarker:
            for ict, left, right in (("eyeBlink_L", "eyeBlinkLeft", "eyeBlinkRight"),
                                     ("mouthSmile_L", "mouthSmileLeft", "mouthSmileRight"),
                                     ("eyeBlink_R", "eyeBlinkRight", "eyeBlinkLeft")):
                moved = np.linalg.norm(head.exprdirs[:, :, names.index(ict)], axis=1)
                side = np.sign(head.v_template[np.argsort(moved)[-50:], 0].mean())
                assert side == (1 if ict.endswith("_L") else -1)  # _L moves the subject's left (model +x)
                expr = np.zeros(head.num_expr, np.float32)
                expr[names.index(ict)] = 1.0
                truth = dataclasses.replace(source.trajectory.at(0), expr=expr)
                scores = landmarker.detect(source.render(truth)).face.blendshapes
                assert scores[index(left)] > scores[index(right)] + 0.15, (ict, scores[index(left)], scores[index(right)])
    finally:
        source.close()
