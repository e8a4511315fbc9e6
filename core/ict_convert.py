"""Convert a user's clone of ICT-FaceKit into the ICT light ``.npz`` that ``core.model_io.load_ict`` reads.

ICT-FaceKit (MIT License, USC Institute for Creative Technologies, github ICT-VGL/ICT-FaceKit) ships
its light model as OBJ files in ``FaceXModel/``: ``generic_neutral_mesh.obj``, ``identity000.obj`` …
``identity099.obj`` and one OBJ per expression named by its ARKit-style name (``jawOpen.obj`` …), all
on one topology of 26,719 vertices. This module keeps the parts a tracker needs and writes the layout
documented in ``../shared/data/README.md`` (same keys and dtypes).

Conventions, as ICT-FaceKit defines them (its README and ``Scripts/``):

* **Parts** (:class:`IctLayout`, half-open vertex ranges; ICT's README lists them inclusive): face
  ``[0, 9409)``, head and neck ``[9409, 11248)``, left eyeball ``[21451, 23021)`` with its iris
  ``[22221, 23021)``, right eyeball ``[23021, 24591)`` with its iris ``[23791, 24591)``. The mouth
  socket, teeth, gums, lacrimal fluid, eye blend/occlusion meshes and eyelashes are dropped. Kept parts
  are concatenated in that order (14,388 vertices); triangles whose corners are all kept are re-indexed.
* **Units**: the OBJs are in centimetres (the neutral head is ~25 units wide), stored here in metres.
* **Identity**: ``identityNNN.obj`` is the neutral plus one standard deviation of PCA mode NNN — ICT's
  ``FaceModel.randomize_identity`` draws the weights from N(0, 1) and adds ``weight · (identityNNN −
  neutral)``. So ``shapedirs = (identityNNN − neutral) / σ`` with σ = ``IDENTITY_SIGMA`` = 1, and
  coefficients are ~N(0, 1).
* **Expressions**: ``exprdirs = expression − neutral`` per unit weight (weights in [0, 1]), in the order
  of ``FaceXModel/vertex_indices.json``'s ``"expressions"`` (the 53 ARKit-style names) when present.
* **Polygons**: quads and n-gons are split as a fan from their first corner, ``(a, b, c), (a, c, d)``,
  keeping the OBJ's winding. ``uv`` holds one texture coordinate per vertex: the first one a kept
  polygon gives it (seams are approximate, as the shared file says).
* **Landmarks**: the 68 Multi-PIE indices are read from the clone's ``README.md`` ("Multi-PIE 68 point
  facial landmarks indices"); without them the file has no ``lmk68``.

``vertex_rgb`` is a simple painted albedo, enough for MediaPipe to find the face in renders — regions
defined from the neutral geometry (metres, model axes: +x subject's left, +y up, +z out of the face):

* **skin** everywhere on the face, head and neck;
* **lips**: face vertices inside the outer-lip landmark polygon (Multi-PIE 48–59) seen from the front
  (x, y), no more than ``LIP_DEPTH_M`` behind the deepest lip landmark, plus the lip landmarks;
* **brows**: face vertices over each brow's landmark polyline (Multi-PIE 17–21, 22–26): within its x
  span, from ``BROW_BELOW_M`` below to ``BROW_ABOVE_M`` above it, and within ``BROW_DEPTH_M`` of its depth;
* **eyes**: each eyeball's gaze axis is the symmetry axis of its iris part (the principal axis whose
  variance differs from the other two; the iris geometry is a surface of revolution about the optical
  axis), pointing to +z, through the iris part's centroid. Eyeball vertices on the front cap
  (``(v − eyeball centroid)·axis > EYE_FRONT_FRACTION ·`` its maximum) are **pupil** within
  ``PUPIL_RADIUS_M`` of the axis, **iris** within ``IRIS_RADIUS_M`` (anatomical ~6 mm); the rest **sclera**.

Lips and brows need the landmarks; without them the face is plain skin.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

MODEL_FOLDER = "FaceXModel"
NEUTRAL_OBJ = "generic_neutral_mesh.obj"
EXPRESSION_CONFIG = "vertex_indices.json"
CM_TO_M = 0.01  # ICT-FaceKit OBJs are in centimetres
IDENTITY_SIGMA = 1.0  # identityNNN.obj = neutral + 1σ of mode NNN (ICT samples weights from N(0, 1))
ICT_REPO = "github ICT-VGL/ICT-FaceKit"
LICENSE_FALLBACK = ("MIT License. Copyright (c) 2020 USC Institute for Creative Technologies. "
                    f"See the LICENSE file of {ICT_REPO}.")

# The 53 expression shapes of the ICT light model (ARKit names with _L/_R), used when the clone has no
# FaceXModel/vertex_indices.json to name them.
ICT_EXPRESSION_NAMES = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R",
    "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R",
    "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R",
    "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward",
    "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimple_L", "mouthDimple_R", "mouthFrown_L",
    "mouthFrown_R", "mouthFunnel", "mouthLeft", "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L",
    "mouthPress_R", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
)

# Painted albedo (linear RGB in [0, 1]).
SKIN_RGB = (0.78, 0.60, 0.50)
BROW_RGB = (0.25, 0.17, 0.11)
LIP_RGB = (0.65, 0.32, 0.32)
SCLERA_RGB = (0.93, 0.91, 0.89)
IRIS_RGB = (0.33, 0.22, 0.13)
PUPIL_RGB = (0.02, 0.02, 0.02)
# Region geometry (metres).
LIP_DEPTH_M = 0.01
BROW_BELOW_M, BROW_ABOVE_M, BROW_DEPTH_M = 0.002, 0.006, 0.01
PUPIL_RADIUS_M, IRIS_RADIUS_M = 0.0025, 0.006
EYE_FRONT_FRACTION = 0.5
# Multi-PIE 68 landmark groups (0-based).
LMK_OUTER_LIPS = tuple(range(48, 60))
LMK_BROWS = (tuple(range(17, 22)), tuple(range(22, 27)))


class IctConvertError(ValueError):
    """The clone cannot be converted; the message says which file and what to do."""


@dataclass(frozen=True)
class IctLayout:
    """Where the light model's parts live in the full ICT topology (half-open vertex ranges)."""

    num_vertices: int = 26719
    face: tuple[int, int] = (0, 9409)
    head_neck: tuple[int, int] = (9409, 11248)
    eyeball_left: tuple[int, int] = (21451, 23021)
    eyeball_right: tuple[int, int] = (23021, 24591)
    iris_left: tuple[int, int] = (22221, 23021)
    iris_right: tuple[int, int] = (23791, 24591)
    num_identities: int = 100
    # None: the clone's FaceXModel/vertex_indices.json "expressions", else ICT_EXPRESSION_NAMES.
    expression_names: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, path: str | Path) -> "IctLayout":
        """A layout from a JSON object with any of the field names (ranges as [lo, hi])."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise IctConvertError(f"cannot read the layout file {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise IctConvertError(f"{path}: a layout is a JSON object of field -> value")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise IctConvertError(f"{path}: unknown layout fields {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted(known))}")
        kwargs = {}
        try:
            for key, value in raw.items():
                if key in ("num_vertices", "num_identities"):
                    kwargs[key] = int(value)
                elif key == "expression_names":
                    kwargs[key] = None if value is None else tuple(str(v) for v in value)
                else:
                    lo, hi = value
                    kwargs[key] = (int(lo), int(hi))
        except (TypeError, ValueError) as exc:
            raise IctConvertError(f"{path}: layout field {key!r} = {value!r} is not valid ({exc}); ranges are "
                                  "[lo, hi) pairs, counts integers, expression_names a list") from exc
        layout = cls(**kwargs)
        layout.check()
        return layout

    @property
    def parts(self) -> tuple[tuple[int, int], ...]:
        """Kept ranges, in output order: face, head and neck, left eyeball, right eyeball."""
        return self.face, self.head_neck, self.eyeball_left, self.eyeball_right

    def kept_vertices(self) -> np.ndarray:
        return np.concatenate([np.arange(lo, hi) for lo, hi in self.parts])

    def check(self) -> None:
        for name in ("face", "head_neck", "eyeball_left", "eyeball_right", "iris_left", "iris_right"):
            lo, hi = getattr(self, name)
            if not 0 <= lo < hi <= self.num_vertices:
                raise IctConvertError(f"layout: {name} [{lo}, {hi}) is not a range inside {self.num_vertices} vertices")
        spans = sorted(self.parts)
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
            raise IctConvertError("layout: face, head_neck and the eyeballs overlap")
        if self.eyeball_left[1] - self.eyeball_left[0] != self.eyeball_right[1] - self.eyeball_right[0]:
            raise IctConvertError("layout: the two eyeballs must have the same number of vertices")
        for iris, eye in (("iris_left", "eyeball_left"), ("iris_right", "eyeball_right")):
            (ilo, ihi), (elo, ehi) = getattr(self, iris), getattr(self, eye)
            if not elo <= ilo < ihi <= ehi:
                raise IctConvertError(f"layout: {iris} must lie inside {eye}")
        if self.num_identities < 1:
            raise IctConvertError("layout: num_identities must be at least 1")


ICT_LAYOUT = IctLayout()


# --- OBJ ------------------------------------------------------------------------------------------


@dataclass
class ObjMesh:
    """An OBJ's geometry: positions, texture coordinates and polygons (0-based indices)."""

    vertices: np.ndarray  # (V, 3) float64
    uv: np.ndarray  # (T, 2) float64
    polygons: list[list[int]] = field(default_factory=list)  # vertex indices per polygon
    polygon_uvs: list[list[int] | None] = field(default_factory=list)  # uv indices per polygon (None: none)


