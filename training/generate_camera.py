"""Shards of the real-camera population (:mod:`training.camera_sampling`) through the real landmarker.

Used by :func:`training.generate.generate` when a :class:`~training.generate.DatasetSpec` has a
``cameras`` population (the worker set-up, sharding, seeding and resumption are generate.py's):

* ``train``: independent samples, MediaPipe in IMAGE mode;
* ``val``: sequences (``sequence_frames`` frames: one identity, camera, background and lighting;
  the head turning, moving and changing expression smoothly between random key poses), MediaPipe
  in VIDEO mode like the tracker: for the sequence fusion's σ and the benchmark.

Every frame is rendered at its ``render_scale`` (see :mod:`training.camera_sampling`); landmarks
are stored in pixels of the full-size frame, with ``image_size`` and ``intrinsics`` of the full
frame.
"""
from __future__ import annotations

import numpy as np

from training.camera_sampling import (FACE_HALF_WIDTH_M, FACE_HEIGHT_M, CameraPopulation, _core_angle,
                                      render_scale, sample_population)
from training.sampling import euler_to_axis_angle, sample_expressions, translation_for_center

BACKGROUND_POOL_SIZE = (640, 480)  # backgrounds are made at this size and resized to the frame


def _render_size(image_size: np.ndarray, scale: float) -> tuple[int, int]:
    return max(16, int(round(image_size[0] * scale))), max(16, int(round(image_size[1] * scale)))


def _scaled_detection(out: dict, i: int, result, sx: float, sy: float) -> None:
    """Store a detection made on the shrunk render in full-frame pixels."""
    face = result.face
    if face is None:
        return
    out["found"][i] = True
    out["landmarks_px"][i] = face.landmarks_px / np.array([sx, sy], np.float32)
    out["depth_px"][i] = face.depth_px / sx
    out["presence"][i] = face.presence
    out["blendshapes"][i] = face.blendshapes


def _resized_background(background: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2  # noqa: PLC0415

    return np.ascontiguousarray(cv2.resize(background, size, interpolation=cv2.INTER_LINEAR))


def _finish(rgb: np.ndarray, rng: np.random.Generator, spec, blur_prob: float) -> np.ndarray:
    import cv2  # noqa: PLC0415

    if rng.random() < blur_prob:
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigmaX=float(rng.uniform(0.4, 1.1)))
    sigma = rng.uniform(*spec.sensor_noise)
    if sigma > 0:
        rgb = np.clip(rgb + rng.normal(0, sigma, rgb.shape), 0, 255).astype(np.uint8)
    return rgb


