"""Names and sizes shared across flamecam, in one place (no heavy imports: the GUI reads these too).

The state names are stored as codes (their index) in recordings, so new names are only ever
appended; ``tests/test_architecture.py`` checks that nothing else defines them again.
"""
from __future__ import annotations

from typing import Literal

NUM_LANDMARKS = 478  # MediaPipe Face Landmarker: 468 surface points + 2 x 5 iris points
NUM_SURFACE_LANDMARKS = 468
NUM_BLENDSHAPES = 52

FocalState = Literal["fixed", "not_observable", "estimating", "converged"]
# no_face: no face fitted yet in the segment; lost: the tracked face is not in view; other_faces: faces are
# in view but none is the tracked person (core.segments follows one person).
TrackingState = Literal["tracking", "lost", "reacquired", "no_face", "other_faces"]
# Recording codes are the index in these tuples: append, never reorder.
FOCAL_STATES: tuple[str, ...] = ("fixed", "not_observable", "estimating", "converged")
TRACKING_STATES: tuple[str, ...] = ("tracking", "lost", "reacquired", "no_face", "other_faces")
# States whose frames carry a fitted pose (the others have NaN pose fields).
POSED_STATES: tuple[str, ...] = ("tracking", "reacquired")
# Faces MediaPipe looks for by default: enough for a small group, so the tracked person is chosen
# among the people in view (core.segments); 1 suits footage of one person (see LandmarkerOptions).
DEFAULT_MAX_FACES = 5