def _obj_index(token: bytes, count: int, path: Path, line_no: int, what: str) -> int:
    idx = int(token)
    idx = idx - 1 if idx > 0 else count + idx  # OBJ is 1-based; negatives count back from the last one
    if not 0 <= idx < count:
        raise IctConvertError(f"{path}, line {line_no}: {what} index {token.decode()} outside the {count} defined")
    return idx


def read_obj(path: str | Path) -> ObjMesh:
    """Read ``v``, ``vt`` and ``f`` records (other records are ignored)."""
    path = Path(path)
    positions: list[list[bytes]] = []
    uvs: list[list[bytes]] = []
    polygons: list[list[int]] = []
    polygon_uvs: list[list[int] | None] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise IctConvertError(f"cannot read {path}: {exc}") from exc
    for line_no, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        if tag == b"v":
            if len(parts) < 4:
                raise IctConvertError(f"{path}, line {line_no}: a vertex needs x y z")
            positions.append(parts[1:4])
        elif tag == b"vt":
            uvs.append((parts[1:3] + [b"0"])[:2])
        elif tag == b"f":
            if len(parts) < 4:
                raise IctConvertError(f"{path}, line {line_no}: a face needs at least 3 corners")
            corners = [p.split(b"/") for p in parts[1:]]
            polygons.append([_obj_index(c[0], len(positions), path, line_no, "vertex") for c in corners])
            if all(len(c) > 1 and c[1] for c in corners):
                polygon_uvs.append([_obj_index(c[1], len(uvs), path, line_no, "texture") for c in corners])
            else:
                polygon_uvs.append(None)
    try:
        vertices = np.array(positions, dtype=np.float64).reshape(-1, 3)
        uv = np.array(uvs, dtype=np.float64).reshape(-1, 2)
    except ValueError as exc:
        raise IctConvertError(f"{path}: unreadable coordinates ({exc})") from exc
    return ObjMesh(vertices, uv, polygons, polygon_uvs)


