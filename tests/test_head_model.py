"""Head-model loading (FLAME .pkl, ICT .npz, flamecam .npz) and the torch forward pass.

FLAME itself needs registration, so FLAME files here are built by ``tests/fixtures_flame.py``
in FLAME's layout; the ICT-FaceKit head comes from ../shared (those tests skip without it).
The references are independent where it matters: smplx's own ``FLAME`` class reading its own
copy of the fixture, a direct smplx ``lbs`` call, and scipy's rotations.
"""
from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation
from smplx.lbs import lbs

from core.camera import model_to_camera
from core.head_model import HeadModel, HeadModelLayer, flame_translation
from core.model_io import (FLAME_SHAPE_COLUMNS, ModelFileError, load_flame, load_flamecam_npz, load_head_model,
                           load_ict, save_head_model)
from tests.fixtures_flame import FLAME_VARIANTS, flame_like_arrays, write_flame_pickle, write_flame_variant

FLAME_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
FLIP = np.diag([1.0, -1.0, -1.0])
# Where a head rotation is involved, float64 results agree to ~1e-9 m, not 1e-15: smplx's Rodrigues adds
# 1e-8 to the axis-angle before normalising, and float32 skinning weights sum to 1 only to ~1e-7 (which
# scales FLAME's pivot term). A wrong pivot or axis would be off by millimetres.
ROTATION_ATOL_M = 1e-8


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flame_arrays() -> dict:
    return flame_like_arrays(n_vert=60, seed=3)


@pytest.fixture(scope="module")
def flame_pkl(tmp_path_factory, flame_arrays) -> Path:
    path = tmp_path_factory.mktemp("flame") / "generic_model.pkl"
    write_flame_variant(path, "2020", flame_arrays)
    return path


@pytest.fixture(scope="module")
def flame_head(flame_pkl) -> HeadModel:
    return load_flame(flame_pkl)


def _random_params(head: HeadModel, batch: int, seed: int, dtype=torch.float64, pose_scale: float = 0.3) -> dict:
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    return {"shape": rnd(batch, head.num_shape), "expr": rnd(batch, head.num_expr),
            "neck_pose": rnd(batch, 3, scale=pose_scale), "jaw_pose": rnd(batch, 3, scale=pose_scale),
            "eyes_pose": rnd(batch, 6, scale=pose_scale)}


def _rigid_copy(head: HeadModel) -> HeadModel:
    """The same surface and bases without joints: a rigid model."""
    return HeadModel(name="rigid", kind="npz", v_template=head.v_template, faces=head.faces,
                     shapedirs=head.shapedirs, exprdirs=head.exprdirs, head_center=head.head_center)


def _direct_lbs(head: HeadModel, params: dict, root_pose: torch.Tensor | None = None) -> torch.Tensor:
    """smplx ``lbs`` on the full model arrays, FLAME's joint order (global, neck, jaw, eyes)."""
    f64 = dict(dtype=torch.float64)
    batch = params["shape"].shape[0]
    root = torch.zeros(batch, 3, **f64) if root_pose is None else root_pose
    pose = torch.cat([root, params["neck_pose"], params["jaw_pose"], params["eyes_pose"]], dim=1)
    dirs = np.concatenate([head.shapedirs, head.exprdirs], axis=2)
    verts, _ = lbs(torch.cat([params["shape"], params["expr"]], dim=1), pose,
                   torch.as_tensor(head.v_template, **f64), torch.as_tensor(dirs, **f64),
                   torch.as_tensor(head.posedirs, **f64), torch.as_tensor(head.j_regressor, **f64),
                   torch.as_tensor(head.parents), torch.as_tensor(head.lbs_weights, **f64))
    return verts


# --- FLAME files ------------------------------------------------------------------------------


def _assert_matches_source(head: HeadModel, arrays: dict, num_shape: int = 100, num_expr: int = 50) -> None:
    """The loaded model holds the source arrays (float32), converted to smplx's layout."""
    j_reg = arrays["J_regressor"].toarray()
    tol = dict(rtol=1e-6, atol=1e-8)
    assert head.kind == "flame" and head.is_articulated
    assert (head.num_shape, head.num_expr) == (num_shape, num_expr)
    np.testing.assert_allclose(head.v_template, arrays["v_template"], **tol)
    np.testing.assert_allclose(head.shapedirs, arrays["shapedirs"][:, :, :num_shape], **tol)
    np.testing.assert_allclose(head.exprdirs, arrays["shapedirs"][:, :, 300:300 + num_expr], **tol)
    # smplx layout: posedirs (36, V*3) with row p holding vertex v's xyz at columns 3v..3v+2
    np.testing.assert_allclose(head.posedirs.reshape(36, -1, 3), arrays["posedirs"].transpose(2, 0, 1), **tol)
    np.testing.assert_allclose(head.j_regressor, j_reg, **tol)
    np.testing.assert_allclose(head.lbs_weights, arrays["weights"], **tol)
    np.testing.assert_array_equal(head.faces, arrays["f"].astype(np.int64))
    assert head.faces.dtype == np.int32
    np.testing.assert_array_equal(head.parents, [-1, 0, 1, 1, 1])
    assert head.joint_names == ("global", "neck", "jaw", "left_eye", "right_eye")
    np.testing.assert_allclose(head.head_center, (j_reg[3:5] @ arrays["v_template"]).mean(0), rtol=1e-5, atol=1e-7)
    assert len(head.source_sha256) == 64


