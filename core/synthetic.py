"""Synthetic frame source: a head model moving in front of a known camera, with exact ground truth.

The backbone of tests and benchmarks, and the app's fallback when there is no webcam.
``SyntheticOptions.from_text("focal=600,distance=0.3,model=PATH")`` parses the
``--source synthetic:...`` text. Keys (defaults in :class:`SyntheticOptions`):

``model`` (path or ``builtin``), ``width``, ``height``, ``focal`` (px), ``fov`` (horizontal
degrees, alternative to focal), ``distance`` (m; default ∝ focal as in Camera3DMM), ``cx``, ``cy``,
``frames`` (default endless), ``fps``, ``yaw``/``pitch``/``roll`` (sweep amplitudes, degrees),
``period`` (yaw sweep period, s), ``still`` (seconds of still head at the start), ``expressions``
(0/1), ``identity`` (scale of the random identity, 0 = mean head), ``seed``, ``background``
(``plain`` or ``random``), ``lighting`` (``fixed`` or ``random``), ``noise`` (sensor noise σ in
grey levels), ``realtime`` (0/1: pace frames to ``fps`` like a camera), ``lens`` (``opencv`` or
``fisheye``) with ``k1``, ``k2``, ``p1``, ``p2``, ``k3``, ``k4`` (lens distortion of the rendered
frames, OpenCV's models, see ``core.distortion``; all zero = an ideal pinhole). With distortion,
frames are rendered by the exact pinhole renderer on a larger canvas and remapped
(``core.distortion.LensRemap``); ground-truth intrinsics stay those of the ideal pinhole.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from core import camera
from core.sources import Frame, FrameSource, SourceError, parse_options

# Expressions the default trajectory plays (those the model has), with (period s, phase, peak).
_EXPRESSION_SCHEDULE = {
    "jawOpen": (4.0, 0.0, 0.7), "mouthSmile_L": (5.0, 1.0, 0.8), "mouthSmile_R": (5.0, 1.0, 0.8),
    "browInnerUp": (6.0, 2.0, 0.8), "mouthPucker": (7.0, 3.0, 0.6), "eyeBlink_L": (3.0, 0.5, 1.0),
    "eyeBlink_R": (3.0, 0.5, 1.0), "browDown_L": (8.0, 4.0, 0.6), "browDown_R": (8.0, 4.0, 0.6),
}
_BLINKS = {"eyeBlink_L", "eyeBlink_R"}


@dataclass(frozen=True)
class SyntheticOptions:
    model: str = "builtin"
    width: int = 640
    height: int = 480
    focal: float | None = None  # px; default: a typical webcam's field of view (600 px at 640 wide)
    fov: float | None = None  # horizontal degrees, alternative to focal
    distance: float | None = None  # metres; see distance_m()
    cx: float | None = None
    cy: float | None = None
    frames: int | None = None
    fps: float = 30.0
    yaw: float = 20.0
    pitch: float = 8.0
    roll: float = 4.0
    chin_up: float = 0.0  # degrees the head is tilted chin-up throughout (a camera below the face, as on a HMC)
    period: float = 6.0
    still: float = 1.0
    expressions: bool = True
    identity: float = 1.0
    seed: int = 0
    background: str = "plain"
    lighting: str = "fixed"
    noise: float = 0.0
    realtime: bool = False
    lens: str = "opencv"  # opencv | fisheye (only with non-zero coefficients)
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0
    k4: float = 0.0

    @classmethod
    def from_text(cls, text: str = "", **overrides) -> "SyntheticOptions":
        """Parse ``key=value,...`` (unknown keys are an error naming the valid ones)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict = {}
        for key, raw in {**parse_options(text), **{k: str(v) for k, v in overrides.items() if v is not None}}.items():
            if key not in fields:
                raise SourceError(f"unknown synthetic option {key!r}; valid: {', '.join(fields)}")
            kind = str(fields[key].type)
            try:
                if "bool" in kind:
                    values[key] = raw.lower() in {"1", "true", "yes", "on"}
                elif "int" in kind:
                    values[key] = int(raw)
                elif "float" in kind:
                    values[key] = float(raw)
                else:
                    values[key] = raw
            except ValueError as exc:
                raise SourceError(f"synthetic option {key}={raw!r}: {exc}") from exc
        opts = cls(**values)
        if opts.background not in {"plain", "random"} or opts.lighting not in {"fixed", "random"}:
            raise SourceError("synthetic background must be plain|random and lighting fixed|random")
        # Checked here so that e.g. width=0 is a message, not a ZeroDivisionError deep in the trajectory.
        for key in ("width", "height", "fps", "period", "focal", "fov", "distance"):
            value = getattr(opts, key)
            if value is not None and not value > 0:
                raise SourceError(f"synthetic option {key}={value} must be positive")
        opts.focal_px()  # focal and fov together is an error
        try:
            opts.lens_distortion()
        except ValueError as exc:
            raise SourceError(f"synthetic lens: {exc}") from exc
        return opts

    def lens_distortion(self):
        """The ``core.distortion.LensDistortion`` of the rendered frames."""
        from core.distortion import LensDistortion  # noqa: PLC0415

        if self.lens == "fisheye":
            return LensDistortion.fisheye(self.k1, self.k2, self.k3, self.k4)
        if self.lens != "opencv":
            raise ValueError(f"lens {self.lens!r}: expected opencv or fisheye")
        if self.k4:
            raise ValueError("k4 belongs to the fisheye model (lens=fisheye)")
        return LensDistortion.opencv(self.k1, self.k2, self.p1, self.p2, self.k3)

    def focal_px(self) -> float:
        if self.focal is not None and self.fov is not None:
            raise SourceError("give focal or fov, not both")
        if self.fov is not None:
            return float(camera.fov_deg_to_focal(self.fov, self.width))
        # the default keeps the webcam's field of view at any size, so small test frames hold the face
        return 600.0 * self.width / 640.0 if self.focal is None else float(self.focal)

    def distance_m(self) -> float:
        """Given, else Camera3DMM's proportion to the focal length (f/2000 m at 512 px), else, for
        the default webcam-like camera, 0.45 m (the whole face in view, as in a video call)."""
        if self.distance is not None:
            return self.distance
        if self.focal is None and self.fov is None:
            return 0.45
        return self.focal_px() / 2000.0 * 512.0 / min(self.width, self.height)

    def intrinsics(self) -> np.ndarray:
        f = self.focal_px()
        cx = self.width / 2 if self.cx is None else self.cx
        cy = self.height / 2 if self.cy is None else self.cy
        return np.array([f, f, cx, cy], np.float32)


