"""The tracker, in parts: ``types`` (inputs and outputs), ``landmark_model`` (the landmark fast
path), ``residuals`` (one frame's objective, Jacobians and solve), ``shared`` (identity and focal
length over keyframes) and ``online`` (the per-frame state machine)."""
from core.constants import FOCAL_STATES, TRACKING_STATES
from core.tracker.landmark_model import IRIS_IDS, LandmarkModel
from core.tracker.online import Tracker
from core.tracker.residuals import FrameProblem, FrameState
from core.tracker.shared import Keyframe, SharedEstimator
from core.tracker.types import (ONE_EURO, FocalPrior, FramePrior, TrackerOptions, TrackResult, default_focal_prior,
                                fuse_focal_priors)

__all__ = ["FOCAL_STATES", "TRACKING_STATES", "IRIS_IDS", "LandmarkModel", "Tracker", "FrameProblem", "FrameState",
           "Keyframe", "SharedEstimator", "ONE_EURO", "FocalPrior", "FramePrior", "TrackerOptions", "TrackResult",
           "default_focal_prior", "fuse_focal_priors"]
