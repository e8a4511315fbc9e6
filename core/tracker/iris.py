"""The iris as a metric ruler: a prior on the identity's absolute size from the iris diameter.

An adult's visible iris is 11.7 ± 0.5 mm across almost whatever the rest of the face looks like
(MediaPipe Iris turns it into metric depth within ~10 %). MediaPipe reports each iris as a centre and
four boundary points (468-472 and 473-477); on the head model those are embedded points whose
positions the identity coefficients move, so the model's iris diameter is a function D(β) of the
identity: the mean distance between opposite boundary points, over both eyes.

Landmarks alone fix the face's shape but not its absolute size: a bigger face farther away projects
the same (up to MediaPipe's own depth-dependent bias), so the identity prior N(0, 1) alone decides the
metric scale, and with it the metric distance Z (ρ = 1/Z). The iris landmarks are already fitted as
landmarks; what this adds is the missing absolute size, as one more Gaussian prior row on the
identity, ``(D(β) - 11.7 mm) / 0.5 mm``. The focal length is (to first order) untouched by that
scale: scaling the face and its distance together leaves every projection, and f, as they are.
A model whose identity does not change the iris (the built-in: a fixed 5.9 mm radius) gets a
constant row: no effect on the fit.

Off by default (``TrackerOptions.iris_ruler``), measured with ``benchmarks/iris_ruler.py``: on ICT
renders through MediaPipe it changed neither the focal length nor its coverage and did not reduce
the size or ρ error. Two reasons: MediaPipe's iris diameter follows the true iris only about half
(it moves with the face's size: a face 9 % larger reads a human iris 11-18 % larger), and ICT's
identity prior already holds a pure change of size to ±2-3 %, stiffer than the iris's ±4.3 %.
On exact landmarks the term does what it should (a 10 % larger person: size error -9.4 % -> -7.9 %).
"""
from __future__ import annotations

import numpy as np
import torch

from core.tracker.landmark_model import IRIS_IDS, LandmarkModel

IRIS_DIAMETER_M = 11.7e-3  # adult horizontal visible iris diameter, population mean
IRIS_DIAMETER_SIGMA_M = 0.5e-3  # its spread between people (1σ)
# Opposite boundary points within one eye's 5 iris landmarks (centre, then 4 on the boundary).
_OPPOSITE = ((1, 3), (2, 4))


def iris_diameter_m(points: torch.Tensor) -> torch.Tensor:
    """Mean iris diameter of both eyes from MediaPipe's 10 iris points (centre + 4 boundary per eye).

    points: (..., 10, 3) in the order of landmarks 468-477 -> (...,) metres: the mean over both eyes
    and both boundary-point pairs of the distance between opposite boundary points."""
    dists = [torch.linalg.norm(points[..., eye + a, :] - points[..., eye + b, :], dim=-1)
             for eye in (0, 5) for a, b in _OPPOSITE]
    return torch.stack(dists, -1).mean(-1)


def iris_diameter_jacobian(points: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """d D / d β for points moving linearly with β: points (10, 3), dirs (10, 3, S) -> (S,)."""
    jac = torch.zeros(dirs.shape[-1], dtype=points.dtype, device=points.device)
    for eye in (0, 5):
        for a, b in _OPPOSITE:
            diff = points[eye + a] - points[eye + b]
            unit = diff / torch.linalg.norm(diff).clamp_min(1e-12)
            jac = jac + unit @ (dirs[eye + a] - dirs[eye + b])
    return jac / (2 * len(_OPPOSITE))


def iris_rows(landmark_ids: np.ndarray) -> np.ndarray | None:
    """Rows of landmarks 468-477 among a model's embedded ``landmark_ids`` (L,), or None if any is missing."""
    where = {int(i): row for row, i in enumerate(landmark_ids)}
    if not all(int(i) in where for i in IRIS_IDS):
        return None
    return np.array([where[int(i)] for i in IRIS_IDS])


class IrisRuler:
    """The identity prior row ``(D(β) - D0) / σ`` for a landmark model with all 10 iris points embedded.

    The iris points are taken unposed (template + identity basis at the embedded points): gaze and
    head pose move them rigidly, which leaves their distances as they are.
    """

    def __init__(self, model: LandmarkModel, diameter_m: float = IRIS_DIAMETER_M,
                 sigma_m: float = IRIS_DIAMETER_SIGMA_M):
        rows = iris_rows(model.ids)
        if rows is None:
            raise ValueError("the iris ruler needs all 10 iris landmarks (468-477) embedded on the model")
        index = torch.as_tensor(rows, device=model.device)
        self.template = model.template[index]  # (10, 3)
        self.shapedirs = model.shapedirs[index]  # (10, 3, S)
        self.diameter_m, self.sigma_m = diameter_m, sigma_m

    @staticmethod
    def available(model: LandmarkModel) -> bool:
        return iris_rows(model.ids) is not None

    def points(self, shape: torch.Tensor) -> torch.Tensor:
        """The 10 iris points of identity ``shape`` (S,) -> (10, 3), metres, model space."""
        return self.template + self.shapedirs @ shape

    def diameter(self, shape: torch.Tensor) -> float:
        """D(β) in metres for identity ``shape`` (S,)."""
        return float(iris_diameter_m(self.points(shape)))

    def residual(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's whitened residual (1,) and its Jacobian (1, S) at identity ``shape`` (S,)."""
        pts = self.points(shape)
        r = (iris_diameter_m(pts) - self.diameter_m) / self.sigma_m
        return r[None], (iris_diameter_jacobian(pts, self.shapedirs) / self.sigma_m)[None]
