"""The model-agnostic camera regressor (ONNX Runtime): focal length with an honest σ, head pose, placement.

One network (``resources/camera_regressor.onnx``, trained by ``training/train_camera.py`` on
renders of several head models through MediaPipe) serves every head model: from one frame's 478
landmarks and 52 blendshapes it predicts the focal length **relative to the image** with a
per-frame σ of its logarithm, the head rotation (model space), where the head centre (each
model's ``head.head_center``, between the eyes) projects, and the image scale ``S = f/Z0``, so
the distance ``Z0``, the camera-space head centre and ``ρ = 1/Z0`` follow; :func:`translation_for`
places a given head model. The principal point is taken at the image centre. Inputs are
scale-free: resizing a frame scales the focal length in pixels exactly.

Sequence fusion (:func:`fuse_focal`): per-frame errors of one face and camera are strongly
correlated (the identity and the lens do not change), so the fused σ does not shrink like 1/√N:
``σ² = σ̄² · (ρ + (1 - ρ)/N)`` with ``ρ`` the correlated floor and ``σ̄`` the frames' typical σ,
both calibrated on held-out head models (leave-one-model-out) and stored in the JSON record
beside the ONNX file (``calibration``). When the frames cannot tell (narrow lens, far subject,
one frame) the per-frame σ is wide and so is the fused one.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
CAMERA_REGRESSOR = RESOURCES / "camera_regressor.onnx"
RECORD_FORMAT = "flamecam-camera-regressor"
OUTLIER_Z = 3.0  # frames this many (per-frame) σ from the sequence median are left out of the fusion
RANGE_TOLERANCE = 1.4  # predictions beyond the trained f/long range by more than this factor are clamped


class CameraRegressorError(RuntimeError):
    """A camera regressor file that cannot be used, with the reason."""


@dataclass(frozen=True)
class FocalCalibration:
    """How per-frame σ and sequence fusion were calibrated (leave-one-model-out); see module docstring."""

    log_bias: float = 0.0  # subtracted from every per-frame log focal
    sigma_scale: float = 1.0  # multiplies every per-frame σ
    sequence_correlation: float = 1.0  # ρ: the share of the per-frame variance common to a sequence
    min_sigma: float = 0.03  # never claim a focal length tighter than this (log units)

    @classmethod
    def from_dict(cls, data: dict | None) -> "FocalCalibration":
        data = data or {}
        keys = ("log_bias", "sigma_scale", "sequence_correlation", "min_sigma")
        return cls(**{k: float(data[k]) for k in keys if k in data})


@dataclass(frozen=True)
class CameraPrediction:
    """One frame's predictions (float64). Pixels of the full image; camera space in metres (OpenCV axes)."""

    focal_px: float
    log_focal_sigma: float  # calibrated σ of log(focal_px) for this frame alone
    rotation: np.ndarray  # (3,) axis-angle, model space
    rotation_matrix: np.ndarray  # (3, 3)
    head_center_px: np.ndarray  # (2,) where the head centre projects
    scale_px_per_m: float  # S = f/Z0
    distance_m: float  # Z0, the head centre's depth
    center_cam: np.ndarray  # (3,) camera-space head centre, principal point at the image centre
    rho_per_m: float  # 1/Z0
    image_size: tuple[int, int]  # (W, H)

    @property
    def intrinsics(self) -> np.ndarray:
        """(4,) fx, fy, cx, cy with the principal point at the image centre."""
        w, h = self.image_size
        return np.array([self.focal_px, self.focal_px, w / 2.0, h / 2.0])


@dataclass(frozen=True)
class FusedFocal:
    """A sequence's focal length from its per-frame predictions."""

    focal_px: float
    log_sigma: float  # σ of log(focal_px): the relative uncertainty
    frames: int  # frames used (after outlier rejection)
    details: dict = field(default_factory=dict)


