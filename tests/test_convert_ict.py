"""``flamecam convert-ict`` on a tiny fake ICT-FaceKit clone the test writes itself.

The fake clone has ICT's folder and file names (FaceXModel/generic_neutral_mesh.obj, identityNNN.obj,
ARKit-named expression OBJs, vertex_indices.json, README.md with the 68 landmarks, LICENSE) and the
same kinds of parts (face, head and neck, a mouth socket to drop, two eyeballs with irises, eyelashes
to drop), but a few hundred vertices in a tiny layout. Real ICT data is never copied here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main as cli_main
from core.ict_convert import (ICT_LAYOUT, IDENTITY_SIGMA, IRIS_RGB, LIP_RGB, PUPIL_RGB, SCLERA_RGB, SKIN_RGB,
                              BROW_RGB, IctConvertError, IctLayout, convert_ict, read_obj, triangulate)
from core.model_io import load_head_model, load_ict

EXPRESSIONS = ("mouthSmile_R", "jawOpen", "eyeBlink_L")  # the json order, not alphabetical
NUM_IDENTITIES = 3
GRID = np.arange(-4.0, 4.01, 0.5)  # face grid, centimetres


def _face_index(x: float, y: float) -> int:
    return int(round((y + 4) / 0.5)) * len(GRID) + int(round((x + 4) / 0.5))


def _eyeball(center: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
    """A UV sphere (radius 1.2 cm, poles on z) and an iris cone inside its front; local polygons."""
    radius, seg = 1.2, 8
    thetas = np.deg2rad([25, 50, 75, 100, 125, 150])
    phis = np.arange(seg) * 2 * np.pi / seg
    verts = [[0, 0, radius]]
    for t in thetas:
        verts += [[radius * np.sin(t) * np.cos(p), radius * np.sin(t) * np.sin(p), radius * np.cos(t)] for p in phis]
    verts.append([0, 0, -radius])
    ring = lambda r, k: 1 + r * seg + k % seg  # noqa: E731
    polys = [[0, ring(0, k), ring(0, k + 1)] for k in range(seg)]  # front cap: triangles
    for r in range(len(thetas) - 1):
        polys += [[ring(r, k), ring(r + 1, k), ring(r + 1, k + 1), ring(r, k + 1)] for k in range(seg)]
    back = len(verts) - 1
    polys += [[back, ring(len(thetas) - 1, k + 1), ring(len(thetas) - 1, k)] for k in range(seg)]
    iris0 = len(verts)  # the iris part: centre, then rings of radius 0.3 and 0.55 cm (a shallow cone)
    verts.append([0, 0, 1.0])
    verts += [[0.3 * np.cos(p), 0.3 * np.sin(p), 1.0] for p in phis]
    verts += [[0.55 * np.cos(p), 0.55 * np.sin(p), 0.95] for p in phis]
    iring = lambda r, k: iris0 + 1 + r * seg + k % seg  # noqa: E731
    polys += [[iris0, iring(0, k), iring(0, k + 1)] for k in range(seg)]
    polys += [[iring(0, k), iring(1, k), iring(1, k + 1), iring(0, k + 1)] for k in range(seg)]
    return np.asarray(verts) + center, polys


def build_fake_clone(root: Path, seed: int = 0) -> dict:
    """Write a tiny ICT-FaceKit-shaped clone; return its layout and the arrays the files hold."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(GRID, GRID)
    face = np.stack([gx.ravel(), gy.ravel(), 10 - 0.05 * gx.ravel() ** 2], 1)
    n = len(GRID)
    polys = [[iy * n + ix, iy * n + ix + 1, (iy + 1) * n + ix + 1, (iy + 1) * n + ix]
             for iy in range(n - 1) for ix in range(n - 1)]
    verts = [face]
    head_lo = len(face)
    verts.append(np.array([[5, 3, 3], [5, -3, 3], [0, -6, 2], [-5, -3, 3], [-5, 3, 3], [0, 6, 2]], float))
    polys += [[head_lo + i for i in range(5)], [head_lo + 3, head_lo + 4, head_lo + 5]]  # a pentagon, a triangle
    mouth_lo = head_lo + 6
    verts.append(np.array([[-1, -3, 8], [1, -3, 8], [1, -4, 8], [-1, -4, 8], [0, -3.5, 7]], float))
    polys += [[mouth_lo, mouth_lo + 1, mouth_lo + 2, mouth_lo + 3]]  # dropped with the mouth socket
    polys += [[_face_index(0, -3), mouth_lo, mouth_lo + 1]]  # straddles face and mouth socket: dropped
    eyes = {}
    start = mouth_lo + 5
    for side, cx in (("left", 3.0), ("right", -3.0)):  # +x is the subject's left
        ev, ep = _eyeball(np.array([cx, 1.0, 8.2]))
        verts.append(ev)
        polys += [[start + i for i in p] for p in ep]
        eyes[side] = (start, start + len(ev), start + 50)  # sphere has 50 vertices, then the iris part
        start += len(ev)
    lash_lo = start
    verts.append(np.array([[2, 2, 9.5], [4, 2, 9.5], [4, 2.2, 9.5], [2, 2.2, 9.5]], float))
    polys += [[lash_lo, lash_lo + 1, lash_lo + 2, lash_lo + 3]]
    neutral = np.concatenate(verts)
    layout = IctLayout(num_vertices=len(neutral), face=(0, len(face)), head_neck=(head_lo, head_lo + 6),
                       eyeball_left=eyes["left"][:2], eyeball_right=eyes["right"][:2],
                       iris_left=(eyes["left"][2], eyes["left"][1]), iris_right=(eyes["right"][2], eyes["right"][1]),
                       num_identities=NUM_IDENTITIES)
    uv_of_face = np.stack([(gx.ravel() + 4) / 8, (gy.ravel() + 4) / 8], 1)

    model = root / "FaceXModel"
    model.mkdir(parents=True)
    _write_obj(model / "generic_neutral_mesh.obj", neutral, polys, uv_of_face)
    identities = []
    for k in range(NUM_IDENTITIES):
        identities.append(neutral + rng.normal(0, 0.2, neutral.shape))
        _write_obj(model / f"identity{k:03d}.obj", identities[-1], polys, uv_of_face)
    expressions = {}
    for k, name in enumerate(EXPRESSIONS):
        target = neutral.copy()
        if name == "jawOpen":
            target[:len(face)] += (face[:, 1:2] < -1) * np.array([0.0, -1.5, -0.3])  # the lower face drops
        else:
            target += rng.normal(0, 0.05, neutral.shape)
        expressions[name] = target
        _write_obj(model / f"{name}.obj", target, polys if k % 2 else [], None)  # some with faces, some without
    (model / "vertex_indices.json").write_text(json.dumps({"expressions": list(EXPRESSIONS), "other": [1, 2]}))
    (model / "cheekRaiser_L.obj").write_text("v 0 0 0\n")  # extra OBJs in the folder are ignored

    lmk = np.zeros(68, np.int64)
    lmk[17:22] = [_face_index(x, 2.0) for x in (-3.5, -3.0, -2.5, -2.0, -1.5)]
    lmk[22:27] = [_face_index(x, 2.0) for x in (1.5, 2.0, 2.5, 3.0, 3.5)]
    lmk[48:60] = [_face_index(x, y) for x, y in ((-1, -3), (-1, -2.5), (-0.5, -2), (0, -2), (0.5, -2), (1, -2.5),
                                                 (1, -3), (1, -3.5), (0.5, -4), (0, -4), (-0.5, -4), (-1, -3.5))]
    lmk[60:68] = _face_index(0, -3)
    lmk[:17] = np.arange(17)
    (root / "README.md").write_text(
        "# ICT-FaceKit\n\n### Facial Landmarks\n\nAll the following indices are 0-indexed.\n\n"
        "Multi-PIE 68 point facial landmarks indices:\n\n    " + ", ".join(str(i) for i in lmk) +
        "\n\nRight jawline (substitutes 0-7 in Multi PIE):\n\n    1, 2, 3\n")
    (root / "LICENSE").write_text("MIT License\n\nCopyright (c) test fixture\n")
    return {"layout": layout, "neutral": neutral, "polygons": polys, "identities": identities,
            "expressions": expressions, "lmk": lmk, "uv_of_face": uv_of_face, "eyes": eyes, "mouth_lo": mouth_lo,
            "lash_lo": lash_lo}


