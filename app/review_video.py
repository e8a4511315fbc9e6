"""The review video of ``flamecam render --source VIDEO --recording REC``: a take's mesh over its video.

Each frame is drawn by the app's own overlay code (``ui.overlay_view.draw_overlay`` on a
``core.render.MeshRenderer``, offscreen on an EGL context), so shaded / wireframe / landmark modes
look as in the window: shaded at the app's default opacity, lost frames faded, with a calibrated
lens the overlay distorted onto the raw video. The recorded focal length (± σ and its state), ρ
and the tracking state are burnt in as text. Frames without a pose (no face) show the plain video
with the text; frames the recording does not hold show the plain video.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import torch

MODES = ("shaded", "wireframe", "landmarks")


class RecordingMismatchError(ValueError):
    """The video is not the one the recording was made from (size or length)."""


def check_source_matches(rec, source) -> int:
    """Raise :class:`RecordingMismatchError` when ``source`` cannot be the take's video; returns the
    number of frames the review covers (through the recording's last frame)."""
    from core.review import take_frame_count, video_mismatch  # noqa: PLC0415  (the app's take player checks the same)

    if source.num_frames is None:
        raise RecordingMismatchError(f"{source.name} has no known length; pass the video file or image folder "
                                     f"{rec.path.name} was tracked from")
    problem = video_mismatch(rec, source.size, source.num_frames)
    if problem is not None:
        raise RecordingMismatchError(f"{source.name} is not the video of {rec.path.name}: {problem}; pass the "
                                     "video the take was tracked from")
    return take_frame_count(rec)


def status_text(rec, position: int | None) -> list[str]:
    """The burnt-in lines for one recording position (None: a frame the recording does not hold)."""
    if position is None:
        return ["not in the recording"]
    fx, sigma = float(rec.fx[position]), float(rec.focal_sigma_px[position])
    rho = float(rec.rho_per_m[position])
    focal = "f ?" if not math.isfinite(fx) else f"f {fx:.0f} px" + (f" +/-{sigma:.0f}" if math.isfinite(sigma) else "")
    focal += f" ({_name(rec, 'focal', position)})"
    rho_text = f"rho {rho:.2f} 1/m" if math.isfinite(rho) else "rho ?"
    return [f"frame {int(rec.frame_index[position])}  {_name(rec, 'tracking', position)}", f"{focal}  {rho_text}"]


def _name(rec, kind: str, position: int) -> str:
    from core.recording import FOCAL_STATES, TRACKING_STATES  # noqa: PLC0415

    names, codes = (FOCAL_STATES, rec.focal_state) if kind == "focal" else (TRACKING_STATES, rec.tracking_state)
    code = int(codes[position])
    return names[code] if code < len(names) else str(code)


def burn_text(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """``lines`` in white with a dark outline at the top left, sized to the image width."""
    out = np.array(rgb, dtype=np.uint8, order="C")  # a copy: the source's frame stays as it was
    scale = min(1.0, max(0.35, out.shape[1] / 1000.0))
    thick = max(1, round(scale * 1.6))
    step = round(30 * scale) + 4
    for i, line in enumerate(lines):
        origin = (max(4, round(10 * scale)), step * (i + 1))
        cv2.putText(out, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


class ReviewRenderer:
    """Draws recording positions over video frames (own EGL context; call :meth:`release`)."""

    def __init__(self, rec, head, mode: str, size: tuple[int, int], batch_size: int = 32):
        from core.distortion import LensDistortion, LensRemap  # noqa: PLC0415
        from core.export import finite_frames  # noqa: PLC0415
        from core.render import MeshRenderer, create_egl_context  # noqa: PLC0415
        from ui.overlay_view import OverlayStyle, default_samples  # noqa: PLC0415

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.rec, self.head, self.size, self.batch_size = rec, head, size, batch_size
        self.style = {"shaded": OverlayStyle(),
                      "wireframe": OverlayStyle(shaded=False, wireframe=True),
                      "landmarks": OverlayStyle(shaded=False, detected_landmarks=True, fitted_landmarks=True,
                                                point_size_px=max(2.5, min(size) / 160.0))}[mode]
        self.valid = finite_frames(rec)
        self._lens_remap = None
        intr_meta = (rec.meta.extra or {}).get("intrinsics") or {}
        lens = LensDistortion.from_dict(intr_meta.get("distortion"))
        if not lens.is_identity:
            self._lens_remap = LensRemap(rec.intrinsics[np.flatnonzero(self.valid)[0]], lens, size)
        self._embedding = None
        if mode == "landmarks":
            from core.embedding import embedding_for  # noqa: PLC0415

            ids, weights = embedding_for(head).vertex_weights(head.faces)
            self._embedding = (torch.as_tensor(ids), torch.as_tensor(weights))
        self._cache: dict[int, np.ndarray] = {}
        self.ctx = create_egl_context()
        self.samples = min(default_samples(self.ctx.info.get("GL_RENDERER", "")), self.ctx.max_samples)
        with self.ctx:
            self.renderer = MeshRenderer(self.ctx)
            w, h = size
            self._objects = []
            if self.samples > 0:
                color_ms = self.ctx.renderbuffer(size, 4, samples=self.samples)
                depth_ms = self.ctx.depth_renderbuffer(size, samples=self.samples)
                self._draw = self.ctx.framebuffer([color_ms], depth_ms)
                color = self.ctx.renderbuffer(size, 4)
                self._read = self.ctx.framebuffer([color])
                self._objects = [color_ms, depth_ms, color]
            else:
                color = self.ctx.renderbuffer(size, 4)
                depth = self.ctx.depth_renderbuffer(size)
                self._draw = self._read = self.ctx.framebuffer([color], depth)
                self._objects = [color, depth]

    def _vertices(self, position: int) -> np.ndarray:
        """Camera-space vertices of ``position``, computed a batch of upcoming posed frames at a time."""
        if position not in self._cache:
            from core.export import mesh_batches  # noqa: PLC0415

            posed = np.flatnonzero(self.valid)
            batch = posed[posed >= position][: self.batch_size]
            self._cache = {int(p): v for idx, verts in mesh_batches(self.rec, self.head, positions=batch,
                                                                     batch_size=self.batch_size)
                           for p, v in zip(idx, verts)}
        return self._cache[position]

    def draw(self, rgb: np.ndarray, position: int | None) -> np.ndarray:
        """The frame with the recording's position drawn over it (None: the plain frame) and the text."""
        from ui.overlay_view import OverlayScene, draw_overlay  # noqa: PLC0415

        rec = self.rec
        if position is None or not self.valid[position]:
            return burn_text(rgb, status_text(rec, position))
        verts = self._vertices(position)
        intrinsics = rec.intrinsics[position].astype(np.float64)
        fitted = None
        if self._embedding is not None:
            from core.camera import project_perspective  # noqa: PLC0415
            from core.embedding import embed_points  # noqa: PLC0415

            points = embed_points(torch.as_tensor(verts)[None], *self._embedding)
            fitted = project_perspective(points, torch.as_tensor(intrinsics, dtype=torch.float32))[0].numpy()
        track = SimpleNamespace(landmarks_px=rec.landmarks_px[position] if rec.landmarks_px is not None else
                                np.zeros((0, 2), np.float32), fitted_landmarks_px=fitted if fitted is not None
                                else np.zeros((0, 2), np.float32), intrinsics=intrinsics,
                                frame_index=int(rec.frame_index[position]),
                                tracking_state=_name(rec, "tracking", position))
        result = SimpleNamespace(track=track, mesh_vertices_cam=verts, frame=SimpleNamespace(rgb=rgb))
        scene = OverlayScene.from_result(result, self.head, self._lens_remap)
        with self.ctx:
            draw_overlay(self.ctx, self.renderer, self._draw, scene, self.style, self.size, first_row_is_top=True)
            if self._read is not self._draw:
                self.ctx.copy_framebuffer(self._read, self._draw)  # MSAA resolve
            data = self._read.read(components=3, alignment=1)
        image = np.frombuffer(data, np.uint8).reshape(self.size[1], self.size[0], 3)
        return burn_text(image, status_text(rec, position))

    def release(self) -> None:
        if self.ctx is None:
            return
        with self.ctx:
            self.renderer.release()
            for obj in [self._draw] + ([self._read] if self._read is not self._draw else []) + self._objects:
                obj.release()
        self.ctx.release()
        self.ctx = None
