"""Camera profiles: saved calibrations, keyed by camera name and resolution.

A profile is what ``flamecam calibrate`` measured for one camera at one resolution: ideal
pinhole intrinsics, lens distortion, and how good the calibration was. Profiles live as JSON
files in the user config folder (``<config>/cameras/<name>_<W>x<H>.json``; ``FLAMECAM_CONFIG``
overrides ``<config>``, by default platformdirs' ``user_config_dir("flamecam")``), so a camera's
profile is picked automatically when that camera opens again.

Profile JSON (format ``flamecam.camera_profile``, version 1)::

    {
      "format": "flamecam.camera_profile",    # always this string
      "version": 1,                           # a reader refuses a newer version
      "name": "Logitech BRIO",                # camera name (the key, with the resolution)
      "image_size": [1280, 720],              # pixels, (width, height) the calibration was made at
      "pixel_convention": "...",              # reminder: pixel i covers [i, i+1) (see below)
      "intrinsics": {"fx": 912.3, "fy": 911.8, "cx": 641.2, "cy": 359.4},
      "distortion": {"model": "opencv",       # none | opencv (k1 k2 p1 p2 [k3 [k4 k5 k6 ...]]) | fisheye (k1..k4)
                     "coefficients": [...], "names": ["k1", "k2", "p1", "p2", "k3"]},
      "uncertainty": {"fx": 0.4, ...},        # 1σ of each parameter above (null when unknown)
      "rms_px": 0.21,                         # RMS reprojection error of the calibration (null if imported)
      "num_views": 15,
      "board": "charuco:9x6,square=0.03,marker=0.022,dict=DICT_5X5_100",
      "source": "webcam:0",                   # what was calibrated (free text)
      "created_utc": "2026-01-01T12:00:00.000Z",
      "app_version": "0.1.0",
      "notes": ""
    }

Intrinsics follow flamecam's convention (``core.camera``): pixel ``i`` covers ``[i, i+1)``, so
the image centre is ``(W/2, H/2)``; OpenCV's ``cx, cy`` are 0.5 smaller. The importers and
exporters here convert. In this convention a resize scales every intrinsic exactly:
``(fx, fy, cx, cy)·(W'/W, H'/H)``; the distortion coefficients, defined on normalised
coordinates, do not change. A profile is reused at another resolution only when the aspect
ratio is the same (the camera is then assumed to use the same sensor area, e.g. binning); a
different aspect ratio usually means a different crop of the sensor, so it is refused.

Import/export: OpenCV's calibration-sample YAML (``camera_matrix``, ``distortion_coefficients``,
``image_width``, ``image_height``; ROS ``camera_info`` YAML is read too) and the common ``K`` /
``dist`` ``.npz`` layout (also ``mtx``/``camera_matrix`` and ``D``/``dist_coeffs``), both in
OpenCV's pixel convention.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.camera import intrinsics_from_opencv, opencv_camera_matrix, resize_intrinsics
from core.distortion import LensDistortion

PROFILE_FORMAT = "flamecam.camera_profile"
PROFILE_VERSION = 1
PIXEL_CONVENTION = ("flamecam: pixel i covers [i, i+1), image centre at (W/2, H/2); "
                    "OpenCV's camera matrix has cx - 0.5, cy - 0.5")


class ProfileError(ValueError):
    """A profile that cannot be read, found or used at this resolution, with the reason."""


def config_dir() -> Path:
    """flamecam's user config folder (``FLAMECAM_CONFIG`` overrides it)."""
    override = os.environ.get("FLAMECAM_CONFIG")
    if override:
        return Path(override)
    from platformdirs import user_config_dir  # noqa: PLC0415

    return Path(user_config_dir("flamecam", appauthor=False))


def profiles_dir() -> Path:
    return config_dir() / "cameras"


def _utc_now() -> str:
    from core.recording.format import _utc_now as now  # noqa: PLC0415

    return now()


