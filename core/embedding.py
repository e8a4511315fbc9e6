"""Landmark embedding: for each MediaPipe landmark, a point on the head model's surface.

Built-in model: landmark i is vertex i. Any other model: render its neutral head from several
views and distances with the synthetic renderer, run the landmarker, cast each detected
landmark's pixel ray onto the known mesh, and keep a robust average per landmark with a
consistency score (spread of the per-view surface points, mm); unstable landmarks (e.g.
inner-lip points behind the teeth) are dropped. For every model the same renders also give a
bias model of MediaPipe itself: where it places each landmark relative to the surface point, as
a linear function of ρ = 1/distance (it under-reports perspective up close, which would
otherwise push the fitted head too far away and the focal estimate towards ~700 px).
Cached per model-file hash. A user-provided embedding in the common
105-point layout (``lmk_face_idx``, ``lmk_b_coords``, ``landmark_indices``) is accepted too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.constants import NUM_LANDMARKS

EMBEDDING_VERSION = 2
# Focal lengths (px at 512², head at f/2000 m: 0.3-1.2 m) the embedding and its bias model are learned at.
EMBEDDING_FOCALS = (600.0, 1200.0, 2400.0)
# Views (yaw, pitch) in degrees for the automatic embedding; the spread covers the contour.
DEFAULT_VIEWS = tuple((yaw, pitch) for yaw in (-30, -20, -10, 0, 10, 20, 30) for pitch in (-10, 0, 10))
MAX_SPREAD_MM = 20.0  # landmarks whose per-view surface points scatter more than this are dropped
# Landmarks that slide over the surface with the view (face contour, inner lips) are kept but
# weighted down: weight = 1 / (1 + (spread / WEIGHT_SPREAD_MM)^2).
WEIGHT_SPREAD_MM = 3.0
MIN_VIEW_FRACTION = 0.5
BIAS_MAX_SPREAD_MM = 6.0  # the bias model is learned only for landmarks this consistent ...
BIAS_MAX_OFFSET_M = 0.01  # ... and whose learned offset stays this small  # ... or that hit the mesh in fewer than half of the views


@dataclass
class LandmarkEmbedding:
    """Surface points of the 478 landmarks: triangle + barycentric coordinates."""

    face_idx: np.ndarray  # (478,) int64 triangle index, -1 where not embedded
    bary: np.ndarray  # (478, 3) float32 barycentric coordinates
    valid: np.ndarray  # (478,) bool
    spread_mm: np.ndarray  # (478,) float32 consistency (RMS distance of per-view points), nan unknown
    source: str = ""
    # MediaPipe's own bias, learned from renders of this model at several distances: the point the
    # landmarker "sees" is surface point + offset_m + rho_slope_m2 · (ρ - rho_ref_per_m), model space.
    # (MediaPipe under-reports perspective up close; this lets the fit put the head at the right depth.)
    offset_m: np.ndarray | None = None  # (478, 3)
    rho_slope_m2: np.ndarray | None = None  # (478, 3) metres per (1/m)
    rho_ref_per_m: float = 0.0

    def bias_terms(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(offset (478, 3), slope (478, 3), ρ_ref); zeros when no bias model was learned."""
        zeros = np.zeros((NUM_LANDMARKS, 3), np.float32)
        return (zeros if self.offset_m is None else self.offset_m,
                zeros if self.rho_slope_m2 is None else self.rho_slope_m2, float(self.rho_ref_per_m))

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    def weights(self) -> np.ndarray:
        """(478,) fitting weight of each landmark from its consistency (0 where not embedded)."""
        spread = np.nan_to_num(self.spread_mm, nan=0.0, posinf=np.inf)
        return np.where(self.valid, 1.0 / (1.0 + (spread / WEIGHT_SPREAD_MM) ** 2), 0.0).astype(np.float32)

    def vertex_weights(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L, 3) vertex ids and (L, 3) weights of the valid landmarks (L = num_valid)."""
        idx = np.flatnonzero(self.valid)
        return faces[self.face_idx[idx]].astype(np.int64), self.bary[idx].astype(np.float32)

    def save(self, path: str | Path) -> None:
        offset, slope, rho_ref = self.bias_terms()
        np.savez(path, version=EMBEDDING_VERSION, face_idx=self.face_idx, bary=self.bary, valid=self.valid,
                 spread_mm=self.spread_mm, source=np.array(self.source), offset_m=offset, rho_slope_m2=slope,
                 rho_ref_per_m=np.array(rho_ref))

    @classmethod
    def load(cls, path: str | Path, num_faces: int | None = None) -> "LandmarkEmbedding":
        """Load flamecam's own layout or the common 105-point layout."""
        with np.load(path, allow_pickle=False) as d:
            data = {k: d[k] for k in d.files}
        if {"lmk_face_idx", "lmk_b_coords", "landmark_indices"} <= data.keys():
            emb = _from_105_layout(data, str(path))
        elif {"face_idx", "bary", "valid"} <= data.keys():
            emb = cls(data["face_idx"].astype(np.int64), data["bary"].astype(np.float32), data["valid"].astype(bool),
                      data.get("spread_mm", np.full(NUM_LANDMARKS, np.nan, np.float32)).astype(np.float32),
                      str(data.get("source", path)),
                      data["offset_m"].astype(np.float32) if "offset_m" in data else None,
                      data["rho_slope_m2"].astype(np.float32) if "rho_slope_m2" in data else None,
                      float(data.get("rho_ref_per_m", 0.0)))
        else:
            raise ValueError(f"{path}: not a landmark embedding (expected lmk_face_idx/lmk_b_coords/landmark_indices "
                             "or flamecam's face_idx/bary/valid)")
        shapes = {"face_idx": (emb.face_idx.shape, (NUM_LANDMARKS,)), "bary": (emb.bary.shape, (NUM_LANDMARKS, 3)),
                  "valid": (emb.valid.shape, (NUM_LANDMARKS,)), "spread_mm": (emb.spread_mm.shape, (NUM_LANDMARKS,))}
        shapes.update({k: (getattr(emb, k).shape, (NUM_LANDMARKS, 3)) for k in ("offset_m", "rho_slope_m2")
                       if getattr(emb, k) is not None})
        wrong = [f"{k} {got} (expected {want})" for k, (got, want) in shapes.items() if got != want]
        if wrong:
            raise ValueError(f"{path}: malformed landmark embedding: {', '.join(wrong)}")
        if (emb.face_idx[emb.valid] < 0).any():
            raise ValueError(f"{path}: malformed landmark embedding: valid landmarks without a triangle")
        if num_faces is not None and emb.valid.any() and emb.face_idx[emb.valid].max() >= num_faces:
            raise ValueError(f"{path}: embedding refers to triangle {emb.face_idx[emb.valid].max()}, "
                             f"the model has {num_faces} (embedding made for another model?)")
        return emb


