"""Segments: shot cuts and changes of the tracked person, found from the frames and the landmarks.

A recording is split into **segments**; each has one person and one camera set-up, so each gets
its own identity (and, after a shot cut, its own focal length). :class:`Segmenter` decides per
frame, before the tracker runs:

* **Which face is the tracked person.** At a segment's start the ``--face`` rule picks among the
  faces in view (largest, or nearest the centre); after that the person is *followed*: the face
  whose position and size continue the previous observation of that person (allowing more motion
  the longer it was out of view), never re-picked by the rule while they stay in view.
* **Shot cuts** (a new segment, identity *and* focal length reset: the camera may have changed):
  the background (the frame with every face box masked out, as a small contrast-normalised grey
  thumbnail) changes between consecutive frames far beyond its running statistics (a robust
  z-score over the recent frames, and an absolute floor). Head motion, camera pans and exposure
  drift change it steadily; a cut changes it at once.
* **A different person in the same shot** (a new segment, identity reset, the focal length kept):
  the followed face breaks continuity, i.e. its position or size jumps in one frame beyond what a
  head does, or its landmark geometry (MediaPipe's 3D mesh after a similarity alignment, so the pose
  drops out) and its appearance (a contrast-normalised thumbnail and a hue-saturation histogram of
  the face crop) jump together far beyond their running statistics; or the followed person left
  the view and, ``switch_after_s`` later, other faces remain (the rule picks among them); or a face
  comes back after ``recheck_after_s`` without a face and its colours differ from the person's.

Features per frame cost well under a millisecond (OpenCV on thumbnails); :func:`look_at` computes
them from the frame alone, so ``core.pipeline`` runs it in the landmark thread and only the decision
(:meth:`Segmenter.update`) on the tracker's. Everything here is pure computation (no Qt, no torch);
the tracker starts a segment (:meth:`core.tracker.Tracker.start_segment`) when told.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

SEGMENT_KINDS = ("start", "scene_cut", "person_change")


@dataclass(frozen=True)
class SegmentStart:
    """Where and why a segment starts (stored as a SEGMENT record in recordings)."""

    segment_id: int
    frame_index: int
    timestamp_s: float
    kind: str  # one of SEGMENT_KINDS
    reset_focal: bool  # the camera may have changed: the focal length is estimated afresh
    reason: str  # for people, e.g. "shot cut: the background changed (12σ above its recent changes)"
    scores: dict = field(default_factory=dict)  # the evidence (feature values and z-scores)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentStart":
        return cls(segment_id=int(data.get("segment_id", 0)), frame_index=int(data.get("frame_index", 0)),
                   timestamp_s=float(data.get("timestamp_s") or 0.0), kind=str(data.get("kind", "start")),
                   reset_focal=bool(data.get("reset_focal", True)), reason=str(data.get("reason", "")),
                   scores=dict(data.get("scores") or {}))


@dataclass(frozen=True)
class SegmentOptions:
    """Thresholds of :class:`Segmenter`, set on the real clips in ../shared/data/real and their
    concatenations: within a clip the background change stays under 0.47 (a hand-held camera; under
    0.23 for the others), across a cut between two clips it is 0.56 or more (two takes from one room)
    and usually about 1; the cut's robust z-score is 50-120."""

    enabled: bool = True  # False: one segment, the rule picks the face in every frame
    face_rule: str = "largest"  # largest | centre: picks the person at a segment's start
    window: int = 150  # frames of running statistics
    min_samples: int = 12  # before that many frames, only the absolute limits decide
    scene_floor: float = 0.5  # background change (see background_change) a cut must exceed
    scene_sigmas: float = 8.0  # ... and by this many robust σ above its running median
    scene_sure: float = 0.8  # a change this large is a cut whatever the statistics
    jump_move: float = 0.6  # followed face: centre jump (face sizes) per frame beyond which it is not the same face
    jump_scale: float = 0.2  # ... |log size ratio| per frame
    gap_move_per_s: float = 1.5  # allowed extra centre motion (face sizes per second out of view)
    gap_scale_per_s: float = 0.5
    # A person change without a jump in position or size: geometry and appearance must both jump this
    # far beyond their statistics over at least identity_samples frames, and past these floors (an
    # expression change reaches 0.11 and 0.31 on the real clips, so this fires only on gross changes).
    identity_sigmas: float = 12.0
    identity_samples: int = 60
    identity_geometry_floor: float = 0.06
    identity_appearance_floor: float = 0.3
    replaced_within_s: float = 0.3  # a new face this soon after the person vanished replaces them at once
    switch_after_s: float = 1.0  # the followed person gone this long, other faces in view: follow one of them
    recheck_after_s: float = 2.0  # no face this long: a returning face is compared with the person's colours
    colour_change: float = 0.35  # Bhattacharyya distance of face colour histograms that means another person
    min_segment_frames: int = 3  # no new segment within this many frames of the last one (one flash frame)