@pytest.mark.parametrize("variant", FLAME_VARIANTS)
def test_flame_variants_load_with_default_component_counts(tmp_path, flame_arrays, variant):
    path = tmp_path / f"flame_{variant}.pkl"
    write_flame_variant(path, variant, flame_arrays)
    if variant == "2020":
        assert b"chumpy.ch\nCh" in path.read_bytes()  # the fixture really holds chumpy objects
    _assert_matches_source(load_flame(path), flame_arrays)
    _assert_matches_source(load_head_model(path), flame_arrays)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_flame_pickle_any_protocol(tmp_path, flame_arrays, protocol):
    path = tmp_path / "model.pkl"
    write_flame_pickle(path, flame_arrays, protocol=protocol)
    if protocol < 2:  # Python-2-era paths: instances rebuilt through copy_reg._reconstructor
        assert b"copy_reg\n_reconstructor" in path.read_bytes()
    _assert_matches_source(load_flame(path), flame_arrays)


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_flame_pickle_written_by_python2(tmp_path, flame_arrays, protocol):
    """Python 2 wrote array bytes as ``str`` (decoded with latin1 on load) and numpy.core paths."""
    path = tmp_path / "model.pkl"
    write_flame_pickle(path, flame_arrays, protocol=protocol, python2=True)
    data = path.read_bytes()
    assert b"numpy.core.multiarray\n_reconstruct" in data and b"_codecs" not in data
    if protocol < 2:
        assert b"copy_reg\n_reconstructor" in data and b"__builtin__\nobject" in data
    _assert_matches_source(load_flame(path), flame_arrays)


def test_protocol0_pickle_dispatched_by_content_not_suffix(tmp_path, flame_arrays):
    for protocol in (0, 1, 2):
        path = tmp_path / f"flame_p{protocol}.model"
        write_flame_pickle(path, flame_arrays, protocol=protocol, python2=True)
        assert load_head_model(path).kind == "flame"


def test_flame_component_counts_are_configurable(flame_pkl, flame_arrays):
    head = load_flame(flame_pkl, num_shape=20, num_expr=7)
    _assert_matches_source(head, flame_arrays, 20, 7)
    head = load_head_model(flame_pkl, num_shape=300, num_expr=100)
    _assert_matches_source(head, flame_arrays, 300, 100)


@pytest.mark.parametrize("num_shape, num_expr", [(301, 50), (100, 101), (0, 50)])
def test_flame_asking_for_more_components_than_the_file_has(flame_pkl, num_shape, num_expr):
    with pytest.raises(ModelFileError, match=r"asked for .* the file holds 300 / 100"):
        load_head_model(flame_pkl, num_shape=num_shape, num_expr=num_expr)


def test_flame_file_with_fewer_expressions_than_the_default(tmp_path):
    arrays = flame_like_arrays(n_vert=30, n_expr=20)
    path = tmp_path / "small.pkl"
    write_flame_pickle(path, arrays)
    with pytest.raises(ModelFileError, match=r"50 expression .* holds 300 / 20"):
        load_flame(path)
    assert load_flame(path, num_expr=20).num_expr == 20


def test_flame_masks_beside_the_model_become_regions(tmp_path, flame_arrays):
    path = tmp_path / "generic_model.pkl"
    write_flame_pickle(path, flame_arrays)
    masks = {"face": np.arange(10, 20), "left_eyeball": np.array([3, 4, 5])}
    write_flame_pickle(tmp_path / "FLAME_masks.pkl", masks, chumpy_keys=())
    head = load_flame(path)
    np.testing.assert_array_equal(head.regions["face"], np.arange(10, 20))
    np.testing.assert_array_equal(head.regions["left_eyeball"], [3, 4, 5])
    write_flame_pickle(tmp_path / "FLAME_masks.pkl", {"face": np.array([0, 60])}, chumpy_keys=())
    with pytest.raises(ModelFileError, match="region 'face' indexes outside"):
        load_flame(path)


# --- malicious and wrong files --------------------------------------------------------------------


