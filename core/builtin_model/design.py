"""The built-in model's design constants: names of its expressions and identity features, eye and jaw
geometry, colours (changing one changes the model: bump ``BUILTIN_VERSION``)."""
from __future__ import annotations

import numpy as np

from core.constants import NUM_LANDMARKS, NUM_SURFACE_LANDMARKS

NUM_SURFACE_VERTICES = NUM_SURFACE_LANDMARKS  # the canonical mesh: one vertex per landmark
NUM_LANDMARK_VERTICES = NUM_LANDMARKS

# MediaPipe's blendshape categories (its output order, without "_neutral"), ARKit spelling.
EXPRESSION_NAMES = (
    "browDown_L", "browDown_R", "browInnerUp", "browOuterUp_L", "browOuterUp_R", "cheekPuff",
    "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R",
    "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R",
    "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel",
    "mouthLeft", "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
)

# The designed identity features (before the rotation into principal axes).
IDENTITY_FEATURE_NAMES = (
    "scale", "face_width", "face_height", "face_depth", "nose_length", "nose_projection", "nose_width",
    "jaw_width", "chin_height", "chin_projection", "eye_spacing", "eye_size", "mouth_width",
    "lip_thickness", "cheek_fullness", "forehead_slope", "brow_height", "brow_ridge", "nasal_bridge",
    "mouth_height",
)

MM = 1e-3

# Eyes: human iris radius ~5.9 mm; eyeball radius ~12 mm. The iris is a cap 0.3 mm outside the
# sclera sphere so it can slide over it (gaze); its centre sits IRIS_BEHIND_LID behind the
# surface that closes the eye opening in the canonical mesh.
IRIS_RADIUS = 5.9 * MM
PUPIL_RADIUS = 1.9 * MM
SCLERA_RADIUS = 12.0 * MM
IRIS_SPHERE_RADIUS = 12.3 * MM
IRIS_BEHIND_LID = 1.3 * MM
SCLERA_GAP = (1.5 * MM, 5.0 * MM)  # the sclera stays this far behind the skin around the opening
SCLERA_EXTENT = (16.0 * MM, 9.0 * MM)  # half-axes of the sclera patch around the iris centre
GAZE_DEG = {"Out": (20.0, 0.0), "In": (-20.0, 0.0), "Up": (0.0, 15.0), "Down": (0.0, -18.0)}
JAW_AXIS = np.array([0.0, -5.0, -45.0]) * MM  # a left-right axis near the temporomandibular joints
JAW_OPEN_RAD = 0.28

SKIN_RGB = (0.86, 0.66, 0.56)
BROW_RGB = (0.28, 0.19, 0.14)
LIP_RGB = (0.72, 0.36, 0.36)
LASH_RGB = (0.40, 0.28, 0.24)
SCLERA_RGB = (0.93, 0.91, 0.88)
IRIS_RGB = (0.36, 0.25, 0.16)
LIMBUS_RGB = (0.16, 0.11, 0.08)
PUPIL_RGB = (0.03, 0.03, 0.03)
MOUTH_RGB = ((0.38, 0.13, 0.13), (0.10, 0.03, 0.03))  # inner mouth: edge, centre