def fuse_focal(log_focal: np.ndarray, log_sigma: np.ndarray, sequence_correlation: float,
               min_sigma: float = 0.03) -> tuple[float, float, int]:
    """Fuse per-frame log focal lengths (N,) with calibrated σ (N,) -> (log focal, σ, frames used).

    Inverse-variance mean over the frames within :data:`OUTLIER_Z` σ of the median; its σ has a
    floor for the error all frames share: ``σ̄² (ρ + (1 - ρ)/N)``, ``σ̄²`` the harmonic mean of the
    frames' variances, ``ρ`` = ``sequence_correlation`` (1: frames add nothing; 0: independent).
    """
    y = np.asarray(log_focal, np.float64).ravel()
    s = np.asarray(log_sigma, np.float64).ravel()
    ok = np.isfinite(y) & np.isfinite(s) & (s > 0)
    y, s = y[ok], s[ok]
    if not len(y):
        raise ValueError("no finite per-frame predictions to fuse")
    keep = np.abs(y - np.median(y)) <= OUTLIER_Z * s
    if keep.sum() < max(1, len(y) // 2):  # no clear majority: keep all rather than a few
        keep[:] = True
    y, s = y[keep], s[keep]
    w = 1.0 / s**2
    n = len(y)
    mean = float((w * y).sum() / w.sum())
    var_frame = n / w.sum()
    rho = min(max(float(sequence_correlation), 0.0), 1.0)
    sigma = math.sqrt(var_frame * (rho + (1.0 - rho) / n))
    return mean, max(sigma, min_sigma), n


class CameraRegressor:
    """The camera regressor on ONNX Runtime (CPU, ``threads`` intra-op threads; 1 by default).

    ``path`` None loads the shipped ``resources/camera_regressor.onnx``. Its JSON record (same name,
    ``.json``) must be beside it: it holds the σ calibration.
    """

    def __init__(self, path: str | Path | None = None, threads: int = 1):
        import onnxruntime as ort  # noqa: PLC0415

        self.path = Path(path) if path is not None else CAMERA_REGRESSOR
        if not self.path.is_file():
            raise CameraRegressorError(f"camera regressor not found: {self.path}")
        record_path = self.path.with_suffix(".json")
        try:
            self.record = json.loads(record_path.read_text())
        except (OSError, ValueError) as exc:
            raise CameraRegressorError(f"{record_path}: missing or unreadable record of the camera regressor "
                                       f"({exc}); keep the .onnx and .json together") from exc
        if self.record.get("format") != RECORD_FORMAT:
            raise CameraRegressorError(f"{record_path}: not a flamecam camera-regressor record")
        self.calibration = FocalCalibration.from_dict(self.record.get("calibration"))
        lo, hi = self.record.get("focal_rel_range", (0.35, 7.0))
        self.log_focal_rel_limits = (math.log(lo / RANGE_TOLERANCE), math.log(hi * RANGE_TOLERANCE))
        neutral = self.record.get("neutral_blendshapes")
        self.neutral_blendshapes = (np.asarray(neutral, np.float32) if neutral is not None and len(neutral) == 52
                                    else np.zeros(52, np.float32))
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  (ORT raises its own exception types)
            raise CameraRegressorError(f"{self.path}: ONNX Runtime cannot load it ({exc})") from exc
        self.output_names = [o.name for o in self.session.get_outputs()]
        inputs = {i.name for i in self.session.get_inputs()}
        if inputs != {"landmarks_px", "blendshapes", "image_size"} or "log_focal_sigma" not in self.output_names:
            raise CameraRegressorError(f"{self.path}: not a flamecam camera regressor (inputs {sorted(inputs)})")
        self._lock = threading.Lock()

    def run(self, landmarks_px: np.ndarray, blendshapes: np.ndarray, image_size: np.ndarray,
            calibrated: bool = True) -> dict[str, np.ndarray]:
        """Batched outputs. landmarks_px (B, 478, 2), blendshapes (B, 52), image_size (B, 2) = (W, H).

        ``calibrated``: apply the record's log-focal bias and σ scale to ``focal_px``,
        ``log_focal_sigma`` and everything that depends on the focal length (distance, centre, ρ);
        a focal length far outside the trained range (inputs unlike any training frame) is clamped
        to its edge and its σ widened by the distance clamped (log units): honestly unknown.
        """
        feed = {"landmarks_px": np.ascontiguousarray(landmarks_px, np.float32),
                "blendshapes": np.ascontiguousarray(blendshapes, np.float32),
                "image_size": np.ascontiguousarray(image_size, np.float32)}
        with self._lock:
            values = self.session.run(None, feed)
        out = {k: v.astype(np.float64) for k, v in zip(self.output_names, values)}
        if calibrated:
            cal = self.calibration
            longer = np.asarray(image_size, np.float64).max(1)
            log_rel = np.log(out["focal_px"] / longer) - cal.log_bias
            clamped = np.clip(log_rel, *self.log_focal_rel_limits)
            factor = np.exp(clamped - log_rel - cal.log_bias)
            out["focal_px"] = out["focal_px"] * factor
            out["distance_m"] = out["distance_m"] * factor  # Z0 = f/S with S unchanged; X0, Y0 = (u - c)/S too
            out["center_cam"] = out["center_cam"] * np.stack([np.ones_like(factor), np.ones_like(factor), factor], 1)
            out["rho_per_m"] = out["rho_per_m"] / factor
            out["log_focal_sigma"] = (np.maximum(out["log_focal_sigma"] * cal.sigma_scale, cal.min_sigma)
                                      + np.abs(clamped - log_rel))
        return out

    def predict(self, landmarks_px: np.ndarray, blendshapes: np.ndarray | None,
                image_size: tuple[int, int]) -> CameraPrediction:
        """One frame: landmarks_px (478, 2) pixels, blendshapes (52,), image_size (W, H).

        Blendshapes None: the record's typical neutral scores (zeros are unlike any MediaPipe output
        and throw the network off)."""
        landmarks_px = np.asarray(landmarks_px, np.float32)
        if landmarks_px.shape != (478, 2) or not np.isfinite(landmarks_px).all():
            raise ValueError(f"expected (478, 2) finite landmarks, got {landmarks_px.shape}")
        width, height = (int(v) for v in image_size)
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {image_size}")
        blend = (self.neutral_blendshapes if blendshapes is None
                 else np.asarray(blendshapes, np.float32).reshape(52))
        raw = self.run(landmarks_px[None], blend[None], np.array([[width, height]], np.float32))
        g = {k: v[0] for k, v in raw.items()}
        return CameraPrediction(focal_px=float(g["focal_px"]), log_focal_sigma=float(g["log_focal_sigma"]),
                                rotation=g["rotation"], rotation_matrix=g["rotation_matrix"],
                                head_center_px=g["head_center_px"], scale_px_per_m=float(g["scale_px_per_m"]),
                                distance_m=float(g["distance_m"]), center_cam=g["center_cam"],
                                rho_per_m=float(g["rho_per_m"]), image_size=(width, height))

    def fuse(self, predictions: list[CameraPrediction]) -> FusedFocal:
        """The sequence's focal length and σ from its frames (one camera, same image size)."""
        if not predictions:
            raise ValueError("no predictions to fuse")
        sizes = {p.image_size for p in predictions}
        if len(sizes) > 1:
            raise ValueError(f"predictions of different image sizes {sorted(sizes)}: fuse one camera at a time")
        log_f = np.log([p.focal_px for p in predictions])
        sigma = np.array([p.log_focal_sigma for p in predictions])
        cal = self.calibration
        mean, sd, used = fuse_focal(log_f, sigma, cal.sequence_correlation, cal.min_sigma)
        return FusedFocal(focal_px=math.exp(mean), log_sigma=sd, frames=used,
                          details={"median_frame_sigma": float(np.median(sigma)), "frames_given": len(predictions)})


class FocalSequence:
    """Running fusion of one camera's per-frame predictions (the tracker's sequence prior).

    ``add`` each frame's :class:`CameraPrediction`; ``estimate`` fuses the last ``max_frames``
    (:func:`fuse_focal` with the regressor's calibration). A change of image size starts over.
    """

    def __init__(self, regressor: CameraRegressor, max_frames: int = 900):
        from collections import deque  # noqa: PLC0415

        self.calibration = regressor.calibration
        self.image_size: tuple[int, int] | None = None
        self._log_focal: deque[float] = deque(maxlen=max_frames)
        self._sigma: deque[float] = deque(maxlen=max_frames)

    def add(self, prediction: CameraPrediction) -> None:
        if prediction.image_size != self.image_size:
            self.reset()
            self.image_size = prediction.image_size
        if math.isfinite(prediction.focal_px) and prediction.focal_px > 0 and prediction.log_focal_sigma > 0:
            self._log_focal.append(math.log(prediction.focal_px))
            self._sigma.append(prediction.log_focal_sigma)

    def reset(self) -> None:
        self._log_focal.clear()
        self._sigma.clear()
        self.image_size = None

    @property
    def count(self) -> int:
        return len(self._log_focal)

    def estimate(self) -> FusedFocal | None:
        """The fused focal length and its σ (log units), or None before the first frame."""
        if not self._log_focal:
            return None
        cal = self.calibration
        mean, sd, used = fuse_focal(np.array(self._log_focal), np.array(self._sigma), cal.sequence_correlation,
                                    cal.min_sigma)
        return FusedFocal(focal_px=math.exp(mean), log_sigma=sd, frames=used,
                          details={"median_frame_sigma": float(np.median(self._sigma)), "frames_given": self.count})


def translation_for(head, prediction: CameraPrediction, focal_px: float | None = None) -> np.ndarray:
    """Camera-space translation (3,) placing ``head`` as predicted (its ``head_center`` at the predicted
    centre). ``focal_px``: the tracker's focal length, if it differs from the prediction's: the head
    centre stays on the same ray at ``Z0 = f/S``."""
    from core import camera  # noqa: PLC0415

    centre = np.asarray(prediction.center_cam, np.float64)
    if focal_px is not None:  # Z0 = f/S scales with f; X0 = (u - cx)/S does not
        centre = centre * np.array([1.0, 1.0, float(focal_px) / prediction.focal_px])
    return camera.translation_for_center(head.head_center, camera.axis_angle_to_matrix(
        np.asarray(prediction.rotation, np.float64)), centre)
