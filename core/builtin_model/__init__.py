"""The built-in coarse head model: MediaPipe's canonical face mesh, made morphable by flamecam.

So that flamecam runs with no model file at all, this module builds a small morphable head
from the canonical face mesh inside ``face_landmarker.task`` (read at run time, never
committed) plus identity and expression modes designed here:

* **Vertices.** 0-467 are the canonical mesh (landmark ``i`` is vertex ``i``), converted
  from centimetres to metres. 468-477 are the irises in MediaPipe's order: 468 subject's
  right iris centre, then its contour at +x, +y, -x, -y (model axes); 473 the left iris
  centre and its contour in the same order. After 477 come the eyeballs (a white sclera
  cap plus an iris disc with a dark pupil, sitting behind each eye opening), the edge
  midpoints of one midpoint subdivision of the surface (same shape, finer colour for brows
  and lips) and a dark inner-mouth patch behind the lips (``regions``: ``left_eyeball``,
  ``right_eyeball``, ``surface_midpoints``, ``mouth_interior``). The canonical mesh's
  triangles that close the eye openings and the mouth are dropped, so lids and lips part.
* **Identity** (``shapedirs``, metres per unit coefficient, coefficients ~ N(0, 1)):
  :data:`IDENTITY_FEATURE_NAMES` are hand-designed smooth displacement fields (scalings
  and Gaussian fall-offs around landmark groups, amplitudes about one standard deviation
  of adult anthropometry), all bilaterally symmetric. They are then rotated into their
  principal axes over the 468 surface vertices: the modes are orthogonal, sorted by
  variance (so ``truncated`` keeps the important ones) and describe exactly the same
  Gaussian distribution of faces as the named features. The named features are kept in
  :func:`identity_feature_basis`.
* **Expressions** (``exprdirs``, weights in [0, 1]): MediaPipe's 51 blendshape categories
  (all but ``_neutral``), in MediaPipe's order and spelt the ARKit way (``eyeBlink_L``;
  ``_L`` is the subject's left, +x). jawOpen rotates the lower face about a jaw axis;
  lid motions are harmonic fields pinned on the lid contours; eyeLook* rotate the irises
  about the eyeball centres. Eyeballs follow identity rigidly and ignore lid motions.
* **Albedo, regions, head centre**: skin, brows, lips, sclera, iris and pupil colours
  painted from MediaPipe's own landmark groups; ``head_center`` is the midpoint of the
  two eyeball centres.

It is coarse (468 surface vertices) and a fallback: FLAME is recommended.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np

from core.builtin_model.builder import _Builder
from core.builtin_model.canonical import CanonicalMesh, mediapipe_landmark_chains, parse_canonical_mesh
from core.builtin_model.design import EXPRESSION_NAMES, IDENTITY_FEATURE_NAMES, NUM_LANDMARK_VERTICES
from core.head_model import HeadModel

__all__ = ["BUILTIN_VERSION", "CANONICAL_MESH_MEMBER", "EXPRESSION_NAMES", "IDENTITY_FEATURE_NAMES",
           "NUM_LANDMARK_VERTICES", "CanonicalMesh", "build_builtin_model", "identity_feature_basis",
           "load_builtin_model", "mediapipe_landmark_chains", "mirror_vertex_map", "parse_canonical_mesh"]

# Bump whenever the construction below changes: it is part of ``source_sha256``, which caches key on.
BUILTIN_VERSION = "flamecam-builtin-1"
CANONICAL_MESH_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"


# --- public entry points ----------------------------------------------------------------------


def build_builtin_model(mesh_bytes: bytes) -> HeadModel:
    """Build the built-in model from the bytes of ``geometry_pipeline_metadata_landmarks.binarypb``."""
    built = _build(mesh_bytes)
    return _as_head_model(built, mesh_bytes)


@functools.lru_cache(maxsize=2)
def _build(mesh_bytes: bytes) -> dict:
    built = _read_cached_build(mesh_bytes)
    if built is None:
        builder = _Builder(parse_canonical_mesh(mesh_bytes), mediapipe_landmark_chains())
        built = builder.build()
        _write_cached_build(mesh_bytes, built)
    for value in [*built.values(), *built["regions"].values()]:
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return built


# --- the construction, cached on disk ---------------------------------------------------------------
# Building takes ~0.4 s and needs MediaPipe's landmark groups, whose import pulls in matplotlib (~1 s);
# every process that uses the model pays it (the app's synthetic source runs in a second process).
# The arrays are cached in the user cache, keyed by the mesh, BUILTIN_VERSION and this package's
# source code, so a changed construction never reads a stale file.


def _build_cache_path(mesh_bytes: bytes):
    from pathlib import Path  # noqa: PLC0415

    from core.assets import cache_dir  # noqa: PLC0415

    digest = hashlib.sha256(mesh_bytes + BUILTIN_VERSION.encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return cache_dir() / "builtin_model" / f"{digest.hexdigest()[:24]}.npz"


def _read_cached_build(mesh_bytes: bytes) -> dict | None:
    try:
        path = _build_cache_path(mesh_bytes)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError):  # unreadable or half-written by a crashed process: rebuild
        return None
    built = {name: value for name, value in arrays.items() if not name.startswith("regions/")}
    built["regions"] = {name[len("regions/"):]: value for name, value in arrays.items() if name.startswith("regions/")}
    return built


def _write_cached_build(mesh_bytes: bytes, built: dict) -> None:
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    arrays = {name: value for name, value in built.items() if name != "regions"}
    arrays.update({f"regions/{name}": value for name, value in built["regions"].items()})
    try:
        path = _build_cache_path(mesh_bytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)  # atomic: another process may be writing the same file
    except OSError:
        pass  # a read-only or full cache only costs the next start the build


def _as_head_model(built: dict, mesh_bytes: bytes) -> HeadModel:
    digest = hashlib.sha256(mesh_bytes + BUILTIN_VERSION.encode()).hexdigest()
    head = HeadModel(
        name="builtin", kind="builtin",
        v_template=built["vertices"].astype(np.float32),
        faces=built["faces"].astype(np.int32).copy(),
        shapedirs=built["shapedirs"].astype(np.float32),
        exprdirs=built["exprdirs"].astype(np.float32),
        head_center=built["head_center"].astype(np.float32),
        expression_names=list(EXPRESSION_NAMES),
        regions={k: v.astype(np.int64).copy() for k, v in built["regions"].items()},
        vertex_rgb=built["colours"].astype(np.float32),
        source_sha256=digest, is_coarse=True,
        description=(f"flamecam built-in coarse head ({BUILTIN_VERSION}): MediaPipe's canonical face mesh "
                     "with hand-designed identity and expression modes. A fallback for running without a "
                     "model file; FLAME is recommended for accurate tracking."),
    )
    head.validate()
    return head


def load_builtin_model(landmarker: str | None = None) -> HeadModel:
    """The built-in coarse head model (a fresh copy; the construction is cached in memory).

    ``landmarker``: explicit path to ``face_landmarker.task`` (else resolved as in ``core.assets``).
    """
    from core.assets import read_landmarker_member  # noqa: PLC0415

    return build_builtin_model(read_landmarker_member(CANONICAL_MESH_MEMBER, landmarker))


def identity_feature_basis(landmarker: str | None = None) -> np.ndarray:
    """(V, 3, K) the named identity features (:data:`IDENTITY_FEATURE_NAMES`) before their
    rotation into the model's orthogonal ``shapedirs``; metres per standard deviation."""
    from core.assets import read_landmarker_member  # noqa: PLC0415

    return np.array(_build(read_landmarker_member(CANONICAL_MESH_MEMBER, landmarker))["features"], np.float32)


def mirror_vertex_map(landmarker: str | None = None) -> np.ndarray:
    """(V,) index of each vertex's mirror image across x = 0 (left <-> right)."""
    from core.assets import read_landmarker_member  # noqa: PLC0415

    return np.array(_build(read_landmarker_member(CANONICAL_MESH_MEMBER, landmarker))["mirror"])