def read_obj_vertices(path: str | Path) -> np.ndarray:
    """Only the ``v`` records of an OBJ, fast: (V, 3) float64."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IctConvertError(f"cannot read {path}: {exc}") from exc
    rows = [line.split()[1:4] for line in data.splitlines() if line[:2] in (b"v ", b"v\t")]
    try:
        return np.array(rows, dtype=np.float64).reshape(-1, 3)
    except ValueError as exc:
        raise IctConvertError(f"{path}: unreadable vertex coordinates ({exc})") from exc


def triangulate(polygons: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Fan-split polygons: [a, b, c, d] -> (a, b, c), (a, c, d). Returns (F, 3) triangles and, per
    triangle, the index of the polygon it came from."""
    tris, owner = [], []
    for k, poly in enumerate(polygons):
        for i in range(1, len(poly) - 1):
            tris.append((poly[0], poly[i], poly[i + 1]))
            owner.append(k)
    return np.array(tris, dtype=np.int64).reshape(-1, 3), np.array(owner, dtype=np.int64)


# --- the clone ------------------------------------------------------------------------------------


@dataclass
class IctClone:
    """Files of an ICT-FaceKit clone, checked to exist."""

    root: Path  # the clone (holds README.md, LICENSE)
    model_dir: Path  # its FaceXModel folder
    neutral: Path
    identities: list[Path]
    expression_names: list[str]
    expressions: list[Path]


