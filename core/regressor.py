"""The per-frame regressor: MediaPipe's output -> head-model coefficients and camera (ONNX Runtime).

Camera3DMM-style: from one frame's 478 landmarks (in a square crop around them, plus the crop's
placement in the image) and 52 blendshape scores, a small network (``training/``) predicts the
identity and expression coefficients, jaw pose, head rotation, the head centre's projection and
image scale ``S = f/Z0``, and the camera (focal length, principal point); the head's distance
``Z0 = f/S``, its translation and ``ρ = 1/Z0`` follow. The whole path from raw detections to
full-image outputs is inside the ONNX graph, so training and inference cannot drift apart.

The tracker uses it to initialise a track and to re-acquire after a loss: :class:`RegressorPrior`
is the ``TrackingPipeline`` ``prior_fn``. The focal-length belief it passes in each frame's
``FramePrior.focal`` comes from the model-agnostic camera regressor (``core.camera_regressor``), not
from this network's focal output, which holds only on the faces it was trained on.

Lookup (:func:`find_regressor`): an explicit path > the user cache (per model-file hash,
``<cache>/regressors/<sha256>-<camera mode>.onnx``, where ``flamecam train-regressor`` installs
its output) > ``resources/regressor_builtin.onnx`` for the built-in model > none: the tracker
then initialises from landmarks alone and says so (:data:`NO_REGRESSOR_MESSAGE`). Every ONNX
file has its JSON record beside it (command, seed, model hash, validation metrics, focal
calibration); a regressor made for another model file is refused.
"""
from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CROP_MARGIN = 0.25  # the square crop box is the landmarks' bounding box's longer side times 1 + this
RECORD_FORMAT = "flamecam-regressor"
RESOURCES = Path(__file__).resolve().parents[1] / "resources"
BUILTIN_REGRESSOR = RESOURCES / "regressor_builtin.onnx"
NO_REGRESSOR_MESSAGE = "no regressor for this model; optimizer-only init"


class RegressorError(RuntimeError):
    """A regressor file that cannot be used, with the reason."""


def landmark_crop_box(points_px: torch.Tensor, margin: float = CROP_MARGIN) -> torch.Tensor:
    """Square crop box around landmarks: (..., N, 2) pixels -> (..., 4) = (x0, y0, side, side).

    Centred on the landmarks' bounding box (``LandmarkResult.face.box_px``), side = its longer
    side · (1 + margin). The regressor's crop coordinates are ``core.camera.crop_points(p, box, (2, 2)) - 1``.
    """
    lo = points_px.amin(-2)
    hi = points_px.amax(-2)
    centre = 0.5 * (lo + hi)
    side = (hi - lo).amax(-1, keepdim=True) * (1.0 + margin)
    return torch.cat([centre - 0.5 * side, side, side], -1)