def _app_version() -> str:
    from core.recording.format import _app_version as version  # noqa: PLC0415

    return version()


def slug(name: str) -> str:
    """A file-name-safe form of a camera name."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return text or "camera"


def same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Equal aspect ratios up to the rounding of one pixel."""
    return abs(a[0] * b[1] - b[0] * a[1]) <= max(a[1], b[1])


@dataclass(frozen=True)
class CameraProfile:
    """One camera's calibration at one resolution (see the module docstring for the JSON form)."""

    name: str
    image_size: tuple[int, int]
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy (flamecam convention)
    lens: LensDistortion = LensDistortion()
    uncertainty: dict[str, float | None] = field(default_factory=dict)
    rms_px: float | None = None
    num_views: int | None = None
    board: str = ""
    source: str = ""
    created_utc: str = ""
    app_version: str = ""
    notes: str = ""
    path: str | None = field(default=None, compare=False)  # where it was loaded from
    scaled_from: tuple[int, int] | None = field(default=None, compare=False)  # set by scaled_to()

    def __post_init__(self):
        w, h = (int(v) for v in self.image_size)
        object.__setattr__(self, "image_size", (w, h))
        object.__setattr__(self, "intrinsics", tuple(float(v) for v in self.intrinsics))
        if w <= 0 or h <= 0:
            raise ProfileError(f"profile {self.name!r}: image size {w}x{h} must be positive")
        fx, fy, cx, cy = self.intrinsics
        if not all(math.isfinite(v) for v in self.intrinsics) or fx <= 0 or fy <= 0:
            raise ProfileError(f"profile {self.name!r}: bad intrinsics {self.intrinsics}")

    # -- derived ------------------------------------------------------------------------------

    @property
    def focal_px(self) -> float:
        return self.intrinsics[0]

    @property
    def pixel_aspect(self) -> float:
        """fy / fx."""
        return self.intrinsics[1] / self.intrinsics[0]

    @property
    def principal_px(self) -> tuple[float, float]:
        return self.intrinsics[2], self.intrinsics[3]

    @property
    def focal_sigma_rel(self) -> float | None:
        s = self.uncertainty.get("fx")
        return None if s is None or not math.isfinite(s) else float(s) / self.focal_px

    def scaled_to(self, size: tuple[int, int]) -> "CameraProfile":
        """This profile at another resolution of the same sensor mode; raises :class:`ProfileError`
        when the aspect ratio differs (a different crop of the sensor)."""
        size = (int(size[0]), int(size[1]))
        if size == self.image_size:
            return self
        if not same_aspect(size, self.image_size):
            raise ProfileError(
                f"camera profile {self.name!r} was calibrated at {self.image_size[0]}x{self.image_size[1]}, "
                f"the camera now gives {size[0]}x{size[1]}: a different aspect ratio means a different part of "
                f"the sensor, so the calibration does not carry over; calibrate at this resolution "
                f"(flamecam calibrate ... --name {self.name!r})")
        sx, sy = size[0] / self.image_size[0], size[1] / self.image_size[1]
        unc = dict(self.uncertainty)
        for key, s in (("fx", sx), ("fy", sy), ("cx", sx), ("cy", sy)):
            if unc.get(key) is not None:
                unc[key] = unc[key] * s
        intrinsics = tuple(float(v) for v in resize_intrinsics(np.asarray(self.intrinsics, np.float64), sx, sy))
        return replace(self, image_size=size, intrinsics=intrinsics, uncertainty=unc,
                       scaled_from=self.image_size)

    def describe(self) -> str:
        fx, fy, cx, cy = self.intrinsics
        text = (f"{self.name} ({self.image_size[0]}x{self.image_size[1]}"
                + (f", scaled from {self.scaled_from[0]}x{self.scaled_from[1]}" if self.scaled_from else "")
                + f"): fx {fx:.1f}, fy {fy:.1f}, cx {cx:.1f}, cy {cy:.1f} px, lens {self.lens.model}")
        if self.rms_px is not None:
            text += f", calibration RMS {self.rms_px:.2f} px"
        return text

    # -- JSON -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        fx, fy, cx, cy = self.intrinsics
        return {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "name": self.name,
                "image_size": list(self.image_size), "pixel_convention": PIXEL_CONVENTION,
                "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy}, "distortion": self.lens.to_dict(),
                "uncertainty": {k: (float(v) if v is not None and math.isfinite(v) else None)
                                for k, v in self.uncertainty.items()},
                "rms_px": self.rms_px, "num_views": self.num_views,
                "board": self.board, "source": self.source, "created_utc": self.created_utc,
                "app_version": self.app_version, "notes": self.notes}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | None = None) -> "CameraProfile":
        where = path or "camera profile"
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"{where}: not a flamecam camera profile (missing \"format\": \"{PROFILE_FORMAT}\")")
        version = data.get("version")
        if not isinstance(version, int) or version > PROFILE_VERSION:
            raise ProfileError(f"{where}: profile version {version!r} is newer than this flamecam reads "
                               f"({PROFILE_VERSION}); update flamecam")
        try:
            intr = data["intrinsics"]
            lens = LensDistortion.from_dict(data.get("distortion"))
            return cls(name=str(data["name"]), image_size=tuple(data["image_size"]),
                       intrinsics=(intr["fx"], intr["fy"], intr["cx"], intr["cy"]), lens=lens,
                       uncertainty=dict(data.get("uncertainty") or {}), rms_px=data.get("rms_px"),
                       num_views=data.get("num_views"), board=str(data.get("board", "")),
                       source=str(data.get("source", "")), created_utc=str(data.get("created_utc", "")),
                       app_version=str(data.get("app_version", "")), notes=str(data.get("notes", "")), path=path)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"{where}: malformed profile ({type(exc).__name__}: {exc})") from exc

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CameraProfile":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ProfileError(f"cannot read camera profile {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, str(path))