def find_model_dir(path: str | Path) -> tuple[Path, Path]:
    """(clone root, FaceXModel folder) for a clone's root or its FaceXModel folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise IctConvertError(f"{path} does not exist; pass the folder of your ICT-FaceKit clone "
                              "(git clone https://github.com/ICT-VGL/ICT-FaceKit)")
    if not path.is_dir():
        raise IctConvertError(f"{path} is a file; pass the folder of your ICT-FaceKit clone")
    if (path / MODEL_FOLDER).is_dir():
        root, model_dir = path, path / MODEL_FOLDER
    elif (path / NEUTRAL_OBJ).is_file():
        root, model_dir = path.parent, path
    else:
        raise IctConvertError(f"{path} is not an ICT-FaceKit clone: {MODEL_FOLDER}/{NEUTRAL_OBJ} is missing")
    if not (model_dir / NEUTRAL_OBJ).is_file():
        raise IctConvertError(f"{path} is not an ICT-FaceKit clone: {MODEL_FOLDER}/{NEUTRAL_OBJ} is missing")
    return root, model_dir


def locate_clone(path: str | Path, layout: IctLayout = ICT_LAYOUT) -> IctClone:
    """Find the model files in a clone (its root, or its FaceXModel folder); name whatever is missing."""
    root, model_dir = find_model_dir(path)
    neutral = model_dir / NEUTRAL_OBJ
    names = list(layout.expression_names) if layout.expression_names is not None else _expression_names(model_dir)
    identities = [model_dir / f"identity{i:03d}.obj" for i in range(layout.num_identities)]
    expressions = [model_dir / f"{name}.obj" for name in names]
    missing = [p.name for p in identities + expressions if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise IctConvertError(f"{path} is not a complete ICT-FaceKit clone: {MODEL_FOLDER}/ lacks {shown} "
                              "(a partial checkout or git-lfs pointers? re-clone the repository)")
    return IctClone(root, model_dir, neutral, identities, names, expressions)


def _expression_names(model_dir: Path) -> list[str]:
    config = model_dir / EXPRESSION_CONFIG
    if not config.is_file():
        return list(ICT_EXPRESSION_NAMES)
    try:
        names = json.loads(config.read_text())["expressions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IctConvertError(f"{config}: cannot read its 'expressions' list ({exc})") from exc
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise IctConvertError(f"{config}: 'expressions' must be a non-empty list of names")
    return names


def read_landmarks_68(root: Path) -> np.ndarray | None:
    """The Multi-PIE 68 landmark vertex indices listed in the clone's README.md, if it has them."""
    readme = root / "README.md"
    if not readme.is_file():
        return None
    match = re.search(r"Multi-PIE 68[^\n]*\n\s*((?:\d+\s*,\s*)+\d+)", readme.read_text(errors="replace"))
    if not match:
        return None
    indices = np.array([int(tok) for tok in match.group(1).split(",")], dtype=np.int64)
    return indices if len(indices) == 68 else None


