"""Camera calibration from a checkerboard or ChArUco board (being split into modules; see solve.py)."""
from core.calibration.solve import (CALIBRATION_MODELS, DISTORTION_CHOICES, GUIDED_VIEWS, OPENCV_COEFF_NAMES_8,
                                    OPENCV_TERMS, BoardDetection, BoardDetector, BoardMesh, BoardRenderer, BoardSpec,
                                    Calibration, CalibrationCriteria, CalibrationError, CalibrationSession,
                                    FrameFeedback, GuidedView, ViewGeometry, board_mesh, calibrate, coverage_grid,
                                    covered_points, detect_board, distortion_error_px, guided_board_poses, image_grid,
                                    random_board_poses, refine_grid_corners, render_board_views, select_views,
                                    view_geometry, view_information)