def profile_from_calibration(calibration, name: str, source: str = "", notes: str = "") -> CameraProfile:
    """A :class:`CameraProfile` from a ``core.calibration.Calibration``."""
    return CameraProfile(name=name, image_size=calibration.image_size, intrinsics=tuple(calibration.intrinsics),
                         lens=calibration.lens, uncertainty=dict(calibration.sigmas), rms_px=calibration.rms_px,
                         num_views=calibration.num_views, board=calibration.board, source=source,
                         created_utc=_utc_now(), app_version=_app_version(), notes=notes)


# --- the profile store ----------------------------------------------------------------------------


def profile_path(name: str, size: tuple[int, int], directory: str | Path | None = None) -> Path:
    return Path(directory or profiles_dir()) / f"{slug(name)}_{int(size[0])}x{int(size[1])}.json"


def save_profile(profile: CameraProfile, directory: str | Path | None = None) -> Path:
    """Store a profile under its name and resolution (replacing an older one of the same key)."""
    return profile.save(profile_path(profile.name, profile.image_size, directory))


def list_profiles(directory: str | Path | None = None) -> list[CameraProfile]:
    """Every readable profile in the store (unreadable files are skipped; see :func:`check_store`)."""
    folder = Path(directory or profiles_dir())
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(CameraProfile.load(path))
        except ProfileError:
            continue
    return out


@dataclass(frozen=True)
class ProfileMatch:
    """The outcome of looking a camera up: a profile ready for this resolution, or why not."""

    profile: CameraProfile | None
    message: str


