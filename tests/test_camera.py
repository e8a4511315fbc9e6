"""Camera models: perspective, weak perspective, pseudo-perspective ρ, intrinsics transforms."""
from __future__ import annotations

import math

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
    intr = torch.tensor([700.0, 650.0, 300.0, 260.0])
    width, height = 640, 480
    pts = torch.tensor([[0.05, -0.03, 0.8], [-0.1, 0.08, 1.5]])
    uv = camera.project_perspective(pts, intr)
    for top in (True, False):
        clip = torch.cat([pts, torch.ones(2, 1)], 1) @ camera.opengl_projection(intr, width, height, first_row_is_top=top).T
        ndc = clip[:, :3] / clip[:, 3:]
        u = (ndc[:, 0] + 1) / 2 * width
        row = (ndc[:, 1] + 1) / 2 * height  # framebuffer row counted from row 0
        v = row if top else height - row
        torch.testing.assert_close(torch.stack([u, v], 1), uv, atol=1e-3, rtol=0)
        assert ((ndc[:, 2] > -1) & (ndc[:, 2] < 1)).all()


def test_default_intrinsics_centre():
    intr = camera.default_intrinsics(900.0, 640, 480)
    assert intr.tolist() == [900.0, 900.0, 320.0, 240.0]
