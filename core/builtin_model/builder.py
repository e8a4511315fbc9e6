"""Building the built-in model from the canonical mesh: eyes, mouth, jaw, expressions and identity modes."""
from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from core.builtin_model.canonical import CanonicalMesh, _regions_from_chains
from core.builtin_model.design import (BROW_RGB, EXPRESSION_NAMES, GAZE_DEG, IDENTITY_FEATURE_NAMES, IRIS_BEHIND_LID,
                                       IRIS_RADIUS, IRIS_RGB, IRIS_SPHERE_RADIUS, JAW_AXIS, JAW_OPEN_RAD, LASH_RGB,
                                       LIMBUS_RGB, LIP_RGB, MM, MOUTH_RGB, NUM_SURFACE_VERTICES, PUPIL_RADIUS,
                                       PUPIL_RGB, SCLERA_EXTENT, SCLERA_GAP, SCLERA_RADIUS, SCLERA_RGB, SKIN_RGB)
from core.builtin_model.geometry import (_anchor_matrix, _gauss, _harmonic, _locate, _polygon_signed_distance,
                                         _polyline_distance, _rotation, _subdivide, _uniform_laplacian,
                                         _vertex_normals)


# --- construction -----------------------------------------------------------------------------


class _Builder:
    """Builds the model in one pass; every array is float64 until the end."""

    def __init__(self, mesh: CanonicalMesh, chains: dict[str, list[list[int]]]):
        self.mesh = mesh
        self.chains = chains
        self.groups = _regions_from_chains(chains)
        self.base = mesh.vertices_m
        n = NUM_SURFACE_VERTICES
        if self.base.shape != (n, 3):
            raise ValueError(f"expected {n} canonical vertices, got {self.base.shape[0]}")
        self.mirror_surface = self._surface_mirror()
        # The canonical mesh closes the eye openings and the mouth; open them.
        self.eye_contours = {side: self._eye_contour(side) for side in ("left", "right")}
        inner_lips = self._lip_loops()[1]
        holes = [np.concatenate(self.eye_contours["left"]), np.concatenate(self.eye_contours["right"]), inner_lips]
        keep = np.ones(len(mesh.faces), bool)
        for loop in holes:
            keep &= ~np.isin(mesh.faces, loop).all(axis=1)
        self.surface_faces = mesh.faces[keep]
        self.laplacian = _uniform_laplacian(self.surface_faces, n)
        self.normals = _vertex_normals(self.base, self.surface_faces)
        self.jaw_weights = self._jaw_weights()

    # -- topology helpers

    def _surface_mirror(self) -> np.ndarray:
        mirrored = self.base * [-1.0, 1.0, 1.0]
        dist2 = ((mirrored[:, None, :] - self.base[None, :, :]) ** 2).sum(-1)
        idx = dist2.argmin(axis=1)
        if np.sqrt(dist2.min(axis=1)).max() > 1e-6 or not (idx[idx] == np.arange(len(idx))).all():
            raise ValueError("the canonical mesh is not mirror-symmetric as expected")
        return idx

    def _eye_contour(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(upper, lower) lid contours of one eye, both from the outer corner to the inner one."""
        chains = self.chains[f"{side}_eye"]
        if len(chains) != 2 or chains[0][0] != chains[1][0] or chains[0][-1] != chains[1][-1]:
            raise ValueError(f"unexpected MediaPipe {side} eye contour layout")
        a, b = (np.array(c) for c in chains)
        upper, lower = (a, b) if self.base[a[1:-1], 1].mean() > self.base[b[1:-1], 1].mean() else (b, a)
        if abs(self.base[upper[0], 0]) < abs(self.base[upper[-1], 0]):  # start at the outer corner
            upper, lower = upper[::-1], lower[::-1]
        return upper, lower

    def _lip_loops(self) -> tuple[np.ndarray, np.ndarray]:
        """Closed outer and inner lip contours (vertex loops)."""
        chains = [np.array(c) for c in self.chains["lips"]]
        if len(chains) != 4:
            raise ValueError("unexpected MediaPipe lip contour layout")
        loops = []
        for lower, upper in ((chains[0], chains[1]), (chains[2], chains[3])):
            loops.append(np.concatenate([lower, upper[::-1][1:-1]]))
        outer, inner = sorted(loops, key=lambda loop: -np.ptp(self.base[loop, 1]))
        return outer, inner

    def _brow_loop(self, side: str) -> np.ndarray:
        chains = [np.array(c) for c in self.chains[f"{side}_eyebrow"]]
        if len(chains) != 2:
            raise ValueError(f"unexpected MediaPipe {side} eyebrow layout")
        first, second = chains
        if np.linalg.norm(self.base[first[-1]] - self.base[second[-1]]) > np.linalg.norm(
                self.base[first[-1]] - self.base[second[0]]):
            second = second[::-1]
        return np.concatenate([first, second[::-1]])

    # -- the build

    def build(self) -> dict:
        base = self.base
        n_surf = NUM_SURFACE_VERTICES
        eyes = {side: self._eyeball(side) for side in ("left", "right")}
        mouth = self._mouth_patch()

        # One midpoint subdivision of the surface: same shape, twice the colour resolution
        # (brows and lips are only a vertex or two thick on the canonical mesh).
        edges, fine_faces = _subdivide(self.surface_faces, n_surf)
        midpoints = 0.5 * (base[edges[:, 0]] + base[edges[:, 1]])

        # Vertex layout: surface, right iris landmarks, left iris landmarks, left eye extras,
        # right eye extras, edge midpoints, mouth patch.
        parts = [base, eyes["right"]["vertices"][:5], eyes["left"]["vertices"][:5],
                 eyes["left"]["vertices"][5:], eyes["right"]["vertices"][5:], midpoints, mouth["vertices"]]
        offsets = np.cumsum([0] + [len(p) for p in parts])
        vertices = np.concatenate(parts)
        n_vert = len(vertices)
        n_eye_extra = len(eyes["left"]["vertices"]) - 5

        def eye_index(side: str) -> np.ndarray:  # local eye index -> global vertex index
            lm0 = offsets[1] if side == "right" else offsets[2]
            ex0 = offsets[3] if side == "left" else offsets[4]
            return np.concatenate([lm0 + np.arange(5), ex0 + np.arange(n_eye_extra)])

        mid_idx = offsets[5] + np.arange(len(midpoints))
        mouth_idx = offsets[6] + np.arange(len(mouth["vertices"]))
        # Global index of every surface-like vertex in the subdivided faces: 0..467 then midpoints.
        fine_to_global = np.concatenate([np.arange(n_surf), mid_idx])
        faces = [fine_to_global[fine_faces]]
        colours = np.zeros((n_vert, 3))
        colours[fine_to_global] = self._paint(vertices[fine_to_global])
        for side in ("left", "right"):
            idx = eye_index(side)
            faces.append(idx[eyes[side]["faces"]])
            colours[idx] = eyes[side]["rgb"]
        faces.append(mouth_idx[mouth["faces"]])
        colours[mouth_idx] = mouth["rgb"]
        faces = np.concatenate(faces).astype(np.int32)

        # Mirror permutation of every vertex (the eyes are built as mirror images).
        mirror = np.zeros(n_vert, np.int64)
        mirror[:n_surf] = self.mirror_surface
        left_idx, right_idx = eye_index("left"), eye_index("right")
        # Right-eye vertex j is the mirror image of left-eye vertex order[j].
        order = eyes["right"]["mirror_order"]
        mirror[right_idx] = left_idx[order]
        mirror[left_idx[order]] = right_idx
        edge_id = {tuple(e): i for i, e in enumerate(edges)}
        mirrored_edges = np.sort(self.mirror_surface[edges], axis=1)
        mirror[mid_idx] = mid_idx[[edge_id[tuple(e)] for e in mirrored_edges]]
        mirror[mouth_idx] = mouth_idx[mouth["mirror"]]
        if not (mirror[mirror] == np.arange(n_vert)).all() or np.abs(
                vertices[mirror] * [-1, 1, 1] - vertices).max() > 1e-9:
            raise AssertionError("the built-in model is not mirror-symmetric")

        # Vertices interpolated from the surface (midpoints, mouth patch): rows of weights.
        rows = np.repeat(np.arange(len(edges)), 2)
        mid_anchor = scipy.sparse.csr_matrix((np.full(2 * len(edges), 0.5), (rows, edges.ravel())),
                                             shape=(len(edges), n_surf))
        anchored_idx = np.concatenate([mid_idx, mouth_idx])
        anchor = scipy.sparse.vstack([mid_anchor, mouth["anchor"]]).tocsr()
        contour_mean = {}
        for side in ("left", "right"):
            loop = np.unique(np.concatenate(self.eye_contours[side]))
            row = np.zeros(n_surf)
            row[loop] = 1.0 / len(loop)
            contour_mean[side] = row

        def extend(surface_deltas: np.ndarray, eyes_rigid: bool) -> np.ndarray:
            """(468, 3, K) surface deltas -> (V, 3, K): interpolated vertices follow the surface;
            eyeballs translate with their lid contour (``eyes_rigid``) or stay still."""
            out = np.zeros((n_vert,) + surface_deltas.shape[1:])
            out[:n_surf] = surface_deltas
            if eyes_rigid:
                for side in ("left", "right"):
                    out[eye_index(side)] = np.einsum("v,vck->ck", contour_mean[side], surface_deltas)
            flat = surface_deltas.reshape(n_surf, -1)
            out[anchored_idx] = (anchor @ flat).reshape((len(anchored_idx),) + surface_deltas.shape[1:])
            return out

        def mirrored(deltas: np.ndarray) -> np.ndarray:
            """The mirror image of (V, 3, ...) deltas across x = 0."""
            flip = np.array([-1.0, 1.0, 1.0]).reshape((1, 3) + (1,) * (deltas.ndim - 2))
            return deltas[mirror] * flip

        features = extend(self._identity_features(eyes), eyes_rigid=True)
        features = 0.5 * (features + mirrored(features))  # exactly symmetric
        shapedirs = self._principal_axes(features)

        exprdirs = np.zeros((n_vert, 3, len(EXPRESSION_NAMES)))
        surface_expr = self._expressions()
        for k, name in enumerate(EXPRESSION_NAMES):
            if name in surface_expr:
                exprdirs[:, :, k] = extend(surface_expr[name][:, :, None], eyes_rigid=False)[:, :, 0]
        for name, (yaw_deg, pitch_deg) in GAZE_DEG.items():
            k = EXPRESSION_NAMES.index(f"eyeLook{name}_L")
            eye = eyes["left"]
            rot = _rotation("y", np.deg2rad(yaw_deg)) @ _rotation("x", -np.deg2rad(pitch_deg))
            iris = eye["iris_local"]
            rel = eye["vertices"][iris] - eye["centre"]
            exprdirs[left_idx[iris], :, k] = rel @ rot.T - rel
        for k, name in enumerate(EXPRESSION_NAMES):
            if name.endswith("_R"):
                exprdirs[:, :, k] = mirrored(exprdirs[:, :, EXPRESSION_NAMES.index(name[:-2] + "_L")])
            elif name in ("jawRight", "mouthRight"):
                exprdirs[:, :, k] = mirrored(exprdirs[:, :, EXPRESSION_NAMES.index(name.replace("Right", "Left"))])
            elif name in _SYMMETRIC_EXPRESSIONS:
                exprdirs[:, :, k] = 0.5 * (exprdirs[:, :, k] + mirrored(exprdirs[:, :, k]))

        regions = dict(self.groups)
        regions["face"] = np.arange(n_surf)
        regions["left_eyeball"] = left_idx
        regions["right_eyeball"] = right_idx
        regions["mouth_interior"] = mouth_idx
        regions["surface_midpoints"] = mid_idx
        head_center = 0.5 * (eyes["left"]["centre"] + eyes["right"]["centre"])
        return dict(vertices=vertices, faces=faces, shapedirs=shapedirs, exprdirs=exprdirs,
                    features=features, colours=colours, regions=regions, head_center=head_center,
                    mirror=mirror)

    # -- eyes

    def _eyeball(self, side: str) -> dict:
        """Sclera cap + iris disc of one eye. Local vertices 0-4 are the iris landmarks
        (centre, +x, +y, -x, -y). The right eye is the mirror image of the left."""
        if side == "right":
            left = self._eyeball("left")
            flip = np.array([-1.0, 1.0, 1.0])
            # Mirroring swaps the +x and -x contour points; restore MediaPipe's order.
            order = np.arange(len(left["vertices"]))
            order[[1, 3]] = [3, 1]
            inverse = np.argsort(order)
            faces = inverse[left["faces"]][:, ::-1]  # mirroring flips the winding
            return dict(vertices=left["vertices"][order] * flip, faces=faces, rgb=left["rgb"][order],
                        centre=left["centre"] * flip, iris_local=inverse[left["iris_local"]],
                        mirror_order=order)
        upper, lower = self.eye_contours["left"]
        polygon = self.base[np.concatenate([upper, lower[::-1][1:-1]]), :2]
        x, y = polygon[:, 0], polygon[:, 1]
        x1, y1 = np.roll(x, -1), np.roll(y, -1)
        cross = x * y1 - x1 * y
        area = cross.sum() / 2
        centre_xy = np.array([((x + x1) * cross).sum(), ((y + y1) * cross).sum()]) / (6 * area)

        def lid_z(xy: np.ndarray) -> np.ndarray:  # the canonical (closed-eye) surface
            tri, bary = _locate(xy, self.base, self.mesh.faces)
            return np.einsum("nk,nk->n", bary, self.base[self.mesh.faces[tri], 2])

        iris_centre = np.array([*centre_xy, lid_z(centre_xy[None])[0] - IRIS_BEHIND_LID])
        centre = iris_centre - [0.0, 0.0, IRIS_SPHERE_RADIUS]
        n_ang = 16
        angles = np.arange(n_ang) * 2 * np.pi / n_ang  # 0 = +x, 4 = +y, 8 = -x, 12 = -y
        # Iris: centre, then rings (the outermost holds the four contour landmarks).
        ring_radii = [PUPIL_RADIUS, PUPIL_RADIUS + 0.3 * MM, 4.0 * MM, IRIS_RADIUS - 0.4 * MM, IRIS_RADIUS]
        ring_rgb = [PUPIL_RGB, IRIS_RGB, tuple(0.8 * np.array(IRIS_RGB) + 0.2 * np.array(LIMBUS_RGB)),
                    IRIS_RGB, LIMBUS_RGB]

        def on_sphere(xy: np.ndarray, radius: float) -> np.ndarray:
            rel = xy - centre[:2]
            return np.column_stack([xy, centre[2] + np.sqrt(np.maximum(radius**2 - (rel**2).sum(1), 0.0))])

        iris_xy = [centre_xy[None]] + [centre_xy + r * np.column_stack([np.cos(angles), np.sin(angles)])
                                       for r in ring_radii]
        iris_pts = on_sphere(np.concatenate(iris_xy), IRIS_SPHERE_RADIUS)
        iris_rgb = np.array([PUPIL_RGB] + [c for c in ring_rgb for _ in range(n_ang)])
        iris_faces = _disc_faces(len(ring_radii), n_ang)
        # Sclera: an elliptical polar grid on the eyeball sphere, kept behind the skin.
        fractions = np.array([0.12, 0.25, 0.38, 0.5, 0.62, 0.75, 0.88, 1.0])
        n_sclera_ang = 24
        sang = np.arange(n_sclera_ang) * 2 * np.pi / n_sclera_ang
        sclera_xy = np.concatenate([centre_xy[None]] + [
            centre_xy + f * np.column_stack([SCLERA_EXTENT[0] * np.cos(sang), SCLERA_EXTENT[1] * np.sin(sang)])
            for f in fractions])
        sphere = on_sphere(sclera_xy, SCLERA_RADIUS)[:, 2]
        skin = lid_z(sclera_xy)
        sclera_pts = np.column_stack([sclera_xy, np.clip(sphere, skin - SCLERA_GAP[1], skin - SCLERA_GAP[0])])
        sclera_rgb = np.tile(SCLERA_RGB, (len(sclera_pts), 1))
        sclera_faces = _disc_faces(len(fractions), n_sclera_ang)

        # Local order: iris centre and its 4 landmark contour points first.
        n_iris = len(iris_pts)
        contour0 = 1 + (len(ring_radii) - 1) * n_ang  # first vertex of the outermost iris ring
        landmarks = np.array([0, contour0 + 0, contour0 + 4, contour0 + 8, contour0 + 12])
        rest = np.setdiff1d(np.arange(n_iris), landmarks)
        order = np.concatenate([landmarks, rest])  # new position -> old iris index
        new_of_old = np.argsort(order)
        vertices = np.concatenate([iris_pts[order], sclera_pts])
        rgb = np.concatenate([iris_rgb[order], sclera_rgb])
        faces = np.concatenate([new_of_old[iris_faces], sclera_faces + n_iris])
        return dict(vertices=vertices, faces=faces, rgb=rgb, centre=centre, iris_local=np.arange(n_iris),
                    mirror_order=np.arange(len(vertices)))

    # -- mouth

    def _mouth_patch(self) -> dict:
        """A dark patch behind the lips, anchored to the (closed) canonical lip surface so it
        follows every deformation of the lips and stretches when the jaw opens."""
        outer, inner = self._lip_loops()
        p = self.base
        upper_inner_y = p[inner, 1].max()
        lower_inner_y = p[inner, 1].min()
        half_width = p[outer, 0].max() + 0.5 * MM
        xs = np.linspace(-half_width, half_width, 13)
        ys = np.linspace(lower_inner_y - 5.0 * MM, upper_inner_y + 4.0 * MM, 9)
        gx, gy = np.meshgrid(xs, ys)
        xy = np.column_stack([gx.ravel(), gy.ravel()])
        tri, bary = _locate(xy, p, self.mesh.faces)
        anchor = _anchor_matrix(tri, bary, self.mesh.faces, NUM_SURFACE_VERTICES)
        surface = anchor @ p
        u = xy[:, 0] / half_width
        v = (xy[:, 1] - 0.5 * (upper_inner_y + lower_inner_y)) / (0.5 * (ys[-1] - ys[0]))
        centrality = np.clip((1 - u**2) * (1 - v**2), 0, 1)
        depth = 2.5 * MM + 6.0 * MM * centrality
        vertices = surface - np.array([0.0, 0.0, 1.0]) * depth[:, None]
        rgb = np.outer(1 - centrality, MOUTH_RGB[0]) + np.outer(centrality, MOUTH_RGB[1])
        nx = len(xs)
        faces = []
        for r in range(len(ys) - 1):
            for c in range(nx - 1):
                a, b, d, e = r * nx + c, r * nx + c + 1, (r + 1) * nx + c, (r + 1) * nx + c + 1
                faces += [(a, b, e), (a, e, d)]
        mirror = (np.arange(len(xy)) // nx) * nx + (nx - 1 - np.arange(len(xy)) % nx)
        return dict(vertices=vertices, faces=np.array(faces), rgb=rgb, anchor=anchor, mirror=mirror)

    # -- albedo

    def _paint(self, points: np.ndarray) -> np.ndarray:
        """Albedo of surface points (N, 3): skin, brows, lips and a darker lash line. Colours
        blend across each MediaPipe contour so the landmark sits on the colour edge."""
        p = self.base
        rgb = np.tile(np.asarray(SKIN_RGB, float), (len(points), 1))

        def paint(loop: np.ndarray, colour, width: float) -> None:
            dist = _polygon_signed_distance(points[:, :2], p[loop, :2])
            near = points[:, 2] > p[loop, 2].min() - 3 * MM  # the front surface only
            weight = np.clip(0.5 + dist / width, 0.0, 1.0) * near
            rgb[:] = rgb * (1 - weight[:, None]) + np.asarray(colour, float) * weight[:, None]

        outer, _ = self._lip_loops()
        paint(outer, LIP_RGB, 2.0 * MM)
        for side in ("left", "right"):
            paint(self._brow_loop(side), BROW_RGB, 2.0 * MM)
            upper, lower = self.eye_contours[side]
            for lid, strength in ((upper, 1.0), (lower, 0.5)):
                dist = _polyline_distance(points[:, :2], p[lid, :2])
                near = points[:, 2] > p[lid, 2].min() - 3 * MM
                weight = strength * np.clip(1.0 - dist / (1.5 * MM), 0.0, 1.0) * near
                rgb[:] = rgb * (1 - weight[:, None]) + np.asarray(LASH_RGB, float) * weight[:, None]
        return rgb

    # -- identity

    def _eye_centre(self, side: str) -> np.ndarray:
        return self.base[np.unique(np.concatenate(self.eye_contours[side]))].mean(0)

    def _identity_features(self, eyes: dict) -> np.ndarray:
        """(468, 3, K) surface displacement per unit (about 1 SD) of each named feature."""
        p = self.base
        eye_l = self._eye_centre("left")
        origin = 0.5 * (eyes["left"]["centre"] + eyes["right"]["centre"])
        rel = p - origin
        mouth_corner = p[self._lip_loops()[0]][np.argmax(p[self._lip_loops()[0], 0])]
        jaw_w = self.jaw_weights

        def field(weight: np.ndarray, vector) -> np.ndarray:
            return weight[:, None] * (np.asarray(vector, float) * MM)

        def bilateral(weight_left: np.ndarray, vector_left) -> np.ndarray:
            d = field(weight_left, vector_left)
            return d + d[self.mirror_surface] * [-1.0, 1.0, 1.0]

        def scaled(axis_mask, fraction: float) -> np.ndarray:
            return rel * np.asarray(axis_mask, float) * fraction

        # Smooth ramps (softplus): height above the brows, depth below the eyes (negative y).
        below_eyes = -8.0 * MM * np.logaddexp(0.0, (origin[1] - p[:, 1]) / (8.0 * MM))
        forehead = 8.0 * MM * np.logaddexp(0.0, (p[:, 1] - 45.0 * MM) / (8.0 * MM))  # softplus ramp
        upper_lip = (1 - jaw_w) * _gauss(p, [0, -35 * MM, 59 * MM], [18 * MM, 4 * MM, 8 * MM])
        lower_lip = jaw_w * _gauss(p, [0, -53 * MM, 55 * MM], [18 * MM, 4 * MM, 8 * MM])
        cheek = _gauss(p, [45 * MM, -20 * MM, 35 * MM], 16 * MM)
        feats = {
            "scale": scaled([1, 1, 1], 0.04),
            "face_width": scaled([1, 0, 0], 0.035) * _gauss(p, [0, 0, 0], [1.0, 40 * MM, 1.0])[:, None],
            "face_height": field(below_eyes / MM, [0, 0.05, 0]),
            "face_depth": scaled([0, 0, 1], 0.04),
            "nose_length": field(_gauss(p, [0, -12 * MM, 68 * MM], [10 * MM, 10 * MM, 12 * MM]), [0, -3.0, 0]),
            "nose_projection": field(_gauss(p, [0, -8 * MM, 72 * MM], [9 * MM, 12 * MM, 10 * MM]), [0, 0, 2.5]),
            "nose_width": bilateral(_gauss(p, [16 * MM, -11 * MM, 55 * MM], [6 * MM, 7 * MM, 8 * MM]), [2.0, 0, 0]),
            "jaw_width": bilateral(_gauss(p, [60 * MM, -60 * MM, 0], [20 * MM, 22 * MM, 25 * MM]), [4.0, 0, 0]),
            "chin_height": field(_gauss(p, [0, -88 * MM, 46 * MM], [22 * MM, 12 * MM, 15 * MM]), [0, -3.0, 0]),
            "chin_projection": field(_gauss(p, [0, -85 * MM, 47 * MM], [20 * MM, 12 * MM, 15 * MM]), [0, 0, 3.0]),
            "eye_spacing": bilateral(_gauss(p, eye_l, [11 * MM, 11 * MM, 14 * MM]), [2.0, 0, 0]),
            "eye_size": self._bilateral_scaling(eye_l, 0.07, [14 * MM, 10 * MM, 14 * MM]),
            "mouth_width": bilateral(_gauss(p, mouth_corner, [9 * MM, 8 * MM, 10 * MM]), [2.5, 0, 0]),
            "lip_thickness": field(upper_lip, [0, 1.5, 0.8]) + field(lower_lip, [0, -1.5, 0.8]),
            "cheek_fullness": self._bilateral_normal(cheek, 3.0 * MM),
            "forehead_slope": field(forehead / MM, [0, 0, -0.07]),
            "brow_height": bilateral(_gauss(p, [35 * MM, 46 * MM, 44 * MM], [18 * MM, 7 * MM, 12 * MM]), [0, 2.5, 0]),
            "brow_ridge": bilateral(_gauss(p, [32 * MM, 48 * MM, 46 * MM], [18 * MM, 9 * MM, 12 * MM]), [0, 0, 2.0]),
            "nasal_bridge": field(_gauss(p, [0, 30 * MM, 54 * MM], [8 * MM, 10 * MM, 10 * MM]), [0, 0, 2.0]),
            "mouth_height": field(_gauss(p, [0, -45 * MM, 52 * MM], [25 * MM, 12 * MM, 15 * MM]), [0, -2.0, 0]),
        }
        return np.stack([feats[name] for name in IDENTITY_FEATURE_NAMES], axis=2)

    def _bilateral_scaling(self, centre_left: np.ndarray, fraction: float, sigma) -> np.ndarray:
        p = self.base
        d = _gauss(p, centre_left, sigma)[:, None] * (p - centre_left) * fraction
        return d + d[self.mirror_surface] * [-1.0, 1.0, 1.0]

    def _bilateral_normal(self, weight_left: np.ndarray, amount: float) -> np.ndarray:
        d = weight_left[:, None] * self.normals * amount
        return d + d[self.mirror_surface] * [-1.0, 1.0, 1.0]

    @staticmethod
    def _principal_axes(features: np.ndarray) -> np.ndarray:
        """Rotate (V, 3, K) features into orthogonal modes (over the 468 surface vertices)
        with the same Gaussian distribution: D = U Σ Wᵀ  ->  D W (columns U Σ on the surface)."""
        n_vert, _, k = features.shape
        flat = features.reshape(n_vert * 3, k)
        surface = features[:NUM_SURFACE_VERTICES].reshape(-1, k)
        variance, w = np.linalg.eigh(surface.T @ surface)  # Dᵀ D = W Σ² Wᵀ (K x K, cheap)
        if variance.min() < 1e-6 * variance.max():
            raise AssertionError("identity features are linearly dependent")
        w = w[:, np.argsort(variance)[::-1]]
        modes = flat @ w
        # Deterministic signs: the largest surface displacement of each mode is positive.
        surf_modes = modes[: NUM_SURFACE_VERTICES * 3]
        signs = np.sign(surf_modes[np.argmax(np.abs(surf_modes), axis=0), np.arange(k)])
        return (modes * signs).reshape(n_vert, 3, k)

    # -- expressions

    def _jaw_weights(self) -> np.ndarray:
        """Harmonic weight of the jaw (1 on the chin and lower lip, 0 on the upper lip and above)."""
        p = self.base
        outer, inner = self._lip_loops()
        lower = np.concatenate([outer, inner])
        corners = [outer[np.argmin(p[outer, 0])], outer[np.argmax(p[outer, 0])],
                   inner[np.argmin(p[inner, 0])], inner[np.argmax(p[inner, 0])]]
        mid_y = p[corners, 1].mean()
        lips = np.setdiff1d(lower, corners)
        lower_lip = lips[p[lips, 1] < mid_y]
        upper_lip = lips[p[lips, 1] >= mid_y]
        one = np.union1d(lower_lip, np.where(p[:, 1] < -62 * MM)[0])
        zero = np.union1d(upper_lip, np.where(p[:, 1] > -22 * MM)[0])
        fixed = np.concatenate([one, zero])
        values = np.concatenate([np.ones(len(one)), np.zeros(len(zero))])[:, None]
        free = np.setdiff1d(np.arange(NUM_SURFACE_VERTICES), fixed)
        return np.clip(_harmonic(self.laplacian, fixed, values, free)[:, 0], 0, 1)

    def _lid_field(self, side: str, upper_move, lower_move) -> np.ndarray:
        """Harmonic (468, 3) field moving the lid contours by per-point displacements (metres,
        (n, 3) for the upper and lower lids without the corners), fading out around the eye."""
        upper, lower = self.eye_contours[side]
        p = self.base
        c = self._eye_centre(side)
        fixed = np.concatenate([upper, lower[1:-1]])
        values = np.concatenate([[[0.0, 0.0, 0.0]], upper_move, [[0.0, 0.0, 0.0]], lower_move])
        d = (p - c) / np.array([24 * MM, 14 * MM, 30 * MM])
        free = np.where((d**2).sum(1) < 1.0)[0]
        return _harmonic(self.laplacian, fixed, values, free)

    def _expressions(self) -> dict[str, np.ndarray]:
        """(468, 3) surface deltas at weight 1 for the left-side and symmetric expressions."""
        p = self.base
        out: dict[str, np.ndarray] = {}
        jaw_w = self.jaw_weights
        outer, inner = self._lip_loops()
        corner_l = p[outer[np.argmax(p[outer, 0])]]
        mouth_c = np.array([0.0, p[inner, 1].mean(), p[inner, 2].max()])
        brow_l = p[self.groups["left_eyebrow"]]
        brow_inner = brow_l[np.argmin(brow_l[:, 0])]
        brow_outer = brow_l[np.argmax(brow_l[:, 0])]
        brow_mid = brow_l.mean(0)

        def g(centre, sigma_mm) -> np.ndarray:
            return _gauss(p, centre, np.asarray(sigma_mm, float) * MM)

        def f(weight, vector_mm) -> np.ndarray:
            return weight[:, None] * (np.asarray(vector_mm, float) * MM)

        # Jaw: a rotation of the lower face about the jaw axis, blended by the jaw weight.
        rot = _rotation("x", JAW_OPEN_RAD)
        jaw_rot = (p - JAW_AXIS) @ rot.T + JAW_AXIS - p
        out["jawOpen"] = jaw_w[:, None] * jaw_rot
        out["jawForward"] = f(jaw_w, [0, 0, 8.0])
        out["jawLeft"] = f(jaw_w, [8.0, 0, 0])
        lip_area = g(mouth_c, [22, 9, 14])
        out["mouthClose"] = -(jaw_w * lip_area)[:, None] * jaw_rot

        # Eyes (left; the right ones are mirrored).
        upper, lower = self.eye_contours["left"]
        profile = np.sin(np.pi * np.arange(1, len(upper) - 1) / (len(upper) - 1))[:, None]
        up_p, lo_p = p[upper[1:-1]], p[lower[1:-1]]
        meet = up_p + 0.75 * (lo_p - up_p) + profile * [0, 0, 1.0 * MM]
        out["eyeBlink_L"] = self._lid_field("left", meet - up_p, meet - lo_p)
        out["eyeSquint_L"] = (self._lid_field("left", profile * [0, -1.0 * MM, 0], profile * [0, 2.5 * MM, 0.3 * MM])
                              + f(g([38 * MM, 8 * MM, 36 * MM], [12, 8, 12]), [0, 1.0, 0.5]))
        out["eyeWide_L"] = self._lid_field("left", profile * [0, 2.5 * MM, 0.3 * MM], profile * [0, -0.7 * MM, 0])

        # Brows and cheeks.
        out["browDown_L"] = f(g(brow_mid + [-5 * MM, 0, 0], [16, 9, 12]), [-2.5, -6.0, 0.5])
        out["browInnerUp"] = (f(g(brow_inner + [2 * MM, 3 * MM, 0], [10, 10, 12]), [0, 6.0, 0])
                              + f(g(brow_inner * [-1, 1, 1] + [-2 * MM, 3 * MM, 0], [10, 10, 12]), [0, 6.0, 0]))
        out["browOuterUp_L"] = f(g(brow_outer + [-3 * MM, 3 * MM, 0], [10, 10, 12]), [0, 7.5, 0])
        cheeks = g([42 * MM, -32 * MM, 38 * MM], [14, 14, 14])
        cheeks = cheeks + cheeks[self.mirror_surface]
        out["cheekPuff"] = cheeks[:, None] * self.normals * (10.0 * MM)
        out["cheekSquint_L"] = f(g([38 * MM, 10 * MM, 36 * MM], [12, 8, 12]), [0, 4.5, 1.5])
        out["noseSneer_L"] = (f(g([14 * MM, -5 * MM, 55 * MM], [7, 9, 10]), [0, 4.5, 1.0])
                              + f((1 - jaw_w) * g([10 * MM, -33 * MM, 57 * MM], [8, 6, 10]), [0, 2.0, 0]))

        # Mouth.
        upper_lip = 1 - jaw_w
        out["mouthSmile_L"] = (f(g(corner_l, [12, 10, 12]), [8.0, 7.0, -3.0])
                               + f(g([38 * MM, -20 * MM, 38 * MM], [14, 14, 14]), [0, 3.0, 2.0]))
        out["mouthFrown_L"] = f(g(corner_l, [10, 10, 12]), [1.5, -6.0, -0.5])
        out["mouthDimple_L"] = f(g(corner_l, [9, 8, 10]), [4.0, 0, -5.0])
        out["mouthStretch_L"] = (f(g(corner_l, [12, 10, 12]), [7.0, -4.0, -2.0])
                                 + f(jaw_w * g(corner_l + [-8 * MM, -8 * MM, 0], [10, 8, 10]), [0, -1.5, 0]))
        side_lips = g([12 * MM, mouth_c[1], mouth_c[2]], [10, 6, 12])
        out["mouthPress_L"] = f(upper_lip * side_lips, [0, -2.5, 0]) + f(jaw_w * side_lips, [0, 2.5, 0])
        out["mouthLowerDown_L"] = f(jaw_w * g([12 * MM, -50 * MM, 54 * MM], [10, 7, 10]), [0, -5.0, 0])
        out["mouthUpperUp_L"] = f(upper_lip * g([12 * MM, -36 * MM, 56 * MM], [10, 7, 10]), [0, 5.0, 1.0])
        mouth_area = g(mouth_c, [22, 14, 15])
        out["mouthLeft"] = f(mouth_area, [11.0, 0, 0])
        lips_w = g(mouth_c, [20, 10, 12])
        radial_x = np.column_stack([-p[:, 0], np.zeros(len(p)), np.zeros(len(p))])
        out["mouthFunnel"] = (lips_w[:, None] * radial_x * 0.25 + f(lips_w, [0, 0, 8.0])
                              + f(upper_lip * lips_w, [0, 3.5, 0]) + f(jaw_w * lips_w, [0, -3.5, 0]))
        out["mouthPucker"] = (lips_w[:, None] * radial_x * 0.4 + f(lips_w, [0, 0, 10.0])
                              + f(upper_lip * lips_w, [0, -0.5, 0]) + f(jaw_w * lips_w, [0, 0.5, 0]))
        out["mouthRollLower"] = f(jaw_w * g([0, -50 * MM, 55 * MM], [18, 5, 8]), [0, 4.0, -6.0])
        out["mouthRollUpper"] = f(upper_lip * g([0, -37 * MM, 58 * MM], [18, 5, 8]), [0, -4.0, -6.0])
        out["mouthShrugLower"] = f(jaw_w * g([0, -55 * MM, 54 * MM], [18, 10, 12]), [0, 5.0, 4.0])
        out["mouthShrugUpper"] = f(upper_lip * g([0, -37 * MM, 58 * MM], [16, 7, 10]), [0, 4.0, 2.0])
        return out


_SYMMETRIC_EXPRESSIONS = ("browInnerUp", "cheekPuff", "jawForward", "jawOpen", "mouthClose", "mouthFunnel",
                          "mouthPucker", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper")


def _disc_faces(n_rings: int, n_ang: int) -> np.ndarray:
    """Triangles of a polar grid: vertex 0 is the centre, then ``n_rings`` rings of ``n_ang``
    (counter-clockwise seen from +z)."""
    faces = [(0, 1 + a, 1 + (a + 1) % n_ang) for a in range(n_ang)]
    for r in range(n_rings - 1):
        i0, i1 = 1 + r * n_ang, 1 + (r + 1) * n_ang
        for a in range(n_ang):
            b = (a + 1) % n_ang
            faces += [(i0 + a, i1 + a, i1 + b), (i0 + a, i1 + b, i0 + b)]
    return np.array(faces)
