"""Offscreen and on-screen mesh rendering with an exact OpenCV-style perspective camera (ModernGL).

Two layers, so the GUI and the headless tools share every line of drawing code:

* :class:`MeshRenderer` draws into whatever framebuffer is bound on a ``moderngl.Context`` it is
  given (a Qt ``QOpenGLWidget``'s context, or an EGL one): background image, shaded mesh,
  wireframe, points. It owns programs and GPU buffers, not the context or the framebuffer.
* :class:`OffscreenRenderer` owns a headless EGL context and a multisampled framebuffer, and
  returns numpy arrays: RGB (row 0 = image top), camera-space depth in metres and mesh coverage.

In a Qt ``QOpenGLWidget.paintGL``: ``ctx = moderngl.create_context()`` once (Qt's context is
current), ``ctx.detect_framebuffer(widget.defaultFramebufferObject()).use()``, then
``renderer.set_camera(intrinsics, W, H, first_row_is_top=False, viewport_px=(w, h))`` with the
widget's size in device pixels, and draw: background video frame, mesh, wireframe, landmarks.

Geometry arrives in OpenCV camera space (metres; +x right, +y down, +z forward) and is
projected with :func:`core.camera.opengl_projection`, the same pinhole model as
:func:`core.camera.project_perspective` (pixel ``i`` covers ``[i, i+1)``). The renderer knows
nothing about head models: pose them with ``HeadModelLayer`` and place them with
``core.camera.model_to_camera`` first. Face culling is off (the projection may flip winding);
lighting is two-sided.

Colours are floats in [0, 1]; images are uint8. Shaders live in ``shaders/*.glsl``, one file per
program, GLSL 330 core (so they also run in Qt's core-profile contexts).
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import moderngl
import numpy as np
import scipy.sparse

from core.camera import opengl_projection

SHADER_DIR = Path(__file__).resolve().parents[1] / "shaders"
_STAGES = (("vertex_shader", "VERTEX_SHADER"), ("geometry_shader", "GEOMETRY_SHADER"),
           ("fragment_shader", "FRAGMENT_SHADER"))
MAX_LIGHTS = 2  # matches shaders/mesh.glsl
DEFAULT_ALBEDO = (0.72, 0.72, 0.72)  # grey for models without vertex colours
_PREMULTIPLIED_OVER = (moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA)


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lighting:
    """Directional lights plus ambient, all in camera space (randomise freely per render).

    ``directions_to_light``: up to two vectors pointing from the surface towards each light
    (OpenCV camera axes: -y is up, -z points back at the camera); they need not be unit length.
    ``diffuse``: Lambert strength of each light. ``ambient``: added to every surface.
    ``specular`` > 0 adds Blinn-Phong highlights of that strength (0 = matte).
    """

    directions_to_light: tuple[tuple[float, float, float], ...] = ((-0.4, -0.5, -1.0), (0.7, -0.1, -0.6))
    diffuse: tuple[float, ...] = (0.6, 0.2)
    ambient: float = 0.35
    specular: float = 0.0
    shininess: float = 32.0

    def validate(self) -> None:
        if not 1 <= len(self.directions_to_light) <= MAX_LIGHTS:
            raise ValueError(f"Lighting takes 1 to {MAX_LIGHTS} lights, got {len(self.directions_to_light)}")
        if len(self.diffuse) != len(self.directions_to_light):
            raise ValueError(f"Lighting: {len(self.diffuse)} diffuse strengths for "
                             f"{len(self.directions_to_light)} light directions")
        dirs = np.asarray(self.directions_to_light, dtype=np.float64)
        if dirs.shape[1:] != (3,) or not np.isfinite(dirs).all() or (np.linalg.norm(dirs, axis=1) < 1e-9).any():
            raise ValueError(f"Lighting: light directions must be finite non-zero 3-vectors, got {self.directions_to_light}")


@dataclass(frozen=True)
class WireframeStyle:
    """Mesh edges drawn as antialiased lines. ``depth_test``: hide edges behind the surface."""

    color: tuple[float, float, float] = (0.2, 0.9, 0.4)
    opacity: float = 1.0
    width_px: float = 1.0
    depth_test: bool = True


@dataclass
class PointLayer:
    """Round points, e.g. landmarks. Give ``points_cam`` (N, 3) camera-space metres or
    ``points_px`` (N, 2) pixel coordinates (e.g. detected 2D landmarks). ``color``: (3,) for all
    points or (N, 3) per point."""

    points_cam: np.ndarray | None = None
    points_px: np.ndarray | None = None
    color: tuple[float, float, float] | np.ndarray = (1.0, 0.25, 0.2)
    opacity: float = 1.0
    size_px: float = 4.0
    depth_test: bool = False


@dataclass
class RenderResult:
    """What :meth:`OffscreenRenderer.render` returns; every image has row 0 = image top.

    rgb: (H, W, 3) uint8, composited over the background (premultiplied by ``alpha`` when the
    background is transparent, so ``composite_over(rgb, alpha, video)`` blends it later).
    alpha: (H, W) float32 in [0, 1], opacity of everything drawn (1 wherever a background was).
    coverage: (H, W) float32, fraction of each pixel's MSAA samples the mesh covers (mesh only).
    depth_m: (H, W) float32 camera-space Z of the mesh in metres (mean over the covered samples,
    each exact at its sample position), inf where the mesh is absent.
    ``coverage`` and ``depth_m`` are None unless asked for (``with_depth=True``).
    """

    rgb: np.ndarray
    alpha: np.ndarray
    coverage: np.ndarray | None = None
    depth_m: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool silhouette: pixels at least half covered by the mesh."""
        if self.coverage is None:
            raise ValueError("render with with_depth=True to get the coverage mask")
        return self.coverage >= 0.5


