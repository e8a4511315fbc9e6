"""glTF 2.0 and smplx-FLAME exports of a recording, checked by what reads them: an independent glTF
evaluator here, Khronos's validator, real Blender (bpy) and the README's smplx snippet; plus the one
export entry point (``core.export.export_recording``) with progress and cancel."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
from scipy.spatial.transform import Rotation

from core.recording import FrameRecord, RecordingMeta, RecordingWriter, load

REPO = Path(__file__).resolve().parents[1]
VALIDATOR = REPO / ".venv" / "node" / "node_modules" / "gltf-validator"
BLENDER_PYTHON = Path(os.environ.get("FLAMECAM_BLENDER_PYTHON", REPO / ".venv" / "blender" / "bin" / "python"))
S, E, N, FPS = 20, 10, 30, 25.0
HIDDEN = (5, 6)  # frames written without a pose (no face)
IDENTITY_CHANGE = 10


@pytest.fixture(scope="module")
def flame_model(tmp_path_factory):
    from core.model_io import load_head_model
    from tests.fixtures_flame import flame_like_arrays, write_flame_variant

    path = tmp_path_factory.mktemp("flame") / "generic_model.pkl"
    write_flame_variant(path, "2023_open", flame_like_arrays(n_vert=60))
    return path, load_head_model(path, num_shape=S, num_expr=E)


def write_take(path, head, model_path, frames=N, seed=0, width=640, height=480):
    """A take with random expressions and poses, the identity refined at IDENTITY_CHANGE, HIDDEN frames
    without a pose, a focal length that changes every frame, the head ~0.5 m in front of the camera."""
    rng = np.random.default_rng(seed)
    meta = RecordingMeta.for_model(head, model_path, width, height, source="test", frame_rate_hz=FPS)
    with RecordingWriter(path, meta) as writer:
        for i in range(frames):
            if i in (0, IDENTITY_CHANGE):
                writer.write_identity(i, rng.normal(0, 1, head.num_shape))
            frame = FrameRecord(
                frame_index=i, timestamp_s=i / FPS, expr=rng.normal(0, 1.2, head.num_expr),
                rotation=rng.normal(0, 0.25, 3), translation=np.array([0.03, -0.02, 0.5]) + rng.normal(0, 0.02, 3),
                fx=800 + 3 * i, fy=800 + 3 * i, cx=width / 2, cy=height / 2, jaw_pose=rng.normal(0, 0.15, 3),
                neck_pose=rng.normal(0, 0.15, 3), eyes_pose=rng.normal(0, 0.1, 6), focal_state="estimating",
                focal_sigma_px=40.0, rho_per_m=2.0)
            if i in HIDDEN:
                frame.rotation, frame.tracking_state = np.full(3, np.nan), "no_face"
            writer.write_frame(frame)
    return path


@pytest.fixture(scope="module")
def flame_take(tmp_path_factory, flame_model):
    model_path, head = flame_model
    return write_take(tmp_path_factory.mktemp("take") / "take.fcrec", head, model_path), head


@pytest.fixture(scope="module")
def flame_glb(tmp_path_factory, flame_take):
    from app.cli import main

    target = tmp_path_factory.mktemp("glb") / "take.glb"
    assert main(["export", str(flame_take[0]), "--gltf", str(target)]) == 0
    return target


@pytest.fixture(scope="module")
def rigid_take(tmp_path_factory, builtin_model):
    return write_take(tmp_path_factory.mktemp("rigid") / "rigid.fcrec", builtin_model, "builtin", frames=12), \
        builtin_model


def reference_vertices(rec_path, head, last_identity=True):
    """(N, V, 3) camera-space vertices from core.export (with the last identity on every frame, as the glTF)."""
    from core.export import mesh_batches

    rec = load(rec_path)
    if last_identity:
        rec = dataclasses.replace(rec, shape_per_frame=np.broadcast_to(rec.shape, rec.shape_per_frame.shape).copy())
    out = np.full((len(rec), head.num_vertices, 3), np.nan, np.float32)
    for idx, verts in mesh_batches(rec, head):
        out[idx] = verts
    return out


# --- an independent glTF evaluator (the spec's formulas, nothing from core.export_gltf) -----------------------


class GltfScene:
    def __init__(self, path):
        self.gltf = gl.GLTF2.load(str(path))
        self.blob = self.gltf.binary_blob()

    def read(self, index):
        acc = self.gltf.accessors[index]
        view = self.gltf.bufferViews[acc.bufferView]
        dtype = {gl.FLOAT: "<f4", gl.UNSIGNED_BYTE: "u1", gl.UNSIGNED_SHORT: "<u2", gl.UNSIGNED_INT: "<u4"}[
            acc.componentType]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
        data = np.frombuffer(self.blob, dtype, acc.count * width, view.byteOffset + (acc.byteOffset or 0))
        return data.reshape(acc.count, width).astype(np.float64)

    def channels(self):
        anim = self.gltf.animations[0]
        for ch in anim.channels:
            sampler = anim.samplers[ch.sampler]
            yield ch.target, sampler.interpolation, self.read(sampler.input)[:, 0], self.read(sampler.output)

    def world_vertices(self, key: int) -> np.ndarray:
        """World positions of the mesh at animation key ``key`` (morph targets, then skin or node transform)."""
        g = self.gltf
        trs = {i: [np.array(n.translation or [0.0, 0, 0]), np.array(n.rotation or [0.0, 0, 0, 1]),
                   np.array(n.scale or [1.0, 1, 1])] for i, n in enumerate(g.nodes)}
        mesh_node = next(i for i, n in enumerate(g.nodes) if n.mesh is not None)
        prim = g.meshes[0].primitives[0]
        weights = None
        for target, _, _, values in self.channels():
            if target.path == "weights":
                weights = values.reshape(-1, len(prim.targets))[key]
            elif target.path in ("translation", "rotation", "scale"):
                trs[target.node][("translation", "rotation", "scale").index(target.path)] = values[key]

        def local(i):
            t, q, s = trs[i]
            m = np.eye(4)
            m[:3, :3] = Rotation.from_quat(q).as_matrix() * s
            m[:3, 3] = t
            return m

        parent = {c: i for i, n in enumerate(g.nodes) for c in (n.children or [])}

        def world(i):
            m = local(i)
            while i in parent:
                i = parent[i]
                m = local(i) @ m
            return m

        pos = self.read(prim.attributes.POSITION)
        for w, t in zip(weights, prim.targets):
            pos = pos + w * self.read(t["POSITION"] if isinstance(t, dict) else t.POSITION)
        node = g.nodes[mesh_node]
        if node.skin is None:
            m = world(mesh_node)
            return pos @ m[:3, :3].T + m[:3, 3]
        skin = g.skins[node.skin]
        ibm = self.read(skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
        joint_mats = np.stack([world(j) @ ibm[n] for n, j in enumerate(skin.joints)])
        hom = np.c_[pos, np.ones(len(pos))]
        out = np.zeros_like(pos)
        attrs = prim.attributes.__dict__
        for k in range(4):
            if f"JOINTS_{k}" not in attrs or attrs[f"JOINTS_{k}"] is None:
                break
            joints, weights_k = self.read(attrs[f"JOINTS_{k}"]).astype(int), self.read(attrs[f"WEIGHTS_{k}"])
            for c in range(4):
                out += weights_k[:, c:c + 1] * np.einsum("vij,vj->vi", joint_mats[joints[:, c]], hom)[:, :3]
        return out


CV_FROM_GLTF_WORLD = np.array([1.0, -1.0, -1.0])


def test_gltf_reproduces_the_recorded_meshes_exactly(flame_take, flame_glb, capsys):
    rec_path, head = flame_take
    scene = GltfScene(flame_glb)
    g = scene.gltf
    rec = load(rec_path)
    ref = reference_vertices(rec_path, head)
    posed = [i for i in range(N) if i not in HIDDEN]
    for key in posed[::3] + [N - 1]:
        np.testing.assert_allclose(scene.world_vertices(key) * CV_FROM_GLTF_WORLD, ref[key], atol=2e-6)
    # hidden frames: the root's scale is 0 there (STEP), 1 elsewhere; every vertex collapses to one point
    scale = [(interp, values) for target, interp, _, values in scene.channels() if target.path == "scale"]
    assert len(scale) == 1 and scale[0][0] == "STEP"
    np.testing.assert_array_equal(scale[0][1][:, 0], [0.0 if i in HIDDEN else 1.0 for i in range(N)])
    assert np.ptp(scene.world_vertices(HIDDEN[0]), axis=0).max() < 1e-6
    # key times are frame_index / fps; the morph weights stay in [0, 1] (Blender clamps shape keys)
    for target, _, times, values in scene.channels():
        np.testing.assert_allclose(times, rec.frame_index / FPS, atol=1e-6)
        if target.path == "weights":
            assert values.min() >= 0 and values.max() <= 1
    # morph targets: the expressions by name, then 9 pose correctives per non-root joint; the skin's joints
    names = g.meshes[0].extras["targetNames"]
    assert names[:E] == head.expression_names[:E] if head.expression_names else len(names) == E + 36
    assert len(names) == E + 9 * (len(head.joint_names) - 1)
    assert [g.nodes[j].name for j in g.skins[0].joints] == list(head.joint_names)
    # the camera: constant yfov from the last focal length, animated per frame by KHR_animation_pointer
    cam = g.cameras[0].perspective
    assert cam.aspectRatio == pytest.approx(640 / 480)
    assert cam.yfov == pytest.approx(2 * np.arctan(240 / rec.fy[-1]), rel=1e-6)
    (yfov,) = [values[:, 0] for target, _, _, values in scene.channels() if target.path == "pointer"]
    np.testing.assert_allclose(yfov, 2 * np.arctan(240 / rec.fy.astype(np.float64)), rtol=1e-6)
    assert g.cameras[0].extras["flamecam"]["intrinsics_px"]["cx"][0] == 320
    assert g.nodes[0].camera == 0 and not g.nodes[0].rotation and not g.nodes[0].translation


def test_gltf_export_notes_the_identity_change_and_hidden_frames(flame_take, tmp_path, capsys):
    from app.cli import main

    assert main(["export", str(flame_take[0]), "--gltf", str(tmp_path / "t.gltf")]) == 0
    captured = capsys.readouterr()
    assert "identity changed 1 times" in captured.err and f"from frame {IDENTITY_CHANGE}" in captured.err
    assert f"{len(HIDDEN)} frames without a pose" in captured.err and "t.gltf" in captured.out
    # .gltf: JSON with the buffer embedded, the same content as the .glb
    data = json.loads((tmp_path / "t.gltf").read_text())
    assert data["buffers"][0]["uri"].startswith("data:application/octet-stream;base64,")
    assert main(["export", str(flame_take[0]), "--gltf", str(tmp_path / "t.gltf")]) == 2  # exists
    assert main(["export", str(flame_take[0]), "--gltf", str(tmp_path / "t.obj")]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and ".glb" in err and err.count("\n") == 2


def test_gltf_of_a_rigid_model(rigid_take, tmp_path):
    from app.cli import main

    rec_path, head = rigid_take
    target = tmp_path / "rigid.glb"
    assert main(["export", str(rec_path), "--gltf", str(target)]) == 0
    scene = GltfScene(target)
    assert not scene.gltf.skins and len(scene.gltf.meshes[0].primitives[0].targets) == head.num_expr
    ref = reference_vertices(rec_path, head)
    for key in (0, 7, 11):
        np.testing.assert_allclose(scene.world_vertices(key) * CV_FROM_GLTF_WORLD, ref[key], atol=2e-6)
    attrs = scene.gltf.meshes[0].primitives[0].attributes
    assert (attrs.COLOR_0 is not None) == (head.vertex_rgb is not None)


# --- Khronos's validator ------------------------------------------------------------------------------------


def _tool_missing(what: str) -> None:
    message = f"{what} is not installed (README's first command installs it into .venv)"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}")
    pytest.skip(message)


VALIDATE_JS = """
const fs = require("fs");
const validator = require(process.argv[1]);
validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])), {maxIssues: 0, writeTimestamp: false})
  .then((report) => console.log(JSON.stringify({version: validator.version(), issues: report.issues})))
  .catch((error) => { console.error(String(error)); process.exit(3); });