def find_profile(camera_name: str, size: tuple[int, int], directory: str | Path | None = None) -> ProfileMatch:
    """The stored profile for ``camera_name`` at ``size``: exact resolution first, else one of the
    same aspect ratio scaled (largest first); other aspect ratios are refused with a message."""
    size = (int(size[0]), int(size[1]))
    candidates = [p for p in list_profiles(directory) if p.name == camera_name or slug(p.name) == slug(camera_name)]
    if not candidates:
        return ProfileMatch(None, f"no camera profile for {camera_name!r}")
    for p in candidates:
        if p.image_size == size:
            return ProfileMatch(p, f"camera profile {p.describe()}")
    same = sorted((p for p in candidates if same_aspect(p.image_size, size)), key=lambda p: -p.image_size[0])
    if same:
        scaled = same[0].scaled_to(size)
        return ProfileMatch(scaled, f"camera profile {scaled.describe()}")
    sizes = ", ".join(f"{p.image_size[0]}x{p.image_size[1]}" for p in candidates)
    return ProfileMatch(None, f"camera profile {camera_name!r} exists for {sizes} but not for the aspect ratio of "
                              f"{size[0]}x{size[1]} (a different sensor crop); not used — calibrate at this "
                              "resolution")


def load_profile_spec(spec: str, size: tuple[int, int] | None = None, directory: str | Path | None = None,
                      lens_model: str | None = None) -> CameraProfile:
    """``--camera-profile NAME|PATH``: a file (.json profile, OpenCV/ROS .yaml/.yml, K/dist .npz) or
    a stored profile's name; scaled to ``size`` when given (refused on an aspect change)."""
    path = Path(spec).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            profile = CameraProfile.load(path)
        elif suffix in (".yaml", ".yml", ".xml"):
            profile = import_opencv_yaml(path, image_size=size, lens_model=lens_model)
        elif suffix == ".npz":
            profile = import_npz(path, image_size=size, lens_model=lens_model)
        else:
            raise ProfileError(f"{path}: unknown profile file type (expected .json, .yaml/.yml or .npz)")
    else:
        if path.suffix.lower() in (".json", ".yaml", ".yml", ".npz", ".xml") or os.sep in spec:
            raise ProfileError(f"camera profile file not found: {path}")
        if size is not None:
            match = find_profile(spec, size, directory)
            if match.profile is None:
                if "aspect" in match.message:
                    raise ProfileError(match.message)
                raise ProfileError(_unknown_name_message(spec, directory))
            return match.profile
        named = [p for p in list_profiles(directory) if p.name == spec or slug(p.name) == slug(spec)]
        if not named:
            raise ProfileError(_unknown_name_message(spec, directory))
        profile = named[0]
    return profile if size is None else profile.scaled_to(size)


def _unknown_name_message(name: str, directory) -> str:
    known = sorted({f"{p.name} ({p.image_size[0]}x{p.image_size[1]})" for p in list_profiles(directory)})
    where = Path(directory or profiles_dir())
    return (f"no camera profile named {name!r} in {where}"
            + (f"; known: {', '.join(known)}" if known else " (none saved yet: run flamecam calibrate)"))


# --- import / export -----------------------------------------------------------------------------


def _lens_from(model: str | None, coeffs: np.ndarray) -> LensDistortion:
    coeffs = np.asarray(coeffs, np.float64).ravel()
    model = (model or "").lower()
    if model in ("fisheye", "equidistant", "kannala_brandt"):
        return LensDistortion("fisheye", tuple(coeffs[:4]))
    if coeffs.size == 0 or not coeffs.any():
        return LensDistortion()
    if coeffs.size not in (4, 5, 8, 12, 14):
        # pad to the next length OpenCV accepts (trailing zeros are no distortion)
        n = next(n for n in (4, 5, 8, 12, 14) if n >= coeffs.size)
        coeffs = np.concatenate([coeffs, np.zeros(n - coeffs.size)])
    return LensDistortion("opencv", tuple(coeffs))


def _need_size(image_size, where: str) -> tuple[int, int]:
    if image_size is None:
        raise ProfileError(f"{where} does not say the image size it was calibrated at; give it "
                           "(e.g. --image-size 1280x720)")
    return int(image_size[0]), int(image_size[1])