@dataclass(frozen=True)
class SegmentDecision:
    """One frame's answer: the tracked person's face (None: not in view), and a new segment if one starts."""

    face: object | None  # core.landmarks.FaceObservation
    start: SegmentStart | None
    faces_in_view: int


# --- features ---------------------------------------------------------------------------------------

THUMB_SIZE = (48, 36)  # (width, height) of the background thumbnail
_GREY = np.array([0.299, 0.587, 0.114], np.float32)
CROP_SIZE = 24
SURFACE_POINTS = 468


class RunningStats:
    """Robust running statistics of one feature: median and 1.4826·MAD over the last ``window`` values."""

    def __init__(self, window: int, floor: float):
        self.values: deque[float] = deque(maxlen=window)
        self.floor = floor

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: float) -> None:
        if math.isfinite(value):
            self.values.append(value)

    def zscore(self, value: float) -> float:
        """(value - median) / max(1.4826·MAD, floor); 0 without data."""
        if not self.values:
            return 0.0
        arr = np.fromiter(self.values, float, len(self.values))
        med = float(np.median(arr))
        sigma = max(1.4826 * float(np.median(np.abs(arr - med))), self.floor)
        return (value - med) / sigma

    def clear(self) -> None:
        self.values.clear()


def _decimated(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every k-th pixel of ``image``, k as large as leaves at least 4× ``width`` × ``height``: an area
    resize of that to the thumbnail costs a fifth of one from the full frame (it runs on every frame)."""
    k = max(1, min(image.shape[1] // (4 * width), image.shape[0] // (4 * height)))
    if k == 1:
        return image
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.strides[1:] == (3, 1):
        # A pixel as one 3-byte item: numpy copies a strided selection of those ~2.5× faster than
        # of single bytes (and OpenCV would copy the strided view anyway). The same pixels.
        pixels = np.ascontiguousarray(image.view(np.dtype("V3"))[::k, ::k, 0])
        return pixels.view(np.uint8).reshape(*pixels.shape, 3)
    return image[::k, ::k]


def background_thumbnail(rgb: np.ndarray, boxes) -> tuple[np.ndarray, np.ndarray]:
    """(colour (36, 48, 3) float32, mask (36, 48) bool): a small copy of the frame and where no face
    (box widened to take the hair and neck) covers it."""
    import cv2  # noqa: PLC0415

    height, width = rgb.shape[:2]
    tw, th = THUMB_SIZE
    small = cv2.resize(_decimated(rgb, tw, th), (tw, th), interpolation=cv2.INTER_AREA)
    mask = np.ones((th, tw), bool)
    for x0, y0, bw, bh in boxes:
        cx, cy, s = x0 + bw / 2, y0 + bh / 2, max(bw, bh) * 0.9
        cols = (int(math.floor((cx - s) / width * tw)), int(math.ceil((cx + s) / width * tw)))
        rows = (int(math.floor((cy - 1.3 * s) / height * th)), int(math.ceil((cy + 1.5 * s) / height * th)))
        mask[max(rows[0], 0):max(rows[1], 0), max(cols[0], 0):max(cols[1], 0)] = False
    return small.astype(np.float32), mask


def background_change(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """How much the background (where neither thumbnail has a face) changed: the mean absolute
    difference of the z-scored grey images (structure; exposure and contrast drift do not count),
    plus the shift of its mean colour (RGB distance / 64: two plain walls of other colours).
    ~0 for a still shot, ~1.1 and more for unrelated images."""
    (rgb_a, mask_a), (rgb_b, mask_b) = a, b
    mask = mask_a & mask_b
    if mask.sum() < 0.15 * mask.size:  # faces cover the frame: compare everything
        mask = np.ones_like(mask)
    pa, pb = rgb_a[mask], rgb_b[mask]  # (K, 3)
    x, y = pa @ _GREY, pb @ _GREY
    x = (x - x.mean()) / (x.std() + 4.0)  # + 4 grey levels: flat images do not blow up their noise
    y = (y - y.mean()) / (y.std() + 4.0)
    shift = float(np.linalg.norm(pa.mean(0) - pb.mean(0))) / 64.0
    return float(np.abs(x - y).mean()) + shift


@dataclass
class FaceFeatures:
    """What identifies one face in one frame: where it is, its pose-free geometry and its look."""

    centre_px: np.ndarray  # (2,)
    size_px: float  # sqrt of the landmark box area
    geometry: np.ndarray  # (468, 3) surface landmarks (x, y, MediaPipe depth), centred, unit norm
    crop: np.ndarray | None  # (24, 24) z-scored grey face crop
    colour: np.ndarray | None  # (128,) hue-saturation histogram of the face crop, sums to 1


def face_features(rgb: np.ndarray, face) -> FaceFeatures:
    """Features of a :class:`core.landmarks.FaceObservation` in its frame."""
    import cv2  # noqa: PLC0415

    x0, y0, bw, bh = (float(v) for v in face.box_px)
    centre = np.array([x0 + bw / 2, y0 + bh / 2])
    size = math.sqrt(max(bw * bh, 1e-6))
    points = np.concatenate([face.landmarks_px[:SURFACE_POINTS], face.depth_px[:SURFACE_POINTS, None]], 1)
    points = points.astype(np.float64) - points.mean(0)
    points /= max(float(np.sqrt((points ** 2).sum())), 1e-9)
    height, width = rgb.shape[:2]
    half = 0.6 * max(bw, bh)
    cols = (int(max(centre[0] - half, 0)), int(min(centre[0] + half, width)))
    rows = (int(max(centre[1] - half, 0)), int(min(centre[1] + half, height)))
    crop = colour = None
    if cols[1] - cols[0] >= 4 and rows[1] - rows[0] >= 4:
        small = cv2.resize(_decimated(rgb[rows[0]:rows[1], cols[0]:cols[1]], CROP_SIZE, CROP_SIZE),
                           (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        crop = (grey - grey.mean()) / (grey.std() + 4.0)
        hist = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
        colour = hist / max(float(hist.sum()), 1.0)
    return FaceFeatures(centre, size, points, crop, colour)


def geometry_change(a: np.ndarray, b: np.ndarray) -> float:
    """Distance of two unit-norm point sets after the best rotation (orthogonal Procrustes with scale):
    the pose drops out, expression and identity remain. (N, 3), (N, 3) -> [0, √2]."""
    u, s, vt = np.linalg.svd(a.T @ b)
    d = 1.0 if np.linalg.det(u @ vt) >= 0 else -1.0
    return math.sqrt(max(0.0, 1.0 - (s[0] + s[1] + d * s[2]) ** 2))


def colour_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Bhattacharyya (Hellinger) distance of two histograms summing to 1: 0 same, 1 disjoint."""
    if a is None or b is None:
        return float("nan")
    return math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a * b)))))