@dataclass(frozen=True)
class RegressorOutput:
    """One frame's predictions (numpy, float64). Camera fields are None for an orthographic regressor."""

    shape: np.ndarray  # (S,)
    expr: np.ndarray  # (E,)
    jaw_pose: np.ndarray  # (3,)
    rotation: np.ndarray  # (3,) axis-angle, model space
    rotation_matrix: np.ndarray  # (3, 3) the same rotation
    head_center_px: np.ndarray  # (2,) where the head centre projects
    scale_px_per_m: float  # S = f/Z0 (weak-perspective scale at the head centre)
    crop_box: np.ndarray  # (4,) x0, y0, side, side
    model_head_center: np.ndarray  # (3,) the head model's head centre (model space), for placement
    intrinsics: np.ndarray | None = None  # (4,) fx, fy, cx, cy of the full image
    center_cam: np.ndarray | None = None  # (3,) camera-space head centre (m)
    translation: np.ndarray | None = None  # (3,) camera space (m)
    rho_per_m: float | None = None

    @property
    def focal_px(self) -> float | None:
        return None if self.intrinsics is None else float(self.intrinsics[0])

    def placement(self, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Head centre and translation (camera space, m) for the given (tracker's) intrinsics:
        ``Z0 = f/S`` and the head centre on the ray through ``head_center_px``."""
        from core import camera  # noqa: PLC0415

        fx, fy, cx, cy = (float(v) for v in intrinsics)
        depth = fx / self.scale_px_per_m
        centre = np.array([(self.head_center_px[0] - cx) / fx * depth, (self.head_center_px[1] - cy) / fy * depth, depth])
        return centre, camera.translation_for_center(self.model_head_center, self.rotation_matrix, centre)


@dataclass(frozen=True)
class RegressorRecord:
    """The JSON record beside an ONNX file (what ``flamecam train-regressor`` wrote)."""

    path: Path
    data: dict

    @property
    def camera_mode(self) -> str:
        return self.data.get("camera_mode", "perspective")

    @property
    def model_sha256(self) -> str:
        return self.data.get("model", {}).get("sha256", "")

    @property
    def focal_calibration(self) -> dict | None:
        return self.data.get("focal_calibration")

    @classmethod
    def read(cls, onnx_path: Path) -> "RegressorRecord":
        path = Path(onnx_path).with_suffix(".json")
        if not path.is_file():
            raise RegressorError(f"{onnx_path}: its record {path.name} is missing (flamecam train-regressor writes "
                                 "both files; keep them together)")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RegressorError(f"{path}: unreadable regressor record ({exc})") from exc
        if data.get("format") != RECORD_FORMAT:
            raise RegressorError(f"{path}: not a flamecam regressor record")
        return cls(path, data)


class Regressor:
    """An ONNX regressor on ONNX Runtime (CUDA provider when asked for and available, else CPU).

    ``threads``: intra-op threads, set explicitly (1 by default: the tracker and the landmarker
    run beside it). A few hundred microseconds a frame on the CPU here.
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 1):
        from core.signals import interrupts_deferred  # noqa: PLC0415

        with interrupts_deferred():  # Ctrl+C inside its import would become "ImportError: initialization failed"
            import onnxruntime as ort  # noqa: PLC0415

        self.path = Path(path)
        if not self.path.is_file():
            raise RegressorError(f"regressor file not found: {self.path}")
        self.record = RegressorRecord.read(self.path)
        self.camera_mode = self.record.camera_mode
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001  (ORT raises its own exception types)
            raise RegressorError(f"{self.path}: ONNX Runtime cannot load it ({exc})") from exc
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = {"landmarks_px", "blendshapes", "image_size"} - set(self.input_names)
        if missing:
            raise RegressorError(f"{self.path}: not a flamecam regressor (inputs {self.input_names})")
        head_center = self.record.data.get("model", {}).get("head_center")
        if head_center is None or len(head_center) != 3:
            raise RegressorError(f"{self.record.path}: the record lacks the model's head centre (model.head_center)")
        self._head_center = np.asarray(head_center, np.float64)
        self._lock = threading.Lock()

    def check_model(self, head) -> None:
        """Raise :class:`RegressorError` unless this regressor was trained for ``head``."""
        model = self.record.data.get("model", {})
        if head.source_sha256 and model.get("sha256") != head.source_sha256:
            raise RegressorError(f"{self.path} was trained for another model file ({model.get('name')}, sha256 "
                                 f"{str(model.get('sha256'))[:12]}…), not {head.name} ({head.source_sha256[:12]}…); "
                                 f"train one with: flamecam train-regressor --model PATH -o OUT.onnx")
        if model.get("num_shape") != head.num_shape or model.get("num_expr") != head.num_expr:
            raise RegressorError(f"{self.path}: made for {model.get('num_shape')} identity / {model.get('num_expr')} "
                                 f"expression components; {head.name} has {head.num_shape} / {head.num_expr}")

    def run(self, landmarks_px: np.ndarray, blendshapes: np.ndarray, image_size: np.ndarray) -> dict[str, np.ndarray]:
        """Batched raw outputs. landmarks_px (B, 478, 2), blendshapes (B, 52), image_size (B, 2) = (W, H)."""
        feed = {"landmarks_px": np.ascontiguousarray(landmarks_px, np.float32),
                "blendshapes": np.ascontiguousarray(blendshapes, np.float32),
                "image_size": np.ascontiguousarray(image_size, np.float32)}
        with self._lock:
            values = self.session.run(None, feed)
        return dict(zip(self.output_names, values))

    def predict(self, landmarks_px: np.ndarray, blendshapes: np.ndarray | None,
                image_size: tuple[int, int]) -> RegressorOutput:
        """One frame: landmarks_px (478, 2) pixels, blendshapes (52,) (None: zeros), image_size (W, H)."""
        landmarks_px = np.asarray(landmarks_px, np.float32)
        if landmarks_px.shape != (478, 2) or not np.isfinite(landmarks_px).all():
            raise ValueError(f"expected (478, 2) finite landmarks, got {landmarks_px.shape}")
        blend = np.zeros(52, np.float32) if blendshapes is None else np.asarray(blendshapes, np.float32)
        raw = self.run(landmarks_px[None], blend[None], np.asarray(image_size, np.float32)[None])
        g = lambda name: None if name not in raw else raw[name][0].astype(np.float64)  # noqa: E731
        out = RegressorOutput(shape=g("shape"), expr=g("expr"), jaw_pose=g("jaw_pose"), rotation=g("rotation"),
                              rotation_matrix=g("rotation_matrix"),
                              head_center_px=g("head_center_px"), scale_px_per_m=float(g("scale_px_per_m")),
                              crop_box=g("crop_box"), model_head_center=self._head_center,
                              intrinsics=g("intrinsics"), center_cam=g("center_cam"), translation=g("translation"),
                              rho_per_m=None if "rho_per_m" not in raw else float(g("rho_per_m")))
        return out

    def predict_landmarks(self, result) -> RegressorOutput | None:
        """Predictions for a :class:`core.landmarks.LandmarkResult` (None without a face)."""
        if result.face is None:
            return None
        return self.predict(result.face.landmarks_px, result.face.blendshapes, result.image_size)


# --- lookup and caching ------------------------------------------------------------------------------


def cache_path(model_sha256: str, camera_mode: str = "perspective") -> Path:
    from core.assets import cache_dir  # noqa: PLC0415

    return cache_dir() / "regressors" / f"{model_sha256}-{camera_mode}.onnx"


def install(onnx_path: str | Path) -> Path:
    """Copy a trained regressor (and its record) into the user cache under its model's hash."""
    record = RegressorRecord.read(Path(onnx_path))
    if not record.model_sha256:
        raise RegressorError(f"{onnx_path}: its record names no model hash")
    target = cache_path(record.model_sha256, record.camera_mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    for src, dst in ((Path(onnx_path), target), (record.path, target.with_suffix(".json"))):
        if src.resolve() != dst.resolve():
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
    return target


def find_regressor(head, explicit: str | Path | None = None, camera_mode: str = "perspective") -> tuple[Path | None, str]:
    """(path or None, where it came from): explicit > cache (model hash) > resources (built-in) > none."""
    if explicit is not None:
        return Path(explicit), "given"
    if head.source_sha256:
        cached = cache_path(head.source_sha256, camera_mode)
        if cached.is_file() and cached.with_suffix(".json").is_file():
            return cached, "cache"
    if head.kind == "builtin" and camera_mode == "perspective" and BUILTIN_REGRESSOR.is_file():
        try:
            if RegressorRecord.read(BUILTIN_REGRESSOR).model_sha256 == head.source_sha256:
                return BUILTIN_REGRESSOR, "built-in"
        except RegressorError:
            pass
    return None, "none"


_LOADED: dict[tuple, Regressor] = {}
_LOADED_LOCK = threading.Lock()


def load_regressor(head, explicit: str | Path | None = None, camera_mode: str = "perspective", device: str = "cpu",
                   threads: int = 1) -> tuple[Regressor | None, str]:
    """The regressor for ``head`` (cached per file and model hash) and a message for people.

    Returns (None, :data:`NO_REGRESSOR_MESSAGE`) when there is none. An explicit file that does not
    fit the model raises :class:`RegressorError`; a stale cached one is skipped with a note.
    """
    path, origin = find_regressor(head, explicit, camera_mode)
    if path is None:
        return None, NO_REGRESSOR_MESSAGE
    key = (str(Path(path).resolve()), Path(path).stat().st_mtime_ns if Path(path).exists() else 0,
           head.source_sha256, device, threads)
    with _LOADED_LOCK:
        reg = _LOADED.get(key)
    if reg is None:
        try:
            reg = Regressor(path, device=device, threads=threads)
            reg.check_model(head)
            if reg.camera_mode != camera_mode:
                raise RegressorError(f"{path} is a {reg.camera_mode} regressor; the tracker runs {camera_mode}")
        except RegressorError as exc:
            if origin == "given":
                raise
            return None, f"{NO_REGRESSOR_MESSAGE} ({origin} regressor unusable: {exc})"
        with _LOADED_LOCK:
            _LOADED[key] = reg
    return reg, f"regressor: {path} ({origin}, {reg.camera_mode}; pose and expressions)"


# --- use in the tracker -------------------------------------------------------------------------------


class RegressorPrior:
    """``TrackingPipeline(prior_fn=...)``: the regressors' :class:`core.tracker.FramePrior` for each frame.

    Two networks may serve it:

    * ``camera`` (:class:`core.camera_regressor.CameraRegressor`, shipped, model-agnostic): the head's
      pose and placement for any head model, and the focal length with an honest σ — its running
      sequence fusion (:class:`core.camera_regressor.FocalSequence`) is the frame's focal belief,
      renewed every ``update_every`` frames, which the tracker fuses with its other evidence;
    * ``regressor`` (:class:`Regressor`, optional, trained per head model): the model's own
      expression and jaw coefficients, and its pose (preferred for that model). Its focal output is
      not used: it was trained on one model's faces at absolute image sizes, and its σ does not
      hold on other faces (``benchmarks/camera_regressor.py``).
    """

    def __init__(self, regressor: Regressor | None = None, camera=None, estimate_focal: bool = True,
                 update_every: int = 10, focal_stride: int = 3):
        if regressor is None and camera is None:
            raise ValueError("RegressorPrior needs a regressor, a camera regressor or both")
        self.regressor, self.camera = regressor, camera
        self.estimate_focal = estimate_focal and camera is not None
        self.update_every = max(1, int(update_every))
        # While the tracker needs no pose, the camera regressor runs on every focal_stride-th face
        # frame only: its focal belief is all that is used then, and neighbouring frames add little.
        self.focal_stride = max(1, int(focal_stride))
        self.last: RegressorOutput | None = None
        self.last_camera = None  # the camera regressor's newest CameraPrediction
        self.reset()

    def reset(self) -> None:
        """Forget the sequence's focal belief (a shot cut: the camera may have changed)."""
        self.focal = None
        if self.camera is not None:
            from core.camera_regressor import FocalSequence  # noqa: PLC0415

            self.focal = FocalSequence(self.camera)
        self._belief = None
        self._since_update = 0
        self._face_frames = 0

    def __call__(self, landmarks, pose_needed: bool = True) -> "object | None":
        """This frame's :class:`core.tracker.FramePrior`; None without a face. ``pose_needed=False``
        (``Tracker.needs_pose_prior``: tracking goes on from the previous frame) lets the networks
        skip the frame, and the prior then carries only the focal belief."""
        from core.tracker import FocalPrior, FramePrior  # noqa: PLC0415

        face = landmarks.face
        if face is None:
            return None
        self._face_frames += 1
        due = self.estimate_focal and (pose_needed or (self._face_frames - 1) % self.focal_stride == 0)
        if not pose_needed and not due:
            return FramePrior(focal=self._belief)
        cam = self.camera.predict(face.landmarks_px, face.blendshapes, landmarks.image_size) if self.camera else None
        self.last_camera = cam
        if self.estimate_focal:
            self.focal.add(cam)
            self._since_update += 1 if pose_needed else self.focal_stride  # counted in frames
            if self._belief is None or self._since_update >= self.update_every:
                fused = self.focal.estimate()
                self._belief = FocalPrior(fused.focal_px, fused.log_sigma, source="regressor",
                                          detail=f"camera regressor ({fused.frames} frames)")
                self._since_update = 0
        if not pose_needed:
            return FramePrior(focal=self._belief)
        out = self.regressor.predict_landmarks(landmarks) if self.regressor is not None else None
        self.last = out
        pose = out if out is not None else cam
        return FramePrior(rotation=pose.rotation, head_center_px=pose.head_center_px,
                          scale_px_per_m=pose.scale_px_per_m, expr=None if out is None else out.expr,
                          jaw_pose=None if out is None else out.jaw_pose, focal=self._belief)