@dataclass(frozen=True)
class GroundTruth:
    """Exact parameters of a synthetic frame (model coefficients, pose, camera)."""

    shape: np.ndarray  # (S,)
    expr: np.ndarray  # (E,)
    rotation: np.ndarray  # (3,) axis-angle, model space
    translation: np.ndarray  # (3,) metres, camera space
    neck_pose: np.ndarray  # (3,)
    jaw_pose: np.ndarray  # (3,)
    eyes_pose: np.ndarray  # (6,)
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy
    rho_per_m: float
    head_center_cam: np.ndarray  # (3,)
    still: bool  # part of the still segment (for jitter measurements)


def _euler_to_axis_angle(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Degrees about model y (yaw), x (pitch), z (roll) -> axis-angle (R = Ry·Rx·Rz)."""
    return camera.euler_to_axis_angle(math.radians(yaw), math.radians(pitch), math.radians(roll)).astype(np.float32)


def _pulse(t: float, period: float, phase: float, blink: bool) -> float:
    """Smooth 0..1 activation: a raised cosine (long for expressions, short for blinks)."""
    x = ((t + phase) % period) / period
    width = 0.08 if blink else 0.45
    return 0.5 * (1 - math.cos(2 * math.pi * x / width)) if x < width else 0.0


class Trajectory:
    """Per-frame ground truth for a head model under :class:`SyntheticOptions`."""

    def __init__(self, opts: SyntheticOptions, head):
        self.opts, self.head = opts, head
        rng = np.random.default_rng(opts.seed)
        self.shape = (rng.standard_normal(head.num_shape) * opts.identity).astype(np.float32)
        self.intrinsics = opts.intrinsics()
        self.distance = opts.distance_m()
        names = head.expression_names or []
        self._schedule = [(names.index(n), *p, n in _BLINKS) for n, p in _EXPRESSION_SCHEDULE.items() if n in names]
        # Models without named expressions (FLAME) get smooth random coefficient tracks.
        self._random_expr = None if names else rng.standard_normal((4, head.num_expr)).astype(np.float32) * 0.6
        self._phase = rng.uniform(0, 2 * math.pi, 3)

    def at(self, index: int) -> GroundTruth:
        o = self.opts
        t = index / o.fps
        moving = max(0.0, t - o.still)
        still = t < o.still
        w = 2 * math.pi / o.period
        yaw = o.yaw * math.sin(w * moving)
        # Model pitch turns the face's +z towards -y (down) for positive angles: chin up is negative.
        pitch = (o.pitch * math.sin(w * 0.71 * moving + self._phase[0]) if moving else 0.0) - o.chin_up
        roll = o.roll * math.sin(w * 0.53 * moving + self._phase[1]) if moving else 0.0
        rotation = _euler_to_axis_angle(yaw, pitch, roll)
        depth = self.distance * (1 + (0.1 * math.sin(w * 0.37 * moving) if moving else 0.0))
        sway = 0.03 * self.distance * np.array([math.sin(w * 0.29 * moving), math.sin(w * 0.41 * moving + 1.0)])
        expr = np.zeros(self.head.num_expr, np.float32)
        jaw = np.zeros(3, np.float32)
        if o.expressions and moving:
            for idx, period, phase, peak, blink in self._schedule:
                expr[idx] = max(expr[idx], peak * _pulse(moving, period, phase, blink))
            if self._random_expr is not None:
                a = np.sin(w * np.array([0.3, 0.47, 0.61, 0.83]) * moving + self._phase[2])
                expr = (a @ self._random_expr).astype(np.float32) * 0.5
                jaw[0] = 0.15 * max(0.0, math.sin(w * 0.9 * moving))
        center_cam = np.array([sway[0], sway[1], depth], np.float32)
        translation = camera.translation_for_center(self.head.head_center, camera.axis_angle_to_matrix(rotation),
                                                    center_cam).astype(np.float32)
        return GroundTruth(
            shape=self.shape, expr=expr, rotation=rotation, translation=translation, neck_pose=np.zeros(3, np.float32),
            jaw_pose=jaw, eyes_pose=np.zeros(6, np.float32), intrinsics=self.intrinsics,
            rho_per_m=float(1.0 / depth), head_center_cam=center_cam, still=still)


class SyntheticSource(FrameSource):
    """Renders a head model along a :class:`Trajectory` (see module docstring for options)."""

    def __init__(self, opts: SyntheticOptions = SyntheticOptions()):
        from core.model_io import load_head_model  # noqa: PLC0415

        self.opts = opts
        self.head = load_head_model(None if opts.model == "builtin" else opts.model)
        self.trajectory = Trajectory(opts, self.head)
        self.lens = opts.lens_distortion()  # what the frames are distorted by (ground truth)
        self.size = (opts.width, opts.height)
        self.fps = opts.fps
        self.num_frames = opts.frames
        self.is_live = opts.realtime
        changed = ",".join(f"{f.name}={getattr(opts, f.name)}" for f in dataclasses.fields(opts)
                           if getattr(opts, f.name) != f.default)
        self.name = f"synthetic:{changed}" if changed else "synthetic"
        self._scene = None

    def _scene_or_new(self):
        if self._scene is None:
            from core.synthetic_render import SyntheticScene  # noqa: PLC0415

            self._scene = SyntheticScene(self.head, self.opts)
        return self._scene

    def render(self, truth: GroundTruth) -> np.ndarray:
        """RGB frame for a ground truth (the renderer is created on first use)."""
        return self._scene_or_new().render(truth)

    def vertices_cam(self, truth: GroundTruth) -> np.ndarray:
        """(V, 3) camera-space vertices (metres) of a ground truth, e.g. to draw overlays."""
        return self._scene_or_new().vertices_cam(truth)

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while self.num_frames is None or index < self.num_frames:
            truth = self.trajectory.at(index)
            rgb = self.render(truth)
            if self.opts.realtime:
                delay = start + index / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield Frame(index, index / self.fps, rgb, truth=truth)
            index += 1

    def close(self) -> None:
        if self._scene is not None:
            self._scene.release()
            self._scene = None
