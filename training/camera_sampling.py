"""Real-camera population for the model-agnostic camera regressor (issue 9).

Unlike :mod:`training.sampling` (Camera3DMM's recipe: 480-3000 px at 512², distance ∝ focal),
cameras and subjects are drawn the way they occur:

* **lenses**: the focal length relative to the image, ``f / long side``, log-uniform over
  ``focal_rel_range`` (0.35-7: horizontal fields of view ~110° to 8°), stratified so that every
  log-focal bin gets the same number of samples after the framing checks below;
* **frames**: long side log-uniform 320-3840 px, aspect 4:3, 16:9, 3:2 or 1:1, a quarter portrait;
* **subject distance by use case, drawn independently of the focal length**: head-mounted
  camera 0.08-0.25 m (seen from below too: pitch up to 35°), selfie 0.25-0.6 m, desk webcam
  0.4-1.2 m, portrait/stage 1-4 m (log-uniform within each);
* **framing checks** (the only link between lens and distance, as with real photos): the face
  (``FACE_HEIGHT_M`` tall) must be at least ``min_face_px`` pixels (MediaPipe's limit) and fit in
  the frame (``max_fill`` of the shorter side); faces filling 15-40 % of the shorter side are
  kept, smaller and larger ones only with a probability that falls off in log fill
  (``fill_tail_sigma``): the tails are there, thinner;
* the head anywhere that keeps the face in the frame; principal points near the centre, a
  fraction far off it (crops).

**Render scale.** A frame is rendered at ``render_scale`` ≤ 1 and its landmarks scaled back (the
network only sees scale-free inputs). MediaPipe's landmark network looks at a 256² crop of the
face, so its noise depends on the face's pixel size only below that: frames are shrunk only as
far as keeps the face at ``render_face_px`` (256, MediaPipe's input size, which also holds a margin around the face) pixels or more (or their long side at
``render_max_long``, whichever shrinks less), so faces up to that size are rendered at their true
size and larger ones at a size where MediaPipe's input is the same. The face detector sees the
whole frame at a fixed small size, so shrinking the frame does not change what it sees either.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from training.sampling import (Samples, euler_to_axis_angle, has_jaw, sample_expressions, SamplingConfig,
                               translation_for_center)

FACE_HEIGHT_M = 0.16  # height of MediaPipe's landmark box on an adult face (chin to upper forehead)
FACE_HALF_WIDTH_M = 0.08  # half the landmark box's width (cheek to cheek), for keeping it in frame
USE_CASES = ("hmc", "selfie", "webcam", "stage")


@dataclass(frozen=True)
class CameraPopulation:
    """Distributions of the real-camera population (see module docstring)."""

    focal_rel_range: tuple[float, float] = (0.35, 7.0)  # f / long side
    focal_bins: int = 12  # strata in log f/long
    long_side_range: tuple[float, float] = (320.0, 3840.0)
    aspects: tuple = ((4 / 3, 0.4), (16 / 9, 0.4), (3 / 2, 0.1), (1.0, 0.1))  # (long/short, probability)
    portrait_prob: float = 0.25
    # (name, distance range m, probability)
    use_cases: tuple = (("hmc", 0.08, 0.25, 0.3), ("selfie", 0.25, 0.6, 0.25), ("webcam", 0.4, 1.2, 0.25),
                        ("stage", 1.0, 4.0, 0.2))
    min_face_px: float = 40.0
    max_fill: float = 0.85  # face height / shorter side
    fill_core: tuple[float, float] = (0.2, 0.45)  # MediaPipe's detector misses most faces below ~0.2
    fill_tail_sigma: float = 0.4  # log units: acceptance exp(-d²/2σ²) outside the core
    principal_sigma: float = 0.01  # near-centre principal points: σ in units of the long side
    offcentre_fraction: float = 0.15
    offcentre_range: float = 0.2  # ± this fraction of the image size
    yaw_rad: tuple[float, float, float] = (0.35, 0.8, 0.25)  # core, tail, tail probability
    pitch_rad: tuple[float, float, float] = (0.25, 0.5, 0.2)
    roll_rad: tuple[float, float, float] = (0.2, 0.4, 0.2)
    hmc_pitch_rad: float = 0.61  # head-mounted cameras look from below (or above): up to 35°
    render_face_px: float = 256.0
    render_max_long: float = 1280.0
    version: int = 2  # bumped when the sampler's code changes what a spec draws (names new dataset folders)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CameraPopulation":
        fixed = {}
        for key, value in data.items():
            if isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            fixed[key] = value
        return cls(**fixed)


def out_of_draw_population() -> CameraPopulation:
    """Cameras outside the training draw (issue 9 item 4b): tiny and huge frames, lenses wider and
    longer than trained, subjects nearer and farther. For measuring σ off the distribution."""
    return CameraPopulation(focal_rel_range=(0.25, 12.0), focal_bins=2, long_side_range=(160.0, 7680.0),
                            use_cases=(("hmc", 0.05, 0.08, 0.3), ("stage", 4.0, 8.0, 0.7)), min_face_px=40.0)


def _core_angle(rng: np.random.Generator, n: int, spec: tuple[float, float, float]) -> np.ndarray:
    core, tail, tail_prob = spec
    limit = np.where(rng.random(n) < tail_prob, tail, core)
    return rng.uniform(-1.0, 1.0, n) * limit


def fill_acceptance(fill: np.ndarray, population: CameraPopulation) -> np.ndarray:
    """Probability of keeping a face filling ``fill`` of the shorter side (1 inside the core range)."""
    lo, hi = population.fill_core
    d = np.maximum(np.log(lo) - np.log(fill), 0.0) + np.maximum(np.log(fill) - np.log(hi), 0.0)
    return np.exp(-0.5 * (d / population.fill_tail_sigma) ** 2)


def draw_cameras(rng: np.random.Generator, n: int, population: CameraPopulation) -> dict[str, np.ndarray]:
    """``n`` accepted (image size, focal, use case, distance) draws, equal counts per log-focal stratum.

    Returns image_size (n, 2) int, focal_px (n,), distance_m (n,), use_case (n,) int (index into
    ``population.use_cases``), fill (n,) face height / shorter side.
    """
    lo, hi = (math.log(v) for v in population.focal_rel_range)
    edges = np.linspace(lo, hi, population.focal_bins + 1)
    # a random first stratum, so that draws of fewer samples than strata (one sequence's camera) cover all
    stratum = rng.permutation((rng.integers(population.focal_bins) + np.arange(n)) % population.focal_bins)
    out = {"image_size": np.zeros((n, 2), np.int64), "focal_px": np.zeros(n), "distance_m": np.zeros(n),
           "use_case": np.zeros(n, np.int64), "fill": np.zeros(n)}
    todo = np.arange(n)
    aspects = np.array([a for a, _ in population.aspects])
    aspect_p = np.array([p for _, p in population.aspects])
    cases = population.use_cases
    case_p = np.array([c[3] for c in cases], np.float64)
    for _ in range(10000):
        if not len(todo):
            break
        m = len(todo) * 8  # candidates per missing sample
        owner = np.repeat(todo, 8)
        s = stratum[owner]
        log_f_rel = rng.uniform(edges[s], edges[s + 1])
        long_side = np.exp(rng.uniform(*(math.log(v) for v in population.long_side_range), m))
        aspect = aspects[rng.choice(len(aspects), m, p=aspect_p / aspect_p.sum())]
        short_side = long_side / aspect
        w = np.round(long_side / 2) * 2
        h = np.round(short_side / 2) * 2
        portrait = rng.random(m) < population.portrait_prob
        size = np.stack([np.where(portrait, h, w), np.where(portrait, w, h)], 1)
        focal = np.exp(log_f_rel) * size.max(1)
        case = rng.choice(len(cases), m, p=case_p / case_p.sum())
        dlo = np.array([c[1] for c in cases])[case]
        dhi = np.array([c[2] for c in cases])[case]
        dist = np.exp(rng.uniform(np.log(dlo), np.log(dhi)))
        face_px = focal * FACE_HEIGHT_M / dist
        fill = face_px / size.min(1)
        ok = (face_px >= population.min_face_px) & (fill <= population.max_fill)
        ok &= rng.random(m) < fill_acceptance(fill, population)
        # first accepted candidate per owner
        accepted_owner, first = np.unique(owner[ok], return_index=True)
        pick = np.flatnonzero(ok)[first]
        out["image_size"][accepted_owner] = size[pick].astype(np.int64)
        out["focal_px"][accepted_owner] = focal[pick]
        out["distance_m"][accepted_owner] = dist[pick]
        out["use_case"][accepted_owner] = case[pick]
        out["fill"][accepted_owner] = fill[pick]
        todo = np.setdiff1d(todo, accepted_owner)
    if len(todo):
        raise RuntimeError(f"camera population {population} cannot frame a face in {len(todo)} strata")
    return out


def render_scale(image_size: np.ndarray, focal_px: np.ndarray, distance_m: np.ndarray,
                 population: CameraPopulation) -> np.ndarray:
    """Factor ≤ 1 to render at (see module docstring). (N, 2), (N,), (N,) -> (N,)."""
    face_px = focal_px * FACE_HEIGHT_M / distance_m
    by_face = population.render_face_px / face_px
    by_size = population.render_max_long / image_size.max(1)
    return np.minimum(1.0, np.maximum(by_face, by_size))


def sample_population(rng: np.random.Generator, n: int, head, population: CameraPopulation,
                      coefficients: SamplingConfig = SamplingConfig()) -> Samples:
    """``n`` ground truths for ``head`` under the real-camera population.

    Identity and expression coefficients as in :mod:`training.sampling` (``coefficients``).
    ``extra`` holds use_case, fill and render_scale per sample.
    """
    cams = draw_cameras(rng, n, population)
    image_size = cams["image_size"].astype(np.float64)
    focal, depth = cams["focal_px"], cams["distance_m"]
    longer = image_size.max(1)
    offcentre = rng.random(n) < population.offcentre_fraction
    principal = image_size / 2.0 + np.where(
        offcentre[:, None], rng.uniform(-1, 1, (n, 2)) * population.offcentre_range * image_size,
        rng.standard_normal((n, 2)) * population.principal_sigma * longer[:, None])
    half_face = np.stack([focal * FACE_HALF_WIDTH_M / depth, focal * 0.5 * FACE_HEIGHT_M / depth], 1)
    room = np.maximum(image_size / 2.0 - 1.1 * half_face, 0.0)
    centre_px = image_size / 2.0 + rng.uniform(-1, 1, (n, 2)) * room
    center_cam = np.concatenate([(centre_px - principal) / focal[:, None] * depth[:, None], depth[:, None]], 1)
    hmc = np.array([population.use_cases[c][0] == "hmc" for c in cams["use_case"]])
    pitch = np.where(hmc, rng.uniform(-1, 1, n) * population.hmc_pitch_rad, _core_angle(rng, n, population.pitch_rad))
    rotation = euler_to_axis_angle(_core_angle(rng, n, population.yaw_rad), pitch,
                                   _core_angle(rng, n, population.roll_rad))
    shape = rng.standard_normal((n, head.num_shape)) * coefficients.identity_scale
    expr = sample_expressions(rng, n, head, coefficients)
    jaw = np.zeros((n, 3))
    if has_jaw(head):
        jaw[:, 0] = np.clip(rng.normal(coefficients.jaw_open_mean_rad, coefficients.jaw_open_sigma_rad, n), 0.0,
                            coefficients.jaw_open_max_rad)
    intrinsics = np.stack([focal, focal, principal[:, 0], principal[:, 1]], 1)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return Samples(image_size=cams["image_size"].astype(np.int32), intrinsics=f32(intrinsics), shape=f32(shape),
                   expr=f32(expr), jaw_pose=f32(jaw), rotation=f32(rotation), center_cam=f32(center_cam),
                   translation=f32(translation_for_center(head, rotation, center_cam)),
                   extra={"use_case": cams["use_case"].astype(np.int8), "fill": f32(cams["fill"]),
                          "render_scale": f32(render_scale(image_size, focal, depth, population))})
