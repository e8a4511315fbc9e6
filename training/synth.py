"""Type-2 training data: projected embedded landmarks with a noise model fitted to the real landmarker.

Cheap and unlimited (no rendering): ground truths from :mod:`training.sampling`, the landmark
embedding's surface points projected with ``core.camera`` (plus the embedding's own model of
MediaPipe's distance-dependent bias), then MediaPipe-like error added by
:class:`LandmarkNoiseModel`, fitted to type-1 data (real MediaPipe on renders):

* a **pose-linked mean** per landmark coordinate: ridge regression of the residual (MediaPipe
  minus the projected surface point, in crop units) on head rotation, ρ and log focal length;
* a **structured part**: the residual's leading principal components (slow, correlated
  deviations such as a face contour drawn too wide), each with its measured variance, sampled
  independently per sample — so it does not carry the identity-specific share, which only
  type-1 data teach;
* **independent noise** per coordinate with the variance left over;
* landmarks the embedding does not place on the surface are filled by a linear map from the
  placed ones fitted on MediaPipe's own output;
* the 52 **blendshape scores**: a ridge map from expression coefficients (and jaw) fitted on
  the same data, plus noise, clipped to [0, 1].

Without type-1 data, :meth:`LandmarkNoiseModel.default` gives isotropic noise (used by tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core import camera
from core.constants import NUM_BLENDSHAPES, NUM_LANDMARKS
from core.regressor import landmark_crop_box
from training.sampling import SamplingConfig, sample


class LandmarkProjector:
    """Pixels of the embedded landmarks (where MediaPipe is expected to see them) for ground truths.

    The tracker's landmark model (``core.tracker.LandmarkModel``: surface points and MediaPipe's
    bias model); rigid models evaluated as one float32 matrix product (cheap per batch)."""

    def __init__(self, head, embedding, device: str = "cpu"):
        from core.tracker import LandmarkModel  # noqa: PLC0415  (the tracker's landmark fast path)

        self.head = head
        self.model = LandmarkModel(head, embedding, device)
        self.ids = torch.as_tensor(self.model.ids)
        self.valid = np.zeros(NUM_LANDMARKS, bool)
        self.valid[self.model.ids] = True
        m = self.model
        f32 = lambda a: a.to(torch.float32)  # noqa: E731
        self.bias_offset, self.bias_slope = f32(m.bias_offset), f32(m.bias_slope)
        if not m.articulated:
            self.base = f32(m.template).reshape(-1)
            self.basis = f32(torch.cat([m.shapedirs, m.exprdirs], 2)).reshape(-1, head.num_shape + head.num_expr).T

    @torch.no_grad()
    def __call__(self, shape, expr, jaw_pose, rotation, translation, center_cam, intrinsics,
                 with_bias: bool = True) -> torch.Tensor:
        """All arguments (B, ...) arrays -> (B, 478, 2) float32 pixels, NaN where not embedded."""
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        b = len(shape)
        if self.model.articulated:
            kw = dict(dtype=torch.float64, device=self.model.device)
            pts = self.model.points(t(shape).to(**kw), t(expr).to(**kw), t(jaw_pose).to(**kw), None).float()
        else:
            pts = (self.base + torch.cat([t(shape), t(expr)], 1) @ self.basis).reshape(b, -1, 3)
        if with_bias:
            rho = 1.0 / t(center_cam)[:, 2]
            pts = pts + self.bias_offset + self.bias_slope * (rho - self.model.rho_ref)[:, None, None]
        cam = camera.model_to_camera(pts, t(translation), t(rotation))
        uv = camera.project_perspective(cam, t(intrinsics))
        out = torch.full((b, NUM_LANDMARKS, 2), float("nan"))
        out[:, self.ids] = uv
        return out


def pose_features(rotation: np.ndarray, center_cam: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(N, 14) regressors of MediaPipe's pose-linked bias: 1, rotation, its squares, ρ, ρ·rotation, log f, ..."""
    r = np.asarray(rotation, np.float64)
    rho = 1.0 / np.asarray(center_cam, np.float64)[:, 2:3]
    log_f = np.log(np.asarray(intrinsics, np.float64)[:, :1] / 1000.0)
    return np.concatenate([np.ones_like(rho), r, r ** 2, r[:, :1] * r[:, 1:2], rho, rho * r, log_f, rho * log_f], 1)


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    a = x.T @ x + lam * np.eye(x.shape[1])
    a[0, 0] -= lam  # do not shrink the intercept
    return np.linalg.solve(a, x.T @ y)


