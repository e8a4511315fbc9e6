"""Renderer against the camera model: rendered pixels must sit where core.camera projects them."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from core.camera import default_intrinsics, flip_axes, model_to_camera, project_perspective
from core.render import (
    Lighting,
    MeshRenderer,
    OffscreenRenderer,
    PointLayer,
    WireframeStyle,
    composite_over,
    create_egl_context,
    load_program,
    save_png,
    vertex_normals,
)

# (width, height, (fx, fy, cx, cy)): non-square pixels, off-centre principal points, both aspects.
CAMERAS = [
    (320, 240, (500.0, 460.0, 171.3, 108.7)),
    (200, 300, (350.0, 420.0, 88.2, 170.9)),
    (320, 240, (260.0, 260.0, 160.0, 120.0)),
]


def icosphere(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: (V, 3) float64 vertices on the sphere, (F, 3) int64 outward-wound faces."""
    t = (1 + 5 ** 0.5) / 2
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
             (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
             (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(v, float) / np.linalg.norm(v) for v in verts]
    for _ in range(subdivisions):
        midpoint: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in midpoint:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                midpoint[key] = len(verts) - 1
            return midpoint[key]

        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    return np.array(verts), np.array(faces, dtype=np.int64)


def sphere_in_view(width: int, height: int, k, depth_m: float, radius_frac: float, offset_frac=(0.1, -0.08)):
    """An icosphere whose centre projects near the image centre (shifted by offset_frac of the size)."""
    fx, fy, cx, cy = k
    u, v = width * (0.5 + offset_frac[0]), height * (0.5 + offset_frac[1])
    centre = np.array([(u - cx) / fx * depth_m, (v - cy) / fy * depth_m, depth_m])
    radius = radius_frac * min(width, height) / max(fx, fy) * depth_m
    unit, faces = icosphere(3)
    return unit * radius + centre, faces, centre, radius


def project(points: np.ndarray, k) -> np.ndarray:
    return project_perspective(torch.as_tensor(points, dtype=torch.float64),
                               torch.as_tensor(k, dtype=torch.float64)).numpy()


@pytest.fixture(scope="module")
def renderer():
    r = OffscreenRenderer(320, 240, samples=4)
    yield r
    r.release()


# --- geometry: the renderer and core.camera agree ----------------------------------------------


@pytest.mark.parametrize("width,height,k", CAMERAS)
def test_point_centroids_match_projection(renderer, width, height, k):
    rng = np.random.default_rng(7)
    # A jittered grid of pixels (well apart), lifted to random depths along their rays.
    us, vs = np.meshgrid(np.linspace(12, width - 12, 6), np.linspace(12, height - 12, 5))
    px = np.stack([us.ravel(), vs.ravel()], 1) + rng.uniform(-2, 2, (us.size, 2))
    z = rng.uniform(0.3, 2.0, len(px))
    fx, fy, cx, cy = k
    points = np.stack([(px[:, 0] - cx) / fx * z, (px[:, 1] - cy) / fy * z, z], 1)
    expected = project(points, k)
    np.testing.assert_allclose(expected, px, atol=1e-9)  # the points really are where we aimed

    renderer.resize(width, height)
    res = renderer.render(None, None, k, points=PointLayer(points_cam=points, color=(1, 1, 1), size_px=3.0))
    alpha = res.alpha
    assert alpha.shape == (height, width) and res.rgb.shape == (height, width, 3)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    errors = []
    for u, v in expected:
        win = (np.abs(xs - u) <= 5) & (np.abs(ys - v) <= 5)
        w = alpha * win
        assert w.sum() > 3.0, f"no point drawn near ({u:.1f}, {v:.1f})"
        errors.append(np.hypot((w * xs).sum() / w.sum() - u, (w * ys).sum() / w.sum() - v))
    assert max(errors) <= 0.1, f"rendered point centroids off by up to {max(errors):.3f} px"
    # Nothing drawn far from the points.
    far = np.min(np.hypot(xs[..., None] - expected[:, 0], ys[..., None] - expected[:, 1]), axis=-1) > 4
    assert alpha[far].max() == 0.0


def _convex_outline(px: np.ndarray):
    hull = cv2.convexHull(px.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    x, y = hull[:, 0], hull[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    centroid = np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6 * area)
    return hull, abs(area), centroid


def _signed_distance_inside(hull: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Distance to the boundary of a convex polygon, positive inside (exact inside, a lower bound outside)."""
    p0, p1 = hull, np.roll(hull, -1, axis=0)
    edge = p1 - p0
    area2 = (p0[:, 0] * p1[:, 1] - p1[:, 0] * p0[:, 1]).sum()
    inward = np.stack([-edge[:, 1], edge[:, 0]], 1) * np.sign(area2)
    inward /= np.linalg.norm(inward, axis=1, keepdims=True)
    d = (xs[..., None] - p0[:, 0]) * inward[:, 0] + (ys[..., None] - p0[:, 1]) * inward[:, 1]
    return d.min(-1)


@pytest.mark.parametrize("width,height,k", CAMERAS)
def test_silhouette_is_projected_outline(renderer, width, height, k):
    # A convex polyhedron projects onto the convex hull of its projected vertices.
    verts, faces, _, _ = sphere_in_view(width, height, k, depth_m=0.5, radius_frac=0.3)
    renderer.resize(width, height)
    res = renderer.render(verts, faces, k, with_depth=True)
    hull, area, centroid = _convex_outline(project(verts, k))
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    inside = _signed_distance_inside(hull, xs, ys)
    assert (res.coverage[inside >= 1.0] == 1.0).all(), "pixels well inside the projected outline are not covered"
    assert (res.coverage[inside <= -1.0] == 0.0).all(), "pixels well outside the projected outline are covered"
    cov = res.coverage.astype(np.float64)
    assert abs(cov.sum() - area) / area < 0.005
    rendered_centroid = np.array([(cov * xs).sum(), (cov * ys).sum()]) / cov.sum()
    assert np.linalg.norm(rendered_centroid - centroid) < 0.05, (rendered_centroid, centroid)
    assert ((res.mask) == (cov >= 0.5)).all()


@pytest.mark.parametrize("width,height,k", CAMERAS)
def test_depth_is_camera_z(renderer, width, height, k):
    verts, faces, centre, _ = sphere_in_view(width, height, k, depth_m=0.6, radius_frac=0.35)
    renderer.resize(width, height)
    depth = renderer.render(verts, faces, k, with_depth=True).depth_m
    assert np.isinf(depth[0, 0]) and np.isinf(depth).any()
    # Vertices facing the camera: bilinear depth at their projections equals their Z.
    normals = verts - centre
    facing = (normals * -verts).sum(1) / np.linalg.norm(normals, axis=1) / np.linalg.norm(verts, axis=1) > 0.5
    px = project(verts[facing], k)
    sampled = cv2.remap(depth, (px[:, 0] - 0.5).astype(np.float32)[None], (px[:, 1] - 0.5).astype(np.float32)[None],
                        cv2.INTER_LINEAR)[0]
    assert facing.sum() > 50
    # Bilinear interpolation across a facet corner is not exact: allow a quarter of a pixel's footprint.
    footprint_m = verts[facing, 2] / min(k[0], k[1])
    assert (np.abs(sampled - verts[facing, 2]) < 0.25 * footprint_m).all()


def test_depth_of_tilted_plane_is_exact(renderer):
    width, height, k = CAMERAS[0]
    fx, fy, cx, cy = k
    renderer.resize(width, height)
    # A plane tilted 40 degrees about the y axis, through (0, 0, 0.8).
    normal = np.array([np.sin(np.radians(40)), 0.0, -np.cos(np.radians(40))])
    origin = np.array([0.0, 0.0, 0.8])
    a = np.cross(normal, [0.0, 1.0, 0.0])
    b = np.cross(normal, a)
    quad = origin + 0.3 * np.array([-a - b, a - b, a + b, -a + b])
    res = renderer.render(quad, np.array([[0, 1, 2], [0, 2, 3]]), k, with_depth=True)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    rays = np.stack([(xs - cx) / fx, (ys - cy) / fy, np.ones_like(xs)], -1)
    z_expected = (normal @ origin) / (rays @ normal)
    full = res.coverage == 1.0
    assert full.mean() > 0.2
    np.testing.assert_allclose(res.depth_m[full], z_expected[full], atol=2e-5)
    assert np.isinf(res.depth_m[res.coverage == 0]).all()


def test_row_zero_is_image_top_and_x_is_right(renderer):
    width, height, k = 320, 240, (300.0, 300.0, 160.0, 120.0)
    renderer.resize(width, height)
    unit, faces = icosphere(1)
    up_right = unit * 0.02 + [0.1, -0.08, 1.0]  # camera +y is down: y < 0 is above the optical axis
    res = renderer.render(up_right, faces, k, with_depth=True)
    rows, cols = np.nonzero(res.mask)
    assert rows.max() < height / 2, "a point above the optical axis must appear in the upper half (row 0 = top)"
    assert cols.min() > width / 2, "a point right of the optical axis must appear in the right half"


# --- appearance ---------------------------------------------------------------------------------


def test_background_image_shows_where_there_is_no_mesh(renderer):
    width, height, k = CAMERAS[1]
    renderer.resize(width, height)
    rng = np.random.default_rng(3)
    background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    verts, faces, _, _ = sphere_in_view(width, height, k, depth_m=0.5, radius_frac=0.25)
    res = renderer.render(verts, faces, k, background=background, with_depth=True)
    empty = res.coverage == 0
    assert 0.3 < empty.mean() < 0.95
    np.testing.assert_array_equal(res.rgb[empty], background[empty])
    covered = res.coverage == 1
    # The grey shaded sphere replaces the noise: neighbouring pixels nearly equal, unlike the noise.
    assert np.abs(np.diff(res.rgb.astype(int), axis=1))[covered[:, 1:] & covered[:, :-1]].mean() < 3
    assert (res.alpha == 1.0).all()
    # Solid colours are exact too.
    solid = renderer.render(verts, faces, k, background=(0.2, 0.4, 0.6), with_depth=True)
    assert (solid.rgb[solid.coverage == 0] == (51, 102, 153)).all()


def test_transparent_overlay_composites_like_a_background(renderer):
    width, height, k = CAMERAS[0]
    renderer.resize(width, height)
    rng = np.random.default_rng(5)
    video = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    verts, faces, _, _ = sphere_in_view(width, height, k, depth_m=0.5, radius_frac=0.3)
    kwargs = dict(mesh_opacity=0.0, wireframe=WireframeStyle(color=(0.1, 1.0, 0.3), opacity=0.7, width_px=1.5),
                  points=PointLayer(points_cam=verts[:40], color=(1.0, 0.2, 0.1), opacity=0.9, size_px=4))
    overlay = renderer.render(verts, faces, k, **kwargs)
    over_video = renderer.render(verts, faces, k, background=video, **kwargs)
    assert 0.02 < (overlay.alpha > 0).mean() < 0.5
    assert overlay.rgb[overlay.alpha == 0].max() == 0
    blended = composite_over(overlay.rgb, overlay.alpha, video)
    assert np.abs(blended.astype(int) - over_video.rgb.astype(int)).max() <= 2


def test_hidden_lines_are_removed(renderer):
    width, height, k = CAMERAS[0]
    renderer.resize(width, height)
    verts, faces, _, _ = sphere_in_view(width, height, k, depth_m=0.5, radius_frac=0.3)
    style = dict(color=(1.0, 1.0, 1.0), width_px=1.0)
    hidden = renderer.render(verts, faces, k, mesh_opacity=0.0, wireframe=WireframeStyle(depth_test=True, **style),
                             with_depth=True)
    all_edges = renderer.render(verts, faces, k, mesh_opacity=0.0, wireframe=WireframeStyle(depth_test=False, **style))
    assert hidden.coverage.sum() > 1000  # an invisible mesh still gives depth and coverage
    ink_hidden, ink_all = hidden.alpha.sum(), all_edges.alpha.sum()
    assert 0.3 * ink_all < ink_hidden < 0.75 * ink_all  # roughly the back half of the edges disappears


def test_lighting_and_vertex_colours(renderer):
    width, height, k = CAMERAS[2]
    renderer.resize(width, height)
    verts, faces, _, _ = sphere_in_view(width, height, k, depth_m=0.5, radius_frac=0.3, offset_frac=(0, 0))
    red = np.tile([0.9, 0.1, 0.1], (len(verts), 1))
    left_light = Lighting(directions_to_light=((-1.0, 0.0, -0.3),), diffuse=(0.9,), ambient=0.05)
    right_light = Lighting(directions_to_light=((1.0, 0.0, -0.3),), diffuse=(0.9,), ambient=0.05)
    lit_left = renderer.render(verts, faces, k, vertex_rgb=red, lighting=left_light, with_depth=True)
    lit_right = renderer.render(verts, faces, k, vertex_rgb=red, lighting=right_light)
    cols = np.nonzero(lit_left.mask.any(0))[0]
    mid = (cols.min() + cols.max()) // 2
    red_l = lit_left.rgb[..., 0].astype(float)
    red_r = lit_right.rgb[..., 0].astype(float)
    m = lit_left.mask
    assert red_l[:, :mid][m[:, :mid]].mean() > red_l[:, mid:][m[:, mid:]].mean() + 40
    assert red_r[:, mid:][m[:, mid:]].mean() > red_r[:, :mid][m[:, :mid]].mean() + 40
    assert (lit_left.rgb[m][:, 0] >= lit_left.rgb[m][:, 1]).all()  # red albedo stays red
    # Ambient only: flat albedo x ambient everywhere on the sphere.
    flat = renderer.render(verts, faces, k, vertex_rgb=red,
                           lighting=Lighting(directions_to_light=((0, 0, -1),), diffuse=(0.0,), ambient=1.0),
                           with_depth=True)
    full = flat.coverage == 1
    np.testing.assert_allclose(flat.rgb[full].astype(float), np.tile([0.9 * 255, 0.1 * 255, 0.1 * 255], (full.sum(), 1)),
                               atol=1.01)
    # Grey by default.
    grey = renderer.render(verts, faces, k, with_depth=True)
    g = grey.rgb[grey.coverage == 1].astype(int)
    assert np.abs(g[:, 0] - g[:, 1]).max() <= 1 and np.abs(g[:, 1] - g[:, 2]).max() <= 1


def test_vertex_normals_of_a_sphere_are_radial():
    unit, faces = icosphere(2)
    normals = vertex_normals(unit * 0.1 + [0.0, 0.0, 0.5], faces)
    assert normals.dtype == np.float32
    assert (np.einsum("ij,ij->i", normals, unit) > 0.995).all()


# --- the window path (Qt) and resource handling ------------------------------------------------------


def test_window_orientation_matches_offscreen():
    """first_row_is_top=False (a window's row 0 is its bottom) draws the same image upside down."""
    width, height, k = CAMERAS[1]
    verts, faces, _, _ = sphere_in_view(width, height, k, depth_m=0.5, radius_frac=0.25, offset_frac=(0.15, -0.2))
    background = np.zeros((height, width, 3), np.uint8)
    background[: height // 3] = (255, 0, 0)  # red band at the image top
    ctx = create_egl_context()
    try:
        with ctx:
            mesh_renderer = MeshRenderer(ctx)
            color = ctx.renderbuffer((width, height), 4)
            depth = ctx.depth_renderbuffer((width, height))
            fbo = ctx.framebuffer([color], depth)
            images = []
            for top in (True, False):
                fbo.use()
                fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                mesh_renderer.set_camera(k, width, height, first_row_is_top=top)
                mesh_renderer.draw_background(background)
                mesh_renderer.draw_mesh(verts, faces)
                mesh_renderer.draw_points_px(np.array([[20.5, 30.5]]), color=(0, 0, 1), size_px=5)
                rgba = np.frombuffer(fbo.read(components=4, alignment=1), np.uint8).reshape(height, width, 4)
                images.append(rgba if top else rgba[::-1])
            mesh_renderer.release()
            for obj in (fbo, color, depth):
                obj.release()
    finally:
        ctx.release()
    np.testing.assert_array_equal(images[0], images[1])
    top_first = images[0]
    assert (top_first[5, :, :3] == (255, 0, 0)).all(axis=-1).mean() > 0.5  # the red band is at the top
    assert top_first[30, 20, 2] > 200 and top_first[30, 20, 0] < 60  # blue 2D point at (u=20.5, v=30.5)


def test_renderer_works_from_another_thread_and_releases():
    width, height, k = CAMERAS[0]
    verts, faces, _, _ = sphere_in_view(width, height, k, depth_m=0.5, radius_frac=0.3)
    results = {}
    with OffscreenRenderer(width, height) as r:
        main = r.render(verts, faces, k, with_depth=True)

        def work():
            results["worker"] = r.render(verts, faces, k, with_depth=True)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive()
    np.testing.assert_array_equal(results["worker"].rgb, main.rgb)
    np.testing.assert_array_equal(results["worker"].depth_m, main.depth_m)
    r.release()  # twice is fine
    with pytest.raises(RuntimeError, match="released"):
        r.render(verts, faces, k)


def test_bad_input_is_reported(renderer):
    width, height, k = CAMERAS[0]
    renderer.resize(width, height)
    verts, faces, _, _ = sphere_in_view(width, height, k, depth_m=0.5, radius_frac=0.3)
    with pytest.raises(ValueError, match="vertices_cam"):
        renderer.render(verts[:, :2], faces, k)
    with pytest.raises(ValueError, match="outside"):
        renderer.render(verts[:10], faces, k)
    with pytest.raises(ValueError, match="background"):
        renderer.render(verts, faces, k, background=(1.0, 0.0))
    with pytest.raises(ValueError, match="background image"):
        renderer.render(verts, faces, k, background=np.zeros((height, width), np.float32))
    with pytest.raises(ValueError, match="intrinsics"):
        renderer.render(verts, faces, (0.0, 500.0, 160.0, 120.0))
    with pytest.raises(ValueError, match="Lighting"):
        renderer.render(verts, faces, k, lighting=Lighting(directions_to_light=((0, 0, 0),), diffuse=(1.0,)))
    # The renderer still works afterwards.
    assert renderer.render(verts, faces, k, with_depth=True).mask.any()


def test_shaders_compile_and_png_round_trips(tmp_path):
    ctx = create_egl_context()
    try:
        with ctx:
            for name in ("mesh", "wireframe", "points", "background", "depth_resolve"):
                load_program(ctx, name).release()
    finally:
        ctx.release()
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    save_png(tmp_path / "x.png", img)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "x.png"))[..., ::-1], img)
    with pytest.raises(OSError):
        save_png(tmp_path / "missing" / "x.png", img)


# --- the real head ------------------------------------------------------------------------------------


@pytest.mark.needs_ict
def test_ict_head_render(ict_model):
    from core.head_model import HeadModelLayer

    head = ict_model
    layer = HeadModelLayer(head)
    rotation = torch.zeros(1, 3)
    with torch.no_grad():
        posed = layer(torch.zeros(1, 0), torch.zeros(1, 0), rotation)
        centre = layer.posed_head_center(rotation)[0]
    translation = torch.tensor([0.0, 0.0, 0.5]) - flip_axes(centre)  # head centre 0.5 m ahead
    verts = model_to_camera(posed, translation[None])[0].numpy()
    k = default_intrinsics(600.0, 512, 512)
    with OffscreenRenderer(512, 512) as r:
        res = r.render(verts, head.faces, k, vertex_rgb=head.vertex_rgb, background=(0.0, 0.0, 0.0), with_depth=True)
    assert 0.15 < res.mask.mean() < 0.6
    lmk = head.regions["lmk68"]
    px = project(verts[lmk], k)
    cols, rows = px[:, 0].astype(int), px[:, 1].astype(int)
    eyes_nose = np.r_[27:48]
    assert res.mask[rows[eyes_nose], cols[eyes_nose]].all(), "eye/nose landmarks fall outside the silhouette"
    # Visible, not hidden behind something: the depth there is the vertex's own depth.
    np.testing.assert_allclose(res.depth_m[rows[eyes_nose], cols[eyes_nose]], verts[lmk[eyes_nose], 2], atol=4e-3)
    # Upright and not mirrored: brows above eyes above the chin; subject's left eye on the image right.
    assert px[17:27, 1].mean() < px[36:48, 1].mean() < px[8, 1]
    assert px[42:48, 0].mean() > px[36:42, 0].mean()
    # Skin colour from vertex_rgb: red over blue at the nose tip.
    nose = res.rgb[rows[30], cols[30]].astype(int)
    assert nose[0] > nose[2] + 20