def _from_105_layout(data: dict, source: str) -> LandmarkEmbedding:
    face_idx = np.full(NUM_LANDMARKS, -1, np.int64)
    bary = np.zeros((NUM_LANDMARKS, 3), np.float32)
    idx = data["landmark_indices"].astype(np.int64).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= NUM_LANDMARKS:
        raise ValueError(f"{source}: landmark_indices must be MediaPipe landmark ids 0..{NUM_LANDMARKS - 1}")
    if data["lmk_face_idx"].size != idx.size or data["lmk_b_coords"].size != 3 * idx.size:
        raise ValueError(f"{source}: lmk_face_idx {data['lmk_face_idx'].shape} and lmk_b_coords "
                         f"{data['lmk_b_coords'].shape} do not match landmark_indices ({idx.size},)")
    face_idx[idx] = data["lmk_face_idx"].astype(np.int64).ravel()
    bary[idx] = data["lmk_b_coords"].astype(np.float32).reshape(-1, 3)
    valid = face_idx >= 0
    return LandmarkEmbedding(face_idx, bary, valid, np.full(NUM_LANDMARKS, np.nan, np.float32), source)


def identity_embedding(faces: np.ndarray, num_landmarks: int = NUM_LANDMARKS) -> LandmarkEmbedding:
    """Landmark i is vertex i (the built-in model): a triangle holding i, all weight on that corner."""
    face_idx = np.full(num_landmarks, -1, np.int64)
    bary = np.zeros((num_landmarks, 3), np.float32)
    for corner in range(3):
        verts = faces[:, corner]
        mask = verts < num_landmarks
        take = mask & (face_idx[np.minimum(verts, num_landmarks - 1)] < 0)
        face_idx[verts[take]] = np.flatnonzero(take)
        bary[verts[take]] = np.eye(3, dtype=np.float32)[corner]
    valid = face_idx >= 0
    return LandmarkEmbedding(face_idx, bary, valid, np.zeros(num_landmarks, np.float32), "identity")


