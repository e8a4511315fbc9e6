"""Rendering side of the synthetic source: a head model through the offscreen renderer."""
from __future__ import annotations

import numpy as np
import torch

from core import camera
from core.head_model import HeadModel, HeadModelLayer
from core.render import Lighting, OffscreenRenderer

PLAIN_BACKGROUND = (0.42, 0.45, 0.5)


def random_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural 'room': smooth colour fields, a few blurred shapes and fine noise (uint8 RGB)."""
    import cv2  # noqa: PLC0415

    coarse = rng.uniform(0.1, 0.9, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(3, 9)):
        colour = tuple(float(c) for c in rng.uniform(0, 1, 3))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(10, min(width, height) // 3)), colour, -1)
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(1.0, 6.0)))
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def random_lighting(rng: np.random.Generator) -> Lighting:
    """A key light from the front half-space, a weaker fill, random ambient."""
    key = (rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.3), -1.0)
    fill = (rng.uniform(-1, 1), rng.uniform(-0.5, 0.5), -0.6)
    return Lighting(directions_to_light=(key, fill), diffuse=(rng.uniform(0.4, 0.75), rng.uniform(0.05, 0.3)),
                    ambient=float(rng.uniform(0.25, 0.45)))


class SyntheticScene:
    """Owns the renderer, the full-mesh layer and the scene's background and lighting."""

    def __init__(self, head: HeadModel, opts):
        self.head, self.opts = head, opts
        self.layer = HeadModelLayer(head)
        rng = np.random.default_rng(opts.seed + 1)
        self.background = (random_background(opts.width, opts.height, rng) if opts.background == "random"
                           else PLAIN_BACKGROUND)
        self.lighting = random_lighting(rng) if opts.lighting == "random" else Lighting()
        self.noise_rng = np.random.default_rng(opts.seed + 2)
        # Lens distortion: render the ideal pinhole image on a canvas covering the distorted frame, then remap.
        lens = opts.lens_distortion() if hasattr(opts, "lens_distortion") else None
        self.remap = None
        if lens is not None and not lens.is_identity:
            from core.distortion import LensRemap  # noqa: PLC0415

            self.remap = LensRemap(opts.intrinsics(), lens, (opts.width, opts.height))
        size = self.remap.canvas.size if self.remap is not None else (opts.width, opts.height)
        self.renderer = OffscreenRenderer(*size)

    def vertices_cam(self, truth) -> np.ndarray:
        """(V, 3) camera-space vertices of a ground truth."""
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32))[None]  # noqa: E731
        with torch.no_grad():
            verts = self.layer(t(truth.shape), t(truth.expr), t(truth.rotation), t(truth.neck_pose), t(truth.jaw_pose),
                               t(truth.eyes_pose))
            return camera.model_to_camera(verts, t(truth.translation))[0].numpy()

    def render(self, truth) -> np.ndarray:
        if self.remap is not None:
            rgb = self._render_distorted(truth)
        else:
            rgb = self.renderer.render(self.vertices_cam(truth), self.head.faces, truth.intrinsics,
                                       vertex_rgb=self.head.vertex_rgb, lighting=self.lighting,
                                       background=self.background).rgb
        if self.opts.noise > 0:
            noisy = rgb.astype(np.float32) + self.noise_rng.normal(0, self.opts.noise, rgb.shape)
            rgb = np.clip(noisy, 0, 255).astype(np.uint8)
        return rgb

    def _render_distorted(self, truth) -> np.ndarray:
        """The head through the lens: transparent render on the ideal canvas, remapped (premultiplied
        colour and alpha alike), then over the frame-sized background."""
        from core.render import composite_over, distort_render_result  # noqa: PLC0415

        canvas = self.remap.canvas
        res = self.renderer.render(self.vertices_cam(truth), self.head.faces, canvas.intrinsics,
                                   vertex_rgb=self.head.vertex_rgb, lighting=self.lighting, background=None)
        res = distort_render_result(res, self.remap)
        rgb, alpha = res.rgb, res.alpha
        if isinstance(self.background, np.ndarray):
            back = self.background
        else:
            back = np.empty((self.opts.height, self.opts.width, 3), np.uint8)
            back[:] = np.round(np.asarray(self.background) * 255).astype(np.uint8)
        return composite_over(rgb, alpha, back)

    def release(self) -> None:
        self.renderer.release()