def appearance_change(a: FaceFeatures, b: FaceFeatures) -> float:
    if a.crop is None or b.crop is None:
        return float("nan")
    return float(np.abs(a.crop - b.crop).mean())


def motion(a: FaceFeatures, b: FaceFeatures) -> tuple[float, float]:
    """(centre jump in face sizes, |log size ratio|) from ``a`` to ``b``."""
    return (float(np.linalg.norm(b.centre_px - a.centre_px)) / a.size_px,
            abs(math.log(b.size_px / a.size_px)))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def distinct_faces(faces, max_iou: float = 0.5) -> list:
    """``faces`` without duplicates: MediaPipe in video mode can report one face twice for a frame
    (its tracked region from the previous frame and a new detection, e.g. at a cut); of boxes
    overlapping by more than ``max_iou`` the larger is kept. Order otherwise unchanged."""
    faces = list(faces)
    if len(faces) < 2:
        return faces
    area = [float(f.box_px[2] * f.box_px[3]) for f in faces]
    keep = []
    for i in sorted(range(len(faces)), key=lambda k: -area[k]):
        if all(box_iou(np.asarray(faces[i].box_px, float), np.asarray(faces[k].box_px, float)) <= max_iou for k in keep):
            keep.append(i)
    return [faces[i] for i in sorted(keep)]


