"""Live streaming of tracking results over OSC/UDP (python-osc): the VMC protocol and flamecam's own addresses.

A :class:`Streamer` takes each :class:`core.pipeline.FrameResult` from the tracking thread with
:meth:`Streamer.send`, which only stores it (latest wins: a result the sender has not taken yet is
replaced, never queued) and wakes a small sender thread. That thread turns the newest result into
one OSC bundle per target and sends it from a non-blocking, connected UDP socket. A receiver that
is not running (ICMP port unreachable comes back as ``ConnectionRefusedError`` on the next send), an
unresolvable host or a full socket buffer is counted in :class:`TargetStatus` and never reaches the
tracking thread. Targets are URLs (:meth:`StreamTarget.parse`):

``vmc://HOST[:PORT][?blendshapes=mediapipe|model&mirror=0|1&names=perfectsync|arkit]`` (port 39539 by default)
    The VMC protocol (https://protocol.vmc.info), Performer → Marionette, as VSeeFace, Warudo, VNyan,
    EVMC4U and the Blender VMC add-ons receive it.
``flamecam://HOST:PORT`` or ``osc://HOST:PORT``
    flamecam's full parameter set (the address space below), for your own tools (TouchDesigner, Max,
    Unity/Unreal/Blender scripts, Python).

VMC output, one bundle per frame (about 2.7 kB with 52 blendshapes; one datagram, as VMC senders do):

* ``/VMC/Ext/Bone/Pos "Head" px py pz qx qy qz qw`` — only for frames with a tracked face.
  Unity's left-handed axes of the avatar (+x its right, +y up, +z its forward: Unity humanoids face
  +z, and receivers look at them from the front): avatar = ``diag(-1, 1, 1)`` · flamecam model axes
  (+x the subject's left, +y up, +z out of the face) and avatar = ``diag(-1, -1, -1)`` · OpenCV
  camera axes (the subject faces the camera as the avatar faces its viewer). The
  rotation is the head's rotation relative to looking straight along the camera's optical axis
  (flamecam's ``rotation`` = 0), i.e. ``R_unity = M·R·M`` with ``M = diag(-1, 1, 1)``, as a
  quaternion; VMC bone poses are local (relative to the parent bone), and with the neck and body
  at rest this is the head's pose in the avatar. The position is the head centre's (between the
  eyes) displacement in metres from where it was in the first tracked frame of the stream (see
  :meth:`Streamer.recenter`), in the same axes; receivers that copy bone positions literally
  (EVMC4U's "Bone Position Synchronize") should turn that off, as for any face-only sender.
* ``/VMC/Ext/Blend/Val NAME VALUE`` for each of the 52 ARKit blendshapes, then
  ``/VMC/Ext/Blend/Apply`` — with a tracked face only. ``blendshapes=mediapipe`` (default): MediaPipe's
  52 scores (51 ARKit shapes and ``_neutral``; ``tongueOut`` is not measured and sent as 0).
  ``blendshapes=model``: the fitted expression of a head model whose expressions carry ARKit names
  (ICT-FaceKit, the built-in head), clipped to [0, 1]; ICT's split ``browInnerUp_L/_R`` and
  ``cheekPuff_L/_R`` are averaged into ARKit's single ones. FLAME's expressions are PCA components:
  FLAME streams MediaPipe's. Names are spelled as Perfect Sync avatars name their VRM blendshape
  clips (hinzka's setup, VMagicMirror's ``PerfectSyncBlendShapeNames``): ARKit's names with a
  capital first letter, ``EyeBlinkLeft``, ``MouthSmileRight``, ``JawOpen``; ``names=arkit`` sends
  Apple's spelling (``eyeBlinkLeft``) for receivers that match those. Left/Right are the subject's
  own sides in ARKit, MediaPipe and ICT alike (checked by rendering ICT's ``eyeBlink_L``:
  MediaPipe's ``eyeBlinkLeft`` responds; ``tests/test_streaming.py``).
* ``/VMC/Ext/OK 1 3 0 TRACKING`` (loaded, calibrated, normal mode, tracking status 1 with a face,
  0 without: the protocol's v2.7 form; older receivers read the first value) and
  ``/VMC/Ext/T SECONDS`` (the frame's timestamp: time since the source started), every frame.

Mirror: without it the avatar moves like the user's mirror image, the usual VTuber view (the user
blinks their left eye, the avatar its left eye, which faces the viewer's right). ``mirror=1``
reflects the pose across the avatar's sagittal plane (x → −x: ``qy``, ``qz`` and ``px`` change sign)
and swaps Left/Right blendshapes (``jawLeft`` ↔ ``jawRight``, ``mouthLeft`` ↔ ``mouthRight`` too), so
the avatar moves as the user appears in the unmirrored camera image.

flamecam address space (``flamecam://`` / ``osc://``), raw values, no mirroring; float32 ``f``
unless noted. Per frame, one bundle:

=========================  =======================  ====================================================
address                    arguments                meaning
=========================  =======================  ====================================================
``/flamecam/frame``        ``i i d s i``            version of this address space (1), frame index,
                                                    timestamp s (float64, OSC ``d``), tracking state
                                                    (tracking | reacquired | lost | no_face), shape version
``/flamecam/intrinsics``   ``f f f f``              fx, fy, cx, cy (pixels; pixel i covers [i, i+1))
``/flamecam/focal``        ``f f s``                focal length px, its σ px, focal state (fixed |
                                                    not_observable | estimating | converged)
``/flamecam/rotation``     3 ``f``                  axis-angle (rad), model space; camera =
                                                    diag(1,−1,−1)·R·model + translation
``/flamecam/translation``  3 ``f``                  metres, OpenCV camera space (+x right, +y down, +z forward)
``/flamecam/rho``          ``f``                    ρ = 1/Z0 (1/m), Z0 = the head centre's depth
``/flamecam/expr``         E ``f``                  expression coefficients (the model's own, E of them)
``/flamecam/pose/jaw``     3 ``f``                  axis-angle (rad)
``/flamecam/pose/neck``    3 ``f``                  axis-angle (rad)
``/flamecam/pose/eyes``    6 ``f``                  left eye, right eye axis-angle (rad)
``/flamecam/blendshapes``  52 ``f``                 MediaPipe's scores in ARKit order (``ARKIT_BLENDSHAPE_NAMES``,
                                                    alphabetical; ``tongueOut`` 0); only when MediaPipe saw a face
=========================  =======================  ====================================================

Frames without a tracked face (``no_face``, ``lost``, or a non-finite pose) carry only ``frame``,
``intrinsics`` and ``focal``. Identity, in its own bundle, when it changes and again every 2 s
(UDP may lose a packet, a receiver may start late): ``/flamecam/model s s i i`` (model name, kind,
S, E) and ``/flamecam/shape i`` + S ``f`` (shape version, then the identity coefficients). A
frame's ``shape version`` says which identity it belongs to.
"""
from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Sequence
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY
from pythonosc.parsing import osc_types

