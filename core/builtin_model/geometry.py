"""Small mesh-geometry helpers for building the built-in model (numpy / scipy, pure functions)."""
from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg


# --- small geometry helpers --------------------------------------------------------------------


def _gauss(points: np.ndarray, centre, sigma) -> np.ndarray:
    """Anisotropic Gaussian weight (N,) of points (N, 3) around centre (3,), sigma (3,) or scalar."""
    d = (points - np.asarray(centre, float)) / np.asarray(sigma, float)
    return np.exp(-0.5 * np.sum(d * d, axis=1))


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    face_n = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _locate(points_xy: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frontmost front-facing triangle under each xy point (looking along -z) and barycentrics.

    Returns tri (N,) face indices and bary (N, 3). Raises if a point hits no triangle.
    """
    a, b, c = (vertices[faces[:, k], :2] for k in range(3))
    front = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0] > 0
    p = points_xy[:, None, :]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    den = np.where(np.abs(den) < 1e-18, np.nan, den)
    w0 = ((b[:, 1] - c[:, 1]) * (p[..., 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (p[..., 1] - c[:, 1])) / den
    w1 = ((c[:, 1] - a[:, 1]) * (p[..., 0] - c[:, 0]) + (a[:, 0] - c[:, 0]) * (p[..., 1] - c[:, 1])) / den
    w2 = 1 - w0 - w1
    eps = -1e-9
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps) & front
    z = w0 * vertices[faces[:, 0], 2] + w1 * vertices[faces[:, 1], 2] + w2 * vertices[faces[:, 2], 2]
    z = np.where(inside, z, -np.inf)
    tri = np.argmax(z, axis=1)
    rows = np.arange(len(points_xy))
    if not inside[rows, tri].all():
        raise ValueError("a construction point lies outside the canonical face mesh")
    return tri, np.stack([w0[rows, tri], w1[rows, tri], w2[rows, tri]], axis=1)


def _anchor_matrix(tri: np.ndarray, bary: np.ndarray, faces: np.ndarray, n: int) -> scipy.sparse.csr_matrix:
    """(N, n) sparse matrix interpolating per-vertex quantities at located points."""
    rows = np.repeat(np.arange(len(tri)), 3)
    return scipy.sparse.csr_matrix((bary.ravel(), (rows, faces[tri].ravel())), shape=(len(tri), n))


def _in_polygon(points_xy: np.ndarray, polygon_xy: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Points inside or on the boundary of a closed polygon (even-odd rule)."""
    x, y = points_xy[:, 0:1], points_xy[:, 1:2]
    x0, y0 = polygon_xy[:, 0], polygon_xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 == y0, 1e-30, y1 - y0) + x0)
    inside = crosses.sum(axis=1) % 2 == 1
    on_vertex = (np.hypot(x - x0, y - y0) < tol).any(axis=1)
    return inside | on_vertex


def _segment_distance(points_xy: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) distances from points (N, 2) to segments a[m]-b[m] (M, 2)."""
    ab = b - a
    t = np.clip(((points_xy[:, None, :] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-30), 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.linalg.norm(points_xy[:, None, :] - closest, axis=-1)


def _polyline_distance(points_xy: np.ndarray, polyline_xy: np.ndarray) -> np.ndarray:
    return _segment_distance(points_xy, polyline_xy[:-1], polyline_xy[1:]).min(axis=1)


def _polygon_signed_distance(points_xy: np.ndarray, polygon_xy: np.ndarray) -> np.ndarray:
    """Distance to a closed polygon's boundary, positive inside."""
    dist = _segment_distance(points_xy, polygon_xy, np.roll(polygon_xy, -1, axis=0)).min(axis=1)
    return np.where(_in_polygon(points_xy, polygon_xy), dist, -dist)


def _subdivide(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint subdivision. Returns the sorted unique edges (E, 2), whose midpoints become
    vertices ``n_vertices + e``, and the 4x faces in that numbering (orientation kept)."""
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges, inverse = np.unique(np.sort(pairs, axis=1), axis=0, return_inverse=True)
    mid = n_vertices + inverse.reshape(3, -1).T  # (F, 3): midpoints of edges ab, bc, ca
    a, b, c = faces.T
    ab, bc, ca = mid.T
    fine = np.concatenate([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1), np.stack([ca, bc, c], 1),
                           np.stack([ab, bc, ca], 1)])
    return edges, fine


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    raise ValueError(axis)


def _harmonic(laplacian: scipy.sparse.csr_matrix, fixed: np.ndarray, values: np.ndarray,
              free: np.ndarray) -> np.ndarray:
    """Harmonic interpolation: vertices in ``free`` solve L u = 0, ``fixed`` take ``values``
    (N, C), every other vertex is 0. Returns (V, C)."""
    n = laplacian.shape[0]
    u = np.zeros((n, values.shape[1]))
    u[fixed] = values
    free = np.setdiff1d(free, fixed)
    if free.size:
        lap_ff = laplacian[free][:, free].tocsc()
        rhs = -(laplacian[free] @ u)
        u[free] = scipy.sparse.linalg.spsolve(lap_ff, rhs).reshape(len(free), -1)
    return u


def _uniform_laplacian(faces: np.ndarray, n: int) -> scipy.sparse.csr_matrix:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    adj = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    adj = ((adj + adj.T) > 0).astype(np.float64)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    return (scipy.sparse.diags(degree) - adj).tocsr()