def select_by_rule(faces, image_size: tuple[int, int], rule: str) -> int:
    """Index of the face the ``--face`` rule picks (see ``core.landmarks.select_faces``)."""
    from core.landmarks import select_faces  # noqa: PLC0415

    return int(select_faces(list(faces), image_size, rule)[0])


@dataclass(frozen=True)
class FrameLook:
    """What the segmenter needs of one frame's pixels: its distinct faces, the background thumbnail
    and each face's features. A pure function of the frame and its landmarks (:func:`look_at`), so
    the engine computes it in the landmark thread, beside MediaPipe, off the tracker's thread."""

    faces: tuple  # distinct :class:`core.landmarks.FaceObservation` s, in the landmarker's order
    thumb: tuple[np.ndarray, np.ndarray] | None  # background_thumbnail(); None with segments off
    features: tuple  # FaceFeatures per face; () with segments off
    size: tuple[int, int]  # the frame's (width, height) in pixels


def look_at(rgb: np.ndarray, faces, enabled: bool = True) -> FrameLook:
    """The :class:`FrameLook` of an RGB frame and every face the landmarker found in it."""
    faces = tuple(distinct_faces(faces))
    size = (rgb.shape[1], rgb.shape[0])
    if not enabled:
        return FrameLook(faces, None, (), size)
    return FrameLook(faces, background_thumbnail(rgb, [f.box_px for f in faces]),
                     tuple(face_features(rgb, f) for f in faces), size)


# --- the per-frame decision --------------------------------------------------------------------------


