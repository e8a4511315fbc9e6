"""Accuracy measures shared by benchmarks and tests (numpy, batched over frames)."""
from __future__ import annotations

import numpy as np


def vertex_error_mm(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean per-vertex distance in mm. pred, truth: (..., V, 3) metres -> (...,)."""
    return 1000.0 * np.linalg.norm(pred - truth, axis=-1).mean(-1)


def rigid_align(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``pred`` moved by the rotation + translation (no scale) that best fits ``truth`` (Kabsch).

    pred, truth: (V, 3) or (B, V, 3). Shape error without the pose's share.
    """
    single = pred.ndim == 2
    p, t = (a[None] if single else a for a in (np.asarray(pred, np.float64), np.asarray(truth, np.float64)))
    mp, mt = p.mean(1, keepdims=True), t.mean(1, keepdims=True)
    h = np.einsum("bvi,bvj->bij", p - mp, t - mt)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("bij,bjk->bik", u, vt)))
    fix = np.stack([np.ones_like(d), np.ones_like(d), d], -1)
    rot = np.einsum("bij,bj,bjk->bik", u, fix, vt)  # applied as row vectors: p @ rot
    out = np.einsum("bvi,bij->bvj", p - mp, rot) + mt
    return out[0] if single else out


def aligned_vertex_error_mm(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """:func:`vertex_error_mm` after :func:`rigid_align`."""
    return vertex_error_mm(rigid_align(pred, truth), truth)


def jitter_rms_mm(vertices: np.ndarray) -> float:
    """Frame-to-frame vertex motion, RMS over vertices and frames, in mm. vertices: (T, V, 3)."""
    if len(vertices) < 2:
        return float("nan")
    step = np.linalg.norm(np.diff(vertices, axis=0), axis=-1)
    return float(1000.0 * np.sqrt((step ** 2).mean()))


def relative_error(estimate, truth):
    return np.abs(np.asarray(estimate, np.float64) - truth) / truth
