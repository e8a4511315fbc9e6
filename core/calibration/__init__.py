"""Camera calibration from a checkerboard or ChArUco board: OpenCV's calibration, guided.

The tracker cannot measure the focal length well from face landmarks alone (MediaPipe's slow
~2 px bias swamps the 0.03-0.1 px a 3 % focal change makes), so users who need metric,
undistorted geometry calibrate. This package does the parts around OpenCV's solver:

1. **Detect** a board per frame (``detect``: :func:`detect_board`, :class:`BoardDetector`) printed
   from a :class:`BoardSpec` (``board``); ChArUco corners are re-located on the two chessboard edges
   through them only (:func:`refine_grid_corners`), as accurate as a checkerboard's.
2. **Pick views** that constrain the camera: a live :class:`CalibrationSession` (``guided``) takes
   views that add something new and tells the user what the guided session (:data:`GUIDED_VIEWS`)
   still lacks; for files, :func:`select_views` (``views``) picks greedily the views that most lower
   the expected uncertainty of the intrinsics.
3. **Solve** intrinsics and lens distortion (``solve``: :func:`calibrate`): OpenCV's
   radial-tangential, rational or fisheye model, the distortion terms chosen by a likelihood-ratio
   test, from two starts; outlier views dropped once.
4. **Judge**: the RMS reprojection error and an honest 1σ of every parameter (the larger of OpenCV's
   and the leave-one-view-out jackknife's) in a :class:`Calibration` (``result``), or a
   :class:`CalibrationError` saying why the calibration is refused and what to do.

``synthetic_board`` renders boards with exact ground truth for tests and benchmarks.

Conventions: every pixel coordinate here is flamecam's (pixel ``i`` covers ``[i, i+1)``), so
detections are shifted by +0.5 from OpenCV's integer-centred corners as soon as they are found,
and OpenCV's solver then returns flamecam intrinsics directly (its camera model does not care
where the origin is; only its initial guess does). Camera math (K matrices, projection) comes from
``core.camera``. Board coordinates: metres, x right and y down on the printed board, z into it.
"""
from core.calibration.board import BoardSpec
from core.calibration.detect import BoardDetection, BoardDetector, detect_board, refine_grid_corners
from core.calibration.guided import GUIDED_VIEWS, CalibrationSession, FrameFeedback, GuidedView
from core.calibration.result import Calibration, CalibrationCriteria, CalibrationError
from core.calibration.solve import (CALIBRATION_MODELS, DISTORTION_CHOICES, OPENCV_COEFF_NAMES_8, OPENCV_TERMS,
                                    calibrate)
from core.calibration.synthetic_board import (BoardMesh, BoardRenderer, board_mesh, covered_points,
                                              distortion_error_px, guided_board_poses, image_grid,
                                              random_board_poses, render_board_views)
from core.calibration.views import ViewGeometry, coverage_grid, select_views, view_geometry, view_information

__all__ = [
    "CALIBRATION_MODELS", "DISTORTION_CHOICES", "GUIDED_VIEWS", "OPENCV_COEFF_NAMES_8", "OPENCV_TERMS",
    "BoardDetection", "BoardDetector", "BoardMesh", "BoardRenderer", "BoardSpec", "Calibration",
    "CalibrationCriteria", "CalibrationError", "CalibrationSession", "FrameFeedback", "GuidedView", "ViewGeometry",
    "board_mesh", "calibrate", "coverage_grid", "covered_points", "detect_board", "distortion_error_px",
    "guided_board_poses", "image_grid", "random_board_poses", "refine_grid_corners", "render_board_views",
    "select_views", "view_geometry", "view_information",
]