def embed_points(vertices: torch.Tensor, vertex_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Barycentric surface points. vertices: (B, V, 3); vertex_ids, weights: (L, 3) -> (B, L, 3)."""
    return (vertices[:, vertex_ids] * weights[None, ..., None]).sum(-2)


# --- automatic embedding ----------------------------------------------------------------------


def ray_mesh_intersect(origin: np.ndarray, dirs: np.ndarray, verts: np.ndarray,
                       faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First hits of rays from one origin on a triangle mesh (Möller–Trumbore).

    Triangles are first culled per ray by their bounding box in a pinhole projection from the
    origin (only the few around each ray are intersected exactly).
    origin: (3,); dirs: (R, 3); verts: (V, 3); faces: (F, 3).
    Returns face index (R,) (-1 on a miss), barycentrics (R, 3) and distance along dirs (R,).
    """
    dirs = dirs.astype(np.float64)
    axis = dirs.mean(0)
    axis /= np.linalg.norm(axis)
    b1 = np.cross(axis, [0.0, 1.0, 0.0] if abs(axis[1]) < 0.9 else [1.0, 0.0, 0.0])
    b1 /= np.linalg.norm(b1)
    b2 = np.cross(axis, b1)
    rel = verts.astype(np.float64) - origin
    depth = rel @ axis
    in_front = depth > 1e-6
    plane = np.stack([rel @ b1, rel @ b2], 1) / np.where(in_front, depth, 1.0)[:, None]
    tri_plane = plane[faces]  # (F, 3, 2)
    lo, hi = tri_plane.min(1), tri_plane.max(1)
    usable = in_front[faces].all(1)
    ray_plane = np.stack([dirs @ b1, dirs @ b2], 1) / (dirs @ axis)[:, None]
    v0, v1, v2 = (verts[faces[:, k]].astype(np.float64) for k in range(3))
    out_face = np.full(len(dirs), -1, np.int64)
    out_bary = np.zeros((len(dirs), 3))
    out_dist = np.full(len(dirs), np.inf)
    for i, (d, rp) in enumerate(zip(dirs, ray_plane)):
        cand = np.flatnonzero(usable & (lo[:, 0] <= rp[0]) & (hi[:, 0] >= rp[0]) & (lo[:, 1] <= rp[1]) & (hi[:, 1] >= rp[1]))
        if not len(cand):
            continue
        e1, e2 = v1[cand] - v0[cand], v2[cand] - v0[cand]
        s_vec = origin - v0[cand]
        p = np.cross(d, e2)
        det = (p * e1).sum(-1)
        ok = np.abs(det) > 1e-15
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = (s_vec * p).sum(-1) * inv
        q = np.cross(s_vec, e1)
        v = (q @ d) * inv
        t = (e2 * q).sum(-1) * inv
        t = np.where(ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9), t, np.inf)
        best = int(t.argmin())
        if np.isfinite(t[best]):
            out_face[i], out_dist[i] = cand[best], t[best]
            out_bary[i] = (1 - u[best] - v[best], u[best], v[best])
    return out_face, out_bary, out_dist