def import_opencv_yaml(path: str | Path, name: str | None = None, image_size: tuple[int, int] | None = None,
                       lens_model: str | None = None) -> CameraProfile:
    """Read OpenCV calibration-sample YAML/XML (``camera_matrix``, ``distortion_coefficients``,
    ``image_width``/``image_height``, ``fisheye_model``) or ROS ``camera_info`` YAML.

    The file's own image size wins over ``image_size`` (the camera's current size), which is only
    used when the file has none; the result is *not* scaled (see :func:`load_profile_spec`).
    """
    import cv2  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"file not found: {path}")
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    if not fs.isOpened():
        raise ProfileError(f"{path}: OpenCV cannot read this YAML/XML file")
    try:
        def node(*keys):
            for key in keys:
                n = fs.getNode(key)
                if not n.empty():
                    return n
            return None

        def matrix(n):
            if n is None:
                return None
            if n.isMap() and not n.getNode("data").empty():  # ROS camera_info
                data = n.getNode("data")
                return np.array([data.at(i).real() for i in range(data.size())])
            if n.isSeq():
                return np.array([n.at(i).real() for i in range(n.size())])
            mat = n.mat()
            return None if mat is None else np.asarray(mat, np.float64).ravel()

        k = matrix(node("camera_matrix", "cameraMatrix", "K", "M", "intrinsic", "intrinsics", "mtx"))
        if k is None or k.size != 9:
            raise ProfileError(f"{path}: no 3x3 camera matrix (camera_matrix / cameraMatrix / K)")
        dist = matrix(node("distortion_coefficients", "distCoeffs", "dist_coeffs", "D", "dist", "distortion"))
        model = lens_model
        if model is None:
            m = node("distortion_model")
            if m is not None and m.isString():
                model = m.string()
            f = node("fisheye_model")
            if f is not None and f.real() == 1:
                model = "fisheye"
        w_node, h_node = node("image_width", "imageWidth"), node("image_height", "imageHeight")
        size = None
        if w_node is not None and h_node is not None:
            size = (int(w_node.real()), int(h_node.real()))
        else:
            s = matrix(node("image_size", "imageSize"))
            if s is not None and s.size == 2:
                size = (int(s[0]), int(s[1]))
        size = size or _need_size(image_size, str(path))
        cam_name = name
        if cam_name is None:
            n = node("camera_name", "flamecam_name")
            cam_name = n.string() if n is not None and n.isString() else path.stem
        err = node("avg_reprojection_error")
        rms = float(err.real()) if err is not None else None
    finally:
        fs.release()
    return CameraProfile(name=cam_name, image_size=size, intrinsics=tuple(intrinsics_from_opencv(k.reshape(3, 3))),
                         lens=_lens_from(model, dist if dist is not None else np.zeros(0)), rms_px=rms,
                         source=f"imported from {path.name}", created_utc=_utc_now(), app_version=_app_version(),
                         path=str(path))


def export_opencv_yaml(profile: CameraProfile, path: str | Path) -> Path:
    """Write OpenCV calibration-sample YAML (OpenCV pixel convention; ``fisheye_model`` 0/1)."""
    import cv2  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_FORMAT_YAML)
    if not fs.isOpened():
        raise ProfileError(f"cannot write {path}")
    try:
        fs.write("calibration_time", profile.created_utc or _utc_now())
        fs.write("camera_name", profile.name)
        fs.write("image_width", int(profile.image_size[0]))
        fs.write("image_height", int(profile.image_size[1]))
        fs.write("fisheye_model", 1 if profile.lens.model == "fisheye" else 0)
        fs.write("camera_matrix", opencv_camera_matrix(profile.intrinsics))
        coeffs = profile.lens.as_array() if profile.lens.model != "none" else np.zeros(5)
        fs.write("distortion_coefficients", coeffs.reshape(-1, 1))
        if profile.rms_px is not None:
            fs.write("avg_reprojection_error", float(profile.rms_px))
    finally:
        fs.release()
    return path


