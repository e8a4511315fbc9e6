"""The tracker, in parts: ``types`` (inputs and outputs), ``landmark_model`` (the landmark fast
path), ``residuals`` (one frame's objective, Jacobians and solve), ``shared`` (identity and focal
length over keyframes) and ``online`` (the per-frame state machine).

The types load at once; the parts that need torch load when first used (PEP 562), so code that only
needs the types (``core.intrinsics``, the app before its window opens) does not wait for torch."""
import importlib

from core.constants import FOCAL_STATES, TRACKING_STATES
from core.tracker.types import (ONE_EURO, FocalPrior, FramePrior, TrackerOptions, TrackResult, default_focal_prior,
                                fuse_focal_priors)

_LAZY = {"IRIS_IDS": "landmark_model", "LandmarkModel": "landmark_model", "Tracker": "online",
         "FrameProblem": "residuals", "FrameState": "residuals", "Keyframe": "shared", "SharedEstimator": "shared"}

__all__ = ["FOCAL_STATES", "TRACKING_STATES", "IRIS_IDS", "LandmarkModel", "Tracker", "FrameProblem", "FrameState",
           "Keyframe", "SharedEstimator", "ONE_EURO", "FocalPrior", "FramePrior", "TrackerOptions", "TrackResult",
           "default_focal_prior", "fuse_focal_priors"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"core.tracker.{_LAZY[name]}"), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'core.tracker' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
