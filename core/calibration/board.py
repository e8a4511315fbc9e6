"""Calibration boards: :class:`BoardSpec` (a checkerboard or ChArUco board as printed, parsed from
``charuco:7x5,square=0.04,marker=0.03`` strings) and its image (:meth:`BoardSpec.image`, for
printing: ``flamecam calibrate --print-board``, and for rendering).

Board coordinates: metres, x right and y down on the printed board, z into it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoardSpec:
    """A calibration board as printed.

    ``squares_x`` × ``squares_y`` squares (a 10×7 checkerboard has 9×6 inner corners);
    ``square_m``: side of a square in metres (measure the print!); ChArUco: ``marker_m`` the
    marker side, ``dictionary`` an OpenCV ArUco dictionary name, ``legacy`` for boards made by
    OpenCV < 4.6 with an even number of rows.
    """

    kind: str = "charuco"  # checkerboard | charuco; the default fits A4 paper (27 x 18 cm)
    squares_x: int = 9
    squares_y: int = 6
    square_m: float = 0.03
    marker_m: float | None = 0.022
    dictionary: str = "DICT_5X5_100"
    legacy: bool = False

    def __post_init__(self):
        if self.kind not in ("checkerboard", "charuco"):
            raise ValueError(f"board kind {self.kind!r}: expected checkerboard or charuco")
        if self.squares_x < 3 or self.squares_y < 3:
            raise ValueError(f"a board needs at least 3x3 squares, got {self.squares_x}x{self.squares_y}")
        if not self.square_m > 0:
            raise ValueError("the square size must be positive (metres)")
        if self.kind == "charuco":
            if self.marker_m is None or not 0 < self.marker_m < self.square_m:
                raise ValueError("a ChArUco board needs 0 < marker < square")
            import cv2  # noqa: PLC0415

            if not hasattr(cv2.aruco, self.dictionary):
                raise ValueError(f"unknown ArUco dictionary {self.dictionary!r} (e.g. DICT_4X4_50, DICT_5X5_100)")

    @classmethod
    def parse(cls, text: str) -> "BoardSpec":
        """``charuco:7x5,square=0.04,marker=0.03[,dict=DICT_5X5_100][,legacy=1]`` or
        ``checkerboard:10x7,square=0.025`` (counts are squares, sizes in metres; ``mm`` suffix allowed)."""
        kind, _, rest = text.partition(":")
        kind = kind.strip().lower()
        if kind in ("chess", "chessboard"):
            kind = "checkerboard"
        parts = [p.strip() for p in rest.split(",") if p.strip()]
        if not parts or not re.fullmatch(r"\d+x\d+", parts[0]):
            raise ValueError(f"board {text!r}: expected KIND:NXxNY,square=SIZE[,...], e.g. "
                             "charuco:7x5,square=0.04,marker=0.03 or checkerboard:10x7,square=0.025")
        nx, ny = (int(v) for v in parts[0].split("x"))
        values: dict = {"kind": kind, "squares_x": nx, "squares_y": ny}
        for part in parts[1:]:
            key, _, raw = part.partition("=")
            key = key.strip().lower()
            if key in ("square", "marker"):
                values[f"{key}_m"] = _length_m(raw)
            elif key in ("dict", "dictionary"):
                values["dictionary"] = raw.strip().upper()
            elif key == "legacy":
                values["legacy"] = raw.strip().lower() in ("1", "true", "yes")
            else:
                raise ValueError(f"board option {key!r}: expected square, marker, dict or legacy")
        if kind == "checkerboard":
            values.setdefault("marker_m", None)
        if "square_m" not in values:
            raise ValueError(f"board {text!r}: give square=SIZE (metres, or e.g. 25mm)")
        return cls(**values)

    def __str__(self) -> str:
        size = f"{self.squares_x}x{self.squares_y},square={self.square_m:g}"
        if self.kind == "checkerboard":
            return f"checkerboard:{size}"
        return f"charuco:{size},marker={self.marker_m:g},dict={self.dictionary}" + (",legacy=1" if self.legacy else "")

    @property
    def inner_corners(self) -> tuple[int, int]:
        return self.squares_x - 1, self.squares_y - 1

    @property
    def num_corners(self) -> int:
        nx, ny = self.inner_corners
        return nx * ny

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_m, self.squares_y * self.square_m

    def corner_points(self) -> np.ndarray:
        """(N, 3) board coordinates of every inner corner, indexed by corner id (row-major)."""
        nx, ny = self.inner_corners
        gx, gy = np.meshgrid(np.arange(1, nx + 1), np.arange(1, ny + 1))
        pts = np.stack([gx.ravel(), gy.ravel(), np.zeros(nx * ny)], -1) * self.square_m
        return pts.astype(np.float32)

    def cv_board(self):
        """The ``cv2.aruco.CharucoBoard`` (ChArUco only)."""
        import cv2  # noqa: PLC0415

        if self.kind != "charuco":
            raise ValueError("only ChArUco boards have an aruco board object")
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        board = cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, dictionary)
        board.setLegacyPattern(self.legacy)
        return board

    def image(self, px_per_square: int = 100, margin_squares: float = 0.5) -> np.ndarray:
        """The board as a grey uint8 image with a white margin (for printing and rendering)."""
        import cv2  # noqa: PLC0415

        w, h = self.squares_x * px_per_square, self.squares_y * px_per_square
        if self.kind == "charuco":
            inner = self.cv_board().generateImage((w, h), marginSize=0, borderBits=1)
        else:
            ix, iy = np.meshgrid(np.arange(w) // px_per_square, np.arange(h) // px_per_square)
            inner = np.where((ix + iy) % 2 == 0, 0, 255).astype(np.uint8)
        m = int(round(margin_squares * px_per_square))
        return cv2.copyMakeBorder(inner, m, m, m, m, cv2.BORDER_CONSTANT, value=255)


def _length_m(raw: str) -> float:
    raw = raw.strip().lower()
    scale = 1.0
    for suffix, s in (("mm", 1e-3), ("cm", 1e-2), ("m", 1.0)):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)], s
            break
    try:
        return float(raw) * scale
    except ValueError:
        raise ValueError(f"expected a length such as 0.025 or 25mm, got {raw!r}") from None