def closest_surface_points(points: np.ndarray, verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest triangle and barycentrics for each point. points: (P, 3) -> (P,), (P, 3).

    Exact: the nearest corner bounds the distance from above, each triangle's bounding sphere
    from below, and only triangles that could beat the nearest corner are searched exactly.
    """
    tri = verts[faces].astype(np.float64)  # (F, 3, 3)
    centroid = tri.mean(1)
    sphere_radius = np.sqrt(((tri - centroid[:, None]) ** 2).sum(-1)).max(1)
    out_face = np.zeros(len(points), np.int64)
    out_bary = np.zeros((len(points), 3))
    for i, pt in enumerate(points.astype(np.float64)):
        nearest_corner = np.sqrt(((tri - pt) ** 2).sum(-1).min())
        lower_bound = np.sqrt(((centroid - pt) ** 2).sum(-1)) - sphere_radius
        cand = np.flatnonzero(lower_bound <= nearest_corner * (1 + 1e-9) + 1e-12)
        bary = _closest_on_triangles(pt, tri[cand])
        proj = (bary[..., None] * tri[cand]).sum(1)
        best = np.argmin(((proj - pt) ** 2).sum(-1))
        out_face[i], out_bary[i] = cand[best], bary[best]
    return out_face, out_bary


def _closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentrics of the point on each triangle closest to p (Ericson's regions). tri: (F, 3, 3)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp, cp = p - b, p - c
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    with np.errstate(divide="ignore", invalid="ignore"):
        v = vb / denom
        w = vc / denom
        bary = np.stack([1 - v - w, v, w], 1)
        # Edge and vertex regions, checked in Ericson's order (later ones win where they apply).
        t_ab = np.clip(d1 / (d1 - d3), 0, 1)
        t_ac = np.clip(d2 / (d2 - d6), 0, 1)
        t_bc = np.clip((d4 - d3) / ((d4 - d3) + (d5 - d6)), 0, 1)
    rules = [
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, 0 * t_ab], 1)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, 0 * t_ac, t_ac], 1)),
        ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), np.stack([0 * t_bc, 1 - t_bc, t_bc], 1)),
        ((d1 <= 0) & (d2 <= 0), np.tile([1.0, 0, 0], (len(a), 1))),
        ((d3 >= 0) & (d4 <= d3), np.tile([0, 1.0, 0], (len(a), 1))),
        ((d6 >= 0) & (d5 <= d6), np.tile([0, 0, 1.0], (len(a), 1))),
    ]
    for mask, value in rules:
        bary = np.where(mask[:, None], value, bary)
    return np.nan_to_num(bary, nan=1.0 / 3)


@dataclass
class EmbeddingReport:
    """How the automatic embedding went: per-landmark spread and per-view reprojection error."""

    views: int
    detected_views: int
    spread_mm: np.ndarray  # (478,)
    hit_fraction: np.ndarray  # (478,)
    reprojection_px: np.ndarray  # (detected_views, 478) distance of re-projected embedded points to detections
    dropped: np.ndarray  # landmark ids dropped


@dataclass
class _Observations:
    """Back-projected landmark detections of the neutral head, per view."""

    points: np.ndarray  # (views, 478, 3) model-space surface points hit by each detection's ray, nan on a miss
    rho_per_m: np.ndarray  # (views,) 1/distance of the head in that view
    cameras: list  # per view: (model->camera rotation (3, 3), translation (3,), intrinsics (4,))
    detections: np.ndarray  # (views, 478, 2)


def _observe(head, views, focals, size: int, landmarker_path: str | None) -> _Observations:
    """Render the neutral head from each view at each focal length (distance f/2000 m), detect, cast rays."""
    from core import camera  # noqa: PLC0415
    from core.landmarks import FaceLandmarker, LandmarkerOptions  # noqa: PLC0415
    from core.synthetic import GroundTruth, SyntheticOptions, _euler_to_axis_angle  # noqa: PLC0415
    from core.synthetic_render import SyntheticScene  # noqa: PLC0415

    verts = head.v_template.astype(np.float64)
    points, rhos, cameras, detections = [], [], [], []
    scene = SyntheticScene(head, SyntheticOptions(width=size, height=size))
    try:
        with FaceLandmarker(LandmarkerOptions(model_path=landmarker_path, running_mode="image", max_faces=1)) as lm:
            for focal_px in focals:
                distance = focal_px / 2000.0
                intr = SyntheticOptions(width=size, height=size, focal=focal_px).intrinsics()
                for yaw, pitch in views:
                    rotation = _euler_to_axis_angle(yaw, pitch, 0.0)
                    rot_cam = camera.rotation_model_to_camera(rotation)
                    center = np.array([0.0, 0.0, distance])
                    translation = camera.translation_for_center(head.head_center, camera.axis_angle_to_matrix(rotation),
                                                                center)
                    truth = GroundTruth(np.zeros(head.num_shape, np.float32), np.zeros(head.num_expr, np.float32),
                                        rotation, translation.astype(np.float32), np.zeros(3, np.float32),
                                        np.zeros(3, np.float32), np.zeros(6, np.float32), intr, 1 / distance,
                                        center.astype(np.float32), True)
                    result = lm.detect(scene.render(truth))
                    if result.face is None:
                        continue
                    uv = result.face.landmarks_px.astype(np.float64)
                    # Rays in camera space, then into model space (the camera sits at -R^T t).
                    rays_cam = np.stack([(uv[:, 0] - intr[2]) / intr[0], (uv[:, 1] - intr[3]) / intr[1],
                                         np.ones(len(uv))], 1)
                    rays_model = rays_cam @ rot_cam  # R^T applied to each row
                    rays_model /= np.linalg.norm(rays_model, axis=1, keepdims=True)
                    face_id, bary, _ = ray_mesh_intersect(-rot_cam.T @ translation, rays_model, verts, head.faces)
                    hit_pts = (bary[..., None] * verts[head.faces[np.maximum(face_id, 0)]]).sum(1)
                    points.append(np.where((face_id >= 0)[:, None], hit_pts, np.nan))
                    rhos.append(1.0 / distance)
                    cameras.append((rot_cam, translation, intr))
                    detections.append(uv)
    finally:
        scene.release()
    if not points:
        raise RuntimeError(f"{head.name}: MediaPipe found no face in any of {len(views) * len(focals)} renders; "
                           "the model may lack albedo (vertex_rgb) or face the wrong way")
    return _Observations(np.stack(points), np.array(rhos), cameras, np.stack(detections))


def _robust_mean(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per landmark over views: robust mean point, RMS spread (mm), hit fraction. pts: (views, L, 3)."""
    hit = np.isfinite(pts[..., 0])
    with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(np.where(hit[..., None], pts, np.nan), axis=0)
        dist = np.linalg.norm(pts - median[None], axis=-1)
        # Mean of the views within twice the median distance of the median point.
        keep = hit & (dist <= 2 * np.nanmedian(np.where(hit, dist, np.nan), axis=0)[None] + 1e-4)
        mean = np.nansum(np.where(keep[..., None], pts, 0), 0) / keep.sum(0)[:, None]
        spread_mm = 1000 * np.sqrt(np.nanmean(np.where(hit, dist, np.nan) ** 2, axis=0))
    return mean, spread_mm, hit.mean(0)


def _fit_bias(obs: _Observations, base_points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """offset + slope·(ρ - ρ_ref) per landmark from the per-distance robust means (least squares over ρ)."""
    levels = np.unique(obs.rho_per_m)
    rho_ref = float(levels.mean())
    per_level = [_robust_mean(obs.points[obs.rho_per_m == r]) for r in levels]
    means = np.stack([m for m, _, _ in per_level])  # (levels, L, 3)
    x = levels - rho_ref
    # Only where the rays hit the mesh in (nearly) every view at every distance and the points agree:
    # contour points beyond a face-only mesh's rim would otherwise learn nonsense offsets.
    consistent = np.all([(hits >= 0.9) & (spread <= BIAS_MAX_SPREAD_MM) for _, spread, hits in per_level], axis=0)
    ok = np.isfinite(means[..., 0]).all(0) & valid & consistent
    offset = np.zeros((NUM_LANDMARKS, 3), np.float32)
    slope = np.zeros((NUM_LANDMARKS, 3), np.float32)
    if len(levels) >= 2 and ok.any():
        dev = means[:, ok] - base_points[ok][None]  # (levels, n, 3)
        slope[ok] = np.einsum("k,knc->nc", x, dev - dev.mean(0)) / (x ** 2).sum()
        offset[ok] = dev.mean(0)
    elif ok.any():
        offset[ok] = means[0, ok] - base_points[ok]
    too_far = np.linalg.norm(offset, axis=1) > BIAS_MAX_OFFSET_M  # not a bias, a wrong correspondence
    offset[too_far], slope[too_far] = 0.0, 0.0
    return offset, slope, rho_ref


def compute_embedding(head, views=DEFAULT_VIEWS, focals=EMBEDDING_FOCALS, size: int = 512,
                      landmarker_path: str | None = None, base: LandmarkEmbedding | None = None,
                      ) -> tuple[LandmarkEmbedding, EmbeddingReport]:
    """Embed MediaPipe's landmarks on ``head`` by rendering its neutral head from ``views`` at each
    focal length and back-projecting the detections; also learn the distance-dependent bias model.
    ``base``: keep this surface correspondence (e.g. the built-in identity) and learn only the bias.
    """
    from core import camera  # noqa: PLC0415

    verts = head.v_template.astype(np.float64)
    faces = head.faces
    obs = _observe(head, views, focals, size, landmarker_path)
    mean, spread_mm, hit_fraction = _robust_mean(obs.points)
    if base is None:
        good = (hit_fraction >= MIN_VIEW_FRACTION) & (spread_mm <= MAX_SPREAD_MM) & np.isfinite(mean[:, 0])
        face_idx = np.full(NUM_LANDMARKS, -1, np.int64)
        bary = np.zeros((NUM_LANDMARKS, 3), np.float32)
        ids = np.flatnonzero(good)
        face_idx[ids], bary[ids] = closest_surface_points(mean[ids], verts, faces)
        spread = np.nan_to_num(spread_mm, nan=np.inf).astype(np.float32)
        source = f"auto: {len(obs.points)} views at f={'/'.join(f'{f:g}' for f in focals)}px (512², f/2000 m)"
    else:
        # Keep the given correspondence; weigh its landmarks by how consistently MediaPipe places them.
        good, face_idx, bary = base.valid.copy(), base.face_idx, base.bary
        spread = np.where(np.isfinite(spread_mm) & (hit_fraction >= MIN_VIEW_FRACTION), spread_mm,
                          MAX_SPREAD_MM).astype(np.float32)
        source = f"{base.source} + bias model from {len(obs.points)} views"
    surface = (bary[..., None] * verts[faces[np.maximum(face_idx, 0)]]).sum(1)
    offset, slope, rho_ref = _fit_bias(obs, surface, good)
    emb = LandmarkEmbedding(face_idx, bary, good, spread, source, offset, slope, rho_ref)
    # Re-project the embedded points (with the bias model) into each view and compare to the detections.
    reproj = np.full((len(obs.points), NUM_LANDMARKS), np.nan)
    for k, (rot_cam, translation, intr) in enumerate(obs.cameras):
        seen = surface + offset + slope * (obs.rho_per_m[k] - rho_ref)
        uv = camera.project_perspective(seen @ rot_cam.T + translation, np.asarray(intr, np.float64))
        reproj[k] = np.where(good, np.linalg.norm(uv - obs.detections[k], axis=1), np.nan)
    report = EmbeddingReport(len(views) * len(focals), len(obs.points), spread.astype(np.float32),
                             hit_fraction.astype(np.float32), reproj, np.flatnonzero(~good))
    return emb, report


def _cache_path(head) -> Path | None:
    """Where ``head``'s embedding is cached (None for a model without a file hash to key on)."""
    if not head.source_sha256:
        return None  # every such model would share (and clobber) one cache file
    from core.assets import cache_dir  # noqa: PLC0415

    return cache_dir() / "embeddings" / f"{head.source_sha256}-v{EMBEDDING_VERSION}.npz"


def embedding_is_cached(head) -> bool:
    """True when :func:`embedding_for` will read ``head``'s embedding from the cache (no renders)."""
    path = _cache_path(head)
    return path is not None and path.exists()


def embedding_for(head, cache: bool = True, user_file: str | Path | None = None) -> LandmarkEmbedding:
    """The embedding to use for ``head``: a user file, else the cache, else computed and cached.

    The built-in model keeps landmark i = vertex i and gets only the learned bias model; other
    models get the surface correspondence too. Computing takes ~20-40 s once per model file."""
    if user_file is not None:
        return LandmarkEmbedding.load(user_file, num_faces=len(head.faces))
    path = _cache_path(head)
    cache = cache and path is not None
    if cache and path.exists():
        return LandmarkEmbedding.load(path, num_faces=len(head.faces))
    emb, _ = compute_embedding(head, base=identity_embedding(head.faces) if head.kind == "builtin" else None)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        emb.save(tmp)
        tmp.replace(path)
    return emb