"""


def validate(path) -> dict:
    node = shutil.which("node")
    if node is None or not VALIDATOR.is_dir():
        _tool_missing("Node.js with the npm package gltf-validator")
    proc = subprocess.run([node, "-e", VALIDATE_JS, str(VALIDATOR), str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_khronos_validator_finds_no_errors(flame_glb, rigid_take, tmp_path):
    from app.cli import main

    rigid = tmp_path / "rigid.gltf"
    assert main(["export", str(rigid_take[0]), "--gltf", str(rigid)]) == 0
    for path in (flame_glb, rigid):
        report = validate(path)
        assert report["version"] == "2.0.0-dev.3.10"
        issues = report["issues"]
        assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:5]
    # the validator does catch errors: a broken accessor reference is one
    broken = GltfScene(flame_glb).gltf
    broken.meshes[0].primitives[0].indices = 10_000
    bad = tmp_path / "broken.glb"
    broken.save_binary(str(bad))
    assert validate(bad)["issues"]["numErrors"] > 0


# --- real Blender ------------------------------------------------------------------------------------------


BLENDER_SCRIPT = r"""
import json, sys
import bpy
from bpy_extras.object_utils import world_to_camera_view

path, fps, width, height = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
frames = [int(x) for x in sys.argv[5].split(",")]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = int(round(fps)), 1.0
bpy.ops.import_scene.gltf(filepath=path)
mesh = next(o for o in scene.objects if o.type == "MESH" and o.data.shape_keys is not None)
cam = next(o for o in scene.objects if o.type == "CAMERA")
scene.camera = cam
scene.render.resolution_x, scene.render.resolution_y = width, height