class Segmenter:
    """Per frame: follow the tracked person and say when a new segment starts (see the module docstring)."""

    def __init__(self, options: SegmentOptions = SegmentOptions()):
        self.options = options
        o = options
        self._background = RunningStats(o.window, floor=0.01)
        self._geometry = RunningStats(o.window, floor=0.004)
        self._appearance = RunningStats(o.window, floor=0.02)
        self._previous_thumb: tuple[np.ndarray, np.ndarray] | None = None
        self._person: FaceFeatures | None = None  # the followed person's last observation
        self._person_seen_s: float | None = None
        self._person_colour: np.ndarray | None = None  # running mean of the person's colour histogram
        self._previous_boxes: list[np.ndarray] = []  # every face of the last frame that had faces
        self._previous_others: list[np.ndarray] = []  # ... but the followed one
        self._person_in_previous = False  # the followed face was among them
        self._jumped = False  # the source jumped (a seek) since the previous frame
        self.segment_id = -1
        self._segment_frames = 0
        self.segments: list[SegmentStart] = []

    @property
    def current(self) -> SegmentStart | None:
        return self.segments[-1] if self.segments else None

    def look(self, rgb: np.ndarray, faces) -> FrameLook:
        """:func:`look_at` a frame and every :class:`core.landmarks.FaceObservation` in it (any order),
        as this segmenter needs it (faces only, with segments off)."""
        return look_at(rgb, faces, self.options.enabled)

    def update(self, look: FrameLook, timestamp_s: float, frame_index: int) -> SegmentDecision:
        """The decision for a frame from its :meth:`look` (computed wherever is cheapest: the engine
        does it beside MediaPipe when the tracker is the slower thread)."""
        o = self.options
        faces, size = list(look.faces), look.size
        if not o.enabled:  # one segment; the rule picks in every frame
            start = self._start(frame_index, timestamp_s, "start", True, "the first frame", {}) \
                if self.segment_id < 0 else None
            face = faces[select_by_rule(faces, size, o.face_rule)] if faces else None
            return SegmentDecision(face, start, len(faces))
        thumb = look.thumb
        start = None
        if self.segment_id < 0:
            start = self._start(frame_index, timestamp_s, "start", True, "the first frame", {})
        elif self._previous_thumb is not None:
            change = background_change(self._previous_thumb, thumb)
            # Too few frames for statistics (a segment's start): only a change no shot makes is a cut.
            ready = len(self._background) >= o.min_samples and not self._jumped
            z = self._background.zscore(change) if ready else float("nan")
            if (change > o.scene_sure or (ready and change > o.scene_floor and z > o.scene_sigmas)) and self._may_start():
                scores = {"background_change": round(change, 3), "background_z": round(z, 1) if ready else None}
                zs = f", {z:.0f}σ above its recent changes" if ready else ""
                start = self._start(frame_index, timestamp_s, "scene_cut", True,
                                    f"shot cut: the background changed by {change:.2f}{zs}", scores)
            elif not self._jumped:
                self._background.add(change)
        self._previous_thumb = thumb
        self._jumped = False
        self._segment_frames += 1

        face = None
        if faces:
            features = list(look.features)
            if self._person is None:  # nobody followed yet in this segment: the rule picks
                pick = select_by_rule(faces, size, o.face_rule)
                face = self._follow(faces[pick], features[pick], timestamp_s)
            else:
                face, person_start = self._continue(faces, features, size, timestamp_s, frame_index)
                if person_start is not None:
                    start = person_start
        if faces:  # a face that vanishes for a frame or two is still "there" for _is_new
            self._previous_boxes = [np.asarray(f.box_px, np.float64) for f in faces]
            self._previous_others = [np.asarray(f.box_px, np.float64) for f in faces if f is not face]
            self._person_in_previous = face is not None
        return SegmentDecision(face, start, len(faces))

    def jumped(self) -> None:
        """The source jumped (a seek in the app): the next frame has no continuity with the previous
        one. The segment goes on, the ``--face`` rule picks the person again, and only a background
        change no shot makes (``scene_sure``) counts as a cut across the jump."""
        self._jumped = True
        self._person = self._person_seen_s = None
        self._previous_boxes, self._previous_others = [], []
        self._person_in_previous = False

    # -- internals ------------------------------------------------------------------------------

    def _may_start(self) -> bool:
        return self._segment_frames >= self.options.min_segment_frames

    def _start(self, frame_index: int, timestamp_s: float, kind: str, reset_focal: bool, reason: str,
               scores: dict) -> SegmentStart:
        self.segment_id += 1
        self._segment_frames = 0
        start = SegmentStart(self.segment_id, int(frame_index), float(timestamp_s), kind, reset_focal, reason, scores)
        self.segments.append(start)
        self._person = None
        self._person_seen_s = None
        self._person_colour = None
        self._geometry.clear()
        self._appearance.clear()
        if reset_focal:
            self._background.clear()
        return start

    def _follow(self, face, features: FaceFeatures, timestamp_s: float, person_jumps: tuple | None = None):
        if person_jumps is not None:
            geometry, appearance = person_jumps
            self._geometry.add(geometry)
            self._appearance.add(appearance)
        self._person = features
        self._person_seen_s = timestamp_s
        if features.colour is not None:
            self._person_colour = (features.colour if self._person_colour is None
                                   else 0.95 * self._person_colour + 0.05 * features.colour)
        return face

    def _continue(self, faces, features, size, timestamp_s: float, frame_index: int):
        """The followed person's face among ``faces`` (or None), and a person-change start if one is due."""
        o = self.options
        gap_s = max(0.0, timestamp_s - self._person_seen_s)
        allowed_move = o.jump_move + o.gap_move_per_s * gap_s
        allowed_scale = o.jump_scale + o.gap_scale_per_s * gap_s
        best, best_cost = None, float("inf")
        for i, feat in enumerate(features):
            if not self._person_in_previous and self._continues(faces[i], self._previous_others):
                continue  # someone who was in view while the person was away: not the person coming back
            move, scale = motion(self._person, feat)
            if move <= allowed_move and scale <= allowed_scale:
                cost = move / allowed_move + scale / allowed_scale
                if cost < best_cost:
                    best, best_cost = i, cost
        if best is not None:
            feat = features[best]
            geometry = geometry_change(self._person.geometry, feat.geometry)
            appearance = appearance_change(self._person, feat)
            if gap_s >= o.recheck_after_s:
                colour = colour_distance(self._person_colour, feat.colour)
                if colour > o.colour_change and self._may_start():
                    return self._new_person(faces, features, size, timestamp_s, frame_index,
                                            f"after {gap_s:.1f} s without the face, a face of other colours "
                                            f"(histogram distance {colour:.2f})", {"colour_distance": round(colour, 3)})
                return self._follow(faces[best], feat, timestamp_s), None
            if self._identity_jump(geometry, appearance) and self._may_start():
                zg, za = self._geometry.zscore(geometry), self._appearance.zscore(appearance)
                return self._new_person(faces, features, size, timestamp_s, frame_index,
                                        f"the face's geometry and look changed at once ({zg:.0f}σ, {za:.0f}σ)",
                                        {"geometry_change": round(geometry, 4), "geometry_z": round(zg, 1),
                                         "appearance_change": round(appearance, 3), "appearance_z": round(za, 1)})
            return self._follow(faces[best], feat, timestamp_s, (geometry, appearance)), None
        # The followed person is not in view. A face that continues none of the last faces seen, appearing
        # as the person vanished, is a new person now; faces that were there already take over only
        # after switch_after_s (the person may turn back).
        replaced = gap_s <= o.replaced_within_s and any(self._is_new(f) for f in faces)
        if (replaced or gap_s >= o.switch_after_s) and self._may_start():
            move, scale = min((motion(self._person, f) for f in features), key=lambda ms: ms[0])
            why = (f"the tracked face jumped ({move:.1f} face sizes, size ×{math.exp(scale):.2f} in one frame)"
                   if replaced else f"the tracked person left the view {gap_s:.1f} s ago")
            return self._new_person(faces, features, size, timestamp_s, frame_index, why,
                                    {"jump_face_sizes": round(move, 3), "jump_log_size": round(scale, 3),
                                     "gap_s": round(gap_s, 3)})
        return None, None

    def _is_new(self, face) -> bool:
        """A face that continues none of the faces of the last frame with faces."""
        return not self._continues(face, self._previous_boxes)

    def _continues(self, face, boxes) -> bool:
        """Whether ``face`` is where one of ``boxes`` (x0, y0, w, h) was, within a frame's motion."""
        o = self.options
        box = np.asarray(face.box_px, np.float64)
        centre, size = box[:2] + box[2:] / 2, math.sqrt(max(box[2] * box[3], 1e-6))
        for old in boxes:
            old_centre, old_size = old[:2] + old[2:] / 2, math.sqrt(max(old[2] * old[3], 1e-6))
            if (np.linalg.norm(centre - old_centre) / old_size <= o.jump_move
                    and abs(math.log(size / old_size)) <= o.jump_scale):
                return True
        return False

    def _identity_jump(self, geometry: float, appearance: float) -> bool:
        o = self.options
        if (len(self._geometry) < o.identity_samples or not math.isfinite(appearance)
                or geometry < o.identity_geometry_floor or appearance < o.identity_appearance_floor):
            return False
        return (self._geometry.zscore(geometry) > o.identity_sigmas
                and self._appearance.zscore(appearance) > o.identity_sigmas)

    def _new_person(self, faces, features, size, timestamp_s: float, frame_index: int, why: str, scores: dict):
        start = self._start(frame_index, timestamp_s, "person_change", False,
                            f"another person: {why}; now following the {self.options.face_rule} face", scores)
        pick = select_by_rule(faces, size, self.options.face_rule)
        return self._follow(faces[pick], features[pick], timestamp_s), start


