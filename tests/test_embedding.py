"""Landmark embedding: geometry helpers against brute force, file layouts, the automatic ICT embedding."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core import embedding as emb_mod
from core.embedding import (LandmarkEmbedding, closest_surface_points, embed_points, embedding_for,
                            identity_embedding, ray_mesh_intersect)
from core.landmarks import NUM_LANDMARKS

# MediaPipe's outer lip ring (FACE_LANDMARKS_LIPS holds the inner ring too, which may be dropped).
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _grid_surface(rng, n: int, half: float, depth: float, bump: float, jitter: float):
    """A bumpy height field z ≈ depth over [-half, half]^2: (V, 3) vertices and (F, 3) faces."""
    xs = np.linspace(-half, half, n)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    step = xs[1] - xs[0]
    verts = np.stack([x + rng.uniform(-jitter, jitter, x.shape) * step,
                      y + rng.uniform(-jitter, jitter, x.shape) * step,
                      depth + rng.uniform(-bump, bump, x.shape)], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return verts, faces


def _two_layer_mesh(rng):
    """A front surface at z≈0.5 m and a smaller one behind it at z≈0.6 m, faces shuffled."""
    v1, f1 = _grid_surface(rng, 7, 0.10, 0.50, 0.015, 0.3)
    v2, f2 = _grid_surface(rng, 5, 0.06, 0.60, 0.015, 0.3)
    verts = np.concatenate([v1, v2])
    faces = np.concatenate([f1, f2 + len(v1)])
    layer = np.r_[np.zeros(len(f1), int), np.ones(len(f2), int)]
    order = rng.permutation(len(faces))
    return verts, faces[order], layer[order]


def _brute_force_rays(origin, dirs, verts, faces):
    """Every ray against every triangle by solving o + t·d = v0 + u·e1 + v·e2 (3x3 systems)."""
    v0, v1, v2 = (verts[faces[:, k]] for k in range(3))
    e1, e2 = v1 - v0, v2 - v0
    t_all = np.full((len(dirs), len(faces)), np.inf)
    for i, d in enumerate(dirs):
        a = np.stack([np.broadcast_to(d, e1.shape), -e1, -e2], -1)  # (F, 3, 3)
        ok = np.abs(np.linalg.det(a)) > 1e-14
        x = np.linalg.solve(a[ok], (v0 - origin)[ok][..., None])[..., 0]
        t, u, v = x.T
        inside = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        t_all[i, np.flatnonzero(ok)[inside]] = t[inside]
    return t_all


def test_ray_mesh_intersect_matches_brute_force():
    rng = np.random.default_rng(1)
    verts, faces, layer = _two_layer_mesh(rng)
    origin = np.array([0.01, -0.02, 0.0])
    targets = np.stack([rng.uniform(-0.14, 0.14, 300), rng.uniform(-0.14, 0.14, 300), np.full(300, 0.55)], 1)
    dirs = targets - origin
    dirs *= rng.uniform(0.5, 2.0, (len(dirs), 1))  # distances are in units of each ray's own length
    # Rotate and shift the whole scene so nothing is axis-aligned.
    rot, shift = _random_rotation(rng), rng.normal(0, 0.3, 3)
    verts, origin, dirs = verts @ rot.T + shift, rot @ origin + shift, dirs @ rot.T

    face, bary, dist = ray_mesh_intersect(origin, dirs, verts, faces)
    t_all = _brute_force_rays(origin, dirs, verts, faces)
    ref_t = t_all.min(1)
    ref_hit = np.isfinite(ref_t)
    hits_per_ray = np.isfinite(t_all).sum(1)
    two_surfaces = np.array([len(set(layer[np.isfinite(row)])) == 2 for row in t_all])
    assert ref_hit.sum() > 100 and (~ref_hit).sum() > 50 and two_surfaces.sum() > 30, "test scene too easy"

    np.testing.assert_array_equal(face >= 0, ref_hit)
    assert np.isinf(dist[~ref_hit]).all()
    np.testing.assert_allclose(dist[ref_hit], ref_t[ref_hit], rtol=1e-9, atol=1e-12)
    # The reported triangle is the nearest one (ties only where a ray passes through a shared edge).
    assert np.all(np.isclose(t_all[np.flatnonzero(ref_hit), face[ref_hit]], ref_t[ref_hit], rtol=1e-9))
    assert (face[ref_hit] == t_all[ref_hit].argmin(1)).mean() > 0.98
    # First hit where two surfaces lie along the ray: always the front layer.
    assert (layer[face[two_surfaces]] == 0).all()
    assert (hits_per_ray[two_surfaces] >= 2).all()
    # Barycentrics put the hit on the ray.
    hit_pts = (bary[ref_hit, :, None] * verts[faces[face[ref_hit]]]).sum(1)
    np.testing.assert_allclose(hit_pts, origin + dist[ref_hit, None] * dirs[ref_hit], atol=1e-10)
    assert (bary[ref_hit] >= -1e-12).all()
    np.testing.assert_allclose(bary[ref_hit].sum(1), 1.0, atol=1e-12)


def _brute_force_closest(points, verts, faces) -> np.ndarray:
    """Distance from each point to the mesh: plane projection if inside the triangle, else the nearest edge."""
    out = np.empty(len(points))
    a, b, c = (verts[faces[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)

    def seg(p, s, e):
        t = np.clip(((p - s) * (e - s)).sum(1) / ((e - s) ** 2).sum(1), 0, 1)
        return np.linalg.norm(p - (s + t[:, None] * (e - s)), axis=1)

    for i, p in enumerate(points):
        q = p - ((p - a) * n).sum(1, keepdims=True) * n
        m = np.stack([b - a, c - a], -1)  # (F, 3, 2)
        uv = np.linalg.lstsq(m[0], (q - a)[0], rcond=None)[0] if len(faces) == 1 else \
            np.linalg.solve(np.einsum("fki,fkj->fij", m, m), np.einsum("fki,fk->fi", m, q - a)[..., None])[..., 0]
        uv = np.atleast_2d(uv)
        inside = (uv >= 0).all(1) & (uv.sum(1) <= 1)
        d = np.minimum(np.minimum(seg(p, a, b), seg(p, b, c)), seg(p, c, a))
        d[inside] = np.linalg.norm(p - q[inside], axis=1)
        out[i] = d.min()
    return out


def _check_closest(points, verts, faces):
    face, bary = closest_surface_points(points, verts, faces)
    assert (bary >= -1e-12).all()
    np.testing.assert_allclose(bary.sum(1), 1.0, atol=1e-12)
    ours = np.linalg.norm((bary[..., None] * verts[faces[face]]).sum(1) - points, axis=1)
    np.testing.assert_allclose(ours, _brute_force_closest(points, verts, faces), rtol=1e-9, atol=1e-12)


def test_closest_surface_points_matches_brute_force():
    rng = np.random.default_rng(2)
    verts, faces, _ = _two_layer_mesh(rng)
    tri = verts[faces]
    pick = rng.integers(0, len(faces), 60)
    normals = np.cross(tri[pick, 1] - tri[pick, 0], tri[pick, 2] - tri[pick, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    corner = tri[pick, rng.integers(0, 3, 60)]
    near_vertices = corner + rng.normal(0, 0.008, (60, 3))  # vertex regions (and their neighbours)
    k = rng.integers(0, 3, 60)
    edge_mid = 0.5 * (tri[pick, k] + tri[pick, (k + 1) % 3])
    near_edges = edge_mid + rng.normal(0, 0.006, (60, 3))
    w = rng.dirichlet(np.ones(3), 60)
    on_faces = (w[..., None] * tri[pick]).sum(1) + normals * rng.uniform(-0.01, 0.01, (60, 1))
    outside = rng.uniform(-0.25, 0.25, (20, 3)) + [0, 0, 0.55]  # off the mesh's edge, between the layers, ...
    _check_closest(np.concatenate([near_vertices, near_edges, on_faces, outside]), verts, faces)


def test_closest_surface_points_large_triangles():
    """A big triangle right under the point, a small one with a corner only 29 mm away: the big one wins."""
    verts = np.array([[-0.2, -0.2, 0], [0.2, -0.2, 0], [0, 0.25, 0],
                      [0.0, 0.0, 0.029], [0.01, 0, 0.04], [0, 0.01, 0.04]], float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    face, bary = closest_surface_points(np.array([[0.0, 0.0, 0.01]]), verts, faces)
    assert face[0] == 0
    np.testing.assert_allclose((bary[0, :, None] * verts[faces[0]]).sum(0), [0, 0, 0], atol=1e-12)
    rng = np.random.default_rng(3)
    points = rng.uniform(-0.15, 0.15, (40, 3)) * [1, 1, 0.3]
    _check_closest(points, verts, faces)


# --- identity embedding and file layouts -------------------------------------------------------------


def test_identity_embedding_builtin(builtin_model):
    head = builtin_model
    emb = identity_embedding(head.faces)
    assert emb.valid.all() and emb.num_valid == NUM_LANDMARKS
    corners = head.faces[emb.face_idx]  # (478, 3)
    np.testing.assert_array_equal(corners[np.arange(NUM_LANDMARKS), emb.bary.argmax(1)], np.arange(NUM_LANDMARKS))
    np.testing.assert_array_equal(np.sort(emb.bary, 1), np.tile([0, 0, 1], (NUM_LANDMARKS, 1)))
    np.testing.assert_array_equal(emb.weights(), np.ones(NUM_LANDMARKS, np.float32))

    from core.head_model import HeadModelLayer

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        verts = HeadModelLayer(head)(torch.randn(2, head.num_shape, generator=gen),
                                     torch.rand(2, head.num_expr, generator=gen), 0.3 * torch.randn(2, 3, generator=gen))
    vids, weights = emb.vertex_weights(head.faces)
    pts = embed_points(verts, torch.as_tensor(vids), torch.as_tensor(weights))
    torch.testing.assert_close(pts, verts[:, :NUM_LANDMARKS], rtol=0, atol=0)


def _random_embedding(rng, num_faces: int) -> LandmarkEmbedding:
    valid = rng.random(NUM_LANDMARKS) < 0.8
    face_idx = np.where(valid, rng.integers(0, num_faces, NUM_LANDMARKS), -1)
    bary = np.where(valid[:, None], rng.dirichlet(np.ones(3), NUM_LANDMARKS), 0).astype(np.float32)
    spread = np.where(valid, rng.uniform(0, 15, NUM_LANDMARKS), np.inf).astype(np.float32)
    offset = np.where(valid[:, None], rng.normal(0, 2e-3, (NUM_LANDMARKS, 3)), 0).astype(np.float32)
    slope = np.where(valid[:, None], rng.normal(0, 1e-3, (NUM_LANDMARKS, 3)), 0).astype(np.float32)
    return LandmarkEmbedding(face_idx.astype(np.int64), bary, valid, spread, "random test embedding", offset, slope,
                             float(rng.uniform(1, 3)))


def test_embedding_save_load_round_trip(tmp_path):
    emb = _random_embedding(np.random.default_rng(4), 1000)
    emb.save(tmp_path / "e.npz")
    back = LandmarkEmbedding.load(tmp_path / "e.npz", num_faces=1000)
    for field in dataclasses.fields(LandmarkEmbedding):
        np.testing.assert_array_equal(getattr(back, field.name), getattr(emb, field.name), err_msg=field.name)
    np.testing.assert_array_equal(back.weights(), emb.weights())
    for got, want in zip(back.bias_terms(), emb.bias_terms()):
        np.testing.assert_array_equal(got, want)
    # The same file for a model with fewer triangles than it names: refused, with the reason.
    with pytest.raises(ValueError, match="another model"):
        LandmarkEmbedding.load(tmp_path / "e.npz", num_faces=int(emb.face_idx.max()))


def test_embedding_105_point_layout(tmp_path):
    rng = np.random.default_rng(5)
    ids = rng.choice(NUM_LANDMARKS, 105, replace=False)
    face_idx = rng.integers(0, 9976, 105)
    bary = rng.dirichlet(np.ones(3), 105)
    np.savez(tmp_path / "mp.npz", lmk_face_idx=face_idx, lmk_b_coords=bary, landmark_indices=ids)
    emb = LandmarkEmbedding.load(tmp_path / "mp.npz", num_faces=9976)
    np.testing.assert_array_equal(np.flatnonzero(emb.valid), np.sort(ids))
    np.testing.assert_array_equal(emb.face_idx[ids], face_idx)
    np.testing.assert_allclose(emb.bary[ids], bary, rtol=1e-6)
    assert (emb.face_idx[~emb.valid] == -1).all()
    w = emb.weights()  # no consistency information: full weight where embedded
    np.testing.assert_array_equal(w[ids], 1.0)
    assert (w[~emb.valid] == 0).all()
    with pytest.raises(ValueError, match="another model"):
        LandmarkEmbedding.load(tmp_path / "mp.npz", num_faces=int(face_idx.max()))


@pytest.mark.parametrize("arrays", [
    {"vertices": np.zeros((10, 3)), "faces": np.zeros((4, 3), int)},  # some other npz
    {"lmk_face_idx": np.zeros(3, int), "lmk_b_coords": np.full((3, 3), 1 / 3), "landmark_indices": [0, 1, 478]},
    {"lmk_face_idx": np.zeros(3, int), "lmk_b_coords": np.full((3, 3), 1 / 3), "landmark_indices": [0, 1, -2]},
    {"lmk_face_idx": np.zeros(2, int), "lmk_b_coords": np.full((3, 3), 1 / 3), "landmark_indices": [0, 1, 2]},
    {"face_idx": np.zeros(100, int), "bary": np.zeros((100, 3)), "valid": np.ones(100, bool)},  # wrong length
    {"face_idx": np.full(478, -1), "bary": np.zeros((478, 3)), "valid": np.ones(478, bool)},  # valid, no triangle
    {"face_idx": np.zeros(478, int), "bary": np.full((478, 3), 1 / 3), "valid": np.ones(478, bool),
     "offset_m": np.zeros((105, 3))},  # bias model of another layout
])
def test_embedding_load_rejects_bad_files(tmp_path, arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="bad.npz"):
        LandmarkEmbedding.load(tmp_path / "bad.npz", num_faces=100)


def test_weights_range_and_monotonic():
    emb = _random_embedding(np.random.default_rng(6), 500)
    emb.spread_mm[np.flatnonzero(emb.valid)[:5]] = np.nan  # unknown consistency: full weight
    w = emb.weights()
    assert w.dtype == np.float32 and w.shape == (NUM_LANDMARKS,)
    assert ((w[emb.valid] > 0) & (w[emb.valid] <= 1)).all() and (w[~emb.valid] == 0).all()
    assert (w[np.flatnonzero(emb.valid)[:5]] == 1).all()
    known = emb.valid & np.isfinite(emb.spread_mm)
    order = np.argsort(emb.spread_mm[known])
    assert (np.diff(w[known][order]) <= 0).all()


def test_embedding_for_builtin_and_user_file(builtin_model, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAMECAM_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_compute(head, *args, base=None, **kwargs):
        calls.append(base)
        return base, None

    # The built-in model keeps landmark i = vertex i: embedding_for passes the identity as the base.
    monkeypatch.setattr(emb_mod, "compute_embedding", fake_compute)
    emb = embedding_for(builtin_model)
    assert len(calls) == 1 and calls[0] is not None and calls[0].source == "identity"
    identity = identity_embedding(builtin_model.faces)
    np.testing.assert_array_equal(emb.face_idx, identity.face_idx)
    np.testing.assert_array_equal(emb.bary, identity.bary)
    # A user file wins over everything (nothing computed) ...
    num_faces = len(builtin_model.faces)
    fits = _random_embedding(np.random.default_rng(7), num_faces)
    fits.save(tmp_path / "fits.npz")
    loaded = embedding_for(builtin_model, user_file=tmp_path / "fits.npz")
    np.testing.assert_array_equal(loaded.face_idx, fits.face_idx)
    assert len(calls) == 1
    # ... and one made for a model with more triangles is refused.
    other = _random_embedding(np.random.default_rng(8), 10 * num_faces)
    assert other.face_idx.max() >= num_faces
    other.save(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="another model"):
        embedding_for(builtin_model, user_file=tmp_path / "other.npz")


# --- the automatic embedding on the ICT head ------------------------------------------------------------


@pytest.fixture(scope="module")
def ict_auto(ict_model):
    return emb_mod.compute_embedding(ict_model)


def _region(name: str) -> np.ndarray:
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C

    conns = getattr(C, name)
    return np.array(sorted({i for c in conns for i in (c.start, c.end)}))


@pytest.mark.slow
@pytest.mark.needs_ict
def test_compute_embedding_ict(ict_auto, ict_model):
    emb, report = ict_auto
    assert emb.num_valid >= 420, f"only {emb.num_valid} of 478 landmarks embedded"
    assert report.views == len(emb_mod.DEFAULT_VIEWS) * len(emb_mod.EMBEDDING_FOCALS)
    assert report.detected_views >= 0.9 * report.views
    median_px = float(np.nanmedian(report.reprojection_px))
    assert median_px < 3.0, f"median reprojection error {median_px:.2f} px"
    np.testing.assert_array_equal(np.sort(report.dropped), np.flatnonzero(~emb.valid))
    # The landmarks a fit relies on are kept: eye contours, irises, outer lips, nose.
    kept = np.concatenate([_region("FACE_LANDMARKS_LEFT_EYE"), _region("FACE_LANDMARKS_RIGHT_EYE"),
                           np.arange(468, 478), OUTER_LIPS, _region("FACE_LANDMARKS_NOSE")])
    assert emb.valid[kept].all(), f"dropped: {sorted(set(kept[~emb.valid[kept]]))}"
    assert emb.valid[_region("FACE_LANDMARKS_LIPS")].mean() >= 0.75
    # Embedded points lie on the mesh: valid triangles, convex barycentrics.
    assert (emb.face_idx[emb.valid] >= 0).all() and (emb.face_idx[emb.valid] < len(ict_model.faces)).all()
    assert (emb.bary[emb.valid] >= -1e-6).all()
    np.testing.assert_allclose(emb.bary[emb.valid].sum(1), 1.0, atol=1e-5)
    # The bias model: finite, and nothing for landmarks that are not embedded.
    offset, slope, rho_ref = emb.bias_terms()
    assert np.isfinite(offset).all() and np.isfinite(slope).all() and rho_ref > 0
    assert (offset[~emb.valid] == 0).all() and (slope[~emb.valid] == 0).all()


@pytest.mark.slow
@pytest.mark.needs_ict
def test_ict_weights_follow_spread(ict_auto):
    emb, _ = ict_auto
    w = emb.weights()
    valid = emb.valid
    assert ((w[valid] > 0) & (w[valid] <= 1)).all() and (w[~valid] == 0).all()
    order = np.argsort(emb.spread_mm[valid])
    assert (np.diff(w[valid][order]) <= 0).all(), "a landmark with more spread got more weight"
    assert w[valid].min() < 0.3 and w[valid].max() > 0.8, "weights do not vary: the check above is vacuous"
    # Contour landmarks slide with the view; eye corners do not.
    oval = _region("FACE_LANDMARKS_FACE_OVAL")
    eyes = np.concatenate([_region("FACE_LANDMARKS_LEFT_EYE"), _region("FACE_LANDMARKS_RIGHT_EYE")])
    assert w[oval[valid[oval]]].mean() < w[eyes].mean()


@pytest.mark.slow
@pytest.mark.needs_ict
def test_embedding_for_caches_by_model_hash(ict_auto, ict_model, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAMECAM_CACHE", str(tmp_path))
    calls = []

    def fake_compute(head, *args, **kwargs):
        calls.append(head.name)
        return ict_auto

    monkeypatch.setattr(emb_mod, "compute_embedding", fake_compute)
    first = embedding_for(ict_model)
    assert calls == [ict_model.name]
    files = list((tmp_path / "embeddings").glob("*.npz"))
    assert len(files) == 1 and ict_model.source_sha256 in files[0].name

    def must_not_run(*args, **kwargs):
        raise AssertionError("embedding_for recomputed a cached embedding")

    monkeypatch.setattr(emb_mod, "compute_embedding", must_not_run)
    second = embedding_for(ict_model)
    for field in ("face_idx", "bary", "valid", "spread_mm"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))

    # A model without a file hash is never cached (it would share one cache file with every such model).
    monkeypatch.setattr(emb_mod, "compute_embedding", fake_compute)
    anonymous = dataclasses.replace(ict_model, source_sha256="", kind="npz")
    embedding_for(anonymous)
    embedding_for(anonymous)
    assert len(calls) == 3
    assert list((tmp_path / "embeddings").glob("*.npz")) == files