from core.landmarks import MEDIAPIPE_BLENDSHAPE_NAMES, arkit_name

VMC_DEFAULT_PORT = 39539
FLAMECAM_OSC_VERSION = 1
SHAPE_REPEAT_S = 2.0
TRACKED_STATES = ("tracking", "reacquired")
PROTOCOLS = {"vmc": "vmc", "flamecam": "flamecam", "osc": "flamecam"}

# Apple's 52 ARKit blendshape locations (alphabetical): MediaPipe's 51 plus tongueOut.
ARKIT_BLENDSHAPE_NAMES: tuple[str, ...] = tuple(sorted((*MEDIAPIPE_BLENDSHAPE_NAMES[1:], "tongueOut")))
_SIDE_SWAP = {"Left": "Right", "Right": "Left"}

# Avatar (Unity, left-handed, facing +z) from flamecam model axes and from OpenCV camera axes.
UNITY_FROM_MODEL = np.diag([-1.0, 1.0, 1.0])
UNITY_FROM_CAMERA = np.diag([-1.0, -1.0, -1.0])


class StreamError(ValueError):
    """A stream URL or option that cannot work (one line, says what to write instead)."""


# --- names ----------------------------------------------------------------------------------------


def perfect_sync_name(name: str) -> str:
    """ARKit name as Perfect Sync VRM clips spell it: ``eyeBlinkLeft`` -> ``EyeBlinkLeft``."""
    return name[:1].upper() + name[1:]


def mirrored_arkit_name(name: str) -> str:
    """The ARKit name of the other side: ``eyeBlinkLeft`` -> ``eyeBlinkRight``, ``jawLeft`` -> ``jawRight``."""
    for side, other in _SIDE_SWAP.items():
        if name.endswith(side):
            return name[: -len(side)] + other
    return name


