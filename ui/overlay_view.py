"""The central video view: the frame with the tracked mesh drawn over it by ModernGL.

The mesh is drawn with the frame's own estimated pinhole intrinsics (``core.render.MeshRenderer``,
the renderer the headless tools use), so it lines up under strong perspective. Layers: shaded
mesh (opacity), wireframe, detected and fitted landmarks. Mirror view flips the picture for
display only (a mirrored camera: x -> W - x, the same for pixels, vertices and the principal
point). The image is letterboxed to keep its aspect ratio.

All GL happens on the GUI thread inside ``paintGL``; :meth:`OverlayView.show_result` only stores
the newest result and schedules one repaint (latest wins: Qt merges pending updates). The drawing
itself is :func:`draw_overlay`, a plain function of a ModernGL context, so it is tested headless.

The GL surface is a ``QOpenGLWindow`` in a window container rather than a ``QOpenGLWidget``: a
QOpenGLWidget makes Qt composite the *whole* top-level window through OpenGL on every repaint of
any widget (plots, labels). On a software rasterizer (Mesa llvmpipe, Xvfb, remote desktops) that
costs tens of milliseconds per repaint; measured here with a label updating at 15 Hz in a
1280x900 window: 107 event-loop ticks in 5 s and 35 % CPU with a shown QOpenGLWidget, 940 ticks
and 2 % CPU with the window container. ModernGL use is the same: a context created in
``initializeGL`` on Qt's current context, ``detect_framebuffer(defaultFramebufferObject())``.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QSurfaceFormat
from PySide6.QtOpenGL import QOpenGLWindow
from PySide6.QtWidgets import QVBoxLayout, QWidget

CLEAR_RGB = (0.09, 0.09, 0.1)
DETECTED_RGB = (1.0, 0.3, 0.2)  # MediaPipe's landmarks
FITTED_RGB = (0.2, 0.8, 1.0)  # the model's embedded landmarks, projected
LOST_OPACITY_FACTOR = 0.35  # the mesh of a lost face is kept (where it was last seen) but faded


SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software rasterizer", "swiftshader", "basic render")


def configure_default_surface_format(samples: int = 4) -> None:
    """OpenGL 3.3 core with depth (and MSAA); must run before the QApplication exists."""
    fmt = QSurfaceFormat()
    fmt.setRenderableType(QSurfaceFormat.RenderableType.OpenGL)
    fmt.setVersion(3, 3)
    fmt.setProfile(QSurfaceFormat.OpenGLContextProfile.CoreProfile)
    fmt.setDepthBufferSize(24)
    fmt.setSamples(samples)
    QSurfaceFormat.setDefaultFormat(fmt)


_PROBED_RENDERER: str | None = None


def probe_gl_renderer() -> str:
    """GL_RENDERER of a context like the view's (probed once); '' when Qt cannot make one here
    (e.g. the offscreen platform, or a display without OpenGL)."""
    global _PROBED_RENDERER
    if _PROBED_RENDERER is None:
        from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext  # noqa: PLC0415

        _PROBED_RENDERER = ""
        if QGuiApplication.platformName() in ("offscreen", "minimal", "vnc"):
            return _PROBED_RENDERER  # Qt's software-only platforms have no OpenGL windows
        surface = QOffscreenSurface()
        surface.create()
        context = QOpenGLContext()
        if surface.isValid() and context.create() and context.makeCurrent(surface):
            try:
                _PROBED_RENDERER = str(context.functions().glGetString(0x1F01) or "")  # GL_RENDERER
            finally:
                context.doneCurrent()
    return _PROBED_RENDERER


def default_samples(renderer: str | None = None) -> int:
    """MSAA samples for the view: 4 on a GPU, none on a software rasterizer (where 4x MSAA costs ~3x the
    CPU per frame; lines and points stay antialiased by their shaders). FLAMECAM_GL_SAMPLES overrides."""
    if os.environ.get("FLAMECAM_GL_SAMPLES"):
        return max(0, int(os.environ["FLAMECAM_GL_SAMPLES"]))
    renderer = probe_gl_renderer() if renderer is None else renderer
    return 0 if any(name in renderer.lower() for name in SOFTWARE_RENDERERS) else 4


@dataclass(frozen=True)
class OverlayStyle:
    shaded: bool = True
    wireframe: bool = False
    detected_landmarks: bool = False
    fitted_landmarks: bool = False
    opacity: float = 0.6  # of the shaded mesh
    mirror: bool = False
    point_size_px: float = 4.0
    # With a calibrated lens: show the video undistorted (the overlay drawn with the ideal pinhole
    # camera as is) instead of the raw video with the overlay distorted to match it.
    undistort_video: bool = False

    @property
    def draws_anything(self) -> bool:
        return self.shaded or self.wireframe or self.detected_landmarks or self.fitted_landmarks


@dataclass(frozen=True)
class OverlayScene:
    """One frame to show: the image and, when tracked, the mesh and landmarks (numpy only)."""

    rgb: np.ndarray  # (H, W, 3) uint8
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy of this image
    frame_index: int = -1
    vertices_cam: np.ndarray | None = None  # (V, 3) OpenCV camera space, metres
    faces: np.ndarray | None = None  # (F, 3)
    vertex_rgb: np.ndarray | None = None  # (V, 3) or None (grey)
    detected_px: np.ndarray | None = None  # (N, 2) finite pixels
    fitted_px: np.ndarray | None = None  # (M, 2) finite pixels
    tracking_state: str = "tracking"
    lens_view: str = "none"  # none (no lens) | distorted (raw video, overlay distorted) | undistorted (video remapped)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    @classmethod
    def from_result(cls, result, model, lens_remap=None, undistort_video: bool = False) -> "OverlayScene":
        """From a ``core.pipeline.FrameResult`` and its session's ``ModelInfo`` (or None).

        ``lens_remap``: the session's ``core.distortion.LensRemap`` when a calibrated lens distorts
        the video (``IntrinsicsPlan.lens_remap()``; the engine then fits undistorted landmarks with
        the ideal pinhole camera, and ``track.landmarks_px`` are undistorted). By default the raw
        video is shown and the overlay is distorted to match it: mesh vertices by
        ``distort_vertices_cam`` (exact at the vertices, depth kept) and landmark points by
        ``distort_points``. ``undistort_video``: show the video remapped to the ideal pinhole
        (``LensRemap.undistort_image``) with the overlay as the tracker sees it.
        """
        track = result.track
        verts = result.mesh_vertices_cam
        has_mesh = verts is not None and model is not None and len(verts) == model.num_vertices
        verts = verts if has_mesh else None
        detected, fitted = track.landmarks_px, track.fitted_landmarks_px
        rgb = result.frame.rgb
        lens_view = "none"
        if lens_remap is not None and not lens_remap.lens.is_identity:
            from core.distortion import distort_points, distort_vertices_cam  # noqa: PLC0415

            if undistort_video:
                rgb = lens_remap.undistort_image(rgb)
                lens_view = "undistorted"
            else:
                k, lens = lens_remap.intrinsics, lens_remap.lens
                if verts is not None:
                    verts = distort_vertices_cam(verts, k, lens).astype(np.float32)
                detected = distort_points(np.asarray(detected, np.float64), k, lens)
                fitted = distort_points(np.asarray(fitted, np.float64), k, lens)
                lens_view = "distorted"

        def finite(points):
            pts = np.asarray(points, np.float32)
            return pts[np.isfinite(pts).all(1)] if pts.ndim == 2 else None

        return cls(rgb=rgb, intrinsics=np.asarray(track.intrinsics, np.float64),
                   frame_index=int(track.frame_index), vertices_cam=verts,
                   faces=model.faces if has_mesh else None, vertex_rgb=model.vertex_rgb if has_mesh else None,
                   detected_px=finite(detected), fitted_px=finite(fitted),
                   tracking_state=track.tracking_state, lens_view=lens_view)


def letterbox(image_size: tuple[int, int], target_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) of the largest rectangle of the image's aspect centred in the target (GL: y up)."""
    iw, ih = image_size
    tw, th = target_size
    if iw <= 0 or ih <= 0 or tw <= 0 or th <= 0:
        return 0, 0, max(tw, 0), max(th, 0)
    scale = min(tw / iw, th / ih)
    w, h = max(1, round(iw * scale)), max(1, round(ih * scale))
    return (tw - w) // 2, (th - h) // 2, w, h