# --- helpers ------------------------------------------------------------------------------------


def load_program(ctx: moderngl.Context, name: str) -> moderngl.Program:
    """Compile ``shaders/<name>.glsl``: every stage guarded by ``#if defined <STAGE>_SHADER``."""
    path = SHADER_DIR / f"{name}.glsl"
    source = path.read_text()
    first_line, _, rest = source.partition("\n")
    if not first_line.startswith("#version"):
        raise ValueError(f"{path}: the first line must be the #version directive")
    stages = {}
    for arg, define in _STAGES:
        if f"defined {define}" in source:
            # #line keeps compiler messages pointing at the file's own line numbers.
            stages[arg] = f"{first_line}\n#define {define}\n#line 2\n{rest}"
    try:
        return ctx.program(**stages)
    except moderngl.Error as exc:
        raise RuntimeError(f"compiling {path} failed:\n{exc}") from exc


def create_egl_context(require: int = 330) -> moderngl.Context:
    """A headless OpenGL context (EGL on Linux; the platform default elsewhere).

    The context is released from the calling thread on return: enter it (``with ctx:``) around
    GL work, from any one thread at a time (:class:`OffscreenRenderer` does this per call).
    """
    backend = {"backend": "egl"} if sys.platform.startswith("linux") else {}
    try:
        ctx = moderngl.create_standalone_context(require=require, **backend)
    except Exception as exc:  # moderngl raises plain Exception for a missing libEGL
        raise RuntimeError(
            f"cannot create a headless OpenGL {require // 100}.{require % 100 // 10} context "
            f"({backend.get('backend', 'default backend')}): {exc}. On Debian/Ubuntu install Mesa's EGL "
            "(apt install libegl1 libegl-mesa0 libgl1-mesa-dri); on a GPU box check the driver's EGL."
        ) from exc
    ctx.__exit__(None, None, None)
    return ctx


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals. vertices: (V, 3); faces: (F, 3) -> (V, 3) float32.

    Unreferenced vertices get zero normals (the shader then faces them to the viewer).
    """
    return _NormalSolver(np.asarray(faces), len(vertices))(np.asarray(vertices, dtype=np.float32))


class _NormalSolver:
    """Per-mesh precomputation so per-frame normals cost ~1.5 ms at 30k triangles."""

    def __init__(self, faces: np.ndarray, num_vertices: int):
        self.faces_t = np.ascontiguousarray(faces.T, dtype=np.intp)  # (3, F)
        f = faces.shape[0]
        rows = self.faces_t.ravel()
        cols = np.tile(np.arange(f), 3)
        # (V, F) incidence: summing face normals onto their corners is one sparse product.
        self.incidence = scipy.sparse.csr_matrix((np.ones(3 * f, np.float32), (rows, cols)), shape=(num_vertices, f))

    def __call__(self, vertices: np.ndarray) -> np.ndarray:
        p = np.take(np.ascontiguousarray(vertices.T), self.faces_t, axis=1)  # (xyz, corner, F)
        a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        face_n = np.empty((p.shape[2], 3), np.float32)
        np.subtract(a[1] * b[2], a[2] * b[1], out=face_n[:, 0])
        np.subtract(a[2] * b[0], a[0] * b[2], out=face_n[:, 1])
        np.subtract(a[0] * b[1], a[1] * b[0], out=face_n[:, 2])
        n = np.asarray(self.incidence @ face_n, dtype=np.float32)
        n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-30)[:, None]
        return n


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges of a triangle mesh. faces: (F, 3) -> (E, 2) uint32."""
    f = np.asarray(faces, dtype=np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    edges.sort(axis=1)
    return np.unique(edges, axis=0).astype(np.uint32)


def composite_over(rgb_premultiplied: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Blend a premultiplied overlay (H, W, 3) uint8 with alpha (H, W) over a (H, W, 3) uint8 image."""
    out = rgb_premultiplied.astype(np.float32) + (1.0 - alpha[..., None]) * background.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def distort_render_result(result: RenderResult, remap) -> RenderResult:
    """A render made on ``remap.canvas`` (an ideal pinhole, see ``core.distortion.LensRemap``) as the
    lens would record it, at the camera's frame size: colour (premultiplied) and alpha and coverage
    resampled bilinearly, depth by nearest neighbour (so no depth is invented at silhouettes).
    Composite the result over the raw video with :func:`composite_over` to overlay a distorted frame.
    """
    import cv2  # noqa: PLC0415

    rgb = remap.distort_image(result.rgb)
    alpha = remap.distort_image(result.alpha)
    out = RenderResult(rgb=rgb, alpha=alpha)
    if result.coverage is not None:
        out.coverage = remap.distort_image(result.coverage)
        out.depth_m = remap.distort_image(result.depth_m, interpolation=cv2.INTER_NEAREST, border_value=float("inf"))
    return out


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB (H, W, 3) or grey (H, W) uint8 image as PNG; raises OSError on failure."""
    import cv2  # noqa: PLC0415  (only this helper needs OpenCV)

    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        raise ValueError(f"save_png wants uint8, got {img.dtype}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path} (missing folder, full disk or no permission?)")


def _numpy(array) -> np.ndarray:
    """A numpy view of an array or a torch tensor (without importing torch: the GUI draws with this)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _as_float32(array, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    out = np.ascontiguousarray(_numpy(array), dtype=np.float32)
    if out.ndim != 1 + len(shape_tail) or out.shape[1:] != shape_tail:
        raise ValueError(f"{name} must be (N, {', '.join(map(str, shape_tail))}), got {out.shape}")
    return out


def _colors(color, count: int, name: str) -> np.ndarray:
    c = _numpy(color).astype(np.float32)
    if c.shape == (3,):
        c = np.broadcast_to(c, (count, 3))
    if c.shape != (count, 3):
        raise ValueError(f"{name} must be (3,) or ({count}, 3) in [0, 1], got {c.shape}")
    return c


# --- drawing into a given context ----------------------------------------------------------------


class _GpuMesh:
    """GPU buffers of one triangle topology; positions, normals, colours rewritten in place."""

    def __init__(self, ctx: moderngl.Context, programs: dict[str, moderngl.Program], faces: np.ndarray,
                 num_vertices: int):
        self.faces = faces.copy()
        self.num_vertices = num_vertices
        nbytes = num_vertices * 12
        self.positions = ctx.buffer(reserve=nbytes, dynamic=True)
        self.normals = ctx.buffer(reserve=nbytes, dynamic=True)
        self.colors = ctx.buffer(reserve=nbytes, dynamic=True)
        self.triangles = ctx.buffer(faces.astype(np.uint32).tobytes())
        self.vao = ctx.vertex_array(programs["mesh"], [(self.positions, "3f", "in_position"),
                                                       (self.normals, "3f", "in_normal"),
                                                       (self.colors, "3f", "in_color")],
                                    index_buffer=self.triangles, index_element_size=4)
        self._ctx, self._programs = ctx, programs
        self._normals = _NormalSolver(faces, num_vertices)
        self.edges = self.edges_vao = None  # built on first wireframe draw
        self._last_vertices: np.ndarray | None = None
        self._normals_valid = False
        self._last_colors: np.ndarray | None = None

    def set_vertices(self, vertices: np.ndarray) -> None:
        if self._last_vertices is not None and np.array_equal(vertices, self._last_vertices):
            return  # e.g. shaded mesh and wireframe of the same frame
        self.positions.write(vertices)
        self._last_vertices = vertices.copy()
        self._normals_valid = False

    def update_normals(self) -> None:
        if not self._normals_valid:
            self.normals.write(self._normals(self._last_vertices))
            self._normals_valid = True

    def set_colors(self, colors: np.ndarray) -> None:
        if self._last_colors is not None and np.array_equal(colors, self._last_colors):
            return
        self.colors.write(np.ascontiguousarray(colors, dtype=np.float32))
        self._last_colors = colors.copy()

    def edges_vertex_array(self) -> moderngl.VertexArray:
        if self.edges_vao is None:
            self.edges = self._ctx.buffer(mesh_edges(self.faces).tobytes())
            self.edges_vao = self._ctx.vertex_array(self._programs["wireframe"], [(self.positions, "3f", "in_position")],
                                                    index_buffer=self.edges, index_element_size=4)
        return self.edges_vao

    def release(self) -> None:
        for obj in (self.vao, self.edges_vao, self.triangles, self.edges, self.positions, self.normals, self.colors):
            if obj is not None:
                obj.release()


class MeshRenderer:
    """Draws meshes, wireframes, points and a background image with an OpenCV camera.

    Takes an existing ``moderngl.Context`` (current on the calling thread) and draws into
    whatever framebuffer is bound; it never clears, so callers compose layers in any order.
    Each draw sets the GL state it needs (depth test, premultiplied-alpha blending, no culling).
    Call :meth:`set_camera` before drawing. GPU buffers are created once per mesh topology and
    rewritten in place each frame.
    """

    MAX_CACHED_MESHES = 4

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.programs = {name: load_program(ctx, name) for name in ("mesh", "wireframe", "points", "background")}
        self._meshes: OrderedDict[tuple, _GpuMesh] = OrderedDict()
        self._points_capacity = 0
        self._points_vbo: moderngl.Buffer | None = None
        self._points_vao: moderngl.VertexArray | None = None
        self._bg_texture: moderngl.Texture | None = None
        self._bg_vao = ctx.vertex_array(self.programs["background"], [])
        self._projection: np.ndarray | None = None
        self._intrinsics = np.zeros(4)
        self._viewport_px = (0, 0)
        self._first_row_is_top = True

    # camera ----------------------------------------------------------------------------------

    def set_camera(self, intrinsics, width: int, height: int, near_m: float = 0.01, far_m: float = 100.0,
                   first_row_is_top: bool = True, viewport_px: tuple[int, int] | None = None) -> None:
        """Camera for the following draws.

        intrinsics: (4,) (fx, fy, cx, cy) in pixels of a ``width`` x ``height`` image.
        ``first_row_is_top``: True for offscreen read-back (row 0 = image top), False when drawing
        to a window (see :func:`core.camera.opengl_projection`). ``viewport_px``: size in
        framebuffer pixels of the viewport the image fills (default: the image size); line
        widths and point sizes are in these pixels.
        """
        k = _numpy(intrinsics).astype(np.float64)
        if k.shape != (4,) or not np.isfinite(k).all() or (k[:2] <= 0).any():
            raise ValueError(f"intrinsics must be finite (fx, fy, cx, cy) with fx, fy > 0, got {k.tolist()}")
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if not 0 < near_m < far_m:
            raise ValueError(f"need 0 < near_m < far_m, got {near_m}, {far_m}")
        matrix = opengl_projection(k, width, height, near_m, far_m, first_row_is_top=first_row_is_top)
        self._projection = np.ascontiguousarray(matrix.T, dtype=np.float32)  # GL is column-major
        self._intrinsics = k
        self._viewport_px = tuple(viewport_px) if viewport_px is not None else (int(width), int(height))
        self._first_row_is_top = first_row_is_top
        for name in ("mesh", "wireframe", "points"):
            self.programs[name]["u_projection"].write(self._projection)

    @property
    def projection(self) -> np.ndarray:
        """(4, 4) row-major clip matrix of the current camera (from :meth:`set_camera`)."""
        self._need_camera()
        return self._projection.T.copy()

    def _need_camera(self) -> None:
        if self._projection is None:
            raise RuntimeError("MeshRenderer.set_camera must be called before drawing")

    def _state(self, depth_test: bool) -> None:
        ctx = self.ctx
        ctx.disable(moderngl.CULL_FACE)
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = _PREMULTIPLIED_OVER
        ctx.blend_equation = moderngl.FUNC_ADD
        if depth_test:
            ctx.enable(moderngl.DEPTH_TEST)
            ctx.depth_func = "<="
        else:
            ctx.disable(moderngl.DEPTH_TEST)

    # meshes ----------------------------------------------------------------------------------

    def _gpu_mesh(self, vertices_cam, faces) -> tuple[_GpuMesh, np.ndarray]:
        vertices = _as_float32(vertices_cam, "vertices_cam", (3,))
        faces_np = _numpy(faces)
        if faces_np.ndim != 2 or faces_np.shape[1] != 3 or not np.issubdtype(faces_np.dtype, np.integer):
            raise ValueError(f"faces must be (F, 3) integers, got {faces_np.shape} {faces_np.dtype}")
        key = (len(vertices), faces_np.shape, faces_np.dtype.str, faces_np.ctypes.data)
        mesh = self._meshes.get(key)
        if mesh is None or not np.array_equal(mesh.faces, faces_np):
            # A copy of a known topology (e.g. faces converted afresh each frame) reuses its buffers.
            key = next((k for k, m in self._meshes.items() if k[0] == len(vertices) and m.faces.shape == faces_np.shape
                        and np.array_equal(m.faces, faces_np)), key)
            mesh = self._meshes.get(key)
        if mesh is None or not np.array_equal(mesh.faces, faces_np):
            if faces_np.size and (faces_np.min() < 0 or faces_np.max() >= len(vertices)):
                raise ValueError(f"faces index outside the {len(vertices)} vertices")
            if mesh is not None:
                mesh.release()
            mesh = self._meshes[key] = _GpuMesh(self.ctx, self.programs, faces_np, len(vertices))
            while len(self._meshes) > self.MAX_CACHED_MESHES:
                self._meshes.popitem(last=False)[1].release()
        self._meshes.move_to_end(key)
        if not np.isfinite(vertices).all():
            raise ValueError("vertices_cam has non-finite values")
        mesh.set_vertices(vertices)
        return mesh, vertices

    def draw_mesh(self, vertices_cam, faces, vertex_rgb=None, lighting: Lighting | None = None,
                  opacity: float = 1.0) -> None:
        """Shaded triangles. vertices_cam: (V, 3) metres; faces: (F, 3); vertex_rgb: (V, 3) albedo
        in [0, 1] or None (grey). ``opacity`` 0 writes depth and coverage only (hidden-line removal
        for a wireframe without a shaded surface)."""
        self._need_camera()
        lighting = lighting or Lighting()
        lighting.validate()
        mesh, vertices = self._gpu_mesh(vertices_cam, faces)
        mesh.set_colors(_colors(DEFAULT_ALBEDO if vertex_rgb is None else vertex_rgb, len(vertices), "vertex_rgb"))
        mesh.update_normals()
        prog = self.programs["mesh"]
        dirs = np.zeros((MAX_LIGHTS, 3), np.float32)
        strengths = np.zeros((MAX_LIGHTS, 3), np.float32)
        given = np.asarray(lighting.directions_to_light, dtype=np.float64)
        dirs[: len(given)] = given / np.linalg.norm(given, axis=1, keepdims=True)
        strengths[: len(given)] = np.asarray(lighting.diffuse, dtype=np.float32)[:, None]
        prog["u_light_dirs"].write(dirs)
        prog["u_light_colors"].write(strengths)
        prog["u_ambient"].value = (float(lighting.ambient),) * 3
        prog["u_specular"].value = float(lighting.specular)
        prog["u_shininess"].value = float(lighting.shininess)
        prog["u_opacity"].value = float(np.clip(opacity, 0.0, 1.0))
        self._state(depth_test=True)
        mesh.vao.render(moderngl.TRIANGLES)

    def draw_wireframe(self, vertices_cam, faces, style: WireframeStyle | None = None,
                       depth_bias_m: float = 1e-3) -> None:
        """Mesh edges. With ``style.depth_test`` edges behind an already drawn surface are hidden;
        ``depth_bias_m`` pulls the lines that far towards the camera so they win against their own
        surface."""
        self._need_camera()
        style = style or WireframeStyle()
        mesh, _ = self._gpu_mesh(vertices_cam, faces)
        vao = mesh.edges_vertex_array()
        prog = self.programs["wireframe"]
        prog["u_color"].value = (*map(float, style.color), float(np.clip(style.opacity, 0.0, 1.0)))
        prog["u_width_px"].value = float(style.width_px)
        prog["u_viewport_px"].value = tuple(map(float, self._viewport_px))
        prog["u_depth_bias_m"].value = float(depth_bias_m)
        self._state(depth_test=style.depth_test)
        vao.render(moderngl.LINES)

    def draw_points(self, points_cam, color=(1.0, 0.25, 0.2), opacity: float = 1.0, size_px: float = 4.0,
                    depth_test: bool = False, depth_bias_m: float = 2e-3) -> None:
        """Antialiased discs of diameter ``size_px`` at camera-space points (N, 3)."""
        self._need_camera()
        points = _as_float32(points_cam, "points_cam", (3,))
        if len(points) == 0:
            return
        data = np.empty((len(points), 7), np.float32)
        data[:, :3] = points
        data[:, 3:6] = _colors(color, len(points), "point color")
        data[:, 6] = np.clip(opacity, 0.0, 1.0)
        if len(points) > self._points_capacity:
            if self._points_vbo is not None:
                self._points_vao.release()
                self._points_vbo.release()
            self._points_capacity = max(len(points), 2 * self._points_capacity, 512)
            self._points_vbo = self.ctx.buffer(reserve=self._points_capacity * 28, dynamic=True)
            self._points_vao = self.ctx.vertex_array(self.programs["points"],
                                                     [(self._points_vbo, "3f 4f", "in_position", "in_color")])
        self._points_vbo.write(data)
        prog = self.programs["points"]
        prog["u_size_px"].value = float(size_px)
        prog["u_depth_bias_m"].value = float(depth_bias_m)
        prog["u_viewport_px"].value = tuple(map(float, self._viewport_px))
        self._state(depth_test=depth_test)
        self._points_vao.render(moderngl.POINTS, vertices=len(points))

    def draw_points_px(self, points_px, color=(1.0, 0.25, 0.2), opacity: float = 1.0, size_px: float = 4.0) -> None:
        """Discs at pixel coordinates (N, 2) of the camera's image (e.g. detected landmarks)."""
        self._need_camera()
        px = _as_float32(points_px, "points_px", (2,))
        fx, fy, cx, cy = self._intrinsics
        # Back-project onto the Z = 1 m plane: the projection maps them back exactly.
        points = np.stack([(px[:, 0] - cx) / fx, (px[:, 1] - cy) / fy, np.ones(len(px))], 1)
        self.draw_points(points, color, opacity, size_px, depth_test=False, depth_bias_m=0.0)

    def draw_background(self, image: np.ndarray, opacity: float = 1.0) -> None:
        """Full-viewport image (H, W, 3) or (H, W) uint8, row 0 = top; no depth test or write.

        The image is stretched over the viewport, as the projection stretches the camera's image:
        pass a frame whose field of view is that of the intrinsics.
        """
        self._need_camera()
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
            raise ValueError(f"background image must be (H, W, 3) or (H, W) uint8, got {img.shape} {img.dtype}")
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = np.ascontiguousarray(img)
        h, w = img.shape[:2]
        if self._bg_texture is None or self._bg_texture.size != (w, h):
            if self._bg_texture is not None:
                self._bg_texture.release()
            self._bg_texture = self.ctx.texture((w, h), 3, alignment=1)
        self._bg_texture.write(img)
        exact = (w, h) == tuple(self._viewport_px)
        filt = moderngl.NEAREST if exact else moderngl.LINEAR
        self._bg_texture.filter = (filt, filt)
        self._bg_texture.repeat_x = self._bg_texture.repeat_y = False
        prog = self.programs["background"]
        prog["u_first_row_is_top"].value = self._first_row_is_top
        prog["u_opacity"].value = float(np.clip(opacity, 0.0, 1.0))
        prog["u_image"].value = 0
        self._bg_texture.use(0)
        self._state(depth_test=False)
        self._bg_vao.render(moderngl.TRIANGLES, vertices=3)

    def release(self) -> None:
        """Free every GL object this renderer made (the context must be current)."""
        for mesh in self._meshes.values():
            mesh.release()
        self._meshes.clear()
        for obj in (self._points_vao, self._points_vbo, self._bg_texture, self._bg_vao, *self.programs.values()):
            if obj is not None:
                obj.release()
        self._points_vao = self._points_vbo = self._bg_texture = self._bg_vao = None
        self.programs = {}


# --- headless rendering to numpy ------------------------------------------------------------------


@dataclass
class _Targets:
    """Framebuffers of one size: a multisampled draw target and single-sample read-back targets."""

    objects: list = field(default_factory=list)
    draw: moderngl.Framebuffer | None = None  # RGBA8 + depth texture, multisampled
    depth_ms: moderngl.Texture | None = None
    color_out: moderngl.Framebuffer | None = None  # RGBA8, MSAA resolved
    geometry_out: moderngl.Framebuffer | None = None  # RG32F (camera Z, coverage)

    def release(self) -> None:
        for obj in reversed(self.objects):
            obj.release()
        self.objects.clear()


class OffscreenRenderer:
    """Headless renderer returning numpy images, on its own EGL context (or one you pass).

    ``samples``: MSAA samples per pixel (4 by default, capped at the driver's maximum; 1 turns
    antialiasing off). The context is made current for the duration of each call, so one
    renderer can be used from any thread, one call at a time (a lock serialises calls). Use it
    as a context manager or call :meth:`release`; a renderer that made its context destroys it.
    """

    def __init__(self, width: int, height: int, samples: int = 4, ctx: moderngl.Context | None = None):
        if samples < 1:
            raise ValueError(f"samples must be >= 1 (1 = no antialiasing), got {samples}")
        self._owns_ctx = ctx is None
        self.ctx = create_egl_context() if ctx is None else ctx
        self._lock = threading.Lock()
        self._targets = _Targets()
        self.renderer: MeshRenderer | None = None
        self._depth_program: moderngl.Program | None = None
        self._depth_vao: moderngl.VertexArray | None = None
        self.size = (0, 0)
        try:
            with self._current():
                self.samples = min(int(samples), self.ctx.max_samples)
                self.renderer = MeshRenderer(self.ctx)
                self._depth_program = load_program(self.ctx, "depth_resolve")
                self._depth_vao = self.ctx.vertex_array(self._depth_program, [])
                self._allocate(width, height)
        except Exception:
            self.release()
            raise

    @contextmanager
    def _current(self):
        if self.ctx is None:
            raise RuntimeError("this OffscreenRenderer has been released")
        with self._lock, self.ctx:
            yield

    def __enter__(self) -> "OffscreenRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _allocate(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        ctx, t = self.ctx, _Targets()
        size = (int(width), int(height))
        color_ms = ctx.renderbuffer(size, 4, samples=self.samples)
        t.depth_ms = ctx.depth_texture(size, samples=self.samples)
        color_out = ctx.renderbuffer(size, 4)
        geometry = ctx.renderbuffer(size, 2, dtype="f4")
        t.objects += [color_ms, t.depth_ms, color_out, geometry]
        t.draw = ctx.framebuffer([color_ms], t.depth_ms)
        t.color_out = ctx.framebuffer([color_out])
        t.geometry_out = ctx.framebuffer([geometry])
        t.objects += [t.draw, t.color_out, t.geometry_out]
        self._targets.release()
        self._targets = t
        self.size = size

    def resize(self, width: int, height: int) -> None:
        """Change the output size (reallocates the framebuffers only)."""
        if (width, height) != self.size:
            with self._current():
                self._allocate(width, height)

    def render(self, vertices_cam, faces, intrinsics, *, vertex_rgb=None, lighting: Lighting | None = None,
               mesh_opacity: float = 1.0, background=None, wireframe: WireframeStyle | None = None,
               points: PointLayer | Sequence[PointLayer] | None = None, with_depth: bool = False,
               near_m: float = 0.01, far_m: float = 100.0) -> RenderResult:
        """Render one image of :attr:`size` (W, H).

        vertices_cam: (V, 3) camera-space metres (numpy or torch) or None for no mesh; faces:
        (F, 3); intrinsics: (4,) (fx, fy, cx, cy) for this image size; vertex_rgb: (V, 3) in
        [0, 1] or None for grey. background: None (transparent black), an (r, g, b) colour in
        [0, 1], or an (H, W, 3) uint8 image (stretched over the frame). ``mesh_opacity`` 0 draws
        the mesh into depth and coverage only (a wireframe with hidden lines removed).
        Wireframe and points are drawn over the mesh; depth and coverage are of the mesh alone.
        """
        width, height = self.size
        layers = [] if points is None else [points] if isinstance(points, PointLayer) else list(points)
        for layer in layers:
            if (layer.points_cam is None) == (layer.points_px is None):
                raise ValueError("a PointLayer needs exactly one of points_cam and points_px")
        if wireframe is not None and vertices_cam is None:
            raise ValueError("a wireframe needs vertices_cam and faces")
        if background is not None and not isinstance(background, np.ndarray) and len(background) != 3:
            raise ValueError(f"background must be None, an (r, g, b) colour in [0, 1] or an (H, W, 3) uint8 image, "
                             f"got {background!r}")
        with self._current():
            r, t = self.renderer, self._targets
            r.set_camera(intrinsics, width, height, near_m, far_m, first_row_is_top=True)
            t.draw.use()
            if background is None or isinstance(background, np.ndarray):
                t.draw.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            else:
                t.draw.clear(*(float(c) for c in background), 1.0, depth=1.0)
            if isinstance(background, np.ndarray):
                r.draw_background(background)
            if vertices_cam is not None:
                r.draw_mesh(vertices_cam, faces, vertex_rgb, lighting, opacity=mesh_opacity)
            geometry = self._resolve_depth() if with_depth else None
            if wireframe is not None:
                r.draw_wireframe(vertices_cam, faces, wireframe)
            for layer in layers:
                if layer.points_cam is not None:
                    r.draw_points(layer.points_cam, layer.color, layer.opacity, layer.size_px, layer.depth_test)
                else:
                    r.draw_points_px(layer.points_px, layer.color, layer.opacity, layer.size_px)
            self.ctx.copy_framebuffer(t.color_out, t.draw)  # MSAA resolve
            rgba = np.frombuffer(t.color_out.read(components=4, alignment=1), np.uint8).reshape(height, width, 4)
        result = RenderResult(rgb=np.ascontiguousarray(rgba[..., :3]),
                              alpha=rgba[..., 3].astype(np.float32) * (1.0 / 255.0))
        if geometry is not None:
            result.coverage = np.ascontiguousarray(geometry[..., 1])
            result.depth_m = np.where(result.coverage > 0, geometry[..., 0], np.inf).astype(np.float32)
        return result

    def _resolve_depth(self) -> np.ndarray:
        """(H, W, 2) camera Z (mean over covered samples) and coverage, from the MSAA depth texture."""
        t, prog = self._targets, self._depth_program
        projection = self.renderer.projection  # the depth row inverted in the shader
        prog["u_proj_a"].value = float(projection[2, 2])
        prog["u_proj_b"].value = float(projection[2, 3])
        prog["u_samples"].value = self.samples
        prog["u_depth"].value = 0
        t.geometry_out.use()
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND)
        t.depth_ms.use(0)
        self._depth_vao.render(moderngl.TRIANGLES, vertices=3)
        width, height = self.size
        out = np.frombuffer(t.geometry_out.read(components=2, dtype="f4"), np.float32).reshape(height, width, 2)
        t.draw.use()
        return out

    def release(self) -> None:
        """Free the framebuffers, programs and buffers (and the context, if this renderer made it)."""
        if self.ctx is None:
            return
        with self._lock, self.ctx:
            if self.renderer is not None:
                self.renderer.release()
                self.renderer = None
            if self._depth_program is not None:
                if self._depth_vao is not None:
                    self._depth_vao.release()
                self._depth_program.release()
                self._depth_program = None
            self._targets.release()
        if self._owns_ctx:
            self.ctx.release()
        self.ctx = None