def _license_text(root: Path) -> str:
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt"):
        if (root / name).is_file():
            return (root / name).read_text(errors="replace").strip()
    return LICENSE_FALLBACK


def _git_commit(root: Path) -> str | None:
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if not ref.startswith("ref:"):
            return ref[:40] or None
        ref_path = ref.split(None, 1)[1]
        loose = root / ".git" / ref_path
        if loose.is_file():
            return loose.read_text().strip()[:40]
        for line in (root / ".git" / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref_path):
                return line.split()[0][:40]
    except (OSError, IndexError):
        return None
    return None


# --- painting -------------------------------------------------------------------------------------


def _inside_polygon(points_xy: np.ndarray, polygon_xy: np.ndarray) -> np.ndarray:
    """Even-odd rule: (N, 2) points, (M, 2) closed polygon -> (N,) bool."""
    x, y = points_xy[:, 0:1], points_xy[:, 1:2]
    xi, yi = polygon_xy[:, 0], polygon_xy[:, 1]
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    crosses = (yi > y) != (yj > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = xi + (y - yi) * (xj - xi) / (yj - yi)
    return ((crosses & (x < x_cross)).sum(axis=1) % 2) == 1


def _gaze_axis(iris: np.ndarray) -> np.ndarray:
    """Symmetry axis of a surface of revolution: the principal axis whose variance stands apart."""
    w, vecs = np.linalg.eigh(np.cov((iris - iris.mean(0)).T))
    apart = [abs(w[k] - w[(k + 1) % 3]) + abs(w[k] - w[(k + 2) % 3]) - abs(w[(k + 1) % 3] - w[(k + 2) % 3])
             for k in range(3)]
    axis = vecs[:, int(np.argmax(apart))]
    if max(apart) < 1e-6 * max(w.max(), 1e-30):  # isotropic: no symmetry axis to find, look ahead
        axis = np.array([0.0, 0.0, 1.0])
    return axis if axis[2] >= 0 else -axis


def paint_vertex_rgb(v_template: np.ndarray, face_count: int, eyeballs: list[tuple[int, int]],
                     irises: list[tuple[int, int]], lmk68: np.ndarray | None) -> tuple[np.ndarray, dict[str, int]]:
    """Painted albedo for the light model (see the module docstring). Indices are light-model indices.

    v_template: (V, 3) metres. Returns (V, 3) float32 RGB and the number of vertices per region.
    """
    rgb = np.tile(np.array(SKIN_RGB, np.float32), (len(v_template), 1))
    counts = {}
    face = v_template[:face_count]
    if lmk68 is not None:
        lips_lmk = v_template[lmk68[list(LMK_OUTER_LIPS)]]
        lips = _inside_polygon(face[:, :2], lips_lmk[:, :2]) & (face[:, 2] > lips_lmk[:, 2].min() - LIP_DEPTH_M)
        lips[lmk68[list(LMK_OUTER_LIPS)]] = True
        brows = np.zeros(face_count, bool)
        for group in LMK_BROWS:
            line = v_template[lmk68[list(group)]]
            line = line[np.argsort(line[:, 0])]
            within = (face[:, 0] >= line[0, 0]) & (face[:, 0] <= line[-1, 0])
            dy = face[:, 1] - np.interp(face[:, 0], line[:, 0], line[:, 1])
            dz = face[:, 2] - np.interp(face[:, 0], line[:, 0], line[:, 2])
            brows |= within & (dy >= -BROW_BELOW_M) & (dy <= BROW_ABOVE_M) & (np.abs(dz) <= BROW_DEPTH_M)
        rgb[:face_count][lips] = LIP_RGB
        rgb[:face_count][brows & ~lips] = BROW_RGB
        counts.update(lips=int(lips.sum()), brows=int((brows & ~lips).sum()))
    counts.update(pupil=0, iris=0, sclera=0)
    for (lo, hi), (ilo, ihi) in zip(eyeballs, irises):
        eye = v_template[lo:hi]
        axis = _gaze_axis(v_template[ilo:ihi])
        origin = v_template[ilo:ihi].mean(0)
        front = (eye - eye.mean(0)) @ axis
        rel = eye - origin
        radial = np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1)
        cap = front > EYE_FRONT_FRACTION * front.max()
        pupil = cap & (radial < PUPIL_RADIUS_M)
        iris = cap & (radial < IRIS_RADIUS_M) & ~pupil
        colours = np.tile(np.array(SCLERA_RGB, np.float32), (hi - lo, 1))
        colours[iris], colours[pupil] = IRIS_RGB, PUPIL_RGB
        rgb[lo:hi] = colours
        counts["pupil"] += int(pupil.sum())
        counts["iris"] += int(iris.sum())
        counts["sclera"] += int((~pupil & ~iris).sum())
    counts["skin"] = int(len(v_template) - sum(counts.values()))
    return rgb, counts