def mirrored(scene: OverlayScene) -> OverlayScene:
    """The scene seen in a mirror: pixel x -> W - x (pixel i covers [i, i+1)), camera X -> -X."""
    width = scene.size[0]
    flip_px = lambda p: None if p is None else np.column_stack([width - p[:, 0], p[:, 1]])  # noqa: E731
    fx, fy, cx, cy = (float(v) for v in scene.intrinsics)
    verts = None if scene.vertices_cam is None else scene.vertices_cam * np.array([-1.0, 1.0, 1.0], np.float32)
    return OverlayScene(rgb=np.ascontiguousarray(scene.rgb[:, ::-1]), intrinsics=np.array([fx, fy, width - cx, cy]),
                        frame_index=scene.frame_index, vertices_cam=verts, faces=scene.faces,
                        vertex_rgb=scene.vertex_rgb, detected_px=flip_px(scene.detected_px),
                        fitted_px=flip_px(scene.fitted_px), tracking_state=scene.tracking_state,
                        lens_view=scene.lens_view)


def draw_overlay(ctx, renderer, framebuffer, scene: OverlayScene | None, style: OverlayStyle,
                 target_size_px: tuple[int, int], first_row_is_top: bool = False) -> tuple[int, int, int, int]:
    """Clear ``framebuffer`` and draw the scene letterboxed into it; returns the image's viewport.

    ``renderer``: a ``core.render.MeshRenderer`` on ``ctx``. ``first_row_is_top`` False for a
    window's framebuffer (row 0 at the bottom), True for offscreen read-back.
    """
    framebuffer.use()
    framebuffer.clear(*CLEAR_RGB, 1.0, depth=1.0)
    if scene is None:
        return 0, 0, 0, 0
    lighting = None  # the renderer's default
    if style.mirror:
        from core.render import Lighting  # noqa: PLC0415

        scene = mirrored(scene)
        default = Lighting()  # mirror the lights with the head, so shading is the mirror image too
        lighting = Lighting(**{**default.__dict__, "directions_to_light": tuple(
            (-x, y, z) for x, y, z in default.directions_to_light)})
    width, height = scene.size
    x0, y0, w, h = letterbox((width, height), target_size_px)
    if first_row_is_top:  # the letterbox offset counts from the top row instead
        y0 = target_size_px[1] - h - y0
    ctx.viewport = (x0, y0, w, h)
    renderer.set_camera(scene.intrinsics, width, height, first_row_is_top=first_row_is_top, viewport_px=(w, h))
    renderer.draw_background(scene.rgb)
    fade = LOST_OPACITY_FACTOR if scene.tracking_state == "lost" else 1.0
    if scene.vertices_cam is not None:
        if style.shaded or style.wireframe:
            # Opacity 0 still writes depth: the wireframe then hides its back edges.
            renderer.draw_mesh(scene.vertices_cam, scene.faces, scene.vertex_rgb, lighting,
                               opacity=style.opacity * fade if style.shaded else 0.0)
        if style.wireframe:
            from core.render import WireframeStyle  # noqa: PLC0415

            renderer.draw_wireframe(scene.vertices_cam, scene.faces,
                                    WireframeStyle(opacity=0.8 * fade, width_px=1.0))
    if style.fitted_landmarks and scene.fitted_px is not None and len(scene.fitted_px):
        renderer.draw_points_px(scene.fitted_px, FITTED_RGB, opacity=fade, size_px=style.point_size_px)
    if style.detected_landmarks and scene.detected_px is not None and len(scene.detected_px):
        renderer.draw_points_px(scene.detected_px, DETECTED_RGB, size_px=style.point_size_px)
    return x0, y0, w, h