def import_npz(path: str | Path, name: str | None = None, image_size: tuple[int, int] | None = None,
               lens_model: str | None = None) -> CameraProfile:
    """Read the common ``np.savez(path, K=..., dist=...)`` layout (OpenCV pixel convention).

    Also accepts ``mtx``/``camera_matrix``/``cameraMatrix`` and ``D``/``dist_coeffs``/``distCoeffs``;
    an ``image_size`` (or ``width``/``height``) array and a ``model`` string ("fisheye") if present.
    Four coefficients mean the opencv model (k1 k2 p1 p2) unless the file or ``lens_model`` says fisheye.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{path}: not a readable .npz file ({exc})") from exc
    k = next((arrays[n] for n in ("K", "k", "mtx", "camera_matrix", "cameraMatrix", "intrinsics") if n in arrays), None)
    if k is None or k.size != 9:
        raise ProfileError(f"{path}: no 3x3 camera matrix (keys K, mtx or camera_matrix); keys are "
                           f"{', '.join(sorted(arrays))}")
    dist = next((arrays[n] for n in ("dist", "D", "d", "dist_coeffs", "distCoeffs", "distortion") if n in arrays),
                np.zeros(0))
    size = None
    if "image_size" in arrays and arrays["image_size"].size == 2:
        size = tuple(int(v) for v in arrays["image_size"].ravel())
    elif "width" in arrays and "height" in arrays:
        size = (int(arrays["width"]), int(arrays["height"]))
    size = size or _need_size(image_size, str(path))
    model = lens_model or (str(arrays["model"]) if "model" in arrays else None)
    return CameraProfile(name=name or path.stem, image_size=size,
                         intrinsics=tuple(intrinsics_from_opencv(k.reshape(3, 3).astype(np.float64))),
                         lens=_lens_from(model, dist), source=f"imported from {path.name}", created_utc=_utc_now(),
                         app_version=_app_version(), path=str(path))


def export_npz(profile: CameraProfile, path: str | Path) -> Path:
    """Write ``K`` (3x3, OpenCV convention), ``dist``, ``image_size`` and ``model``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    coeffs = profile.lens.as_array() if profile.lens.model != "none" else np.zeros(5)
    np.savez(path, K=opencv_camera_matrix(profile.intrinsics), dist=coeffs,
             image_size=np.array(profile.image_size), model=np.array(profile.lens.model))
    return path


# --- which camera is this? ------------------------------------------------------------------------


def webcam_device_name(index: int) -> str | None:
    """The device name the OS reports for OpenCV camera ``index`` (Linux: ``/sys/class/video4linux/
    videoN/name``, e.g. "HD Pro Webcam C920"); None when it cannot be read (other systems, no device)."""
    try:
        text = Path(f"/sys/class/video4linux/video{int(index)}/name").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def camera_name_for_source(source) -> str | None:
    """A stable name for the camera behind a frame source, to look its profile up.

    Webcams: the device name the OS reports (Linux ``/sys/class/video4linux/videoN/name``), else
    ``webcam:N``. Photos and videos: ``Make Model`` from their metadata, when present.
    Synthetic and unknown sources: None (no automatic profile).
    """
    from core.sources import ImageFolderSource, VideoFileSource, WebcamSource  # noqa: PLC0415

    if isinstance(source, WebcamSource):
        return webcam_device_name(source.index) or f"webcam:{source.index}"
    if isinstance(source, (ImageFolderSource, VideoFileSource)):
        from core.metadata import read_camera_metadata  # noqa: PLC0415

        path = source.paths[0] if isinstance(source, ImageFolderSource) else source.path
        meta = read_camera_metadata(path)
        return meta.camera_name if meta is not None else None
    return None