def fcurves(idblock):
    ad = idblock.animation_data
    if ad is None or ad.action is None:
        return []
    if hasattr(ad.action, "fcurves"):
        return list(ad.action.fcurves)
    curves = []  # Blender >= 4.4: layered actions with slots
    for layer in ad.action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(ad.action_slot)
            if bag:
                curves += list(bag.fcurves)
    return curves

shape_curves = fcurves(mesh.data.shape_keys)
armatures = [o for o in scene.objects if o.type == "ARMATURE"]
out = {
    "version": bpy.app.version_string,
    "shape_keys": [kb.name for kb in mesh.data.shape_keys.key_blocks],
    "shape_key_keyframes": sorted({len(f.keyframe_points) for f in shape_curves}),
    "shape_key_curves": len(shape_curves),
    "key_frames": [k.co[0] for k in shape_curves[0].keyframe_points],
    "camera_curves": {f.data_path: len(f.keyframe_points) for f in fcurves(cam.data)},
    "armature_keyframes": sorted({len(f.keyframe_points) for a in armatures for f in fcurves(a)}),
    "frames": {},
}
for k in frames:
    scene.frame_set(k)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = mesh.evaluated_get(depsgraph)
    data = evaluated.to_mesh()
    world = evaluated.matrix_world
    points = [world @ v.co for v in data.vertices]
    cam_eval = cam.evaluated_get(depsgraph)
    out["frames"][k] = {"vertices": [list(p) for p in points],
                        "view": [list(world_to_camera_view(scene, cam_eval, p)) for p in points],
                        "lens_mm": cam_eval.data.lens, "sensor_height_mm": cam_eval.data.sensor_height,
                        "sensor_fit": cam_eval.data.sensor_fit}
    evaluated.to_mesh_clear()