# --- summaries ------------------------------------------------------------------------------------


@dataclass
class SegmentSummary:
    """What a run saw of one segment (for the CLI's closing lines and the recording's END summary)."""

    segment_id: int
    kind: str
    reason: str
    first_frame: int
    last_frame: int
    frames: int = 0
    frames_with_face: int = 0
    last_posed: object | None = None  # the segment's last core.tracker.TrackResult with a fitted face

    def record(self) -> dict:
        out = {"segment_id": self.segment_id, "kind": self.kind, "reason": self.reason,
               "first_frame_index": self.first_frame, "last_frame_index": self.last_frame, "frames": self.frames,
               "frames_with_face": self.frames_with_face}
        track = self.last_posed
        if track is not None:
            out.update(focal_px=float(track.focal_px), focal_sigma_px=float(track.focal_sigma_px),
                       focal_state=track.focal_state, shape_norm=float(np.linalg.norm(track.shape)))
        return out


class SegmentLog:
    """Collects :class:`SegmentSummary` per segment from a run's track results, in order."""

    def __init__(self):
        self.segments: list[SegmentSummary] = []

    def __len__(self) -> int:
        return len(self.segments)

    def add(self, track) -> None:
        from core.constants import POSED_STATES  # noqa: PLC0415

        seg_id = int(getattr(track, "segment_id", 0))
        if not self.segments or self.segments[-1].segment_id != seg_id:
            start = getattr(track, "segment_start", None)
            self.segments.append(SegmentSummary(seg_id, getattr(start, "kind", "start" if not self.segments else "?"),
                                                getattr(start, "reason", ""), track.frame_index, track.frame_index))
        seg = self.segments[-1]
        seg.last_frame = track.frame_index
        seg.frames += 1
        if track.tracking_state in POSED_STATES:
            seg.frames_with_face += 1
            seg.last_posed = track

    def records(self) -> list[dict]:
        return [s.record() for s in self.segments]

    def lines(self, focal_text=None) -> list[str]:
        """One line per segment: frames, why it started, and (``focal_text(track)``) its focal length."""
        out = [f"{len(self.segments)} segments (a shot cut or another person starts one: identity estimated "
               "afresh, and after a cut the focal length too):"]
        for s in self.segments:
            why = {"start": "from the start", "scene_cut": "shot cut", "person_change": "another person"}.get(
                s.kind, s.kind)
            line = f"  segment {s.segment_id}: frames {s.first_frame}-{s.last_frame} ({s.frames_with_face} with the face), {why}"
            if s.kind != "start" and s.reason:
                line += f" — {s.reason}"
            if focal_text is not None and s.last_posed is not None:
                line += f"; {focal_text(s.last_posed)}"
            out.append(line)
        return out