def arkit_weights(source_names: Sequence[str] | None) -> np.ndarray | None:
    """(52, N) float32 W with ``arkit = W @ values`` for N values named ``source_names``.

    Names are matched in any spelling :func:`core.landmarks.arkit_name` normalises; an ARKit shape
    the source splits by side (ICT's ``browInnerUp_L`` / ``_R``) is their mean; one it lacks is 0.
    None when fewer than half of the 52 are found (e.g. FLAME: no names, PCA components).
    """
    if not source_names:
        return None
    keys = [arkit_name(n) for n in source_names]
    weights = np.zeros((len(ARKIT_BLENDSHAPE_NAMES), len(keys)), np.float32)
    found = 0
    for row, name in enumerate(ARKIT_BLENDSHAPE_NAMES):
        key = arkit_name(name)
        cols = [j for j, k in enumerate(keys) if k == key] or [j for j, k in enumerate(keys)
                                                               if k in (key + "_L", key + "_R")]
        if cols:
            weights[row, cols] = 1.0 / len(cols)
            found += 1
    return weights if found >= len(ARKIT_BLENDSHAPE_NAMES) // 2 else None


MEDIAPIPE_TO_ARKIT = arkit_weights(MEDIAPIPE_BLENDSHAPE_NAMES)
MIRROR_ORDER = np.array([ARKIT_BLENDSHAPE_NAMES.index(mirrored_arkit_name(n)) for n in ARKIT_BLENDSHAPE_NAMES])


# --- targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamTarget:
    """Where and what to stream; see the module docstring for the URL forms."""

    protocol: str  # vmc | flamecam
    host: str
    port: int
    blendshapes: str = "mediapipe"  # vmc: mediapipe | model
    mirror: bool = False  # vmc
    names: str = "perfectsync"  # vmc: perfectsync | arkit

    @classmethod
    def parse(cls, url: str) -> "StreamTarget":
        """Parse (not resolve) a stream URL; :class:`StreamError` with a one-line reason."""
        text = str(url).strip()
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise StreamError(f"stream {text!r}: {exc} (ports are 1-65535)") from None
        scheme = parts.scheme.lower()
        if scheme not in PROTOCOLS or not parts.netloc:
            raise StreamError(f"stream {text!r}: expected vmc://HOST:PORT, flamecam://HOST:PORT or osc://HOST:PORT")
        protocol = PROTOCOLS[scheme]
        if not parts.hostname:
            raise StreamError(f"stream {text!r}: no host (e.g. {scheme}://127.0.0.1:{VMC_DEFAULT_PORT})")
        if port is None:
            if protocol != "vmc":
                raise StreamError(f"stream {text!r}: give the receiver's port, e.g. {scheme}://{parts.hostname}:9000")
            port = VMC_DEFAULT_PORT
        if not 1 <= port <= 65535:
            raise StreamError(f"stream {text!r}: port {port} is outside 1-65535")
        if parts.path not in ("", "/") or parts.fragment or parts.username:
            raise StreamError(f"stream {text!r}: only {scheme}://HOST:PORT and ?options are understood")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        allowed = {"blendshapes": ("mediapipe", "model"), "mirror": ("0", "1", "false", "true", "no", "yes"),
                   "names": ("perfectsync", "arkit")} if protocol == "vmc" else {}
        for key, value in options.items():
            if key not in allowed:
                valid = ", ".join(allowed) or f"none for {scheme}://"
                raise StreamError(f"stream {text!r}: unknown option {key!r} (valid: {valid})")
            if value.lower() not in allowed[key]:
                raise StreamError(f"stream {text!r}: {key}={value!r}; use one of {', '.join(allowed[key])}")
        return cls(protocol, parts.hostname, port, blendshapes=options.get("blendshapes", "mediapipe").lower(),
                   mirror=options.get("mirror", "0").lower() in ("1", "true", "yes"),
                   names=options.get("names", "perfectsync").lower())

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.protocol != "vmc":
            return f"flamecam://{host}:{self.port}"
        options = [f"blendshapes={self.blendshapes}"] + (["mirror=1"] if self.mirror else []) + (
            [f"names={self.names}"] if self.names != "perfectsync" else [])
        return f"vmc://{host}:{self.port}?{'&'.join(options)}"

    def resolve(self) -> tuple:
        """(family, socket address) of the receiver; :class:`StreamError` when the host does not resolve."""
        try:
            info = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise StreamError(f"stream {self.url}: cannot resolve host {self.host!r} ({exc})") from None
        family, _type, _proto, _name, address = info[0]
        return family, address