print("RESULT " + json.dumps(out))
"""


def run_blender(glb, frames, tmp_path) -> dict:
    if not BLENDER_PYTHON.exists():
        if sys.version_info[:2] != (3, 11):
            pytest.skip(f"bpy 5.0.1 wheels exist for Python 3.11 only (this is {sys.version.split()[0]})")
        _tool_missing(f"Blender as a Python module ({BLENDER_PYTHON})")
    probe = subprocess.run([str(BLENDER_PYTHON), "-c", "import bpy"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        if "No module named 'bpy'" in probe.stderr:
            pytest.skip(f"bpy is not installed in {BLENDER_PYTHON} (its wheel exists for Python 3.11 only)")
        pytest.fail(f"bpy does not import: {probe.stderr[-1500:]}")
    script = tmp_path / "blender_import.py"
    script.write_text(BLENDER_SCRIPT)
    proc = subprocess.run([str(BLENDER_PYTHON), str(script), str(glb), str(FPS), "640", "480",
                           ",".join(map(str, frames))], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and result, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(result[0][len("RESULT "):])


def test_blender_imports_the_take(flame_take, flame_glb, tmp_path):
    rec_path, head = flame_take
    rec = load(rec_path)
    checked = [3, IDENTITY_CHANGE + 2, N - 1]
    out = run_blender(flame_glb, checked + [HIDDEN[0]], tmp_path)
    targets = E + 9 * (len(head.joint_names) - 1)
    assert len(out["shape_keys"]) == targets + 1  # Basis + one per morph target
    assert out["shape_key_curves"] == targets and out["shape_key_keyframes"] == [N]
    # key time frame/fps (float32) on a scene at fps: Blender frame = video frame
    np.testing.assert_allclose(out["key_frames"], np.arange(N), atol=1e-4)
    assert out["camera_curves"] == {"lens": N} and out["armature_keyframes"] == [N]
    ref = reference_vertices(rec_path, head)
    for k in checked:
        frame = out["frames"][str(k)]
        blender = np.array(frame["vertices"])
        # Blender is Z-up: its (x, y, z) is glTF's (x, -z, y); OpenCV camera space is diag(1, -1, -1) of glTF's
        cam = np.stack([blender[:, 0], -blender[:, 2], blender[:, 1]], 1)
        np.testing.assert_allclose(cam, ref[k], atol=1e-5)
        # the lens follows the focal length (vertical sensor fit), and vertices project where flamecam puts them
        assert frame["sensor_fit"] == "VERTICAL"
        assert frame["lens_mm"] == pytest.approx(rec.fy[k] * frame["sensor_height_mm"] / 480, rel=1e-5)
        view = np.array(frame["view"])
        u = rec.fx[k] * ref[k][:, 0] / ref[k][:, 2] + rec.cx[k]
        v = rec.fy[k] * ref[k][:, 1] / ref[k][:, 2] + rec.cy[k]
        np.testing.assert_allclose(view[:, 0] * 640, u, atol=0.02)
        np.testing.assert_allclose((1 - view[:, 1]) * 480, v, atol=0.02)
    hidden = np.array(out["frames"][str(HIDDEN[0])]["vertices"])
    assert np.ptp(hidden, axis=0).max() < 1e-6  # scale 0: nothing drawn


# --- smplx FLAME parameters -------------------------------------------------------------------------------


def readme_flame_snippet() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (snippet,) = [b for b in blocks if "smplx.FLAME" in b]
    return snippet


def test_readme_smplx_snippet_reproduces_the_meshes(flame_take, flame_model, tmp_path):
    import pickle

    from app.cli import main

    rec_path, head = flame_take
    snippet = readme_flame_snippet()
    assert len(snippet.strip().splitlines()) == 5
    flame_dir = tmp_path / "flame"
    flame_dir.mkdir()
    shutil.copy(flame_model[0], flame_dir / "FLAME_NEUTRAL.pkl")
    with open(flame_dir / "flame_static_embedding.pkl", "wb") as fh:  # smplx.FLAME reads it at construction
        pickle.dump({"lmk_face_idx": np.arange(4), "lmk_b_coords": np.full((4, 3), 1 / 3)}, fh)
    assert main(["export", str(rec_path), "--flame-npz", str(tmp_path / "take.npz")]) == 0
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102  (the README's own code)
    finally:
        os.chdir(cwd)
    take = np.load(tmp_path / "take.npz")
    valid = take["valid"]
    np.testing.assert_array_equal(valid, [i not in HIDDEN for i in range(N)])
    ref = reference_vertices(rec_path, head, last_identity=False)  # betas per frame: exact before the change too
    np.testing.assert_allclose(namespace["vertices_cam"][valid], ref[valid], atol=1e-5)
    rec = load(rec_path)
    np.testing.assert_allclose(take["intrinsics"], rec.intrinsics)
    assert float(take["frame_rate_hz"]) == FPS and take["image_size"].tolist() == [640, 480]


def test_flame_npz_refuses_rigid_models(rigid_take, tmp_path, capsys):
    from app.cli import main

    assert main(["export", str(rigid_take[0]), "--flame-npz", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flamecam export: error:") and err.count("\n") == 1
    assert "FLAME model" in err and "--gltf" in err and not (tmp_path / "x.npz").exists()


# --- the one export entry point ------------------------------------------------------------------------------


def test_export_recording_reports_progress_and_cancels(flame_take, tmp_path):
    from core.export import ExportCancelled, ExportInputError, export_recording

    calls = []
    result = export_recording(flame_take[0], "obj", tmp_path / "objs", progress=lambda d, t: calls.append((d, t)))
    assert len(result.paths) == N - len(HIDDEN) and calls[-1] == (N - len(HIDDEN), N - len(HIDDEN))
    assert "OBJ meshes" in result.summary and any("skipped 2 frames" in n for n in result.notes)
    with pytest.raises(ExportCancelled):
        export_recording(flame_take[0], "gltf", tmp_path / "c.glb", cancel=lambda: True)
    assert not (tmp_path / "c.glb").exists()
    with pytest.raises(ExportInputError, match="format must be one of"):
        export_recording(flame_take[0], "fbx", tmp_path / "x.fbx")
    with pytest.raises(ExportInputError, match="recording not found"):
        export_recording(tmp_path / "none.fcrec", "gltf", tmp_path / "x.glb")