class _Payload:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict:
    return {
        "os.system": _Payload(os.system, (f"touch {marker}",)),
        "subprocess.Popen": _Payload(subprocess.Popen, (["touch", str(marker)],)),
        "builtins.eval": _Payload(eval, (f"open({str(marker)!r}, 'w').write('pwned')",)),
        "builtins.exec": _Payload(exec, (f"open({str(marker)!r}, 'w').write('pwned')",)),
    }


def test_payload_technique_really_runs_code_with_plain_pickle(tmp_path):
    """Control: the eval payload does run under a plain unpickler, so the refusals below mean something."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_payloads(marker)["builtins.eval"], protocol=2))
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.eval", "builtins.exec"])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, flame_arrays, name, protocol):
    marker = tmp_path / "pwned"
    data = dict(flame_arrays)
    data["bs_style"] = _payloads(marker)[name]  # hidden among genuine FLAME arrays
    path = tmp_path / "generic_model.pkl"
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    # the module as pickled: os.system is posix.system; protocol 0 writes Python 2 names (__builtin__, commands)
    refused = rf"refusing to load [\w.]+\.{_payloads(marker)[name].func.__name__}: "
    for loader in (load_flame, load_head_model):
        with pytest.raises(ModelFileError, match=refused):
            loader(path)
    assert not marker.exists()


def test_hand_written_python2_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(ModelFileError, match=r"refusing to load os\.system"):
        load_head_model(path)
    assert not marker.exists()


def test_only_the_latin1_codec_is_allowed(tmp_path):
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00rot_13\x86R.")
    with pytest.raises(ModelFileError, match="refusing codec 'rot_13'"):
        load_flame(path)


def test_dict_without_flame_keys_names_them(tmp_path):
    path = tmp_path / "other.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"vertices": np.zeros((3, 3)), "f": np.zeros((1, 3), int)}, fh, protocol=2)
    with pytest.raises(ModelFileError) as info:
        load_flame(path)
    message = str(info.value)
    assert "not a FLAME model" in message and "flame.is.tue.mpg.de" in message
    for key in FLAME_KEYS[:-1]:
        assert key in message
    assert "missing v_template, shapedirs, posedirs, J_regressor, weights, kintree_table." in message  # not "f"


def test_list_pickle_is_not_a_flame_model(tmp_path):
    path = tmp_path / "list.pkl"
    with open(path, "wb") as fh:
        pickle.dump([np.zeros(3), 1, "x"], fh, protocol=2)
    with pytest.raises(ModelFileError, match=r"holds a list, not a dict with v_template, shapedirs"):
        load_head_model(path)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_truncated_pickle_gives_model_file_error(tmp_path, flame_pkl, fraction):
    data = flame_pkl.read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError, match="cut.pkl"):
        load_head_model(path)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # one error line for people, no numpy warning before it
def test_corrupt_pickle_gives_model_file_error(tmp_path, flame_pkl):
    rng = np.random.default_rng(0)
    data = np.frombuffer(flame_pkl.read_bytes(), dtype=np.uint8)
    failures = 0
    # Overwrite random bytes; whatever breaks must surface as a ModelFileError. Corrupt dtype states
    # used to reach numpy unchecked and crash the interpreter, so run many trials in this process.
    for trial in range(300):
        corrupt = data.copy()
        idx = rng.integers(2, len(data), 40)
        corrupt[idx] = rng.integers(0, 256, len(idx))
        path = tmp_path / f"corrupt{trial}.pkl"
        path.write_bytes(corrupt.tobytes())
        try:
            load_flame(path).validate()  # if it loads at all, it is a consistent model
        except ModelFileError:
            failures += 1
    assert failures > 0  # the corruption did hit the opcode stream at least once
    path = tmp_path / "noise.pkl"
    path.write_bytes(b"\x80\x02" + rng.integers(0, 256, 5000).astype(np.uint8).tobytes())
    with pytest.raises(ModelFileError, match="noise.pkl"):
        load_flame(path)


def _dump_to(path: Path, obj, protocol: int = 2) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_numpy_payloads_are_checked_before_numpy_sees_them(tmp_path, flame_arrays, protocol):
    """Arrays are rebuilt from checked raw bytes: no object arrays, no structured or odd dtypes."""
    objects = dict(flame_arrays, v_template=np.array([object(), 1], dtype=object))
    with pytest.raises(ModelFileError, match="object arrays are not allowed|refusing"):
        load_flame(_dump_to(tmp_path / "objects.pkl", objects, protocol))
    structured = dict(flame_arrays, J=np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]))
    with pytest.raises(ModelFileError, match="refusing numpy dtype"):
        load_flame(_dump_to(tmp_path / "structured.pkl", structured, protocol))
    dates = dict(flame_arrays, J=np.zeros(3, dtype="datetime64[s]"))
    with pytest.raises(ModelFileError, match="refusing numpy dtype"):
        load_flame(_dump_to(tmp_path / "dates.pkl", dates, protocol))
    # numpy scalars, big-endian and Fortran-ordered arrays are plain data and load
    extras = dict(flame_arrays, scale=np.float32(2.5), weights=np.asfortranarray(flame_arrays["weights"]),
                  v_template=flame_arrays["v_template"].astype(">f8"))
    _assert_matches_source(load_flame(_dump_to(tmp_path / "extras.pkl", extras, protocol)), flame_arrays)


def test_array_data_that_does_not_fill_its_shape_is_refused(tmp_path):
    # numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') then BUILD (1, (1000,), dtype f8, False, 8 bytes)
    payload = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
               b"(K\x01M\xe8\x03\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R"
               b"(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89C\x08" + bytes(8) + b"tb.")
    path = tmp_path / "short.pkl"
    path.write_bytes(payload)
    assert pickle.loads(payload.replace(b"M\xe8\x03", b"K\x01")).shape == (1,)  # the payload is well-formed
    with pytest.raises(ModelFileError, match=r"8 bytes does not fill shape \(1000,\)"):
        load_flame(path)


def test_sparse_indices_outside_the_matrix_are_refused(tmp_path, flame_arrays):
    bad = flame_arrays["J_regressor"].copy()
    bad.indices = bad.indices.copy()
    bad.indices[3] = 10_000  # a row far outside the 5 joints
    with pytest.raises(ModelFileError, match="J_regressor: unreadable sparse matrix"):
        load_flame(_dump_to(tmp_path / "sparse.pkl", dict(flame_arrays, J_regressor=bad)))
    for fmt in ("csr", "coo"):
        good = dict(flame_arrays, J_regressor=flame_arrays["J_regressor"].asformat(fmt))
        np.testing.assert_allclose(load_flame(_dump_to(tmp_path / f"{fmt}.pkl", good)).j_regressor,
                                   flame_arrays["J_regressor"].toarray(), rtol=1e-6)


def test_wrong_flame_array_shapes_are_named(tmp_path, flame_arrays):
    arrays = dict(flame_arrays, posedirs=flame_arrays["posedirs"][:, :, :27])
    write_flame_pickle(tmp_path / "a.pkl", arrays)
    with pytest.raises(ModelFileError, match=r"posedirs \(60, 3, 27\)"):
        load_flame(tmp_path / "a.pkl")
    arrays = dict(flame_arrays, shapedirs=flame_arrays["shapedirs"][:, :, :300])
    write_flame_pickle(tmp_path / "b.pkl", arrays)
    with pytest.raises(ModelFileError, match="shapedirs"):
        load_flame(tmp_path / "b.pkl")


def test_missing_path_and_folder_give_clear_errors(tmp_path):
    for loader in (load_flame, load_head_model, load_ict, load_flamecam_npz):
        with pytest.raises(ModelFileError, match="not found"):
            loader(tmp_path / "nope.pkl")
        with pytest.raises(ModelFileError, match="folder"):
            loader(tmp_path)


def test_unknown_file_type(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("hello")
    with pytest.raises(ModelFileError, match="unknown model file type"):
        load_head_model(path)


# --- forward pass ---------------------------------------------------------------------------------


def test_forward_equals_direct_lbs_with_zero_root(flame_head):
    layer = HeadModelLayer(flame_head, dtype=torch.float64)
    params = _random_params(flame_head, batch=3, seed=1)
    ours = layer(**params)
    ref = _direct_lbs(flame_head, params)
    assert ours.shape == (3, flame_head.num_vertices, 3)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    # the poses matter: without them the vertices differ by far more than the tolerance
    still = layer(params["shape"], params["expr"])
    assert (still - ref).abs().max() > 1e-3


def test_forward_rotation_is_about_the_origin(flame_head):
    layer = HeadModelLayer(flame_head, dtype=torch.float64)
    params = _random_params(flame_head, batch=3, seed=2)
    rotation = torch.tensor([[0.3, -0.5, 0.2], [0.0, 0.0, 0.0], [-1.2, 0.4, 2.5]], dtype=torch.float64)
    ours = layer(**params, rotation=rotation).numpy()
    unrotated = _direct_lbs(flame_head, params).numpy()
    expected = np.einsum("bij,bvj->bvi", Rotation.from_rotvec(rotation.numpy()).as_matrix(), unrotated)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ROTATION_ATOL_M)


def test_forward_equals_smplx_flame_class(tmp_path, flame_arrays, flame_head):
    """smplx's own FLAME, reading its own copy of the model, agrees with our loader + layer."""
    import smplx  # noqa: PLC0415

    # smplx reads float64; give it the float32-rounded values our loader keeps, so only the maths differs
    rounded = {k: (v.astype(np.float32).astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float64
                   else v) for k, v in flame_arrays.items()}
    rounded["J_regressor"] = scipy.sparse.csc_matrix(flame_arrays["J_regressor"].toarray().astype(np.float32)
                                                     .astype(np.float64))
    with open(tmp_path / "FLAME_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(rounded, fh, protocol=2)
    with open(tmp_path / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": np.array([0, 1]), "lmk_b_coords": np.full((2, 3), 1 / 3)}, fh)
    batch = 2
    flame = smplx.FLAME(model_path=str(tmp_path), num_betas=100, num_expression_coeffs=50, batch_size=batch,
                        dtype=torch.float64)
    params = _random_params(flame_head, batch=batch, seed=4)
    rotation = torch.tensor([[0.2, 0.7, -0.1], [-0.4, -0.3, 0.6]], dtype=torch.float64)
    translation_cam = np.array([[0.02, -0.01, 0.6], [-0.05, 0.03, 0.35]])
    layer = HeadModelLayer(flame_head, dtype=torch.float64)

    with torch.no_grad():
        out = flame(betas=params["shape"], expression=params["expr"], global_orient=torch.zeros(batch, 3,
                    dtype=torch.float64), neck_pose=params["neck_pose"], jaw_pose=params["jaw_pose"],
                    leye_pose=params["eyes_pose"][:, :3], reye_pose=params["eyes_pose"][:, 3:])
        torch.testing.assert_close(layer(**params), out.vertices, rtol=0, atol=1e-10)

        # FLAME rotates about joint 0; flame_translation makes it land where flamecam puts it.
        transl = flame_translation(flame_head, rotation.numpy(), translation_cam, params["shape"].numpy(),
                                   params["expr"].numpy())
        out = flame(betas=params["shape"], expression=params["expr"], global_orient=rotation,
                    neck_pose=params["neck_pose"], jaw_pose=params["jaw_pose"], leye_pose=params["eyes_pose"][:, :3],
                    reye_pose=params["eyes_pose"][:, 3:], transl=torch.as_tensor(transl))
        flame_cam = out.vertices.numpy() @ FLIP.T
        ours_cam = model_to_camera(layer(**params, rotation=rotation), torch.as_tensor(translation_cam)).numpy()
    np.testing.assert_allclose(ours_cam, flame_cam, rtol=0, atol=ROTATION_ATOL_M)


def test_flame_translation_against_direct_lbs_with_global_orient(flame_head):
    """diag(1,-1,-1)·lbs(global_orient=R about J0) + transl' equals flamecam's camera-space vertices."""
    params = _random_params(flame_head, batch=4, seed=5)
    params["expr"] = params["expr"] * 3  # a large expression moves J0 noticeably
    rotation = torch.as_tensor(Rotation.random(4, random_state=7).as_rotvec())
    translation_cam = np.random.default_rng(8).normal(0, 0.1, (4, 3)) + [0, 0, 0.5]
    shape, expr = params["shape"].numpy(), params["expr"].numpy()
    flame_verts = _direct_lbs(flame_head, params, root_pose=rotation).numpy()
    transl = flame_translation(flame_head, rotation.numpy(), translation_cam, shape, expr)
    flame_cam = (flame_verts + transl[:, None]) @ FLIP.T
    layer = HeadModelLayer(flame_head, dtype=torch.float64)
    ours_cam = model_to_camera(layer(**params, rotation=rotation), torch.as_tensor(translation_cam)).numpy()
    np.testing.assert_allclose(ours_cam, flame_cam, rtol=0, atol=ROTATION_ATOL_M)
    # the expression does move joint 0: ignoring it misplaces the head by far more than the tolerance
    transl_no_expr = flame_translation(flame_head, rotation.numpy(), translation_cam, shape)
    assert np.abs(transl_no_expr - transl).max() > 1e3 * ROTATION_ATOL_M
    # one sample at a time (no batch dimension) gives the same answer
    single = flame_translation(flame_head, rotation[1].numpy(), translation_cam[1], shape[1], expr[1])
    np.testing.assert_allclose(single, transl[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_subset_fast_path_equals_full_forward(flame_head, dtype, tol):
    full = HeadModelLayer(flame_head, dtype=dtype)
    ids = np.random.default_rng(0).choice(flame_head.num_vertices, 17, replace=False)
    sub = HeadModelLayer(flame_head, vertex_ids=ids, dtype=dtype)
    sub_from_method = full.subset(ids)
    for seed in range(5):
        params = _random_params(flame_head, batch=4, seed=10 + seed, dtype=dtype, pose_scale=0.5)
        rotation = torch.as_tensor(Rotation.random(4, random_state=seed).as_rotvec()).to(dtype)
        want = full(**params, rotation=rotation)[:, ids]
        got = sub(**params, rotation=rotation)
        assert got.shape == (4, 17, 3)
        assert (got - want).abs().max().item() < tol
        assert (sub_from_method(**params, rotation=rotation) - want).abs().max().item() < tol


@pytest.mark.parametrize("articulated", [True, False])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-6), (torch.float64, 1e-12)])
def test_an_identity_blended_in_once_poses_the_same_vertices(flame_head, articulated, dtype, tol):
    """forward(identity=identity_template(shape)) equals forward(shape): what a mesh posed every frame
    uses while its identity stays (the pipeline's overlay mesh)."""
    head = flame_head if articulated else _rigid_copy(flame_head)
    layer = HeadModelLayer(head, dtype=dtype)
    for seed in range(3):
        params = _random_params(flame_head, batch=1, seed=40 + seed, dtype=dtype, pose_scale=0.5)
        rotation = torch.as_tensor(Rotation.random(1, random_state=seed).as_rotvec()).to(dtype)
        want = layer(**params, rotation=rotation)
        identity = layer.identity_template(params["shape"][0])
        got = layer(None, params["expr"], rotation, params["neck_pose"], params["jaw_pose"], params["eyes_pose"],
                    identity=identity)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() < tol
        # a shorter shape vector pads with zeros, as forward() does
        short = layer.identity_template(params["shape"][0, :3])
        padded = torch.zeros_like(params["shape"][0])
        padded[:3] = params["shape"][0, :3]
        torch.testing.assert_close(short, layer.identity_template(padded), rtol=0, atol=0)


def test_gradients_flow_to_every_parameter():
    """torch.autograd.gradcheck in float64 on a tiny model (12 vertices, 4 shape, 3 expression)."""
    arrays = flame_like_arrays(n_vert=12, seed=11)
    arrays["shapedirs"] *= 20  # bases large enough that a wrong gradient shows above the tolerance
    arrays["posedirs"] *= 20
    tiny = _head_from_arrays(arrays).truncated(4, 3)
    layer = HeadModelLayer(tiny, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    inputs = tuple(torch.randn(2, n, generator=gen, dtype=torch.float64) * s for n, s in
                   ((4, 1.0), (3, 1.0), (3, 0.4), (3, 0.3), (3, 0.3), (6, 0.3)))
    for x in inputs:
        x.requires_grad_(True)

    def fn(shape, expr, rotation, neck, jaw, eyes):
        return layer(shape, expr, rotation=rotation, neck_pose=neck, jaw_pose=jaw, eyes_pose=eyes)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
    weights = torch.randn(2, tiny.num_vertices, 3, generator=gen, dtype=torch.float64)
    (fn(*inputs) * weights).sum().backward()  # not a norm: rotations preserve those, hiding their gradient
    for name, x in zip(("shape", "expr", "rotation", "neck", "jaw", "eyes"), inputs):
        assert x.grad is not None and x.grad.abs().max() > 1e-6, name


def _head_from_arrays(arrays: dict) -> HeadModel:
    """A HeadModel straight from fixture arrays (bypassing the loader) for the tiny gradcheck model."""
    j_reg = arrays["J_regressor"].toarray()
    return HeadModel(
        name="tiny", kind="flame", v_template=arrays["v_template"].astype(np.float32),
        faces=arrays["f"].astype(np.int32),
        shapedirs=arrays["shapedirs"][:, :, :FLAME_SHAPE_COLUMNS].astype(np.float32),
        exprdirs=arrays["shapedirs"][:, :, FLAME_SHAPE_COLUMNS:].astype(np.float32),
        head_center=np.zeros(3, np.float32), joint_names=("global", "neck", "jaw", "left_eye", "right_eye"),
        j_regressor=j_reg.astype(np.float32), parents=np.array([-1, 0, 1, 1, 1]),
        lbs_weights=arrays["weights"].astype(np.float32),
        posedirs=arrays["posedirs"].reshape(-1, 36).T.astype(np.float32))


def test_batch_dimension(flame_head):
    layer = HeadModelLayer(flame_head, dtype=torch.float64)
    params = _random_params(flame_head, batch=5, seed=20)
    rotation = torch.as_tensor(Rotation.random(5, random_state=3).as_rotvec())
    batched = layer(**params, rotation=rotation)
    for b in range(5):
        single = layer(**{k: v[b:b + 1] for k, v in params.items()}, rotation=rotation[b:b + 1])
        torch.testing.assert_close(batched[b:b + 1], single, rtol=0, atol=1e-12)
    assert not torch.allclose(batched[0], batched[1])


def test_fewer_coefficients_are_zero_padded_and_too_many_rejected(flame_head):
    layer = HeadModelLayer(flame_head, dtype=torch.float64)
    params = _random_params(flame_head, batch=2, seed=21)
    short = dict(params, shape=params["shape"][:, :10], expr=params["expr"][:, :5])
    padded = dict(params, shape=torch.nn.functional.pad(short["shape"], (0, 90)),
                  expr=torch.nn.functional.pad(short["expr"], (0, 45)))
    torch.testing.assert_close(layer(**short), layer(**padded), rtol=0, atol=0)
    with pytest.raises(ValueError, match="got 101 coefficients, the model has 100"):
        layer(**dict(params, shape=torch.zeros(2, 101, dtype=torch.float64)))


def test_flame_round_trip_through_flamecam_npz(tmp_path, flame_head):
    path = tmp_path / "head.flamecam"  # any suffix: the file lands exactly where asked
    save_head_model(flame_head, path)
    assert path.exists() and not (tmp_path / "head.flamecam.npz").exists()
    loaded = load_head_model(path)
    _assert_same_model(loaded, flame_head)
    params = _random_params(flame_head, batch=2, seed=30)
    torch.testing.assert_close(HeadModelLayer(loaded, dtype=torch.float64)(**params),
                               HeadModelLayer(flame_head, dtype=torch.float64)(**params), rtol=0, atol=0)
    assert load_head_model(path, num_shape=10).num_shape == 10
    with pytest.raises(ModelFileError, match="asked for 101 shape components, the model holds 100"):
        load_head_model(path, num_shape=101)


def test_rigid_rotation_and_subset_on_built_model(flame_head):
    """A rigid model (no joints): vertices = template + dirs·coeffs, then rotated; subset exact."""
    rigid = _rigid_copy(flame_head)
    layer = HeadModelLayer(rigid, dtype=torch.float64)
    params = _random_params(flame_head, batch=2, seed=31)
    rotation = torch.tensor([[0.1, 0.2, 0.3], [0.0, -0.6, 0.0]], dtype=torch.float64)
    got = layer(**params, rotation=rotation).numpy()
    coeffs = np.concatenate([params["shape"].numpy(), params["expr"].numpy()], 1)
    dirs = np.concatenate([rigid.shapedirs, rigid.exprdirs], 2).astype(np.float64)
    unposed = rigid.v_template + np.einsum("vcs,bs->bvc", dirs, coeffs)
    want = np.einsum("bij,bvj->bvi", Rotation.from_rotvec(rotation.numpy()).as_matrix(), unposed)
    np.testing.assert_allclose(got, want, rtol=0, atol=ROTATION_ATOL_M)
    ids = np.array([5, 0, 59, 17])
    np.testing.assert_allclose(layer.subset(ids)(**params, rotation=rotation).numpy(), got[:, ids], rtol=0, atol=1e-15)
    centre = layer.posed_head_center(rotation).numpy()
    np.testing.assert_allclose(centre, Rotation.from_rotvec(rotation.numpy()).apply(rigid.head_center), atol=1e-7)


def test_validate_rejects_badly_ordered_parents(flame_head):
    bad = flame_head.truncated()
    bad.parents = np.array([-1, 0, 4, 1, 1])
    with pytest.raises(ValueError, match="parents"):
        bad.validate()


def test_truncated_copy_does_not_share_regions(flame_head):
    copy = flame_head.truncated(10, 5)
    copy.regions["extra"] = np.array([1])
    assert "extra" not in flame_head.regions


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_forward_on_cuda_matches_cpu(flame_head):
    params = _random_params(flame_head, batch=3, seed=40, dtype=torch.float32)
    rotation = torch.tensor([[0.1, 0.2, 0.3]] * 3)
    cpu = HeadModelLayer(flame_head)(**params, rotation=rotation)
    ids = np.arange(0, flame_head.num_vertices, 3)
    cuda_layer = HeadModelLayer(flame_head, device="cuda")
    cuda_params = {k: v.cuda() for k, v in params.items()}
    got = cuda_layer(**cuda_params, rotation=rotation.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), cpu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cuda_layer.subset(ids)(**cuda_params, rotation=rotation.cuda()).cpu(), cpu[:, ids],
                               rtol=1e-5, atol=1e-6)


# --- ICT-FaceKit ----------------------------------------------------------------------------------


def test_ict_model_layout(ict_model):
    assert ict_model.kind == "ict" and not ict_model.is_articulated
    assert ict_model.num_vertices == 14388
    assert (ict_model.num_shape, ict_model.num_expr) == (100, 53)
    assert len(ict_model.expression_names) == 53 and "jawOpen" in ict_model.expression_names
    assert ict_model.vertex_rgb is not None and ict_model.vertex_rgb.shape == (14388, 3)
    assert ict_model.regions["lmk68"].shape == (68,)
    assert ict_model.shapedirs.dtype == np.float32
    # metres: a head is 10-30 cm across, not 10-30 units of centimetres
    extent = ict_model.v_template.max(0) - ict_model.v_template.min(0)
    assert 0.1 < extent[0] < 0.3 and 0.1 < extent[1] < 0.5


def test_ict_jaw_open_moves_the_chin_down(ict_model):
    jaw = ict_model.expression_names.index("jawOpen")
    chin, nose_bridge = ict_model.regions["lmk68"][8], ict_model.regions["lmk68"][27]
    layer = HeadModelLayer(ict_model, vertex_ids=np.array([chin, nose_bridge]))
    expr = torch.zeros(1, ict_model.num_expr)
    neutral = layer(torch.zeros(1, 100), expr)
    expr[0, jaw] = 1.0
    opened = layer(torch.zeros(1, 100), expr)
    moved = (opened - neutral)[0]
    assert moved[0, 1] < -0.01  # the chin drops by more than a centimetre (+y is up)
    assert moved[1].abs().max() < 0.001  # the nose bridge stays put


def test_ict_head_center_lies_between_the_eyeballs(ict_model):
    eyes = ict_model.regions["eyeballs"]
    half = len(eyes) // 2
    left, right = ict_model.v_template[eyes[:half]].mean(0), ict_model.v_template[eyes[half:]].mean(0)
    centre = ict_model.head_center
    assert min(left[0], right[0]) < centre[0] < max(left[0], right[0])
    assert np.linalg.norm(left - right) > 0.04  # two eyes ~6 cm apart, not one
    np.testing.assert_allclose(centre, (left + right) / 2, atol=1e-4)
    assert abs(centre[0]) < 1e-3  # on the mid-sagittal plane


def test_ict_round_trip_is_exact(tmp_path, ict_model):
    path = tmp_path / "ict.npz"
    save_head_model(ict_model, path)
    _assert_same_model(load_head_model(path), ict_model)


def _assert_same_model(loaded: HeadModel, original: HeadModel) -> None:
    for name in ("v_template", "faces", "shapedirs", "exprdirs", "head_center", "vertex_rgb", "j_regressor",
                 "parents", "lbs_weights", "posedirs"):
        a, b = getattr(loaded, name), getattr(original, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert (loaded.name, loaded.kind, loaded.description, loaded.is_coarse) == \
        (original.name, original.kind, original.description, original.is_coarse)
    assert loaded.expression_names == original.expression_names
    assert loaded.joint_names == original.joint_names
    assert loaded.regions.keys() == original.regions.keys()
    for key in original.regions:
        np.testing.assert_array_equal(loaded.regions[key], original.regions[key])


def test_load_head_model_dispatches_by_content(tmp_path, ict_path, ict_model, flame_pkl):
    assert load_head_model(ict_path).kind == "ict"
    saved = tmp_path / "saved.bin"
    save_head_model(ict_model.truncated(5, 4), saved)
    from_saved = load_head_model(saved)
    assert (from_saved.num_shape, from_saved.num_expr) == (5, 4)  # the flamecam loader, not the ICT one
    _assert_same_model(from_saved, load_flamecam_npz(saved))
    assert load_head_model(flame_pkl).kind == "flame"
    assert load_head_model(ict_path, num_shape=10, num_expr=3).num_shape == 10
    with pytest.raises(ModelFileError, match="asked for 101 shape components, the model holds 100"):
        load_head_model(ict_path, num_shape=101)


def test_random_npz_is_rejected_clearly(tmp_path):
    path = tmp_path / "random.npz"
    np.savez(path, weights=np.zeros(3), bias=np.ones(2))
    with pytest.raises(ModelFileError, match=r"neither a flamecam head model nor the ICT-FaceKit layout .*bias"):
        load_head_model(path)
    with pytest.raises(ModelFileError, match="missing v_template, faces"):
        load_ict(path)
    with pytest.raises(ModelFileError, match="not a flamecam head-model"):
        load_flamecam_npz(path)


def test_corrupt_npz_is_rejected_clearly(tmp_path, ict_path):
    cut = tmp_path / "cut.npz"
    cut.write_bytes(ict_path.read_bytes()[:4096])
    with pytest.raises(ModelFileError, match="unreadable .npz"):
        load_head_model(cut)
    with pytest.raises(ModelFileError, match="unreadable .npz"):
        load_ict(cut)
    objects = tmp_path / "objects.npz"
    np.savez(objects, v_template=np.array([{"a": 1}], dtype=object), exprdirs=np.zeros(1),
             eyeball_vertex_range=np.zeros(2))
    with pytest.raises(ModelFileError, match="unreadable .npz"):
        load_head_model(objects)


def test_ict_subset_fast_path_equals_full(ict_model):
    ids = ict_model.regions["lmk68"]
    full, sub = HeadModelLayer(ict_model), HeadModelLayer(ict_model, vertex_ids=ids)
    gen = torch.Generator().manual_seed(0)
    shape, expr = torch.randn(2, 100, generator=gen), torch.rand(2, 53, generator=gen)
    rotation = torch.tensor([[0.1, -0.3, 0.05], [0.0, 0.8, 0.0]])
    want = full(shape, expr, rotation=rotation)[:, ids]
    assert (sub(shape, expr, rotation=rotation) - want).abs().max() < 1e-6
