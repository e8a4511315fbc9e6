"""The built-in coarse head model (core.builtin_model): MediaPipe's canonical mesh made morphable."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from core import builtin_model as bm
from core.assets import read_landmarker_member
from core.head_model import HeadModel, HeadModelLayer
from core.model_io import load_head_model

MM = 1e-3
SYMMETRIC_EXPRESSIONS = ("browInnerUp", "cheekPuff", "jawForward", "jawOpen", "mouthClose", "mouthFunnel",
                         "mouthPucker", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper")


@pytest.fixture(scope="module")
def head(builtin_model) -> HeadModel:
    return builtin_model


@pytest.fixture(scope="module")
def mirror(head) -> np.ndarray:
    """Mirror partner of every vertex, found independently of the module (nearest neighbour)."""
    v = head.v_template.astype(np.float64)
    flipped = v * [-1.0, 1.0, 1.0]
    order = np.lexsort(v.T)
    partner = np.empty(len(v), np.int64)
    # Exact mirror symmetry: sorting both point sets pairs them up.
    partner[np.lexsort(flipped.T)] = order
    assert np.abs(v[partner] * [-1, 1, 1] - v).max() < 1e-6, "template is not mirror-symmetric"
    return partner


def expr(head: HeadModel, name: str) -> np.ndarray:
    return head.exprdirs[:, :, head.expression_names.index(name)].astype(np.float64)


def mirrored(deltas: np.ndarray, partner: np.ndarray) -> np.ndarray:
    return deltas[partner] * [-1.0, 1.0, 1.0]


def triangle_areas(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return 0.5 * np.linalg.norm(np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]), axis=1)


# --- loading -----------------------------------------------------------------------------------


def test_loads_and_validates(head):
    head.validate()
    assert head.kind == "builtin" and head.is_coarse
    assert "FLAME" in head.description and "coarse" in head.description
    assert head.num_vertices > bm.NUM_LANDMARK_VERTICES
    assert head.v_template.dtype == np.float32 and head.faces.dtype == np.int32
    assert head.num_shape >= 12 and head.num_expr == len(head.expression_names) == 51
    assert len(head.source_sha256) == 64
    assert np.isfinite(head.shapedirs).all() and np.isfinite(head.exprdirs).all()
    used = np.zeros(head.num_vertices, bool)
    used[head.faces.ravel()] = True
    assert used.all(), "every vertex belongs to a triangle"


def test_truncation_through_the_loader():
    small = load_head_model("builtin", num_shape=5, num_expr=10)
    assert small.num_shape == 5 and small.num_expr == 10 and len(small.expression_names) == 10


def test_each_load_is_an_independent_copy():
    a, b = bm.load_builtin_model(), bm.load_builtin_model()
    assert a.v_template is not b.v_template
    a.v_template[:] = 0
    a.regions["face"][:] = 0
    assert np.abs(b.v_template).max() > 0.05 and b.regions["face"][1] == 1
    assert np.abs(bm.load_builtin_model().v_template).max() > 0.05


def test_source_hash_tracks_mesh_and_construction_version(monkeypatch):
    data = read_landmarker_member(bm.CANONICAL_MESH_MEMBER)
    first = bm.build_builtin_model(data).source_sha256
    assert bm.build_builtin_model(data).source_sha256 == first
    monkeypatch.setattr(bm, "BUILTIN_VERSION", bm.BUILTIN_VERSION + "-changed")
    assert bm.build_builtin_model(data).source_sha256 != first


def test_the_construction_is_cached_on_disk_and_rebuilt_when_unreadable(monkeypatch, tmp_path):
    """A later process reads the built arrays instead of building (and importing MediaPipe) again."""
    monkeypatch.setenv("FLAMECAM_CACHE", str(tmp_path))
    data = read_landmarker_member(bm.CANONICAL_MESH_MEMBER)
    bm._build.cache_clear()
    try:
        built = bm.build_builtin_model(data)
        files = list((tmp_path / "builtin_model").glob("*.npz"))
        assert len(files) == 1
        bm._build.cache_clear()  # as in a new process

        def no_mediapipe():
            raise AssertionError("built again instead of read from the cache")

        monkeypatch.setattr(bm, "mediapipe_landmark_chains", no_mediapipe)
        cached = bm.build_builtin_model(data)
        for name in ("v_template", "faces", "shapedirs", "exprdirs", "head_center", "vertex_rgb"):
            np.testing.assert_array_equal(getattr(cached, name), getattr(built, name))
        assert cached.regions.keys() == built.regions.keys() and cached.source_sha256 == built.source_sha256
        assert all(np.array_equal(cached.regions[k], built.regions[k]) for k in built.regions)
        monkeypatch.undo()
        monkeypatch.setenv("FLAMECAM_CACHE", str(tmp_path))
        files[0].write_bytes(b"half-written")  # e.g. a crash while writing: built again, and rewritten
        bm._build.cache_clear()
        again = bm.build_builtin_model(data)
        np.testing.assert_array_equal(again.v_template, built.v_template)
        with np.load(files[0]) as rewritten:
            assert "vertices" in rewritten.files
    finally:
        bm._build.cache_clear()


# --- the canonical mesh parser ----------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _encode(mesh: bm.CanonicalMesh, packed: bool) -> bytes:
    xyzuv = np.column_stack([mesh.vertices_m / 0.01, mesh.uv]).astype("<f4").ravel()
    indices = mesh.faces.ravel()
    if packed:
        body = xyzuv.tobytes()
        idx = b"".join(_varint(int(i)) for i in indices)
        buffers = _field(3, 2, _varint(len(body)) + body) + _field(4, 2, _varint(len(idx)) + idx)
    else:
        buffers = b"".join(_field(3, 5, struct.pack("<f", f)) for f in xyzuv)
        buffers += b"".join(_field(4, 0, _varint(int(i))) for i in indices)
    mesh_msg = _field(1, 0, _varint(0)) + _field(2, 0, _varint(0)) + buffers
    # A procrustes entry and an input_source after the mesh, as in the real file.
    return (_field(1, 2, _varint(len(mesh_msg)) + mesh_msg) + _field(2, 2, b"\x02" + b"\x08\x01")
            + _field(3, 0, _varint(1)))


def test_parser_reads_the_real_file():
    mesh = bm.parse_canonical_mesh(read_landmarker_member(bm.CANONICAL_MESH_MEMBER))
    assert mesh.vertices_m.shape == (468, 3) and mesh.faces.shape == (898, 3)
    assert 0.07 < mesh.vertices_m[:, 2].max() < 0.08  # nose tip z ≈ 7.6 cm, now metres
    assert mesh.faces.min() == 0 and mesh.faces.max() == 467
    assert ((mesh.uv >= 0) & (mesh.uv <= 1)).all()


@pytest.mark.parametrize("packed", [True, False])
def test_parser_accepts_packed_and_unpacked_buffers(packed):
    real = bm.parse_canonical_mesh(read_landmarker_member(bm.CANONICAL_MESH_MEMBER))
    again = bm.parse_canonical_mesh(_encode(real, packed))
    np.testing.assert_allclose(again.vertices_m, real.vertices_m, rtol=1e-6)
    np.testing.assert_array_equal(again.faces, real.faces)


@pytest.mark.parametrize("data", [b"", b"\x0a\x05\x1d\x00\x00", b"\x08\x01", b"\xff\xff\xff"])
def test_parser_rejects_malformed_data(data):
    with pytest.raises(ValueError):
        bm.parse_canonical_mesh(data)


# --- landmark correspondence and metric size ----------------------------------------------------


def test_first_468_vertices_are_the_canonical_mesh(head):
    mesh = bm.parse_canonical_mesh(read_landmarker_member(bm.CANONICAL_MESH_MEMBER))
    np.testing.assert_allclose(head.v_template[:468], mesh.vertices_m, atol=1e-7)


def test_landmark_correspondences(head):
    v = head.v_template[:468].astype(np.float64)
    # Vertex 1 is on the nose tip: within 2 mm of the most forward point, and close to it.
    tip = v[:, 2].argmax()
    assert v[1, 2] > v[tip, 2] - 2 * MM and np.linalg.norm(v[1] - v[tip]) < 10 * MM
    # Vertex 152 is the chin: the lowest point on the midline.
    midline = np.where(np.abs(v[:, 0]) < 1e-4)[0]
    assert midline[v[midline, 1].argmin()] == 152
    # MediaPipe's "left" is the subject's left, which is +x in model space.
    assert (v[head.regions["left_eye"], 0] > 0).all() and (v[head.regions["right_eye"], 0] < 0).all()
    assert (v[head.regions["left_eyebrow"], 0] > 0).all() and (v[head.regions["right_eyebrow"], 0] < 0).all()
    assert v[263, 0] > 0 and v[33, 0] < 0  # outer eye corners


def test_metric_size_is_adult(head):
    v = head.v_template.astype(np.float64)
    face_width = np.linalg.norm(v[234] - v[454])
    assert 0.13 < face_width < 0.16
    face_height = v[10, 1] - v[152, 1]  # hairline to chin
    assert 0.15 < face_height < 0.20
    iris_distance = np.linalg.norm(v[468] - v[473])  # interpupillary distance
    assert 0.055 < iris_distance < 0.070


def test_regions_come_from_mediapipe(head):
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections as conn

    def ids(connections):
        return sorted({i for c in connections for i in (c.start, c.end)})

    for name, connections in (("lips", conn.FACE_LANDMARKS_LIPS), ("left_eye", conn.FACE_LANDMARKS_LEFT_EYE),
                              ("right_eyebrow", conn.FACE_LANDMARKS_RIGHT_EYEBROW),
                              ("face_oval", conn.FACE_LANDMARKS_FACE_OVAL), ("nose", conn.FACE_LANDMARKS_NOSE)):
        assert head.regions[name].tolist() == ids(connections), name
    assert head.regions["left_iris"].tolist() == [473] + ids(conn.FACE_LANDMARKS_LEFT_IRIS)
    assert head.regions["right_iris"].tolist() == [468] + ids(conn.FACE_LANDMARKS_RIGHT_IRIS)
    assert head.regions["face"].tolist() == list(range(468))
    eyeballs = np.concatenate([head.regions["left_eyeball"], head.regions["right_eyeball"]])
    assert set(range(468, 478)) <= set(eyeballs.tolist())
    assert len(np.intersect1d(eyeballs, np.arange(468))) == 0


def test_irises_sit_in_the_eye_openings(head):
    v = head.v_template.astype(np.float64)
    for centre, eye in ((473, "left_eye"), (468, "right_eye")):
        contour = v[head.regions[eye]]
        lo, hi = contour[:, :2].min(0), contour[:, :2].max(0)
        assert (lo < v[centre, :2]).all() and (v[centre, :2] < hi).all()
        # Behind the lids, but only slightly: under 4 mm behind the front-most lid point.
        assert contour[:, 2].max() - 4 * MM < v[centre, 2] < contour[:, 2].max()
        # MediaPipe's contour order: +x, +y, -x, -y, at the iris radius (~5.9 mm).
        rel = v[centre + 1: centre + 5, :2] - v[centre, :2]
        np.testing.assert_allclose(np.linalg.norm(rel, axis=1), 5.9 * MM, atol=0.2 * MM)
        directions = rel / np.linalg.norm(rel, axis=1, keepdims=True)
        np.testing.assert_allclose(directions, [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-6)


def test_head_center_is_between_the_eyeballs(head):
    v = head.v_template.astype(np.float64)
    c = head.head_center
    assert abs(c[0]) < 1e-6
    assert abs(c[1] - 0.5 * (v[468, 1] + v[473, 1])) < 1 * MM
    depth_behind_iris = 0.5 * (v[468, 2] + v[473, 2]) - c[2]
    assert 10 * MM < depth_behind_iris < 14 * MM


def test_albedo_paints_the_features(head):
    rgb = head.vertex_rgb
    assert rgb.min() >= 0 and rgb.max() <= 1
    forehead = rgb[151]
    brightness = rgb.mean(axis=1)
    assert (brightness[head.regions["left_eyebrow"]] < forehead.mean() - 0.1).all()
    upper_lip_mid = rgb[0]  # on the upper lip's outer contour
    lip_inner = rgb[head.regions["lips"]]
    assert (lip_inner[:, 0] - lip_inner[:, 1] > forehead[0] - forehead[1]).all(), "lips are redder than skin"
    assert upper_lip_mid[0] - upper_lip_mid[1] > forehead[0] - forehead[1]
    assert brightness[468] < 0.1 and brightness[473] < 0.1  # pupils
    sclera = np.setdiff1d(head.regions["left_eyeball"], np.arange(468, 478))
    assert np.median(brightness[sclera]) > 0.8  # mostly white
    assert brightness[head.regions["mouth_interior"]].max() < 0.4


# --- identity modes ----------------------------------------------------------------------------


def test_identity_modes_are_orthogonal_and_sorted(head):
    surface = head.shapedirs[:468].reshape(-1, head.num_shape).astype(np.float64)
    gram = surface.T @ surface
    norms = np.sqrt(np.diag(gram))
    off = gram / np.outer(norms, norms) - np.eye(head.num_shape)
    assert np.abs(off).max() < 1e-4
    assert (np.diff(norms) <= 1e-9).all(), "sorted by variance, largest first"
    # About one standard deviation of real faces: RMS vertex displacement 0.1-6 mm per unit.
    rms = norms / np.sqrt(468)
    assert (rms > 0.1 * MM).all() and (rms < 6 * MM).all()


def test_identity_modes_span_the_named_features(head):
    features = bm.identity_feature_basis()
    assert features.shape == (head.num_vertices, 3, len(bm.IDENTITY_FEATURE_NAMES))
    basis = head.shapedirs.reshape(-1, head.num_shape).astype(np.float64)
    target = features.reshape(-1, features.shape[2]).astype(np.float64)
    coeffs, *_ = np.linalg.lstsq(basis, target, rcond=None)
    assert np.abs(basis @ coeffs - target).max() < 1e-5
    # A rotation of the features: coefficients ~ N(0, I) give the same distribution of faces
    # (target = basis Q with Q orthogonal, so target targetᵀ = basis basisᵀ).
    np.testing.assert_allclose(coeffs @ coeffs.T, np.eye(len(coeffs)), atol=1e-4)


@pytest.mark.parametrize("sd", [-3.0, 3.0])
def test_identity_modes_are_smooth_and_bounded(head, sd):
    v0 = head.v_template.astype(np.float64)
    faces = head.faces
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0)
    length = np.linalg.norm(v0[edges[:, 0]] - v0[edges[:, 1]], axis=1)
    area0 = triangle_areas(v0, faces)
    for k in range(head.num_shape):
        d = sd * head.shapedirs[:, :, k].astype(np.float64)
        assert np.linalg.norm(d, axis=1).max() < 30 * MM, f"mode {k} moves a vertex more than 3 cm"
        strain = np.linalg.norm(d[edges[:, 0]] - d[edges[:, 1]], axis=1) / length
        assert strain.max() < 0.75, f"mode {k} is not smooth (edge strain {strain.max():.2f})"
        ratio = triangle_areas(v0 + d, faces) / area0
        assert ratio.min() > 0.3 and ratio.max() < 3.0, f"mode {k} collapses or inflates triangles"


def test_identity_modes_are_symmetric(head, mirror):
    np.testing.assert_array_equal(bm.mirror_vertex_map(), mirror)
    for k in range(head.num_shape):
        d = head.shapedirs[:, :, k].astype(np.float64)
        np.testing.assert_allclose(mirrored(d, mirror), d, atol=1e-7, err_msg=f"shape mode {k}")


def test_named_features_do_what_they_say(head):
    features = bm.identity_feature_basis().astype(np.float64)
    v0 = head.v_template.astype(np.float64)

    def change(name, measure):
        d = features[:, :, bm.IDENTITY_FEATURE_NAMES.index(name)]
        return measure(v0 + d) - measure(v0)

    assert change("face_width", lambda v: np.linalg.norm(v[234] - v[454])) > 2 * MM
    assert change("eye_spacing", lambda v: np.linalg.norm(v[473] - v[468])) > 2 * MM  # irises follow
    assert change("eye_spacing", lambda v: np.linalg.norm(v[263] - v[33])) > 1.5 * MM
    assert change("nose_projection", lambda v: v[1, 2]) > 1.5 * MM
    assert change("jaw_width", lambda v: np.linalg.norm(v[172] - v[397])) > 3 * MM
    assert change("mouth_width", lambda v: np.linalg.norm(v[61] - v[291])) > 3 * MM
    assert change("chin_height", lambda v: -v[152, 1]) > 2 * MM
    # Eye size changes the opening but not the (rigid) iris.
    assert change("eye_size", lambda v: np.linalg.norm(v[263] - v[362])) > 1 * MM
    assert abs(change("eye_size", lambda v: np.linalg.norm(v[474] - v[476]))) < 1e-6


def test_eyeballs_move_rigidly_with_identity(head):
    for side in ("left_eyeball", "right_eyeball"):
        idx = head.regions[side]
        for k in range(head.num_shape):
            d = head.shapedirs[idx, :, k]
            assert np.abs(d - d[0]).max() < 1e-7, "an eyeball translates as a whole"
    # ... and they do move with the identity (eye spacing, scale).
    assert np.abs(head.shapedirs[head.regions["left_eyeball"][0]]).max() > 0.5 * MM


# --- expressions ---------------------------------------------------------------------------------


def test_expression_names_are_mediapipe_blendshapes(head):
    from core.landmarks import MEDIAPIPE_BLENDSHAPE_NAMES

    def arkit(name: str) -> str:  # eyeBlinkLeft -> eyeBlink_L; jawLeft and mouthLeft are whole ARKit names
        if name in ("jawLeft", "jawRight", "mouthLeft", "mouthRight"):
            return name
        for side in ("Left", "Right"):
            if name.endswith(side):
                return name[: -len(side)] + "_" + side[0]
        return name

    expected = [arkit(n) for n in MEDIAPIPE_BLENDSHAPE_NAMES if n != "_neutral"]
    assert head.expression_names == expected  # every category, in MediaPipe's output order


def test_every_expression_moves_something_and_stays_bounded(head):
    for k, name in enumerate(head.expression_names):
        magnitude = np.linalg.norm(head.exprdirs[:, :, k], axis=1)
        assert magnitude.max() > 1 * MM, f"{name} does nothing"
        assert magnitude.max() < 50 * MM, f"{name} moves a vertex more than 5 cm"


def test_jaw_open_is_a_rotation_that_opens_the_mouth(head):
    v0 = head.v_template.astype(np.float64)
    d = expr(head, "jawOpen")
    opened = v0 + d
    assert np.linalg.norm(opened[13] - opened[14]) - np.linalg.norm(v0[13] - v0[14]) > 5 * MM
    assert np.abs(d[[1, 4, 168, 10, 33, 263]]).max() < 1e-6, "the upper face stays"
    # The chin moves down and back, rigidly (distances between chin points are kept).
    chin = [152, 175, 199, 200, 148, 377]
    assert (d[chin, 1] < -10 * MM).all() and (d[chin, 2] < 0).all()
    before = np.linalg.norm(v0[chin][:, None] - v0[chin][None], axis=-1)
    after = np.linalg.norm(opened[chin][:, None] - opened[chin][None], axis=-1)
    np.testing.assert_allclose(after, before, atol=0.05 * MM)
    # Rotation about a left-right axis: no sideways motion.
    assert np.abs(d[chin, 0]).max() < 1e-6


def test_blink_closes_the_subjects_left_eye_only(head):
    v0 = head.v_template.astype(np.float64)
    blink_l = v0 + expr(head, "eyeBlink_L")
    # 386/374: upper and lower lid of the subject's left eye (x > 0).
    assert v0[386, 0] > 0 and v0[159, 0] < 0
    assert np.linalg.norm(v0[386] - v0[374]) > 5 * MM
    assert np.linalg.norm(blink_l[386] - blink_l[374]) < 0.5 * MM
    np.testing.assert_array_equal(blink_l[[159, 145]], v0[[159, 145]])
    assert np.abs(expr(head, "eyeBlink_L")[head.regions["right_eye"]]).max() == 0
    # Eyeballs and irises do not move with the lids.
    eyes = np.concatenate([head.regions["left_eyeball"], head.regions["right_eyeball"]])
    assert np.abs(expr(head, "eyeBlink_L")[eyes]).max() == 0
    blink_r = v0 + expr(head, "eyeBlink_R")
    assert np.linalg.norm(blink_r[159] - blink_r[145]) < 0.5 * MM


def test_left_right_expressions_act_on_the_subjects_side(head):
    smile = expr(head, "mouthSmile_L")
    assert np.linalg.norm(smile[291]) > 3 * np.linalg.norm(smile[61])  # 291: left mouth corner (x > 0)
    assert smile[291, 1] > 0 and smile[291, 0] > 0  # up and outwards
    assert expr(head, "jawLeft")[152, 0] > 0 and expr(head, "mouthLeft")[0, 0] > 0
    brow = expr(head, "browOuterUp_L")
    assert brow[head.regions["left_eyebrow"], 1].max() > 3 * MM
    assert np.abs(brow[head.regions["right_eyebrow"]]).max() < 0.1 * MM


def test_gaze_rotates_the_irises(head):
    v0 = head.v_template.astype(np.float64)
    centre = head.head_center + [abs(v0[473, 0] - head.head_center[0]), 0, 0]  # left eyeball centre
    iris = np.arange(473, 478)
    for name, axis, sign in (("eyeLookOut_L", 0, 1), ("eyeLookIn_L", 0, -1), ("eyeLookUp_L", 1, 1),
                             ("eyeLookDown_L", 1, -1)):
        d = expr(head, name)
        assert sign * d[473, axis] > 2 * MM, name
        moved = v0[iris] + d[iris]
        np.testing.assert_allclose(np.linalg.norm(moved - centre, axis=1),
                                   np.linalg.norm(v0[iris] - centre, axis=1), atol=1e-5)
        assert np.abs(d[:468]).max() == 0 and np.abs(d[468:473]).max() == 0, "only the left iris moves"
    assert expr(head, "eyeLookOut_R")[468, 0] < -2 * MM  # the right eye looks out towards -x


def test_expressions_are_mirror_consistent(head, mirror):
    for name in head.expression_names:
        d = expr(head, name)
        if name.endswith("_L"):
            np.testing.assert_allclose(expr(head, name[:-2] + "_R"), mirrored(d, mirror), atol=1e-7, err_msg=name)
        elif name in ("jawLeft", "mouthLeft"):
            other = name.replace("Left", "Right")
            np.testing.assert_allclose(expr(head, other), mirrored(d, mirror), atol=1e-7, err_msg=name)
        elif name in SYMMETRIC_EXPRESSIONS:
            np.testing.assert_allclose(mirrored(d, mirror), d, atol=1e-7, err_msg=name)
    for side_name in ("eyeBlink_L", "mouthSmile_L", "browDown_L"):  # one-sided ones are not symmetric
        d = expr(head, side_name)
        assert np.abs(mirrored(d, mirror) - d).max() > 1 * MM


# --- eyes and mouth stay behind the skin -----------------------------------------------------------


def _skin_in_front(v: np.ndarray, points: np.ndarray, skin_faces: np.ndarray) -> np.ndarray:
    """For each point, (skin z above it) - (point z); +inf where no skin covers it."""
    a, b, c = (v[skin_faces[:, k], :2] for k in range(3))
    p = v[points, None, :2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    den = np.where(np.abs(den) < 1e-18, np.nan, den)
    w0 = ((b[:, 1] - c[:, 1]) * (p[..., 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (p[..., 1] - c[:, 1])) / den
    w1 = ((c[:, 1] - a[:, 1]) * (p[..., 0] - c[:, 0]) + (a[:, 0] - c[:, 0]) * (p[..., 1] - c[:, 1])) / den
    w2 = 1 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    z = w0 * v[skin_faces[:, 0], 2] + w1 * v[skin_faces[:, 1], 2] + w2 * v[skin_faces[:, 2], 2]
    z = np.where(inside, z, -np.inf).max(axis=1)
    return np.where(np.isfinite(z), z - v[points, 2], np.inf)


def test_eyeballs_and_mouth_stay_behind_the_skin(head):
    surface = np.concatenate([head.regions["face"], head.regions["surface_midpoints"]])
    skin_faces = head.faces[np.isin(head.faces, surface).all(axis=1)]
    v0 = head.v_template.astype(np.float64)
    groups = []  # (inner vertices, the skin triangles around them)
    for inner, radius in ((head.regions["left_eyeball"], 0.03), (head.regions["right_eyeball"], 0.03),
                          (head.regions["mouth_interior"], 0.04)):
        near = np.linalg.norm(v0[skin_faces].mean(1) - v0[inner].mean(0), axis=1) < radius
        groups.append((inner, skin_faces[near]))
        assert np.isfinite(_skin_in_front(v0, inner, skin_faces[near])).sum() > 20, "skin covers part of it"
    rng = np.random.default_rng(0)
    cases = [("rest", v0)]
    cases += [(f"shape {k} {s:+}SD", v0 + s * head.shapedirs[:, :, k]) for k in range(head.num_shape) for s in (-3, 3)]
    cases += [(name, v0 + expr(head, name)) for name in head.expression_names]
    for i in range(20):  # a typical identity with a few expressions at once
        weights = np.zeros(head.num_expr)
        weights[rng.choice(head.num_expr, 4, replace=False)] = rng.uniform(0, 1, 4)
        cases.append((f"mix {i}", v0 + head.shapedirs @ rng.standard_normal(head.num_shape) + head.exprdirs @ weights))
    for label, v in cases:
        for inner, faces in groups:
            gap = _skin_in_front(v, inner, faces)
            assert gap.min() > 0, f"{label}: eye or mouth interior pokes {-gap.min() / MM:.2f} mm through the skin"


# --- it runs through the torch layer ---------------------------------------------------------------


def test_head_model_layer_matches_numpy(head):
    layer = HeadModelLayer(head, dtype=torch.float64)
    rng = np.random.default_rng(1)
    shape = rng.standard_normal((2, head.num_shape))
    weights = rng.uniform(0, 1, (2, head.num_expr))
    out = layer(torch.as_tensor(shape), torch.as_tensor(weights)).numpy()
    expected = (head.v_template[None].astype(np.float64) + np.einsum("vcs,bs->bvc", head.shapedirs, shape)
                + np.einsum("vce,be->bvc", head.exprdirs, weights))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    landmarks = layer.subset(np.arange(478))(torch.as_tensor(shape), torch.as_tensor(weights)).numpy()
    np.testing.assert_allclose(landmarks, expected[:, :478], atol=1e-9)