def camera_train_shard(spec, index: int) -> dict[str, np.ndarray]:
    from core.synthetic_render import random_background, random_lighting  # noqa: PLC0415
    from training.generate import _WORKER, _empty_arrays, _renderer, _vertices_cam, shard_rng  # noqa: PLC0415

    head = _WORKER["head"]
    population = CameraPopulation.from_dict(spec.cameras)
    rng = shard_rng(spec, index)
    n = spec.shard_count(index)
    samples = sample_population(rng, n, head, population, spec.sampling)
    out = _empty_arrays(n, head, 0)
    pool = [random_background(*BACKGROUND_POOL_SIZE, rng) for _ in range(max(2, n // 16))]
    base_rgb = head.vertex_rgb if head.vertex_rgb is not None else np.full((head.num_vertices, 3), 0.75, np.float32)
    scales = samples.extra["render_scale"]
    for start in range(0, n, 32):
        chunk = slice(start, min(start + 32, n))
        verts = _vertices_cam(samples, chunk)
        for k, i in enumerate(range(chunk.start, chunk.stop)):
            size = _render_size(samples.image_size[i], float(scales[i]))
            sx, sy = size[0] / samples.image_size[i][0], size[1] / samples.image_size[i][1]
            intr = samples.intrinsics[i] * np.array([sx, sy, sx, sy], np.float32)
            background = pool[int(rng.integers(len(pool)))]
            if rng.random() < 0.5:
                background = background[:, ::-1]
            background = np.roll(background, (int(rng.integers(480)), int(rng.integers(640))), (0, 1))
            tone = rng.uniform(0.55, 1.1) * rng.uniform(0.92, 1.08, 3)
            rgb = _renderer(*size).render(
                verts[k], head.faces, intr, vertex_rgb=np.clip(base_rgb * tone, 0, 1).astype(np.float32),
                lighting=random_lighting(rng), background=_resized_background(background, size)).rgb
            rgb = _finish(rgb, rng, spec, spec.blur_prob)
            _scaled_detection(out, i, _WORKER["image_landmarker"].detect(rgb), sx, sy)
    extra = {name: np.asarray(value) for name, value in samples.extra.items()}
    return {**samples.arrays(), **extra, **out}


def _smooth_keys(rng: np.random.Generator, keys: np.ndarray, frames: int) -> np.ndarray:
    """Interpolate (K, ...) key values over ``frames`` frames with smoothstep easing. -> (frames, ...)."""
    k = len(keys)
    pos = np.linspace(0.0, k - 1.0, frames)
    lo = np.minimum(np.floor(pos).astype(int), k - 2)
    t = pos - lo
    t = t * t * (3 - 2 * t)
    shape = (-1,) + (1,) * (keys.ndim - 1)
    return keys[lo] * (1 - t).reshape(shape) + keys[lo + 1] * t.reshape(shape)


def camera_sequence_shard(spec, index: int) -> dict[str, np.ndarray]:
    """One sequence: fixed identity and camera, smooth motion between random key poses."""
    import torch  # noqa: PLC0415

    from core import camera  # noqa: PLC0415
    from core.landmarks import FaceLandmarker, LandmarkerOptions  # noqa: PLC0415
    from core.synthetic_render import random_background, random_lighting  # noqa: PLC0415
    from training.generate import _WORKER, _empty_arrays, _renderer, shard_rng  # noqa: PLC0415

    head = _WORKER["head"]
    layer = _WORKER["layer"]
    population = CameraPopulation.from_dict(spec.cameras)
    rng = shard_rng(spec, index)
    n = spec.sequence_frames
    base = sample_population(rng, 1, head, population, spec.sampling)
    size_full = base.image_size[0].astype(np.float64)
    focal, cx, cy = (float(v) for v in base.intrinsics[0, [0, 2, 3]])
    depth0 = float(base.center_cam[0, 2])
    is_hmc = population.use_cases[int(base.extra["use_case"][0])][0] == "hmc"
    keys = 4
    yaw = _core_angle(rng, keys, population.yaw_rad)
    pitch = (rng.uniform(-1, 1, keys) * population.hmc_pitch_rad if is_hmc
             else _core_angle(rng, keys, population.pitch_rad))
    roll = _core_angle(rng, keys, population.roll_rad)
    depth = depth0 * np.exp(rng.uniform(-0.08, 0.08, keys))
    half_face = np.stack([focal * FACE_HALF_WIDTH_M / depth, focal * 0.5 * FACE_HEIGHT_M / depth], 1)
    room = np.maximum(size_full / 2.0 - 1.1 * half_face, 0.0)
    centre_px = size_full / 2.0 + rng.uniform(-1, 1, (keys, 2)) * room
    expr_keys = sample_expressions(rng, keys, head, spec.sampling)
    angles = _smooth_keys(rng, np.stack([yaw, pitch, roll], 1), n)
    depth_f = _smooth_keys(rng, depth, n)
    centre_f = _smooth_keys(rng, centre_px, n)
    expr = _smooth_keys(rng, expr_keys, n).astype(np.float32)
    rotation = euler_to_axis_angle(angles[:, 0], angles[:, 1], angles[:, 2]).astype(np.float32)
    principal = np.array([cx, cy])
    center_cam = np.concatenate([(centre_f - principal) / focal * depth_f[:, None], depth_f[:, None]], 1)
    translation = translation_for_center(head, rotation, center_cam).astype(np.float32)
    shape = np.repeat(base.shape, n, 0)
    jaw = np.repeat(base.jaw_pose, n, 0)
    scale = float(render_scale(size_full[None], np.array([focal]), np.array([depth_f.min()]), population)[0])
    size = _render_size(base.image_size[0], scale)
    sx, sy = size[0] / size_full[0], size[1] / size_full[1]
    intr_render = base.intrinsics[0] * np.array([sx, sy, sx, sy], np.float32)
    background = _resized_background(random_background(*BACKGROUND_POOL_SIZE, rng), size)
    lighting = random_lighting(rng)
    base_rgb = head.vertex_rgb if head.vertex_rgb is not None else np.full((head.num_vertices, 3), 0.75, np.float32)
    vertex_rgb = np.clip(base_rgb * rng.uniform(0.55, 1.1) * rng.uniform(0.92, 1.08, 3), 0, 1).astype(np.float32)
    blur = rng.random() < spec.blur_prob
    blur_sigma = float(rng.uniform(0.4, 1.1))
    noise = float(rng.uniform(*spec.sensor_noise))
    out = _empty_arrays(n, head, 0)
    t = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
    with torch.no_grad():
        verts = camera.model_to_camera(layer(t(shape), t(expr), t(rotation), None, t(jaw), None),
                                       t(translation)).numpy()
    import cv2  # noqa: PLC0415

    with FaceLandmarker(LandmarkerOptions(model_path=_WORKER["landmarker_path"], running_mode="video",
                                          max_faces=1)) as landmarker:
        for i in range(n):
            rgb = _renderer(*size).render(verts[i], head.faces, intr_render, vertex_rgb=vertex_rgb, lighting=lighting,
                                          background=background).rgb
            if blur:
                rgb = cv2.GaussianBlur(rgb, (0, 0), sigmaX=blur_sigma)
            if noise > 0:
                rgb = np.clip(rgb + rng.normal(0, noise, rgb.shape), 0, 255).astype(np.uint8)
            _scaled_detection(out, i, landmarker.detect(rgb, int(round(1000 * i / 30.0))), sx, sy)
    rep = lambda a: np.repeat(np.asarray(a)[None], n, 0)  # noqa: E731
    return {"image_size": rep(base.image_size[0]), "intrinsics": rep(base.intrinsics[0]), "shape": shape, "expr": expr,
            "jaw_pose": jaw, "rotation": rotation, "center_cam": center_cam.astype(np.float32),
            "translation": translation, "sequence": np.full(n, index, np.int32), "frame": np.arange(n, dtype=np.int32),
            "use_case": rep(base.extra["use_case"][0]), "render_scale": np.full(n, scale, np.float32), **out}
