"""The tracker, in parts: ``types`` (inputs and outputs), ``landmark_model`` (the landmark fast
path), ``residuals`` (one frame's objective, Jacobians and solve), ``shared`` (identity and focal
length over keyframes) and ``online`` (the per-frame state machine).

The names below load on first use, so ``core.tracker.types`` (options, priors, results) is read
without torch: checking a command line never waits for it.
"""
from __future__ import annotations

import importlib

from core.constants import FOCAL_STATES, TRACKING_STATES

_WHERE = {
    "IRIS_IDS": "landmark_model", "LandmarkModel": "landmark_model", "Tracker": "online", "FrameProblem": "residuals",
    "FrameState": "residuals", "Keyframe": "shared", "SharedEstimator": "shared", "ONE_EURO": "types",
    "FocalPrior": "types", "FramePrior": "types", "TrackerOptions": "types", "TrackResult": "types",
    "default_focal_prior": "types", "fuse_focal_priors": "types",
}

__all__ = ["FOCAL_STATES", "TRACKING_STATES", *_WHERE]


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"core.tracker.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'core.tracker' has no attribute {name!r}")