# --- conversion -----------------------------------------------------------------------------------


@dataclass
class ConversionResult:
    path: Path
    num_vertices: int
    num_faces: int
    num_identities: int
    expression_names: list[str]
    has_landmarks: bool
    paint_counts: dict[str, int]
    dropped_faces: int


def convert_ict(clone_path: str | Path, out_path: str | Path, layout: IctLayout = ICT_LAYOUT,
                progress: Callable[[str], None] | None = None, unit_to_m: float = CM_TO_M,
                identity_sigma: float = IDENTITY_SIGMA) -> ConversionResult:
    """Convert an ICT-FaceKit clone into the ICT light ``.npz`` at ``out_path`` (written atomically).

    Raises :class:`IctConvertError` naming the missing file or the OBJ whose vertex count is wrong.
    """
    layout.check()
    say = progress or (lambda _msg: None)
    neutral_path = find_model_dir(clone_path)[1] / NEUTRAL_OBJ
    say(f"reading {neutral_path}")
    neutral = read_obj(neutral_path)  # first: a version mismatch says more than the files it lacks
    if len(neutral.vertices) != layout.num_vertices:
        raise IctConvertError(f"{neutral_path} has {len(neutral.vertices)} vertices; the layout expects "
                              f"{layout.num_vertices} (a different ICT-FaceKit version? pass a matching layout)")
    clone = locate_clone(clone_path, layout)
    kept = layout.kept_vertices()
    new_index = np.full(layout.num_vertices, -1, np.int64)
    new_index[kept] = np.arange(len(kept))

    tris, owner = triangulate(neutral.polygons)
    keep_tri = (new_index[tris] >= 0).all(axis=1)
    dropped = int((((new_index[tris] >= 0).any(axis=1)) & ~keep_tri).sum())  # triangles straddling parts
    faces = new_index[tris[keep_tri]].astype(np.int32)
    uv = _per_vertex_uv(neutral, tris, owner, keep_tri, new_index, len(kept))

    base = neutral.vertices[kept]
    v_template = (base * unit_to_m).astype(np.float32)
    shapedirs = np.empty((len(kept), 3, len(clone.identities)), np.float16)
    for k, path in enumerate(clone.identities):
        say(f"identity {k + 1}/{len(clone.identities)}: {path.name}")
        shapedirs[:, :, k] = (_morph_target(path, layout, clone.neutral)[kept] - base) * (unit_to_m / identity_sigma)
    exprdirs = np.empty((len(kept), 3, len(clone.expressions)), np.float16)
    for k, path in enumerate(clone.expressions):
        say(f"expression {k + 1}/{len(clone.expressions)}: {path.name}")
        exprdirs[:, :, k] = (_morph_target(path, layout, clone.neutral)[kept] - base) * unit_to_m

    sizes = [hi - lo for lo, hi in layout.parts]
    face_count = sizes[0]
    eye_lo = sizes[0] + sizes[1]
    eyeballs = [(eye_lo, eye_lo + sizes[2]), (eye_lo + sizes[2], eye_lo + sizes[2] + sizes[3])]
    irises = [(int(new_index[lo]), int(new_index[hi - 1]) + 1) for lo, hi in (layout.iris_left, layout.iris_right)]

    lmk_full = read_landmarks_68(clone.root)
    lmk68 = None
    if lmk_full is not None:
        if lmk_full.max() >= layout.num_vertices or (new_index[lmk_full] < 0).any():
            say("the README's 68 landmarks are not all on the kept parts; writing no lmk68")
        else:
            lmk68 = new_index[lmk_full].astype(np.int32)
    rgb, counts = paint_vertex_rgb(v_template, face_count, eyeballs, irises, lmk68)

    commit = _git_commit(clone.root)
    source = (f"ICT-FaceKit light ({ICT_REPO}{', commit ' + commit if commit else ''}), MIT License, USC "
              "Institute for Creative Technologies; converted by flamecam convert-ict: face, head and neck and "
              f"eyeballs of {layout.num_vertices} vertices, centimetres to metres, identity deltas over "
              f"sigma={identity_sigma:g}, fan-split polygons, painted albedo")
    arrays = {
        "v_template": v_template, "faces": faces, "uv": uv, "vertex_rgb": rgb,
        "shapedirs": shapedirs, "exprdirs": exprdirs,
        "eyeball_vertex_range": np.array([eyeballs[0][0], eyeballs[1][1]], np.int32),
        "iris_vertex_ranges": np.array(irises, np.int32),
        "expression_names": np.array(clone.expression_names),
        "face_vertex_count": np.array(face_count, np.int32),
        "license": np.array(_license_text(clone.root)), "source": np.array(source),
    }
    if lmk68 is not None:
        arrays["lmk68"] = lmk68
    out_path = Path(out_path)
    _write_npz_atomically(out_path, arrays)
    say(f"wrote {out_path}")
    return ConversionResult(out_path, len(kept), len(faces), len(clone.identities), clone.expression_names,
                            lmk68 is not None, counts, dropped)