class _GLWindow(QOpenGLWindow):
    """The native GL surface of :class:`OverlayView`; paints and drops are delegated to the view."""

    def __init__(self, view: "OverlayView"):
        super().__init__()
        self._view = view

    def initializeGL(self) -> None:  # noqa: N802  (Qt's name)
        self._view._initialize_gl()

    def paintGL(self) -> None:  # noqa: N802
        self._view._paint_gl()

    def event(self, event) -> bool:
        kind = event.type()
        if kind == QEvent.Type.UpdateRequest:  # one frame: paintGL, then the buffer swap
            t0 = time.perf_counter()
            handled = super().event(event)
            self._view.frame_ms.append((time.perf_counter() - t0) * 1000)
            return handled
        # A QWindow gets drag-and-drop events itself, not its container widget: forward file drops.
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
                event.acceptProposedAction()
                return True
        elif kind == QEvent.Type.Drop:
            urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
            if urls:
                event.acceptProposedAction()
                self._view.fileDropped.emit(urls[0].toLocalFile())
                return True
        return super().event(event)


class OverlayView(QWidget):
    """The video with the mesh overlay (see module docstring): a widget hosting a GL window."""

    glFailed = Signal(str)  # OpenGL could not be set up or drawing failed: the message says why
    fileDropped = Signal(str)  # a local file or folder dropped on the video

    def __init__(self, parent=None, samples: int | None = None):
        super().__init__(parent)
        self.setMinimumSize(240, 180)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.gl_error: str | None = None
        self.renderer_name = probe_gl_renderer()
        if self.renderer_name:
            self.samples = default_samples(self.renderer_name) if samples is None else samples
            fmt = QSurfaceFormat.defaultFormat()
            fmt.setSamples(self.samples)
            self.gl_window = _GLWindow(self)
            self.gl_window.setFormat(fmt)
            self.container = QWidget.createWindowContainer(self.gl_window, self)
            self.container.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        else:  # keep running without the overlay, and say why
            from PySide6.QtGui import QGuiApplication  # noqa: PLC0415
            from PySide6.QtWidgets import QLabel  # noqa: PLC0415

            self.samples = 0
            self.gl_window = None
            self.gl_error = (f"OpenGL is not available on this display (Qt platform "
                             f"'{QGuiApplication.platformName()}'), so the video and overlay cannot be drawn; "
                             "tracking, plots and recording work.")
            self.container = QLabel(self.gl_error)
            self.container.setWordWrap(True)
            self.container.setAlignment(Qt.AlignmentFlag.AlignCenter)
            from PySide6.QtCore import QTimer  # noqa: PLC0415

            QTimer.singleShot(0, lambda: self.glFailed.emit(self.gl_error))
        layout.addWidget(self.container)
        self._style = OverlayStyle()
        self._model = None
        self._lens_remap = None  # core.distortion.LensRemap of the session's calibrated lens, or None
        self._result = None
        self._scene: OverlayScene | None = None
        self._scene_dirty = False
        self.ctx = None
        self.renderer = None
        self._framebuffer = None
        self._framebuffer_id = None
        self.gl_info: dict = {}
        self.paint_ms: deque[float] = deque(maxlen=20000)  # duration of each paintGL (the GL calls)
        self.frame_ms: deque[float] = deque(maxlen=20000)  # paintGL plus the buffer swap, per repaint
        self.painted_frames: deque[int] = deque(maxlen=100000)  # frame index shown by each paint
        self.last_viewport: tuple[int, int, int, int] = (0, 0, 0, 0)

    # -- data ---------------------------------------------------------------------------------------

    @property
    def style(self) -> OverlayStyle:
        return self._style

    def set_style(self, style: OverlayStyle) -> None:
        if style.undistort_video != self._style.undistort_video:
            self._scene_dirty = self._result is not None  # the video and overlay change with it
        self._style = style
        self.request_paint()

    def set_model(self, model_info) -> None:
        """The session's ``core.pipeline.ModelInfo`` (faces and colours of ``mesh_vertices_cam``)."""
        self._model = model_info
        self._scene_dirty = True

    def set_lens(self, lens_remap) -> None:
        """The session's ``core.distortion.LensRemap`` (``IntrinsicsPlan.lens_remap()``), or None
        without a calibrated lens: see :meth:`OverlayScene.from_result`."""
        self._lens_remap = lens_remap
        self._scene_dirty = self._result is not None

    @property
    def lens_remap(self):
        return self._lens_remap

    def show_result(self, result) -> None:
        """Keep the newest ``FrameResult`` and schedule one repaint (pending repaints merge)."""
        self._result = result
        self._scene_dirty = True
        self.request_paint()

    def clear(self) -> None:
        self._result = None
        self._scene = None
        self._scene_dirty = False
        self.request_paint()

    def request_paint(self) -> None:
        if self.gl_window is not None:
            self.gl_window.update()

    @property
    def scene(self) -> OverlayScene | None:
        """The scene the next paint draws (built lazily from the newest result)."""
        if self._scene_dirty:
            self._scene_dirty = False
            self._scene = None if self._result is None else OverlayScene.from_result(
                self._result, self._model, self._lens_remap, self._style.undistort_video)
        return self._scene

    def render_image(self, style: OverlayStyle | None = None) -> np.ndarray | None:
        """(H, W, 3) uint8 of the current scene drawn at the view's size (row 0 = top), with ``style``
        (default: the view's); for snapshots and tests. None before OpenGL is up."""
        if self.ctx is None or self.renderer is None:
            return None
        self.gl_window.makeCurrent()
        try:
            width, height = self._target_size()
            color = self.ctx.renderbuffer((width, height), 4)
            depth = self.ctx.depth_renderbuffer((width, height))
            fbo = self.ctx.framebuffer([color], depth)
            try:
                draw_overlay(self.ctx, self.renderer, fbo, self.scene, style or self._style, (width, height),
                             first_row_is_top=True)
                data = fbo.read(components=3, alignment=1)
            finally:
                for obj in (fbo, color, depth):
                    obj.release()
        finally:
            self.gl_window.doneCurrent()
        return np.frombuffer(data, np.uint8).reshape(height, width, 3).copy()

    # -- GL (called by the GL window on the GUI thread) ----------------------------------------------

    def _initialize_gl(self) -> None:
        import moderngl  # noqa: PLC0415

        from core.render import MeshRenderer  # noqa: PLC0415

        try:
            self.ctx = moderngl.create_context()
            if self.ctx.version_code < 330:
                raise RuntimeError(f"OpenGL {self.ctx.version_code / 100:.1f} is too old; the overlay needs 3.3")
            self.renderer = MeshRenderer(self.ctx)
            self.gl_info = {k: self.ctx.info.get(k) for k in ("GL_VERSION", "GL_RENDERER", "GL_VENDOR")}
            self.gl_info["samples"] = self.gl_window.format().samples()
        except Exception as exc:  # noqa: BLE001  (reported to the user; the rest of the app runs on)
            self.ctx = self.renderer = None
            self.gl_error = f"The OpenGL overlay is unavailable: {exc}"
            self.glFailed.emit(self.gl_error)
            return
        context = self.gl_window.context()
        if context is not None:
            context.aboutToBeDestroyed.connect(self._release_gl)

    def _release_gl(self) -> None:
        """Free the renderer's GL objects while their context still exists."""
        renderer, self.renderer, self._framebuffer = self.renderer, None, None
        if renderer is None:
            return
        try:
            self.gl_window.makeCurrent()
        except RuntimeError:  # the window is already gone: its context takes the objects with it
            return
        try:
            renderer.release()
        finally:
            self.gl_window.doneCurrent()

    def _paint_gl(self) -> None:
        if self.ctx is None or self.renderer is None:
            return
        t0 = time.perf_counter()
        fbo_id = self.gl_window.defaultFramebufferObject()
        if self._framebuffer is None or fbo_id != self._framebuffer_id:
            # Qt owns this framebuffer: wrap it, never release it.
            self._framebuffer = self.ctx.detect_framebuffer(fbo_id)
            self._framebuffer_id = fbo_id
        size = self._target_size()
        scene = self.scene
        try:
            self.last_viewport = draw_overlay(self.ctx, self.renderer, self._framebuffer, scene, self._style, size)
        except Exception as exc:  # noqa: BLE001  (a bad frame must not take the window down)
            self.gl_error = f"Drawing the overlay failed: {exc}"
            self.glFailed.emit(self.gl_error)
            return
        if scene is not None:
            self.painted_frames.append(scene.frame_index)
        self.paint_ms.append((time.perf_counter() - t0) * 1000)

    def _target_size(self) -> tuple[int, int]:
        ratio = self.gl_window.devicePixelRatio()
        return max(1, round(self.gl_window.width() * ratio)), max(1, round(self.gl_window.height() * ratio))

    def image_to_view(self, points_px: np.ndarray) -> np.ndarray:
        """Image pixel coordinates -> framebuffer pixels (top-left origin) of the view as displayed."""
        scene = self._scene
        if scene is None:
            raise RuntimeError("no frame shown yet")
        width, height = scene.size
        target = self._target_size()
        x0, y0, w, h = letterbox((width, height), target)
        pts = np.asarray(points_px, np.float64).copy()
        if self._style.mirror:
            pts[:, 0] = width - pts[:, 0]
        top = target[1] - y0 - h  # GL's y0 counts from the bottom
        return np.column_stack([x0 + pts[:, 0] * w / width, top + pts[:, 1] * h / height])