@dataclass(frozen=True)
class StreamModel:
    """What streaming needs of the head model (constants of a session)."""

    name: str
    kind: str
    num_shape: int
    num_expr: int
    head_center: np.ndarray  # (3,) model-space point between the eyes (metres)
    expression_names: tuple[str, ...] | None = None

    @classmethod
    def from_head(cls, head) -> "StreamModel":
        names = tuple(head.expression_names) if head.expression_names else None
        return cls(head.name, head.kind, int(head.num_shape), int(head.num_expr),
                   np.asarray(head.head_center, np.float64).copy(), names)

    @property
    def has_arkit_expressions(self) -> bool:
        return arkit_weights(self.expression_names) is not None


def check_target(target: StreamTarget, model: StreamModel) -> None:
    """:class:`StreamError` when ``target`` asks for something ``model`` cannot give."""
    if target.protocol == "vmc" and target.blendshapes == "model" and not model.has_arkit_expressions:
        raise StreamError(f"stream {target.url}: the {model.kind} head model {model.name!r} has no ARKit-named "
                          "expressions (FLAME's are PCA components); use blendshapes=mediapipe")


# --- pose -----------------------------------------------------------------------------------------


def head_center_cam(rotation_aa, translation_m, head_center_model) -> np.ndarray:
    """(3,) camera-space head centre of a pose (``core.camera.head_center_cam``), float64."""
    from core import camera  # noqa: PLC0415

    rotation = camera.axis_angle_to_matrix(np.asarray(rotation_aa, np.float64))
    return camera.head_center_cam(head_center_model, rotation, np.asarray(translation_m, np.float64))


