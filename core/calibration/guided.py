"""The guided calibration session (live camera, video, GUI): the steps a user is asked for
(:data:`GUIDED_VIEWS`: the board filling the frame tilted ~45° left/right/up/down and ~35° about the
diagonals, the image corners and edges) and :class:`CalibrationSession`, which takes the views that
add something new, tells the user what is still missing and solves. Pure Python/OpenCV (no Qt).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.calibration.board import BoardSpec
from core.calibration.detect import BoardDetection, BoardDetector
from core.calibration.result import Calibration, CalibrationCriteria
from core.calibration.solve import CALIBRATION_MODELS, calibrate
from core.calibration.views import ViewGeometry, coverage_grid, select_views, view_geometry

_ZONE_NAMES = (("top-left", "top", "top-right"), ("left", "centre", "right"),
               ("bottom-left", "bottom", "bottom-right"))


@dataclass(frozen=True)
class GuidedView:
    """One step of the guided calibration session (:data:`GUIDED_VIEWS`): where and how to hold the board.

    centre: board centre in [0, 1] of the image (0 / 1: pushed against that border); fill: board
    width / image width; tilt_x_deg, tilt_y_deg: in :class:`ViewGeometry`'s convention (tilt_x > 0:
    the top edge farther from the camera; tilt_y > 0: the side on the image's left farther);
    instruction: what the session asks the user.
    """

    key: str
    instruction: str
    centre: tuple[float, float]
    fill: float
    tilt_x_deg: float
    tilt_y_deg: float

    @property
    def at_border(self) -> bool:
        return self.centre[0] in (0.0, 1.0) or self.centre[1] in (0.0, 1.0)

    def matches(self, geom: ViewGeometry) -> bool:
        """Whether a taken view did this step (roughly: the user's hands are not a robot's)."""
        if self.at_border:  # a corner / border view: corners reach that border, the board tilted somewhat
            x0, y0, x1, y1 = geom.extent if geom.extent is not None else (*geom.centre, *geom.centre)
            reach = {0.0: (x0 <= 0.15, y0 <= 0.15), 1.0: (x1 >= 0.85, y1 >= 0.85)}
            ok_x = reach[self.centre[0]][0] if self.centre[0] in reach else abs(geom.centre[0] - self.centre[0]) <= 0.25
            ok_y = reach[self.centre[1]][1] if self.centre[1] in reach else abs(geom.centre[1] - self.centre[1]) <= 0.25
            return bool(ok_x and ok_y and geom.tilt_deg >= 15)
        if geom.area_fraction < (0.2 if self.tilt_x_deg == self.tilt_y_deg == 0 else 0.1):
            return False  # not filling the frame
        if self.tilt_x_deg == self.tilt_y_deg == 0:
            return geom.tilt_deg <= 20
        for want, got in ((self.tilt_x_deg, geom.tilt_x_deg), (self.tilt_y_deg, geom.tilt_y_deg)):
            if want and not (np.sign(got) == np.sign(want) and abs(got) >= 0.65 * abs(want)):
                return False
            if not want and abs(got) > 20:
                return False
        return True


# The guided session: 15 views that pin down the focal length and the principal point (boards filling
# the frame, tilted ~45° about both axes and the diagonals: the perspective that separates focal length
# from distance and locates the principal point) and the lens distortion (the image corners). Ordered
# by importance; a narrow lens needs the big tilted views most, distortion the corner views.
GUIDED_VIEWS: tuple[GuidedView, ...] = (
    GuidedView("face-on", "hold the board face-on in the middle, filling most of the frame", (0.5, 0.5), 0.85, 0, 0),
    GuidedView("left", "turn the board ~45° about its vertical axis, the image-left side farther away (fill the "
               "frame)", (0.5, 0.5), 0.8, 0, 45),
    GuidedView("right", "turn the board ~45° about its vertical axis, the image-right side farther away (fill the "
               "frame)", (0.5, 0.5), 0.8, 0, -45),
    GuidedView("top", "tilt the board ~45° about its horizontal axis, the top edge farther away (fill the frame)",
               (0.5, 0.5), 0.8, 45, 0),
    GuidedView("bottom", "tilt the board ~45° about its horizontal axis, the bottom edge farther away (fill the "
               "frame)", (0.5, 0.5), 0.8, -45, 0),
    GuidedView("corner-tl", "move the board into the top-left corner of the image, turned ~30° to face the middle",
               (0.0, 0.0), 0.5, -30, -30),
    GuidedView("corner-tr", "move the board into the top-right corner of the image, turned ~30° to face the middle",
               (1.0, 0.0), 0.5, -30, 30),
    GuidedView("corner-bl", "move the board into the bottom-left corner of the image, turned ~30° to face the "
               "middle", (0.0, 1.0), 0.5, 30, -30),
    GuidedView("corner-br", "move the board into the bottom-right corner of the image, turned ~30° to face the "
               "middle", (1.0, 1.0), 0.5, 30, 30),
    GuidedView("top-left", "tilt the board ~35° about a diagonal, its top-left corner farther away", (0.5, 0.5),
               0.75, 35, 35),
    GuidedView("top-right", "tilt the board ~35° about a diagonal, its top-right corner farther away", (0.5, 0.5),
               0.75, 35, -35),
    GuidedView("bottom-left", "tilt the board ~35° about a diagonal, its bottom-left corner farther away",
               (0.5, 0.5), 0.75, -35, 35),
    GuidedView("bottom-right", "tilt the board ~35° about a diagonal, its bottom-right corner farther away",
               (0.5, 0.5), 0.75, -35, -35),
    GuidedView("edge-left", "hold the board at the left edge of the image, turned ~45° to face the middle",
               (0.0, 0.5), 0.6, 0, -45),
    GuidedView("edge-right", "hold the board at the right edge of the image, turned ~45° to face the middle",
               (1.0, 0.5), 0.6, 0, 45),
)


# --- the session (live camera, video, GUI) -----------------------------------------------------


@dataclass(frozen=True)
class FrameFeedback:
    """What one frame did to a :class:`CalibrationSession`."""

    detection: BoardDetection | None
    accepted: bool
    message: str  # short, for a status line: why the frame was (not) taken
    num_views: int


class CalibrationSession:
    """Collects board views frame by frame, keeps a coverage map and tells the user what is missing.

    ``process(image)`` per frame (live camera, video, GUI): detects the board, and takes the view
    when it is big enough, still (``still_px``: mean corner motion since the previous frame; None
    for unrelated images) and different enough from the views already taken. ``guidance()`` lists
    what to do next (the steps of :data:`GUIDED_VIEWS` still missing, :meth:`missing_steps`, and the
    image regions not covered yet); ``ready`` says a solve is worth trying; ``solve()`` returns a
    :class:`Calibration` or raises :class:`CalibrationError`. For files, :meth:`collect` every frame and
    :meth:`select` well-spread views afterwards instead. Pure Python/OpenCV (no Qt).
    """

    def __init__(self, board: BoardSpec, image_size: tuple[int, int], model: str = "opencv",
                 criteria: CalibrationCriteria = CalibrationCriteria(), target_views: int = 15,
                 min_novelty: float = 0.15, still_px: float | None = 1.5, cells: tuple[int, int] = (8, 6),
                 principal_point: str = "auto"):
        if model not in CALIBRATION_MODELS:
            raise ValueError(f"calibration model {model!r}: expected one of {', '.join(CALIBRATION_MODELS)}")
        self.board, self.image_size, self.model, self.criteria = board, tuple(image_size), model, criteria
        self.target_views, self.min_novelty, self.still_px, self.cells = target_views, min_novelty, still_px, cells
        self.principal_point = principal_point
        self.detector = BoardDetector(board)
        self.views: list[BoardDetection] = []
        self.geometries: list[ViewGeometry] = []
        self.candidates: list[BoardDetection] = []  # collect(): every detection, for select()
        self.frames_seen = 0
        self.frames_with_board = 0
        self.last_feedback: FrameFeedback | None = None
        self.result: Calibration | None = None
        self._previous: BoardDetection | None = None

    # -- frames ---------------------------------------------------------------------------------

    def process(self, image: np.ndarray, frame_index: int | None = None) -> FrameFeedback:
        """Detect the board in one frame and take the view if it adds something."""
        h, w = np.asarray(image).shape[:2]
        if (w, h) != self.image_size:
            raise ValueError(f"frame is {w}x{h} but this session calibrates {self.image_size[0]}x{self.image_size[1]}")
        index = self.frames_seen if frame_index is None else frame_index
        self.frames_seen += 1
        det = self.detector.detect(image, index)
        return self.add_detection(det)

    def add_detection(self, det: BoardDetection | None) -> FrameFeedback:
        previous, self._previous = self._previous, det
        if det is None:
            return self._feedback(None, False, "no board found")
        self.frames_with_board += 1
        area = det.area_fraction
        if area < self.criteria.min_area_fraction:
            return self._feedback(det, False, f"board too small ({area:.1%} of the frame): move it closer")
        if self.still_px is not None:  # needs the board in the previous frame too, nearly unmoved
            common, ia, ib = (np.intersect1d(det.ids, previous.ids, return_indices=True) if previous is not None
                              else (np.zeros(0), None, None))
            if len(common) < 4:
                return self._feedback(det, False, "hold the board still")
            motion = float(np.linalg.norm(det.image_points[ia] - previous.image_points[ib], axis=1).mean())
            if motion > self.still_px * max(self.image_size) / 640:
                return self._feedback(det, False, "hold the board still")
        geom = view_geometry(det)
        if self.geometries:
            dist = min(float(np.linalg.norm(geom.features() - g.features())) for g in self.geometries)
            if dist < self.min_novelty:
                return self._feedback(det, False, "similar to a view already taken: move or tilt the board")
        self.views.append(det)
        self.geometries.append(geom)
        return self._feedback(det, True, f"took view {len(self.views)}")

    def collect(self, image: np.ndarray, frame_index: int, max_motion_px: float | None = 3.0) -> BoardDetection | None:
        """Files: detect and keep every view of the board for :meth:`select`, except where the board
        moved more than ``max_motion_px`` per frame (at 640 px width) since the previous detection
        (motion blur). ``max_motion_px`` None for unrelated images."""
        self.frames_seen += 1
        det = self.detector.detect(image, frame_index)
        previous, self._previous = self._previous, det
        if det is None:
            return None
        self.frames_with_board += 1
        if max_motion_px is not None and previous is not None and frame_index > previous.frame_index >= 0:
            common, ia, ib = np.intersect1d(det.ids, previous.ids, return_indices=True)
            if len(common) >= 4:
                motion = float(np.linalg.norm(det.image_points[ia] - previous.image_points[ib], axis=1).mean())
                if motion / (frame_index - previous.frame_index) > max_motion_px * max(self.image_size) / 640:
                    return None
        self.candidates.append(det)
        return det

    def select(self, max_views: int | None = None) -> list[BoardDetection]:
        """Files: choose well-spread views among the collected ones (:func:`select_views`) as :attr:`views`."""
        chosen = select_views(self.candidates, max_views or max(self.target_views, self.criteria.min_views),
                              self.criteria.min_area_fraction)
        self.views = [self.candidates[i] for i in chosen]
        self.geometries = [view_geometry(v) for v in self.views]
        return self.views

    def _feedback(self, det, accepted, message) -> FrameFeedback:
        self.last_feedback = FrameFeedback(det, accepted, message, len(self.views))
        return self.last_feedback

    # -- state for the user -----------------------------------------------------------------------

    def coverage(self) -> np.ndarray:
        """(rows, cols) corner counts over the image grid (``cells`` = (cols, rows))."""
        return coverage_grid(self.views, self.image_size, self.cells)

    def coverage_fraction(self) -> float:
        return float((self.coverage() > 0).mean())

    def _missing_zones(self) -> list[str]:
        grid = coverage_grid(self.views, self.image_size, (3, 3))
        return [_ZONE_NAMES[r][c] for r in range(3) for c in range(3) if grid[r, c] == 0]

    def missing_steps(self) -> list[GuidedView]:
        """The steps of the guided session (:data:`GUIDED_VIEWS`) no view taken so far has done, in order."""
        return [step for step in GUIDED_VIEWS if not any(step.matches(g) for g in self.geometries)]

    @property
    def ready(self) -> bool:
        """Enough views, tilts and coverage that a solve is worth trying."""
        tilted = sum(g.tilt_deg >= self.criteria.min_tilt_deg for g in self.geometries)
        c = self.criteria
        return (len(self.views) >= max(c.min_views, self.target_views) and tilted >= c.min_tilted_views
                and self.coverage_fraction() >= c.warn_coverage)

    def guidance(self) -> list[str]:
        """What the user should do next, most important first (plain sentences): the steps of the
        guided session still missing (:meth:`missing_steps`) — the ~45° tilts filling the frame that
        fix the focal length and principal point first, then the image corners for the distortion —
        and the image regions no corner has reached."""
        tips: list[str] = []
        n, target = len(self.views), max(self.criteria.min_views, self.target_views)
        if not self.views:
            tips.append(f"Hold the {self.board.kind} board in view, about half the frame wide, and keep it still "
                        "for a moment at each position.")
            return tips + [f"0 of {target} views."]
        missing = {step.key for step in self.missing_steps()}

        def named(keys_words: Sequence[tuple[str, str]]) -> list[str]:
            return [word for key, word in keys_words if key in missing]

        tilts = named((("left", "left side"), ("right", "right side"), ("top", "top edge"), ("bottom", "bottom edge")))
        if tilts:
            tips.append("Tilt the board ~45° left / right / up / down, filling most of the frame: still missing with "
                        f"its {', '.join(tilts)} farther from the camera (one view each).")
        corners = named((("corner-tl", "top-left"), ("corner-tr", "top-right"), ("corner-bl", "bottom-left"),
                         ("corner-br", "bottom-right")))
        if corners:
            tips.append(f"Move the board into the {', '.join(corners)} corner{'s' if len(corners) > 1 else ''} of the "
                        "image, turned ~30° to face the middle.")
        zones = self._missing_zones()
        if zones:
            tips.append("Move the board to the " + ", ".join(zones) + " of the image (not covered yet).")
        diagonals = named((("top-left", "top-left"), ("top-right", "top-right"), ("bottom-left", "bottom-left"),
                           ("bottom-right", "bottom-right")))
        if diagonals:
            tips.append("Tilt the board ~35° about a diagonal, filling most of the frame: still missing with its "
                        f"{', '.join(diagonals)} corner farther away.")
        edges = named((("edge-left", "left"), ("edge-right", "right")))
        if edges:
            tips.append(f"Hold the board at the {' and '.join(edges)} edge{'s' if len(edges) > 1 else ''} of the image, "
                        "turned ~45° to face the middle.")
        if "face-on" in missing:
            tips.append("Hold the board face-on in the middle, filling most of the frame.")
        if max(g.area_fraction for g in self.geometries) < 0.2:
            tips.append("Bring the board closer so it fills more of the frame in some views.")
        if self.ready:
            tips.append(f"{n} views: ready to solve" + (" (the views above would still make it more accurate)."
                                                        if missing else "."))
        else:
            tips.append(f"{n} of {target} views.")
        return tips

    # -- solving ----------------------------------------------------------------------------------

    def solve(self) -> Calibration:
        self.result = calibrate(self.views, self.model, self.criteria, self.board, self.principal_point)
        return self.result
