"""Camera models: perspective, weak perspective, pseudo-perspective ρ, intrinsics transforms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import camera

torch.manual_seed(0)


def _random_head_points(batch: int, n: int = 50) -> torch.Tensor:
    return torch.randn(batch, n, 3, dtype=torch.float64) * 0.08


def _random_intrinsics(batch: int) -> torch.Tensor:
    f = torch.empty(batch, dtype=torch.float64).uniform_(400, 2400)
    return torch.stack([f, f * torch.empty(batch, dtype=torch.float64).uniform_(0.95, 1.05),
                        torch.empty(batch, dtype=torch.float64).uniform_(200, 450),
                        torch.empty(batch, dtype=torch.float64).uniform_(150, 330)], -1)


def test_axis_angle_round_trip_including_near_zero_and_pi():
    aa = torch.cat([torch.randn(200, 3, dtype=torch.float64),
                    torch.randn(5, 3, dtype=torch.float64) * 1e-9,
                    torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=-1) * (math.pi - 1e-6)])
    aa = torch.where(aa.norm(dim=-1, keepdim=True) > math.pi, aa / aa.norm(dim=-1, keepdim=True) * 3.0, aa)
    rot = camera.axis_angle_to_matrix(aa)
    back = camera.matrix_to_axis_angle(rot)
    torch.testing.assert_close(camera.axis_angle_to_matrix(back), rot, atol=1e-6, rtol=0)
    assert torch.allclose(back[:200], aa[:200], atol=1e-6)


def test_perspective_projection_formula_and_axes():
    intr = torch.tensor([800.0, 820.0, 320.0, 240.0], dtype=torch.float64)
    pts = torch.tensor([[0.1, -0.05, 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    uv = camera.project_perspective(pts, intr)
    torch.testing.assert_close(uv[0], torch.tensor([800 * 0.05 + 320, 820 * -0.025 + 240], dtype=torch.float64))
    torch.testing.assert_close(uv[1], intr[2:])
    # A head with zero rotation faces the camera: its nose (+z model) is nearer than its back.
    nose_back = torch.tensor([[0.0, 0.0, 0.1], [0.0, 0.0, -0.1]], dtype=torch.float64)
    cam = camera.model_to_camera(nose_back, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert cam[0, 2] < cam[1, 2]
    # Model +y (up) lands in the upper image half (smaller v), model +x (subject's left) on the image right.
    up_left = camera.model_to_camera(torch.tensor([[0.05, 0.05, 0.0]], dtype=torch.float64),
                                     torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    uv = camera.project_perspective(up_left, intr)
    assert uv[0, 1] < 240 and uv[0, 0] > 320


@pytest.mark.parametrize("batch", [1, 7])
def test_pseudo_perspective_equals_perspective_under_conversion(batch):
    intr = _random_intrinsics(batch)
    rot = torch.randn(batch, 3, dtype=torch.float64) * 0.4
    center_cam = torch.stack([torch.empty(batch, dtype=torch.float64).uniform_(-0.1, 0.1),
                              torch.empty(batch, dtype=torch.float64).uniform_(-0.1, 0.1),
                              torch.empty(batch, dtype=torch.float64).uniform_(0.3, 1.2)], -1)
    pts_model = _random_head_points(batch)
    # Points relative to the head centre in camera axes, and the same points in camera space.
    rel = pts_model @ camera.rotation_model_to_camera(rot).transpose(-1, -2)
    cam = rel + center_cam[:, None]
    uv_persp = camera.project_perspective(cam, intr)
    pseudo = camera.perspective_to_pseudo(intr, center_cam)
    uv_pseudo = camera.project_pseudo_perspective(rel, **pseudo)
    torch.testing.assert_close(uv_pseudo, uv_persp, atol=1e-9, rtol=0)
    torch.testing.assert_close(pseudo["rho_per_m"], 1 / center_cam[:, 2])
    intr_back, center_back = camera.pseudo_to_perspective(**pseudo)
    torch.testing.assert_close(intr_back, intr)
    torch.testing.assert_close(center_back, center_cam)


def test_rho_zero_is_weak_perspective_and_small_rho_converges():
    rel = _random_head_points(3)
    scale = torch.tensor([[1500.0, 1500.0]] * 3, dtype=torch.float64)
    offset = torch.randn(3, 2, dtype=torch.float64) * 10
    principal = torch.tensor([[256.0, 256.0]] * 3, dtype=torch.float64)
    ortho = camera.project_weak_perspective(rel, scale, offset, principal)
    zero = camera.project_pseudo_perspective(rel, scale, torch.zeros(3, dtype=torch.float64), offset, principal)
    torch.testing.assert_close(zero, ortho, atol=1e-12, rtol=0)
    # Far away (ρ -> 0 with S fixed) perspective tends to orthographic; errors shrink ~linearly in ρ.
    errs = [(camera.project_pseudo_perspective(rel, scale, torch.full((3,), r, dtype=torch.float64), offset, principal)
             - ortho).abs().max().item() for r in (1e-1, 1e-2, 1e-3)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < errs[0] / 50


def test_perspective_differs_from_ortho_at_close_range():
    """The reason ρ matters: a 0.3 m selfie is far from orthographic (nose magnified)."""
    nose_ear = torch.tensor([[[0.02, 0.03, -0.1], [0.0, 0.0, 0.0], [0.07, 0.0, 0.05]]], dtype=torch.float64)
    for depth, min_diff in ((0.3, 5.0), (3.0, 0.0)):
        pseudo = camera.perspective_to_pseudo(torch.tensor([[600.0, 600, 256, 256]], dtype=torch.float64),
                                              torch.tensor([[0.0, 0.0, depth]], dtype=torch.float64))
        persp = camera.project_pseudo_perspective(nose_ear, **pseudo)
        ortho = camera.project_weak_perspective(nose_ear, pseudo["scale"], pseudo["offset_px"], pseudo["principal_px"])
        diff = (persp - ortho).abs().max().item()
        assert diff > min_diff if min_diff else diff < 1.0


def test_fov_round_trip():
    f = torch.tensor([300.0, 600.0, 2400.0], dtype=torch.float64)
    fov = camera.focal_to_fov_deg(f, 512)
    torch.testing.assert_close(camera.fov_deg_to_focal(fov, 512), f)
    assert abs(camera.focal_to_fov_deg(256.0, 512).item() - 90.0) < 1e-9


def test_crop_and_resize_round_trips_and_agree_with_points():
    intr = _random_intrinsics(4)
    box = torch.tensor([[100.0, 50.0, 200.0, 220.0]] * 4, dtype=torch.float64)
    out = (224, 224)
    crop = camera.crop_intrinsics(intr, box, out)
    torch.testing.assert_close(camera.uncrop_intrinsics(crop, box, out), intr)
    cam = _random_head_points(4) + torch.tensor([0.0, 0.0, 0.6], dtype=torch.float64)
    full_uv = camera.project_perspective(cam, intr)
    # Projecting with the crop's intrinsics equals cropping the full-image projection.
    torch.testing.assert_close(camera.project_perspective(cam, crop), camera.crop_points(full_uv, box, out))
    torch.testing.assert_close(camera.uncrop_points(camera.crop_points(full_uv, box, out), box, out), full_uv)
    half = camera.resize_intrinsics(intr, 0.5)
    torch.testing.assert_close(camera.project_perspective(cam, half), full_uv * 0.5)
    k = camera.intrinsics_matrix(intr)
    torch.testing.assert_close(camera.intrinsics_from_matrix(k), intr)
    torch.testing.assert_close((k @ cam.transpose(-1, -2)).transpose(-1, -2)[..., :2] / cam[..., 2:], full_uv)


def test_opengl_projection_matches_pinhole():
    intr = np.array([700.0, 650.0, 300.0, 260.0])
    width, height = 640, 480
    pts = np.array([[0.05, -0.03, 0.8], [-0.1, 0.08, 1.5]])
    uv = camera.project_perspective(pts, intr)
    for top in (True, False):
        clip = np.concatenate([pts, np.ones((2, 1))], 1) @ camera.opengl_projection(intr, width, height,
                                                                                  first_row_is_top=top).T
        ndc = clip[:, :3] / clip[:, 3:]
        u = (ndc[:, 0] + 1) / 2 * width
        row = (ndc[:, 1] + 1) / 2 * height  # framebuffer row counted from row 0
        v = row if top else height - row
        np.testing.assert_allclose(np.stack([u, v], 1), uv, atol=1e-3, rtol=0)
        assert ((ndc[:, 2] > -1) & (ndc[:, 2] < 1)).all()


def test_default_intrinsics_centre():
    intr = camera.default_intrinsics(900.0, 640, 480)
    assert intr.tolist() == [900.0, 900.0, 320.0, 240.0]


def _both(*arrays):
    """The same float64 values as torch tensors and as numpy arrays."""
    return [torch.as_tensor(a, dtype=torch.float64) for a in arrays], [np.asarray(a, np.float64) for a in arrays]


@pytest.mark.parametrize("name, args", [
    ("axis_angle_to_matrix", (np.random.default_rng(1).normal(size=(4, 3)),)),
    ("matrix_to_axis_angle", (camera.axis_angle_to_matrix(np.random.default_rng(2).normal(size=(4, 3))),)),
    ("rotation_model_to_camera", (np.random.default_rng(3).normal(size=(4, 3)),)),
    ("intrinsics_matrix", (np.array([[800.0, 810, 320, 240]]),)),
    ("opencv_camera_matrix", (np.array([800.0, 810, 320, 240]),)),
    ("intrinsics_from_opencv", (camera.opencv_camera_matrix(np.array([800.0, 810, 320, 240])),)),
    ("project_perspective", (np.random.default_rng(4).normal(size=(2, 5, 3)) * 0.1 + [0, 0, 1],
                             np.array([[800.0, 810, 320, 240], [500, 500, 256, 200]]))),
    ("pixels_to_rays", (np.random.default_rng(5).uniform(0, 640, (5, 2)), np.array([800.0, 810, 320, 240]))),
    ("flip_axes", (np.random.default_rng(6).normal(size=(5, 3)),)),
    ("axis_angle_to_quaternion_xyzw", (np.random.default_rng(8).normal(size=(5, 3)),)),
])
def test_numpy_and_torch_give_the_same_values(name, args):
    """One implementation serves both array kinds (the GUI and calibration use numpy, the tracker torch)."""
    (as_torch, as_numpy) = _both(*args)
    fn = getattr(camera, name)
    out_torch, out_numpy = fn(*as_torch), fn(*as_numpy)
    assert isinstance(out_torch, torch.Tensor) and isinstance(out_numpy, np.ndarray)
    np.testing.assert_allclose(out_torch.numpy(), out_numpy, rtol=1e-12, atol=1e-12)


def test_backproject_inverts_projection_and_placement_inverts_centre():
    rng = np.random.default_rng(7)
    intr = np.array([900.0, 905.0, 330.0, 250.0])
    pts = rng.normal(size=(20, 3)) * 0.1 + [0.0, 0.0, 0.8]
    uv = camera.project_perspective(pts, intr)
    np.testing.assert_allclose(camera.backproject(uv, pts[:, 2], intr), pts, atol=1e-12)
    rot = camera.axis_angle_to_matrix(rng.normal(size=(6, 3)) * 0.5)
    centre_model = np.array([0.0, 0.03, 0.08])
    centre_cam = rng.normal(size=(6, 3)) * 0.1 + [0, 0, 0.6]
    t = camera.translation_for_center(centre_model, rot, centre_cam)
    np.testing.assert_allclose(camera.head_center_cam(centre_model, rot, t), centre_cam, atol=1e-12)
    # The same placement as model_to_camera of the head centre itself.
    aa = camera.matrix_to_axis_angle(rot)
    placed = np.stack([camera.model_to_camera(centre_model[None], t[i], aa[i])[0] for i in range(6)])
    np.testing.assert_allclose(placed, centre_cam, atol=1e-12)


def test_euler_angles_compose_yaw_pitch_roll():
    yaw, pitch, roll = 0.3, -0.2, 0.1
    aa = camera.euler_to_axis_angle(yaw, pitch, roll)
    about = lambda axis, a: camera.axis_angle_to_matrix(np.eye(3)[axis] * a)  # noqa: E731
    np.testing.assert_allclose(camera.axis_angle_to_matrix(aa), about(1, yaw) @ about(0, pitch) @ about(2, roll),
                               atol=1e-12)
    batch = camera.euler_to_axis_angle(torch.tensor([yaw, 0.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                                       torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(batch[0].numpy(), [0.0, yaw, 0.0], atol=1e-12)


def test_camera_math_does_not_load_torch_for_numpy_callers():
    """The GUI thread draws with core.camera / core.render / core.distortion: none of them may pull in torch."""
    import subprocess
    import sys
    script = ("import sys, numpy as np\n"
              "import core.camera as c, core.render, core.distortion\n"
              "c.model_to_camera(np.zeros((1, 3)), np.array([0, 0, 1.0]), np.array([0.1, 0, 0]))\n"
              "c.opengl_projection(np.array([500.0, 500, 320, 240]), 640, 480)\n"
              "print('torch' in sys.modules)\n")
    from pathlib import Path
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_quaternions_rotate_like_the_matrices():
    rng = np.random.default_rng(9)
    aa = np.concatenate([rng.normal(size=(20, 3)), np.zeros((1, 3)), 1e-9 * rng.normal(size=(2, 3))])
    q = camera.axis_angle_to_quaternion_xyzw(aa)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    x, y, z, w = q.T  # the standard quaternion-to-matrix formula, written out independently
    rot = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                    2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                    2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)
    np.testing.assert_allclose(rot, camera.axis_angle_to_matrix(aa), atol=1e-12)
    back = camera.matrix_to_quaternion_xyzw(camera.axis_angle_to_matrix(aa))
    np.testing.assert_allclose(np.abs((back * q).sum(-1)), 1.0, atol=1e-9)  # the same rotation (q or -q)
