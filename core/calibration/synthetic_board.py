"""Rendered board views with exact ground truth, for tests and benchmarks.

:class:`BoardRenderer` draws the board as a mesh of uniformly coloured rectangles (:func:`board_mesh`)
with the project's exact pinhole renderer (``core.render``, 4x MSAA) on an ideal canvas and, with a
lens, remaps it (``core.distortion.LensRemap``), at poses of a user following the guided session
(:func:`guided_board_poses`) or random ones (:func:`random_board_poses`);
:func:`render_board_views` does both. :func:`image_grid`, :func:`covered_points` and
:func:`distortion_error_px` measure a calibrated lens against the true one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.calibration.board import BoardSpec
from core.calibration.detect import BoardDetection
from core.calibration.guided import GUIDED_VIEWS, GuidedView
from core.camera import backproject, project_perspective
from core.distortion import LensDistortion


@dataclass(frozen=True)
class BoardMesh:
    """A board as a triangle mesh of uniformly coloured rectangles (crisp edges, no texture needed)."""

    vertices: np.ndarray  # (V, 3) board metres (z = 0)
    faces: np.ndarray  # (F, 3)
    rgb: np.ndarray  # (V, 3) in [0, 1]


def board_mesh(board: BoardSpec, px_per_square: int | None = None, margin_squares: float = 0.5) -> BoardMesh:
    """The board image (:meth:`BoardSpec.image`) as rectangles: runs of equal pixels in a row, merged
    with identical runs of the rows below, each become one quad with its own four vertices, so
    colours never blend across an edge. ``px_per_square`` None: 6 image pixels per marker bit."""
    if px_per_square is None:
        px_per_square = 8
        if board.kind == "charuco":
            bits = board.cv_board().getDictionary().markerSize + 2
            px_per_square = max(8, int(round(6 * bits * board.square_m / board.marker_m)))
    img = board.image(px_per_square, margin_squares)
    m = int(round(margin_squares * px_per_square))
    unit = board.square_m / px_per_square
    rects: list[tuple[int, int, int, int, int]] = []  # x0, x1, y0, y1, value
    open_runs: dict[tuple[int, int, int], int] = {}
    for y, row in enumerate(img):
        change = np.flatnonzero(np.diff(row.astype(np.int16))) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(row)]])
        still_open = {}
        for x0, x1 in zip(starts.tolist(), ends.tolist()):
            key = (x0, x1, int(row[x0]))
            if key in open_runs:
                idx = open_runs[key]
                x0_, x1_, y0_, _, v = rects[idx]
                rects[idx] = (x0_, x1_, y0_, y + 1, v)
            else:
                idx = len(rects)
                rects.append((x0, x1, y, y + 1, int(row[x0])))
            still_open[key] = idx
        open_runs = still_open
    r = np.asarray(rects, np.float64)
    x0, x1, y0, y1 = ((r[:, i] - m) * unit for i in range(4))
    z = np.zeros_like(x0)
    verts = np.stack([np.stack([x0, y0, z], -1), np.stack([x1, y0, z], -1), np.stack([x1, y1, z], -1),
                      np.stack([x0, y1, z], -1)], 1).reshape(-1, 3)
    base = np.arange(len(r))[:, None] * 4
    faces = np.concatenate([base + [0, 1, 2], base + [0, 2, 3]], 1).reshape(-1, 3)
    rgb = np.repeat(np.repeat(r[:, 4] / 255.0, 4)[:, None], 3, axis=1)
    return BoardMesh(verts.astype(np.float32), faces.astype(np.int32), rgb.astype(np.float32))


def _board_pose(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], lens: LensDistortion,
                centre_uv: tuple[float, float], frac: float, tilt_x_deg: float, tilt_y_deg: float, roll_deg: float,
                hang: bool, margin_px: float, hang_inset: float = 0.3, hang_max_inside: float = 0.9):
    """One board pose (rvec, tvec), or None when it does not fit the frame.

    centre_uv: where the board's centre goes, in [0, 1] of the range that keeps the (untilted) board
    inside the image; frac: board width / image width (before tilting); tilts in :class:`ViewGeometry`'s
    convention (tilt_x > 0: top edge farther, tilt_y > 0: the image-left side farther); hang: the
    board may stick out of the frame (from 50 % to ``hang_max_inside`` of its corners inside), otherwise
    all of it is inside by ``margin_px``; a hanging board's centre may come within ``hang_inset`` × its
    half size of the border.
    """
    import cv2  # noqa: PLC0415

    from core.distortion import distort_points, undistort_points  # noqa: PLC0415

    w, h = size
    fx = float(intrinsics[0])
    bw, bh = board.size_m
    half_x = 0.5 * frac * (hang_inset if hang else 1.0)
    half_y = 0.5 * frac * (bh / bw) * (w / h) * (hang_inset if hang else 1.0)
    ux, uy = (float(np.clip(v, 0, 1)) for v in centre_uv)
    target_px = np.array([[half_x + (1 - 2 * half_x) * ux, half_y + (1 - 2 * half_y) * uy]]) * np.array([w, h])
    ideal = undistort_points(target_px, intrinsics, lens)[0]  # aim at the distorted image position
    if not np.isfinite(ideal).all():
        return None
    depth = fx * bw / (frac * w)
    target = backproject(ideal[None], np.array([depth]), intrinsics)[0]
    rot = (cv2.Rodrigues(np.array([math.radians(-tilt_x_deg), 0, 0]))[0]
           @ cv2.Rodrigues(np.array([0, math.radians(tilt_y_deg), 0]))[0]
           @ cv2.Rodrigues(np.array([0, 0, math.radians(roll_deg)]))[0])
    tvec = target - rot @ np.array([bw / 2, bh / 2, 0.0])
    if hang:
        points = board.corner_points().astype(np.float64)
    else:
        pad = 0.6 * board.square_m  # the printed margin, plus a little
        points = np.array([[-pad, -pad, 0], [bw + pad, -pad, 0], [bw + pad, bh + pad, 0], [-pad, bh + pad, 0]])
    cam = points @ rot.T + tvec
    if (cam[:, 2] < 0.05).any():
        return None
    uv = distort_points(project_perspective(cam, intrinsics), intrinsics, lens)
    inside = (np.isfinite(uv).all(1) & (uv[:, 0] >= margin_px) & (uv[:, 1] >= margin_px)
              & (uv[:, 0] <= w - margin_px) & (uv[:, 1] <= h - margin_px))
    if not (0.5 <= inside.mean() <= hang_max_inside if hang else inside.all()):
        return None
    return cv2.Rodrigues(rot)[0].ravel(), tvec


def random_board_poses(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], count: int,
                       rng: np.random.Generator, lens: LensDistortion | None = None, max_tilt_deg: float = 45.0,
                       fill: tuple[float, float] = (0.35, 0.7), margin_px: float = 8.0,
                       partial: bool | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` board poses (rvec, tvec) shown at random: centres on a jittered 4x3 grid of the
    (distorted) image, tilted up to ``max_tilt_deg`` about each axis (every fourth view nearer
    face-on), board width ``fill`` × image width, the whole board inside the frame. ``partial``
    (default: for ChArUco boards) lets every third view hang over the image border, with at least
    half of its corners inside, so the image corners get covered too. A user following the
    session's guidance shows :func:`guided_board_poses` instead."""
    lens = lens or LensDistortion()
    partial = board.kind == "charuco" if partial is None else partial
    gx, gy = 4, 3
    poses = []
    attempts = 0
    while len(poses) < count:
        attempts += 1
        if attempts > 500 * count:
            raise RuntimeError("could not place the board in the frame; use a smaller board or a wider camera")
        k = len(poses) % (gx * gy)
        hang = partial and len(poses) % 3 == 1
        frac = rng.uniform(*fill)
        ux = ((k % gx) + 0.5) / gx + rng.uniform(-0.1, 0.1)
        uy = ((k // gx) + 0.5) / gy + rng.uniform(-0.1, 0.1)
        if len(poses) >= gx * gy:
            ux, uy = rng.uniform(0.0, 1.0, 2)
        tilt_x, tilt_y = rng.uniform(-max_tilt_deg, max_tilt_deg, 2)
        if len(poses) % 4 == 0:  # some views nearer face-on, as people show boards
            tilt_x, tilt_y = tilt_x / 3, tilt_y / 3
        roll = rng.uniform(-20, 20)
        pose = _board_pose(board, intrinsics, size, lens, (ux, uy), frac, -tilt_x, tilt_y, roll, hang, margin_px)
        if pose is not None:
            poses.append(pose)
    return poses


def guided_board_poses(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], count: int,
                       rng: np.random.Generator, lens: LensDistortion | None = None,
                       steps: Sequence[GuidedView] = GUIDED_VIEWS, margin_px: float = 8.0,
                       partial: bool | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` board poses (rvec, tvec) of a user following the guided session (:data:`GUIDED_VIEWS`,
    in order, repeated when ``count`` is larger), with a human's imprecision: each tilt 0.8-1.2 × the
    asked one plus ±8° about the other axis, roll ±15°, position ±0.08 of the image, board size
    0.85-1.1 × the asked one; a view that does not fit the frame is retried a little smaller and nearer
    the middle (the
    user steps back and in). ``partial`` (default: ChArUco boards) lets corner and border views hang out of
    the frame (at least 50 % of the corners inside), as ChArUco allows."""
    lens = lens or LensDistortion()
    partial = board.kind == "charuco" if partial is None else partial
    poses = []
    for i in range(count):
        step = steps[i % len(steps)]
        for attempt in range(400):
            back = min(attempt / 200, 1.0)  # retries: a little smaller, a little nearer the middle
            frac = step.fill * rng.uniform(0.85, 1.1) * (1 - 0.5 * back)
            tilt_x = step.tilt_x_deg * rng.uniform(0.8, 1.2) + rng.uniform(-8, 8)
            tilt_y = step.tilt_y_deg * rng.uniform(0.8, 1.2) + rng.uniform(-8, 8)
            roll = rng.uniform(-15, 15)
            centre = tuple(c + (0.5 - c) * 0.4 * back + rng.uniform(-0.08, 0.08) for c in step.centre)
            pose = _board_pose(board, intrinsics, size, lens, centre, frac, tilt_x, tilt_y, roll,
                               partial and step.at_border, margin_px, hang_inset=0.6, hang_max_inside=1.0)
            if pose is not None:
                poses.append(pose)
                break
        else:
            raise RuntimeError(f"could not place the board for the guided view {step.key!r}; use a smaller board "
                               "or a wider camera")
    return poses


class BoardRenderer:
    """Renders a board seen by a known camera, optionally through a lens (``core.distortion.LensRemap``:
    rendered by the exact pinhole renderer on a larger ideal canvas, then remapped)."""

    def __init__(self, board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int],
                 lens: LensDistortion | None = None, px_per_square: int | None = None,
                 background: tuple[float, float, float] = (0.55, 0.55, 0.55)):
        from core.distortion import LensRemap  # noqa: PLC0415
        from core.render import Lighting, OffscreenRenderer  # noqa: PLC0415

        self.board, self.size = board, tuple(size)
        self.intrinsics = np.asarray(intrinsics, np.float64)
        self.lens = lens or LensDistortion()
        self.mesh = board_mesh(board, px_per_square)
        self.remap = LensRemap(self.intrinsics, self.lens, self.size)
        canvas = self.remap.canvas
        self.renderer = OffscreenRenderer(*canvas.size)
        self.lighting = Lighting(directions_to_light=((0.0, 0.0, -1.0),), diffuse=(0.25,), ambient=0.7)
        self.background = background

    def render(self, rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of the board at pose X_cam = R(rvec)·X_board + tvec."""
        import cv2  # noqa: PLC0415

        rot = cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
        verts = self.mesh.vertices.astype(np.float64) @ rot.T + np.asarray(tvec, np.float64)
        canvas = self.remap.canvas
        rgb = self.renderer.render(verts.astype(np.float32), self.mesh.faces, canvas.intrinsics.astype(np.float32),
                                   vertex_rgb=self.mesh.rgb, lighting=self.lighting, background=self.background).rgb
        if self.lens.is_identity:
            return rgb
        grey = int(round(self.background[0] * 255))
        return self.remap.distort_image(rgb, border_value=(grey, grey, grey))

    def project(self, rvec, tvec, object_points: np.ndarray) -> np.ndarray:
        """Exact (distorted) pixel positions of board points at a pose: (N, 3) -> (N, 2)."""
        import cv2  # noqa: PLC0415

        from core.distortion import distort_points  # noqa: PLC0415

        rot = cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
        cam = np.asarray(object_points, np.float64) @ rot.T + np.asarray(tvec, np.float64)
        return distort_points(project_perspective(cam, self.intrinsics), self.intrinsics, self.lens)

    def release(self) -> None:
        self.renderer.release()

    def __enter__(self) -> "BoardRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def render_board_views(board: BoardSpec, intrinsics: Sequence[float], size: tuple[int, int], count: int,
                       lens: LensDistortion | None = None, seed: int = 0, poses: str = "random",
                       **pose_kwargs) -> list[np.ndarray]:
    """``count`` rendered views of ``board`` (RGB uint8) at :func:`random_board_poses` (``poses="random"``)
    or :func:`guided_board_poses` (``poses="guided"``)."""
    if poses not in ("random", "guided"):
        raise ValueError(f"poses {poses!r}: expected random or guided")
    rng = np.random.default_rng(seed)
    make = guided_board_poses if poses == "guided" else random_board_poses
    poses = make(board, intrinsics, size, count, rng, lens, **pose_kwargs)
    with BoardRenderer(board, intrinsics, size, lens) as renderer:
        return [renderer.render(r, t) for r, t in poses]


def image_grid(size: tuple[int, int], samples: int = 33) -> np.ndarray:
    """(samples², 2) pixel positions on a regular grid over the whole image, borders included."""
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w, samples), np.linspace(0, h, samples))
    return np.stack([xs.ravel(), ys.ravel()], -1)


def covered_points(points_px: np.ndarray, views: Sequence[BoardDetection]) -> np.ndarray:
    """The rows of ``points_px`` inside the convex hull of every corner the views detected
    (where a calibration is measured rather than extrapolated)."""
    import cv2  # noqa: PLC0415

    hull = cv2.convexHull(np.concatenate([v.image_points for v in views]).astype(np.float32))
    inside = [cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0 for x, y in points_px]
    return points_px[np.asarray(inside, bool)]


def distortion_error_px(true: tuple[Sequence[float], LensDistortion], est: tuple[Sequence[float], LensDistortion],
                        points_px: np.ndarray) -> float:
    """Max difference between two lenses' distortion at image positions ``points_px`` (N, 2), in
    pixels of the true camera (use :func:`image_grid`, or :func:`covered_points` of it).

    Each lens distorts the same normalised ideal points (those of the true camera at
    ``points_px``); the displacements are compared at the true focal length, so intrinsics
    errors do not count.
    """
    from core.distortion import distort_points, undistort_points  # noqa: PLC0415

    (k_true, lens_true), (k_est, lens_est) = true, est
    ideal_true = undistort_points(np.asarray(points_px, np.float64), k_true, lens_true)
    d_true = distort_points(ideal_true, k_true, lens_true) - ideal_true
    rays = backproject(ideal_true, np.ones(len(ideal_true)), k_true)  # depth 1
    ideal_est = project_perspective(rays, k_est)
    focal_ratio = np.asarray(k_true, np.float64)[:2] / np.asarray(k_est, np.float64)[:2]
    d_est = (distort_points(ideal_est, k_est, lens_est) - ideal_est) * focal_ratio
    return float(np.nanmax(np.linalg.norm(d_true - d_est, axis=1)))