def _morph_target(path: Path, layout: IctLayout, neutral_path: Path) -> np.ndarray:
    vertices = read_obj_vertices(path)
    if len(vertices) != layout.num_vertices:
        raise IctConvertError(f"{path} has {len(vertices)} vertices, {neutral_path.name} has {layout.num_vertices}; "
                              "every ICT-FaceKit OBJ shares one topology (a damaged or foreign file?)")
    return vertices


def _per_vertex_uv(mesh: ObjMesh, tris: np.ndarray, owner: np.ndarray, keep_tri: np.ndarray,
                   new_index: np.ndarray, num_kept: int) -> np.ndarray:
    """One uv per kept vertex: the first kept polygon corner that gives it one (zeros without vt)."""
    uv = np.zeros((num_kept, 2), np.float32)
    seen = np.zeros(num_kept, bool)
    if len(mesh.uv) == 0:
        return uv
    for k in dict.fromkeys(owner[keep_tri].tolist()):  # kept polygons, in file order
        corners_uv = mesh.polygon_uvs[k]
        if corners_uv is None:
            continue
        for v, t in zip(mesh.polygons[k], corners_uv):
            i = new_index[v]
            if not seen[i]:
                uv[i], seen[i] = mesh.uv[t], True
    return uv


def _write_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file beside ``path`` and rename: a crash never leaves half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