@dataclass
class LandmarkNoiseModel:
    """MediaPipe-like landmark error in crop units (see module docstring). L = embedded landmarks."""

    valid: np.ndarray  # (478,) bool, embedded landmarks
    mean_coef: np.ndarray  # (F, 2L) pose features -> mean residual
    components: np.ndarray  # (K, 2L) unit principal directions
    component_std: np.ndarray  # (K,)
    residual_std: np.ndarray  # (2L,)
    fill_coef: np.ndarray  # (2L + 1, 2M) placed landmarks (and 1) -> the M others, crop units
    blend_coef: np.ndarray  # (1 + E + 3, 52)
    blend_std: np.ndarray  # (52,)
    fitted_on: int = 0  # number of type-1 samples

    @classmethod
    def default(cls, valid: np.ndarray, num_expr: int, noise_crop: float = 0.004) -> "LandmarkNoiseModel":
        """Isotropic noise only (no type-1 data): ~0.8 px at a 400 px face box."""
        n2 = 2 * int(valid.sum())
        m2 = 2 * int((~valid).sum())
        blend = np.zeros((1 + num_expr + 3, NUM_BLENDSHAPES))
        return cls(valid.copy(), np.zeros((pose_features(np.zeros((1, 3)), np.ones((1, 3)), np.ones((1, 4))).shape[1], n2)),
                   np.zeros((0, n2)), np.zeros(0), np.full(n2, noise_crop), np.zeros((n2 + 1, m2)), blend,
                   np.full(NUM_BLENDSHAPES, 0.05))

    @classmethod
    def fit(cls, data: dict[str, np.ndarray], projector: LandmarkProjector, num_components: int = 24,
            ridge: float = 1.0) -> "LandmarkNoiseModel":
        """Fit to type-1 arrays (``training.generate.load_dataset``) of the projector's head model."""
        valid = projector.valid
        mp_px = torch.as_tensor(data["landmarks_px"], dtype=torch.float64)
        clean = torch.cat([projector(*(data[k][i:i + 512] for k in (
            "shape", "expr", "jaw_pose", "rotation", "translation", "center_cam", "intrinsics")))
            for i in range(0, len(mp_px), 512)])
        box = landmark_crop_box(mp_px)
        to_crop = lambda p: (camera.crop_points(p, box, (2, 2)) - 1).numpy()  # noqa: E731
        mp_crop, clean_crop = to_crop(mp_px), to_crop(clean)
        resid = (mp_crop - clean_crop)[:, valid].reshape(len(mp_px), -1)
        feats = pose_features(data["rotation"], data["center_cam"], data["intrinsics"])
        mean_coef = _ridge(feats, resid, ridge)
        rest = resid - feats @ mean_coef
        # Principal components from the covariance (torch: its thread setting, not BLAS's own pool).
        centred = torch.as_tensor(rest - rest.mean(0))
        evals, evecs = torch.linalg.eigh(centred.T @ centred / max(len(rest) - 1, 1))
        k = min(num_components, len(evals))
        comp_std = evals.flip(0)[:k].clamp_min(0).sqrt().numpy()
        vt = evecs.flip(1)[:, :k].T.numpy()
        left = rest - (rest @ vt.T) @ vt
        placed = mp_crop[:, valid].reshape(len(mp_px), -1)
        others = mp_crop[:, ~valid].reshape(len(mp_px), -1)
        x_fill = np.concatenate([np.ones((len(placed), 1)), placed], 1)
        fill = _ridge(x_fill, others, 1e-3) if others.shape[1] else np.zeros((x_fill.shape[1], 0))
        x_blend = np.concatenate([np.ones((len(mp_px), 1)), data["expr"], data["jaw_pose"]], 1)
        blend = _ridge(x_blend, data["blendshapes"].astype(np.float64), 1e-2)
        blend_std = (data["blendshapes"] - np.clip(x_blend @ blend, 0, 1)).std(0)
        return cls(valid.copy(), mean_coef, vt[:k], comp_std, left.std(0), fill, blend, blend_std, len(mp_px))

    def sample(self, clean_px: torch.Tensor, rotation, center_cam, intrinsics, expr, jaw_pose,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """MediaPipe-like landmarks (B, 478, 2) px and blendshapes (B, 52) for clean projections."""
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        normal = lambda *shape: torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))  # noqa: E731
        b = len(clean_px)
        valid = torch.as_tensor(self.valid)
        all_valid = bool(valid.all())
        clean = clean_px.float()
        box = landmark_crop_box(clean if all_valid else clean[:, valid])
        crop = camera.crop_points(clean, box, (2, 2)) - 1
        placed = (crop if all_valid else crop[:, valid]).reshape(b, -1)
        noise = t(pose_features(rotation, center_cam, intrinsics)) @ t(self.mean_coef)
        if len(self.component_std):
            noise = noise + (normal(b, len(self.component_std)) * t(self.component_std)) @ t(self.components)
        placed = placed + noise + normal(*placed.shape) * t(self.residual_std)
        if all_valid:
            out = placed.reshape(b, -1, 2)
        else:
            out = torch.empty_like(crop)
            out[:, valid] = placed.reshape(b, -1, 2)
            out[:, ~valid] = (torch.cat([torch.ones(b, 1), placed], 1) @ t(self.fill_coef)).reshape(b, -1, 2)
        px = camera.uncrop_points(out + 1, box, (2, 2)).numpy()
        x_blend = torch.cat([torch.ones(b, 1), t(expr), t(jaw_pose)], 1)
        blend = (x_blend @ t(self.blend_coef) + normal(b, NUM_BLENDSHAPES) * t(self.blend_std)).clamp(0, 1)
        return px, blend.numpy()

    def save(self, path) -> None:
        np.savez(path, **{k: np.asarray(v) for k, v in self.__dict__.items()})

    @classmethod
    def load(cls, path) -> "LandmarkNoiseModel":
        with np.load(path) as d:
            values = {k: d[k] for k in d.files}
        values["fitted_on"] = int(values["fitted_on"])
        values["valid"] = values["valid"].astype(bool)
        return cls(**values)


class SyntheticBatches:
    """Endless type-2 batches in the type-1 array layout (numpy dicts)."""

    def __init__(self, head, projector: LandmarkProjector, noise: LandmarkNoiseModel,
                 sampling: SamplingConfig = SamplingConfig(), seed: int = 0):
        self.head, self.projector, self.noise, self.sampling = head, projector, noise, sampling
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))

    def __call__(self, n: int) -> dict[str, np.ndarray]:
        s = sample(self.rng, n, self.head, self.sampling)
        clean = self.projector(s.shape, s.expr, s.jaw_pose, s.rotation, s.translation, s.center_cam, s.intrinsics)
        landmarks, blend = self.noise.sample(clean, s.rotation, s.center_cam, s.intrinsics, s.expr, s.jaw_pose, self.rng)
        return {**s.arrays(), "landmarks_px": landmarks, "blendshapes": blend}