def vmc_head_pose(rotation_aa: np.ndarray, center_cam: np.ndarray, reference_cam: np.ndarray,
                  mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The VMC ``Head`` bone pose of a flamecam head pose (see the module docstring).

    rotation_aa (3,): model-space axis-angle; center_cam, reference_cam (3,): head centre now and
    at the reference, OpenCV camera space (m). Returns position (3,) m and quaternion (4,) x, y, z, w
    in the avatar's Unity frame (w >= 0).

    ``R_unity = M·R·M`` with the reflection ``M = UNITY_FROM_MODEL``; conjugating a rotation by a
    reflection turns its axis-angle ``a`` into ``-M·a``. Mirroring conjugates by ``M`` once more.
    """
    from core.camera import axis_angle_to_quaternion_xyzw  # noqa: PLC0415

    rotation_unity = -UNITY_FROM_MODEL @ np.asarray(rotation_aa, np.float64)
    position = UNITY_FROM_CAMERA @ (np.asarray(center_cam, np.float64) - np.asarray(reference_cam, np.float64))
    if mirror:  # reflect across the avatar's sagittal plane (x -> -x)
        rotation_unity = -UNITY_FROM_MODEL @ rotation_unity
        position = UNITY_FROM_MODEL @ position
    quat = axis_angle_to_quaternion_xyzw(rotation_unity)
    return position, quat if quat[3] >= 0 else -quat


def has_pose(track) -> bool:
    """True when a track result carries a tracked, finite pose (``lost`` repeats the last one: not sent)."""
    if track.tracking_state not in TRACKED_STATES:
        return False
    return all(np.isfinite(np.asarray(a, np.float64)).all() for a in
               (track.rotation, track.translation, track.expr, track.jaw_pose, track.neck_pose, track.eyes_pose))


# --- OSC encoding (python-osc's type writers) ---------------------------------------------------
# Messages are written with python-osc's ``osc_types`` directly: its builders parse every message and
# bundle back after writing it, which took ~1.4 ms per VMC frame here against ~0.1 ms this way.


def osc_message(address: str, tags: str = "", *values) -> bytes:
    """One OSC message datagram; ``tags`` are OSC type tags (``f d i s``), one per value."""
    writers = {"f": osc_types.write_float, "d": osc_types.write_double, "i": osc_types.write_int,
               "s": osc_types.write_string}
    return (osc_types.write_string(address) + osc_types.write_string("," + tags)
            + b"".join(writers[t](v) for t, v in zip(tags, values, strict=True)))


def osc_floats(address: str, values) -> bytes:
    """A message of float32 arguments (``,fff...``)."""
    flat = np.asarray(values, np.float64).ravel()
    return osc_message(address, "f" * flat.size, *flat.tolist())


def osc_bundle(datagrams: Sequence[bytes]) -> bytes:
    """An OSC bundle of message datagrams, time tag 'immediately'."""
    return b"#bundle\x00" + osc_types.write_date(IMMEDIATELY) + b"".join(
        osc_types.write_int(len(d)) + d for d in datagrams)


class VmcEncoder:
    """FrameResult -> VMC bundle for one target (keeps the position reference)."""

    def __init__(self, target: StreamTarget, model: StreamModel):
        check_target(target, model)
        self.target, self.model = target, model
        self.blend_weights = (arkit_weights(model.expression_names) if target.blendshapes == "model"
                              else MEDIAPIPE_TO_ARKIT)
        order = MIRROR_ORDER if target.mirror else np.arange(len(ARKIT_BLENDSHAPE_NAMES))
        spell = perfect_sync_name if target.names == "perfectsync" else str
        # Value k goes out under the name of ARKit shape order[k] (its mirror image with mirror=1).
        self.blend_names = tuple(spell(ARKIT_BLENDSHAPE_NAMES[i]) for i in order)
        # Each /VMC/Ext/Blend/Val message but its last 4 bytes (the float32 value) is constant.
        self._blend_prefixes = [osc_message("/VMC/Ext/Blend/Val", "sf", name, 0.0)[:-4] for name in self.blend_names]
        self._apply = osc_message("/VMC/Ext/Blend/Apply")
        self.reference_cam: np.ndarray | None = None

    def recenter(self) -> None:
        self.reference_cam = None

    def blendshapes(self, result) -> np.ndarray | None:
        """(52,) values in [0, 1] in ARKit order (before mirroring), None without a source value."""
        if self.target.blendshapes == "model":
            values = result.track.expr
        else:
            face = result.landmarks.face
            if face is None:
                return None
            values = face.blendshapes
        arkit = self.blend_weights @ np.asarray(values, np.float32)
        return np.clip(arkit, 0.0, 1.0) if np.isfinite(arkit).all() else None

    def encode(self, result) -> list[bytes]:
        track = result.track
        tracked = has_pose(track)
        messages = []
        if tracked:
            center = head_center_cam(track.rotation, track.translation, self.model.head_center)
            if self.reference_cam is None:
                self.reference_cam = center
            position, quat = vmc_head_pose(track.rotation, center, self.reference_cam, self.target.mirror)
            messages.append(osc_message("/VMC/Ext/Bone/Pos", "sfffffff", "Head", *position.tolist(), *quat.tolist()))
            blend = self.blendshapes(result)
            if blend is not None:
                raw = blend.astype(">f4").tobytes()  # OSC floats are big-endian float32
                messages += [prefix + raw[4 * k: 4 * k + 4] for k, prefix in enumerate(self._blend_prefixes)]
                messages.append(self._apply)
        messages.append(osc_message("/VMC/Ext/OK", "iiii", 1, 3, 0, int(tracked)))
        messages.append(osc_message("/VMC/Ext/T", "f", float(track.timestamp_s)))
        return [osc_bundle(messages)]


class FlamecamEncoder:
    """FrameResult -> flamecam address-space bundles (identity when it changes and every 2 s)."""

    def __init__(self, target: StreamTarget, model: StreamModel, clock=time.monotonic):
        self.target, self.model, self.clock = target, model, clock
        self._shape_version: int | None = None
        self._shape_sent_at = -math.inf

    def recenter(self) -> None:
        pass

    def identity(self, track) -> bytes:
        m = self.model
        shape = np.asarray(track.shape, np.float64).ravel().tolist()
        return osc_bundle([osc_message("/flamecam/model", "ssii", m.name, m.kind, m.num_shape, m.num_expr),
                           osc_message("/flamecam/shape", "i" + "f" * len(shape), int(track.shape_version), *shape)])

    def encode(self, result) -> list[bytes]:
        track = result.track
        out = []
        now = self.clock()
        if track.shape_version != self._shape_version or now - self._shape_sent_at >= SHAPE_REPEAT_S:
            out.append(self.identity(track))
            self._shape_version, self._shape_sent_at = track.shape_version, now
        fx = float(track.intrinsics[0])
        messages = [
            osc_message("/flamecam/frame", "iidsi", FLAMECAM_OSC_VERSION, int(track.frame_index),
                        float(track.timestamp_s), str(track.tracking_state), int(track.shape_version)),
            osc_floats("/flamecam/intrinsics", track.intrinsics),
            osc_message("/flamecam/focal", "ffs", fx, float(track.focal_sigma_px), str(track.focal_state)),
        ]
        if has_pose(track):
            messages += [osc_floats("/flamecam/rotation", track.rotation),
                         osc_floats("/flamecam/translation", track.translation),
                         osc_floats("/flamecam/rho", [track.rho_per_m]), osc_floats("/flamecam/expr", track.expr),
                         osc_floats("/flamecam/pose/jaw", track.jaw_pose),
                         osc_floats("/flamecam/pose/neck", track.neck_pose),
                         osc_floats("/flamecam/pose/eyes", track.eyes_pose)]
            face = result.landmarks.face
            if face is not None:
                messages.append(osc_floats("/flamecam/blendshapes", MEDIAPIPE_TO_ARKIT @ face.blendshapes))
        out.append(osc_bundle(messages))
        return out


# --- sending ----------------------------------------------------------------------------------------


@dataclass
class TargetStatus:
    """How sending to one target goes (read from any thread; counters only grow)."""

    url: str
    frames: int = 0  # frames sent completely
    refused: int = 0  # sends refused: nothing listens at the receiver (ICMP port unreachable)
    dropped: int = 0  # datagrams the socket had no room for (non-blocking)
    errors: int = 0  # other failures (host unreachable, cannot resolve, ...)
    last_error: str = ""

    def describe(self) -> str:
        """One line for people: frames sent and what went wrong, if anything."""
        text = f"{self.frames} frames sent to {self.url}"
        if self.refused:
            text += f"; {self.refused} sends refused: nothing was listening there"
        if self.dropped:
            text += f"; {self.dropped} frames dropped (socket buffer full)"
        if self.errors:
            text += f"; {self.errors} errors, last: {self.last_error}"
        return text


@dataclass
class StreamStatus:
    targets: list[TargetStatus] = field(default_factory=list)
    submitted: int = 0  # results handed to send()
    skipped: int = 0  # replaced by a newer result before the sender took them (latest wins)
    running: bool = False
    failure: str = ""  # why the sender thread ended early (a bug; tracking is unaffected)
    processed: int = 0  # results the sender thread encoded and sent (to every target)
    sender_cpu_s: float = 0.0  # CPU time the sender thread spent on them (it holds the GIL for most of it)


class _Target:
    """One receiver: encoder + connected non-blocking UDP socket (opened in the sender thread)."""

    RETRY_S = 2.0

    def __init__(self, target: StreamTarget, model: StreamModel):
        self.target = target
        self.encoder = VmcEncoder(target, model) if target.protocol == "vmc" else FlamecamEncoder(target, model)
        self.status = TargetStatus(target.url)
        self.sock: socket.socket | None = None
        self._retry_at = 0.0

    def _open(self) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        try:
            family, address = self.target.resolve()
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(address)  # connected: the kernel reports a dead receiver instead of ignoring it
        except (StreamError, OSError) as exc:
            self._fail(str(exc))
            self._retry_at = time.monotonic() + self.RETRY_S
            return False
        self.sock = sock
        return True

    def _fail(self, message: str) -> None:
        self.status.errors += 1
        self.status.last_error = message

    def send(self, result) -> None:
        try:
            datagrams = self.encoder.encode(result)
        except Exception as exc:  # noqa: BLE001  (never into tracking; visible in the status)
            self._fail(f"cannot encode frame {result.track.frame_index}: {type(exc).__name__}: {exc}")
            return
        if self.sock is None and not self._open():
            return
        try:
            for dgram in datagrams:
                self.sock.send(dgram)
            self.status.frames += 1
        except ConnectionRefusedError:
            self.status.refused += 1
        except BlockingIOError:
            self.status.dropped += 1
        except OSError as exc:
            self._fail(f"{exc.strerror or exc} ({self.target.host}:{self.target.port})")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Streamer:
    """Streams frame results to targets from its own thread (see the module docstring).

    ``send`` is the only call the tracking thread makes: it stores the result and returns.
    ``close`` sends the result still waiting, stops the thread and closes the sockets.
    """

    def __init__(self, targets: Sequence[StreamTarget], model: StreamModel):
        for target in targets:
            check_target(target, model)
        self._targets = [_Target(t, model) for t in targets]
        self._cond = threading.Condition()
        self._pending = None
        self._closing = False
        self._recenter = False
        self.status = StreamStatus([t.status for t in self._targets], running=True)
        self._thread = threading.Thread(target=self._run, name="flamecam-stream", daemon=True)
        self._thread.start()

    @property
    def targets(self) -> list[StreamTarget]:
        return [t.target for t in self._targets]

    def send(self, result) -> None:
        """Hand over a FrameResult (tracking thread; never blocks on the network, never raises)."""
        with self._cond:
            if self._pending is not None:
                self.status.skipped += 1
            self._pending = result
            self.status.submitted += 1
            self._cond.notify()

    def recenter(self) -> None:
        """Make the next tracked head position the VMC position reference."""
        with self._cond:
            self._recenter = True

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while self._pending is None and not self._closing:
                        self._cond.wait()
                    result, self._pending = self._pending, None
                    recenter, self._recenter = self._recenter, False
                    closing = self._closing
                cpu = time.thread_time()
                for target in self._targets:
                    if recenter:
                        target.encoder.recenter()
                    if result is not None:
                        target.send(result)
                if result is not None:
                    self.status.processed += 1
                    self.status.sender_cpu_s += time.thread_time() - cpu
                if closing and result is None:
                    break
        except Exception as exc:  # noqa: BLE001  (a bug here must not go unnoticed, nor reach tracking)
            self.status.failure = f"the sender stopped: {type(exc).__name__}: {exc}"
        finally:
            for target in self._targets:
                target.close()
            self.status.running = False

    def close(self, timeout_s: float = 2.0) -> bool:
        """Send what is pending, stop the sender thread; True when it has ended."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Streamer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StreamSwitch:
    """A streamer whose targets another thread may change at any time (the GUI's Stream panel).

    The owner (the tracking thread) calls :meth:`send` per frame and :meth:`close` at the end;
    :meth:`request` (any thread) sets the URLs to stream to from the next frame on. Problems (a bad
    URL, model blendshapes on a model without ARKit names) end up in :attr:`problem`, never raised.
    """

    def __init__(self, urls: Sequence[str] = ()):
        self._lock = threading.Lock()
        self._urls: tuple[str, ...] = tuple(urls)
        self._changed = True
        self._model: StreamModel | None = None
        self.streamer: Streamer | None = None
        self.problem = ""

    def request(self, urls: Sequence[str] | str | None) -> None:
        urls = () if not urls else (urls,) if isinstance(urls, str) else tuple(urls)
        with self._lock:
            self._urls, self._changed = urls, True

    def set_model(self, model: StreamModel) -> None:
        with self._lock:
            self._model, self._changed = model, True

    def _apply(self) -> None:
        with self._lock:
            urls, model, self._changed = self._urls, self._model, False
        self._close_streamer()
        if not urls or model is None:
            self.problem = ""
            return
        targets, problems = [], []
        for url in urls:
            try:
                target = StreamTarget.parse(url)
                try:
                    check_target(target, model)
                except StreamError as exc:
                    problems.append(f"{exc}; streaming MediaPipe's blendshapes instead")
                    target = replace(target, blendshapes="mediapipe")
                targets.append(target)
            except StreamError as exc:
                problems.append(str(exc))
        self.problem = "; ".join(problems)
        if targets:
            self.streamer = Streamer(targets, model)

    def send(self, result) -> None:
        if self._changed:
            try:
                self._apply()
            except Exception as exc:  # noqa: BLE001  (streaming never stops tracking)
                self.streamer, self.problem = None, f"cannot stream: {type(exc).__name__}: {exc}"
        if self.streamer is not None:
            self.streamer.send(result)

    def recenter(self) -> None:
        """The next tracked head position becomes the VMC position reference (any thread)."""
        streamer = self.streamer
        if streamer is not None:
            streamer.recenter()

    def status(self) -> StreamStatus | None:
        streamer = self.streamer
        return None if streamer is None else streamer.status

    def _close_streamer(self) -> None:
        streamer, self.streamer = self.streamer, None
        if streamer is not None:
            streamer.close()

    def close(self) -> None:
        self._close_streamer()