def _write_obj(path: Path, verts: np.ndarray, polys: list[list[int]], uv_of_face: np.ndarray | None) -> None:
    """ICT-style OBJ: a header comment, mtllib, v, vt (face vertices only), f with v/vt where known."""
    lines = ["# fake ICT-FaceKit file for tests", "mtllib ICTFaceModelMaterial.mtl"]
    lines += [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in verts]
    n_uv = 0 if uv_of_face is None else len(uv_of_face)
    if uv_of_face is not None:
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv_of_face]
    lines.append("vn 0 0 1")
    lines.append("usemtl skin")
    for poly in polys:
        if all(v < n_uv for v in poly):
            lines.append("f " + " ".join(f"{v + 1}/{v + 1}" for v in poly))
        else:
            lines.append("f " + " ".join(f"{v + 1}//1" for v in poly))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def clone(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "ICT-FaceKit"
    return root, build_fake_clone(root)


@pytest.fixture()
def converted(clone, tmp_path) -> tuple[Path, dict]:
    root, info = clone
    out = tmp_path / "out" / "ict_head.npz"
    result = convert_ict(root, out, info["layout"])
    info["result"] = result
    return out, info


# --- the converted file ---------------------------------------------------------------------------


def test_converted_file_loads_with_load_ict(converted):
    out, info = converted
    layout = info["layout"]
    kept = layout.kept_vertices()
    head = load_ict(out)
    assert head.num_vertices == len(kept) == 289 + 6 + 67 + 67
    assert (head.num_shape, head.num_expr) == (NUM_IDENTITIES, len(EXPRESSIONS))
    assert head.expression_names == list(EXPRESSIONS)
    assert load_head_model(out).kind == "ict"  # dispatch by content recognises it too
    np.testing.assert_allclose(head.v_template, info["neutral"][kept] * 0.01, rtol=1e-6, atol=1e-9)
    # regions: face first, then head and neck, then the two eyeballs
    np.testing.assert_array_equal(head.regions["face"], np.arange(289))
    np.testing.assert_array_equal(head.regions["head_neck"], np.arange(289, 295))
    np.testing.assert_array_equal(head.regions["eyeballs"], np.arange(295, 429))
    np.testing.assert_array_equal(head.regions["iris_left"], np.arange(295 + 50, 295 + 67))
    np.testing.assert_array_equal(head.regions["iris_right"], np.arange(362 + 50, 362 + 67))
    # head_center between the eyeballs (centres at x = ±3 cm)
    assert abs(head.head_center[0]) < 1e-6 and -0.03 < head.head_center[0] < 0.03
    assert info["result"].dropped_faces == 1  # the triangle joining face and mouth socket


def test_identity_and_expression_deltas(converted):
    out, info = converted
    kept = info["layout"].kept_vertices()
    head = load_ict(out)
    base = info["neutral"][kept]
    tol = dict(rtol=2e-3, atol=2e-7)  # float16 storage
    for k, identity in enumerate(info["identities"]):
        np.testing.assert_allclose(head.shapedirs[:, :, k], (identity[kept] - base) * 0.01 / IDENTITY_SIGMA, **tol)
    for k, name in enumerate(EXPRESSIONS):
        np.testing.assert_allclose(head.exprdirs[:, :, k], (info["expressions"][name][kept] - base) * 0.01, **tol)
    jaw = head.expression_names.index("jawOpen")
    chin = np.searchsorted(kept, _face_index(0, -4))
    np.testing.assert_allclose(head.exprdirs[chin, :, jaw], [0, -0.015, -0.003], atol=1e-5)
    with np.load(out) as data:
        assert data["shapedirs"].dtype == np.float16 and data["exprdirs"].dtype == np.float16


def test_faces_are_fan_split_and_reindexed(converted):
    out, info = converted
    layout = info["layout"]
    new_index = np.full(layout.num_vertices, -1)
    new_index[layout.kept_vertices()] = np.arange(len(layout.kept_vertices()))
    expected = []
    for poly in info["polygons"]:  # independent of the converter: fan from the first corner, kept parts only
        if all(new_index[v] >= 0 for v in poly):
            expected += [[new_index[poly[0]], new_index[poly[i]], new_index[poly[i + 1]]]
                         for i in range(1, len(poly) - 1)]
    with np.load(out) as data:
        faces = data["faces"]
    assert faces.dtype == np.int32
    np.testing.assert_array_equal(faces, np.array(expected))
    # 256 face quads -> 512, pentagon -> 3, triangle -> 1, per eye 40+8 quads and 24 triangles -> 120
    assert len(faces) == 512 + 3 + 1 + 2 * 120
    # every triangle's corners are the same points as in the clone: the re-indexing is right
    head = load_ict(out)
    original = info["neutral"][layout.kept_vertices()] * 0.01
    np.testing.assert_allclose(head.v_template[faces], original[faces], rtol=1e-6, atol=1e-9)
    # nothing of the mouth socket or the eyelashes survives
    dropped = np.r_[info["mouth_lo"]:info["mouth_lo"] + 5, info["lash_lo"]:info["lash_lo"] + 4]
    assert not np.isin(new_index[dropped], faces).any() and (new_index[dropped] == -1).all()


def test_uv_landmarks_license_and_keys(converted):
    out, info = converted
    kept = info["layout"].kept_vertices()
    with np.load(out) as data:
        np.testing.assert_allclose(data["uv"][:289], info["uv_of_face"], atol=1e-6)
        assert (data["uv"][289:] == 0).all()  # no vt for the other parts in this clone
        np.testing.assert_array_equal(data["lmk68"], np.searchsorted(kept, info["lmk"]))
        assert data["lmk68"].dtype == np.int32
        assert str(data["license"]).startswith("MIT License") and "test fixture" in str(data["license"])
        assert "ICT-FaceKit" in str(data["source"]) and "MIT" in str(data["source"])
        expected = {"v_template": np.float32, "faces": np.int32, "uv": np.float32, "vertex_rgb": np.float32,
                    "shapedirs": np.float16, "exprdirs": np.float16, "eyeball_vertex_range": np.int32,
                    "iris_vertex_ranges": np.int32, "lmk68": np.int32, "face_vertex_count": np.int32}
        assert set(data.files) == set(expected) | {"expression_names", "license", "source"}
        for key, dtype in expected.items():
            assert data[key].dtype == dtype, key
        assert data["expression_names"].dtype.kind == "U" and data["face_vertex_count"].shape == ()
        np.testing.assert_array_equal(data["eyeball_vertex_range"], [295, 429])
        np.testing.assert_array_equal(data["iris_vertex_ranges"], [[345, 362], [412, 429]])
    assert not list(out.parent.glob("*.part"))  # the atomic write left nothing behind


def test_keys_and_dtypes_match_the_shared_file(converted, ict_path):
    out, _ = converted
    with np.load(out) as ours, np.load(ict_path) as shared:
        assert set(ours.files) == set(shared.files)
        for key in shared.files:
            assert ours[key].dtype.kind == shared[key].dtype.kind, key
            assert ours[key].ndim == shared[key].ndim, key
            if shared[key].dtype.kind != "U":
                assert ours[key].dtype == shared[key].dtype, key


def test_painted_albedo_regions(converted):
    out, info = converted
    kept = info["layout"].kept_vertices()
    rgb = load_ict(out).vertex_rgb
    at = lambda full_index: rgb[np.searchsorted(kept, full_index)]  # noqa: E731
    for x, y in ((0, -3), (-0.5, -3), (0.5, -2.5), (-1, -3)):  # inside and on the outer-lip polygon
        np.testing.assert_allclose(at(_face_index(x, y)), LIP_RGB, err_msg=f"lips at {x}, {y}")
    for x, y in ((-2.5, 2.0), (-2.5, 2.5), (-3.5, 2.0), (3.0, 2.5)):  # 0 and 5 mm above the brow landmarks
        np.testing.assert_allclose(at(_face_index(x, y)), BROW_RGB, err_msg=f"brow at {x}, {y}")
    for x, y in ((-2.5, 3.0), (-2.5, 1.5), (0.0, 2.0), (0, -1), (3, -3), (-4, 4)):  # around them: skin
        np.testing.assert_allclose(at(_face_index(x, y)), SKIN_RGB, err_msg=f"skin at {x}, {y}")
    np.testing.assert_allclose(rgb[289:295], np.tile(SKIN_RGB, (6, 1)))  # head and neck
    for side in ("left", "right"):
        lo = info["eyes"][side][0]
        np.testing.assert_allclose(at(lo), PUPIL_RGB)  # the front pole
        np.testing.assert_allclose(at(lo + 50), PUPIL_RGB)  # the iris part's centre
        for k in range(8):
            np.testing.assert_allclose(at(lo + 1 + k), IRIS_RGB)  # ring at 25° (5 mm off the axis)
            np.testing.assert_allclose(at(lo + 51 + k), IRIS_RGB)  # iris-part ring, 3 mm off the axis
            np.testing.assert_allclose(at(lo + 17 + k), SCLERA_RGB)  # ring at 75°
        np.testing.assert_allclose(at(lo + 49), SCLERA_RGB)  # the back pole, on the axis but behind
    counts = converted[1]["result"].paint_counts
    assert counts["pupil"] == 4 and counts["iris"] == 2 * 24 and counts["lips"] > 12 and counts["brows"] == 20


def test_without_landmarks_the_face_is_plain_skin(clone, tmp_path):
    root, info = clone
    (root / "README.md").unlink()
    out = tmp_path / "nolmk.npz"
    result = convert_ict(root, out, info["layout"])
    assert not result.has_landmarks
    head = load_ict(out)
    assert "lmk68" not in head.regions
    np.testing.assert_allclose(head.vertex_rgb[:289], np.tile(SKIN_RGB, (289, 1)))
    assert (head.vertex_rgb[295:] == np.array(PUPIL_RGB, np.float32)).all(1).sum() == 4  # eyes still painted


def test_expression_names_without_vertex_indices_json_come_from_the_layout(clone, tmp_path):
    root, info = clone
    (root / "FaceXModel" / "vertex_indices.json").unlink()
    layout = IctLayout(**{**info["layout"].__dict__, "expression_names": ("jawOpen", "eyeBlink_L")})
    head = load_ict(convert_ict(root / "FaceXModel", tmp_path / "o.npz", layout).path)  # FaceXModel folder works too
    assert head.expression_names == ["jawOpen", "eyeBlink_L"]
    # with neither a json nor a layout list, the 53 ICT names are expected (and missing here)
    with pytest.raises(IctConvertError, match=r"lacks browDown_L.obj, browDown_R.obj.* and \d+ more"):
        convert_ict(root, tmp_path / "p.npz", info["layout"])


# --- errors ---------------------------------------------------------------------------------------


def test_missing_path_and_not_a_clone(tmp_path, clone):
    root, info = clone
    with pytest.raises(IctConvertError, match="does not exist"):
        convert_ict(tmp_path / "nowhere", tmp_path / "o.npz", info["layout"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(IctConvertError, match="not an ICT-FaceKit clone: FaceXModel/generic_neutral_mesh.obj is miss"):
        convert_ict(tmp_path / "empty", tmp_path / "o.npz", info["layout"])
    (root / "FaceXModel" / "identity001.obj").unlink()
    (root / "FaceXModel" / "jawOpen.obj").unlink()
    with pytest.raises(IctConvertError, match="lacks identity001.obj, jawOpen.obj"):
        convert_ict(root, tmp_path / "o.npz", info["layout"])
    assert not (tmp_path / "o.npz").exists()


def test_vertex_count_mismatch_names_the_file(tmp_path, clone):
    root, info = clone
    path = root / "FaceXModel" / "eyeBlink_L.obj"
    lines = path.read_text().splitlines()
    first_v = next(i for i, line in enumerate(lines) if line.startswith("v "))
    path.write_text("\n".join(lines[:first_v] + lines[first_v + 1:]))
    with pytest.raises(IctConvertError, match=r"eyeBlink_L.obj has 437 vertices, generic_neutral_mesh.obj has 438"):
        convert_ict(root, tmp_path / "o.npz", info["layout"])
    # the default (real ICT) layout on this tiny clone: the neutral itself does not match
    with pytest.raises(IctConvertError, match="generic_neutral_mesh.obj has 438 vertices; the layout expects 26719"):
        convert_ict(root, tmp_path / "o.npz")


def test_bad_layouts_are_rejected():
    with pytest.raises(IctConvertError, match="same number of vertices"):
        IctLayout(num_vertices=100, face=(0, 10), head_neck=(10, 20), eyeball_left=(20, 30), eyeball_right=(30, 41),
                  iris_left=(25, 30), iris_right=(35, 41)).check()
    with pytest.raises(IctConvertError, match="overlap"):
        IctLayout(num_vertices=100, face=(0, 15), head_neck=(10, 20), eyeball_left=(20, 30), eyeball_right=(30, 40),
                  iris_left=(25, 30), iris_right=(35, 40)).check()
    with pytest.raises(IctConvertError, match="iris_right must lie inside eyeball_right"):
        IctLayout(num_vertices=100, face=(0, 10), head_neck=(10, 20), eyeball_left=(20, 30), eyeball_right=(30, 40),
                  iris_left=(25, 30), iris_right=(35, 45)).check()


def test_layout_json_errors(tmp_path):
    path = tmp_path / "layout.json"
    path.write_text(json.dumps({"face": [0]}))
    with pytest.raises(IctConvertError, match=r"layout field 'face' = \[0\] is not valid"):
        IctLayout.from_json(path)
    path.write_text(json.dumps({"faces": [0, 10]}))
    with pytest.raises(IctConvertError, match="unknown layout fields faces"):
        IctLayout.from_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(IctConvertError, match="a layout is a JSON object"):
        IctLayout.from_json(path)
    path.write_text(json.dumps({"num_vertices": 30000, "face": [0, 9409], "expression_names": ["jawOpen"]}))
    layout = IctLayout.from_json(path)
    assert layout.num_vertices == 30000 and layout.expression_names == ("jawOpen",)
    assert layout.eyeball_left == ICT_LAYOUT.eyeball_left  # unnamed fields keep the ICT defaults


def test_default_layout_is_the_ict_light_model(ict_path):
    """The defaults reproduce the light model's documented counts and ranges (checked against ../shared)."""
    ICT_LAYOUT.check()
    kept = ICT_LAYOUT.kept_vertices()
    assert len(kept) == 14388
    with np.load(ict_path) as shared:
        assert int(shared["face_vertex_count"]) == ICT_LAYOUT.face[1] - ICT_LAYOUT.face[0]
        new_index = np.full(ICT_LAYOUT.num_vertices, -1)
        new_index[kept] = np.arange(len(kept))
        eye_lo = new_index[ICT_LAYOUT.eyeball_left[0]]
        np.testing.assert_array_equal(shared["eyeball_vertex_range"], [eye_lo, len(kept)])
        np.testing.assert_array_equal(shared["iris_vertex_ranges"],
                                      [[new_index[lo], new_index[hi - 1] + 1] for lo, hi in
                                       (ICT_LAYOUT.iris_left, ICT_LAYOUT.iris_right)])
        assert len(shared["expression_names"]) == 53


# --- OBJ parsing ----------------------------------------------------------------------------------


def test_read_obj_formats_and_triangulation(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text("# comment\nv 0 0 0\nv 1 0 0\nv 1 1 0 0.5 0.5 0.5\nv 0 1 0\nv 0.5 1.5 0\nv 2 2 2\n"
                    "vt 0 0\nvt 1 0\nvt 1 1\nvn 0 0 1\ng part\ns off\n"
                    "f 1/1/1 2/2/1 3/3/1\n"  # v/vt/vn
                    "f 1//1 3//1 4//1\n"  # v//vn
                    "f -6 -5 -4 -3 -2\n"  # negative (relative) indices, a pentagon
                    "f 1 2 3 4 5 6\n")  # a hexagon
    mesh = read_obj(path)
    assert mesh.vertices.shape == (6, 3) and mesh.uv.shape == (3, 2)
    assert mesh.polygons == [[0, 1, 2], [0, 2, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]
    assert mesh.polygon_uvs[0] == [0, 1, 2] and mesh.polygon_uvs[1] is None
    tris, owner = triangulate(mesh.polygons)
    np.testing.assert_array_equal(tris, [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 3, 4],
                                         [0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]])
    np.testing.assert_array_equal(owner, [0, 1, 2, 2, 2, 3, 3, 3, 3])
    path.write_text("v 0 0 0\nv 1 0 0\nf 1 2 3\n")
    with pytest.raises(IctConvertError, match=r"m.obj, line 3: vertex index 3 outside the 2 defined"):
        read_obj(path)
    path.write_text("v 0 0 zero\n")
    with pytest.raises(IctConvertError, match="unreadable coordinates"):
        read_obj(path)


# --- the command ----------------------------------------------------------------------------------


def _layout_json(path: Path, layout: IctLayout) -> Path:
    data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in layout.__dict__.items()}
    path.write_text(json.dumps(data))
    return path


def test_cli_converts(clone, tmp_path, capsys):
    root, info = clone
    out = tmp_path / "head.npz"
    layout = _layout_json(tmp_path / "layout.json", info["layout"])
    assert cli_main(["convert-ict", str(root), "-o", str(out), "--layout", str(layout)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}: 429 vertices, 756 triangles, 3 identity and 3 expression components" in captured.out
    assert "identity 3/3" in captured.err  # progress goes to stderr
    assert load_ict(out).num_vertices == 429
    # an existing output is kept unless --force
    before = out.read_bytes()
    assert cli_main(["convert-ict", str(root), "-o", str(out), "--layout", str(layout), "-q"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert cli_main(["convert-ict", str(root), "-o", str(out), "--layout", str(layout), "-q", "--force"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("case", ["missing", "not_a_clone", "a_file", "wrong_version", "bad_layout"])
def test_cli_errors(clone, tmp_path, capsys, case):
    root, info = clone
    layout = _layout_json(tmp_path / "layout.json", info["layout"])
    args = {
        "missing": ([str(tmp_path / "nowhere")], "does not exist; pass the folder of your ICT-FaceKit clone"),
        "not_a_clone": ([str(tmp_path)], "is not an ICT-FaceKit clone: FaceXModel/generic_neutral_mesh.obj"),
        "a_file": ([str(layout)], "is a file"),
        "wrong_version": ([str(root)], "has 438 vertices; the layout expects 26719"),
        "bad_layout": ([str(root), "--layout", str(tmp_path / "nope.json")], "cannot read the layout file"),
    }[case]
    if case != "wrong_version" and case != "bad_layout":
        args[0].extend(["--layout", str(layout)])
    out = tmp_path / "out.npz"
    code = cli_main(["convert-ict", *args[0], "-o", str(out)])
    assert code == 2  # bad input (README's exit codes)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # progress lines may come before the error
    assert last.startswith("flamecam convert-ict: error: ") and args[1] in last
    assert "Traceback" not in err
    assert not out.exists()


def test_cli_is_registered_and_keeps_imports_light():
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = ("import sys; from app.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'core.ict_convert') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert "core.ict_convert" not in out  # heavy imports stay inside run()
    from app.cli import build_parser  # noqa: PLC0415

    args = build_parser().parse_args(["convert-ict", "x", "-o", "y.npz"])
    assert args.clone == "x" and args.output == "y.npz" and args._run.__module__ == "app.cmd_convert_ict"
