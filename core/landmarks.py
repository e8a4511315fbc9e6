"""MediaPipe Face Landmarker (Tasks API): 478 landmarks, 52 blendshape scores, per frame.

Options/Result dataclasses in MediaPipe Tasks' own style. Pixel coordinates follow
``core.camera``'s convention (pixel i covers [i, i+1)): ``u = x_normalised · width``.
Several faces: the configured one is kept (largest by default) and the count is reported.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# MediaPipe's C++ logging (glog/absl) prints start-up chatter to stderr; keep warnings and errors only.
# (mediapipe 1.2.2 logs through absl, which reads no environment variable: see quiet_native_startup.)
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.constants import DEFAULT_MAX_FACES, NUM_BLENDSHAPES, NUM_LANDMARKS  # noqa: F401  (re-exported)
from core.constants import NUM_SURFACE_LANDMARKS  # noqa: F401  (re-exported)

# MediaPipe's blendshape categories, in the order the model outputs them.
MEDIAPIPE_BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)


_WHOLE_NAMES = {"jawLeft", "jawRight", "mouthLeft", "mouthRight"}  # directions, not sides


def arkit_name(name: str) -> str:
    """One spelling for ARKit blendshape names: ``mouthSmileLeft`` / ``mouthSmile_L`` -> ``mouthSmile_L``
    (``jawLeft``, ``mouthRight``, ... name a direction and stay whole)."""
    if name in _WHOLE_NAMES:
        return name
    return re.sub(r"(Left|Right)$", lambda m: "_" + m.group(1)[0], name)


# What MediaPipe 1.2.2 prints on stderr while a landmarker is created (absl and TF Lite INFO/WARNING
# lines): "W0000 00:00:1796534738.359970 2211 face_landmarker_graph.cc:181] Sets FaceBlendshapesGraph
# acceleration to xnnpack by default.", "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", and
# absl's note about logging before its initialisation. Errors (E/F lines) are not matched.
NATIVE_CHATTER = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] .*"
    r"|INFO: .*"
    r"|WARNING: (?:Logging before InitGoogle\(\)|All log messages before absl::InitializeLog\(\)).*)$")
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_native_startup():
    """Drop MediaPipe's start-up chatter (:data:`NATIVE_CHATTER`) from stderr, keep everything else.

    absl's C++ logging, which mediapipe 1.2.2 uses, reads no environment variable and the Python
    package exposes no switch, so file descriptor 2 is pointed at a temporary file while the block
    runs (landmarker creation: every line above is printed before it returns); afterwards every line
    that is not chatter (an error, another thread's message) is written to the real stderr.
    ``FLAMECAM_NATIVE_LOGS=1`` keeps everything.
    """
    if os.environ.get("FLAMECAM_NATIVE_LOGS") == "1":
        yield
        return
    # Ctrl+C while stderr points at the file would lose the "interrupted" line: held until it is back.
    from core.signals import interrupts_deferred  # noqa: PLC0415

    with interrupts_deferred():
        with _filtered_stderr():
            yield


@contextlib.contextmanager
def _filtered_stderr():
    fd = 2  # where native code writes (sys.stderr may be a wrapper over another descriptor, as under pytest)
    with _STDERR_LOCK, tempfile.TemporaryFile() as capture:
        try:
            sys.stderr.flush()
            saved = os.dup(fd)
        except OSError:  # no stderr descriptor at all (some GUI launches): nothing to keep clean
            yield
            return
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines()
                    if not NATIVE_CHATTER.match(line)]
            if kept:
                os.write(fd, ("\n".join(kept) + "\n").encode("utf-8", "replace"))


@dataclass(frozen=True)
class LandmarkerOptions:
    """How to run the landmarker. ``model_path`` None resolves it (see ``core.assets``)."""

    model_path: str | None = None
    running_mode: Literal["image", "video", "live_stream"] = "video"
    # Faces to look for: enough for a small group, so the tracked person is chosen among the people in
    # view (core.segments). MediaPipe runs the landmark model once per face found, and its face
    # detector on every frame while it tracks fewer faces than this: with one face in view that is
    # ~20 % more of its CPU than with 1 (measured on 2 cores: 6.0-6.5 against 4.8-5.3 ms per frame).
    max_faces: int = DEFAULT_MAX_FACES
    select: Literal["largest", "centre"] = "largest"
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    blendshapes: bool = True


@dataclass(frozen=True)
class FaceObservation:
    """One face in one frame."""

    landmarks_px: np.ndarray  # (478, 2) float32 pixels
    depth_px: np.ndarray  # (478,) MediaPipe's relative depth, scaled like x (pixels)
    presence: np.ndarray  # (478,) float32 per-landmark presence in [0, 1] (1 where the model gives none)
    blendshapes: np.ndarray  # (52,) float32 scores in MEDIAPIPE_BLENDSHAPE_NAMES order (zeros if off)
    box_px: np.ndarray  # (4,) x0, y0, width, height of the landmarks' bounding box


@dataclass(frozen=True)
class LandmarkResult:
    """The landmarker's answer for one frame."""

    timestamp_ms: int
    image_size: tuple[int, int]  # (width, height)
    face: FaceObservation | None  # the selected face, None when no face was found
    num_faces: int = 0
    others: tuple[FaceObservation, ...] = field(default_factory=tuple)


class FaceLandmarker:
    """A thin wrapper over ``mediapipe.tasks.python.vision.FaceLandmarker``, whose C entry points
    image and video mode call directly (:class:`DirectCalls`).

    ``detect(rgb, timestamp_ms)`` runs synchronously (image or video mode). In live-stream
    mode ``detect_async`` returns at once and ``latest()`` gives the newest finished result.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, options: LandmarkerOptions = LandmarkerOptions()):
        from mediapipe.tasks.python import vision  # noqa: PLC0415  (heavy; only when used)
        from mediapipe.tasks.python.core.base_options import BaseOptions  # noqa: PLC0415

        from core.assets import resolve_landmarker  # noqa: PLC0415

        self.options = options
        self._vision = vision
        mode = {"image": vision.RunningMode.IMAGE, "video": vision.RunningMode.VIDEO,
                "live_stream": vision.RunningMode.LIVE_STREAM}[options.running_mode]
        self._lock = threading.Lock()
        self._call_lock = threading.Lock()  # a direct call (DirectCalls) and close() never overlap
        self._latest: LandmarkResult | None = None
        self._pending_sizes: dict[int, tuple[int, int]] = {}
        self._last_ts = -1
        mp_options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(resolve_landmarker(options.model_path))),
            running_mode=mode, num_faces=options.max_faces,
            min_face_detection_confidence=options.min_detection_confidence,
            min_face_presence_confidence=options.min_presence_confidence,
            min_tracking_confidence=options.min_tracking_confidence,
            output_face_blendshapes=options.blendshapes,
            result_callback=self._on_result if options.running_mode == "live_stream" else None,
        )
        with quiet_native_startup():
            self._landmarker = vision.FaceLandmarker.create_from_options(mp_options)
        # Image and video mode call MediaPipe's C entry points directly (see DirectCalls); None on a
        # MediaPipe build without them, which then runs through its Python wrapper (same numbers).
        self._direct = None if options.running_mode == "live_stream" else DirectCalls.attach(self._landmarker)

    # -- running --------------------------------------------------------------------------

    def _image(self, rgb: np.ndarray):
        import mediapipe as mp  # noqa: PLC0415

        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))

    def _next_timestamp(self, timestamp_ms: int | None) -> int:
        # MediaPipe's video and stream modes need strictly increasing timestamps.
        ts = self._last_ts + 1 if timestamp_ms is None else int(timestamp_ms)
        ts = max(ts, self._last_ts + 1)
        self._last_ts = ts
        return ts

    def detect(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> LandmarkResult:
        """Landmarks of the selected face in an RGB uint8 frame (image or video mode)."""
        if self.options.running_mode == "live_stream":
            raise RuntimeError("detect() is for image/video mode; use detect_async() in live_stream mode")
        image = self._image(rgb)
        size = (rgb.shape[1], rgb.shape[0])
        ts = self._next_timestamp(timestamp_ms)
        video = self.options.running_mode == "video"
        if self._direct is not None:
            with self._call_lock:
                if self._landmarker is None:
                    raise RuntimeError("the landmarker is closed")
                faces = self._direct.detect(image, ts if video else None)
            return self._result(faces, ts, size)
        result = self._landmarker.detect_for_video(image, ts) if video else self._landmarker.detect(image)
        return self._convert(result, ts, size)

    def detect_async(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> None:
        ts = self._next_timestamp(timestamp_ms)
        with self._lock:
            self._pending_sizes[ts] = (rgb.shape[1], rgb.shape[0])
        self._landmarker.detect_async(self._image(rgb), ts)

    def latest(self) -> LandmarkResult | None:
        with self._lock:
            return self._latest

    def _on_result(self, result, _image, timestamp_ms: int) -> None:
        with self._lock:
            size = self._pending_sizes.pop(timestamp_ms, None)
            for old in [t for t in self._pending_sizes if t < timestamp_ms]:
                del self._pending_sizes[old]  # frames MediaPipe dropped
        if size is not None:
            converted = self._convert(result, timestamp_ms, size)
            with self._lock:
                self._latest = converted

    # -- conversion -----------------------------------------------------------------------

    def _convert(self, result, timestamp_ms: int, size: tuple[int, int]) -> LandmarkResult:
        """A LandmarkResult from MediaPipe's Python result objects (live stream; a build without DirectCalls)."""
        faces = []
        for i, lms in enumerate(result.face_landmarks):
            xyz = np.array([(p.x, p.y, p.z) for p in lms], dtype=np.float32)
            pres = np.array([1.0 if p.presence is None else p.presence for p in lms], dtype=np.float32)
            scores = np.zeros(len(MEDIAPIPE_BLENDSHAPE_NAMES), np.float32)
            if result.face_blendshapes and i < len(result.face_blendshapes):
                for cat in result.face_blendshapes[i]:
                    if cat.category_name in MEDIAPIPE_BLENDSHAPE_NAMES:
                        scores[MEDIAPIPE_BLENDSHAPE_NAMES.index(cat.category_name)] = cat.score
            faces.append((xyz, pres, scores))
        return self._result(faces, timestamp_ms, size)

    def _result(self, faces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], timestamp_ms: int,
                size: tuple[int, int]) -> LandmarkResult:
        """``faces``: per face (xyz (478, 3) normalised, presence (478,), blendshape scores (52,))."""
        if not faces:
            return LandmarkResult(timestamp_ms, size, None, 0)
        width, height = size
        observed = []
        for xyz, pres, scores in faces:
            uv = xyz[:, :2] * np.array([width, height], np.float32)
            lo, hi = uv.min(0), uv.max(0)
            box = np.concatenate([lo, hi - lo]).astype(np.float32)
            observed.append(FaceObservation(landmarks_px=uv, depth_px=xyz[:, 2] * width, presence=pres,
                                            blendshapes=scores, box_px=box))
        order = select_faces(observed, size, self.options.select)
        return LandmarkResult(timestamp_ms, size, observed[order[0]], len(observed),
                              tuple(observed[j] for j in order[1:]))

    def close(self) -> None:
        with self._call_lock:
            if self._landmarker is not None:
                self._landmarker.close()
                self._landmarker = None

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DirectCalls:
    """mediapipe 1.2.2's face-landmarker C entry points, called from the caller's thread, with the
    result read by numpy: the same C calls and the same numbers as its Python wrapper (tested).

    Why: the wrapper sends every C call through a one-thread executor (two thread hand-offs per call,
    each taking the GIL) and turns every landmark into a Python object (~0.5 ms per frame with the GIL
    held). Beside a tracker thread that is busy in Python, each of those GIL hand-offs waits for it;
    the landmark thread then runs well below MediaPipe's own rate. Calls for one landmarker stay one
    at a time (``FaceLandmarker._call_lock``), as the executor kept them.
    """

    def __init__(self, lib, handle, result_type, landmark_dtype: np.dtype, category_dtype: np.dtype, utils):
        self._lib, self._handle, self._result_type, self._utils = lib, handle, result_type, utils
        self._landmark_dtype, self._category_dtype = landmark_dtype, category_dtype
        self._positions: np.ndarray | None = None  # blendshape category index -> MEDIAPIPE_BLENDSHAPE_NAMES

    @classmethod
    def attach(cls, landmarker) -> "DirectCalls | None":
        """For a ``mediapipe.tasks`` FaceLandmarker; None when this MediaPipe build lacks the C API used."""
        import importlib  # noqa: PLC0415

        try:
            package = "mediapipe.tasks.python."
            bindings = importlib.import_module(package + "core.mediapipe_c_bindings")
            utils = importlib.import_module(package + "core.mediapipe_c_utils")
            landmark_c = importlib.import_module(package + "components.containers.landmark_c")
            category_c = importlib.import_module(package + "components.containers.category_c")
            wrapper = importlib.import_module(package + "vision.face_landmarker")
            lib = bindings.load_raw_library()
            for name in ("DetectImage", "DetectForVideo", "CloseResult"):
                getattr(lib, "MpFaceLandmarker" + name)
            handle, result_type = landmarker._handle, wrapper.MpFaceLandmarkerResultC
            point, category = landmark_c.MpNormalizedLandmarkC, category_c.MpCategoryC
            landmark_dtype = _struct_dtype(point, {"x": "<f4", "y": "<f4", "z": "<f4", "has_presence": "?",
                                                   "presence": "<f4"})
            category_dtype = _struct_dtype(category, {"index": "<i4", "score": "<f4"})
        except (ImportError, AttributeError):
            return None
        return cls(lib, handle, result_type, landmark_dtype, category_dtype, utils)

    def detect(self, image, timestamp_ms: int | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per face found: normalised xyz (478, 3), presence (478,) (1 where none is given) and the
        blendshape scores (52,) in MEDIAPIPE_BLENDSHAPE_NAMES order. ``timestamp_ms`` None: image mode."""
        if self._utils.is_shutdown():  # as the wrapper: no calls into the library while Python exits
            return []
        result, error = self._result_type(), ctypes.c_char_p()
        if timestamp_ms is None:
            status = self._lib.MpFaceLandmarkerDetectImage(self._handle, image._image_ptr, None,
                                                          ctypes.byref(result), ctypes.byref(error))
        else:
            status = self._lib.MpFaceLandmarkerDetectForVideo(self._handle, image._image_ptr, None, timestamp_ms,
                                                             ctypes.byref(result), ctypes.byref(error))
        try:
            self._utils.handle_status(status, error)
        finally:
            if error.value is not None:
                self._lib.MpErrorFree(error)
        try:
            return [self._face(result, i) for i in range(result.face_landmarks_count)]
        finally:
            self._lib.MpFaceLandmarkerCloseResult(ctypes.byref(result))

    def _face(self, result, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        points = result.face_landmarks[i]
        rows = _c_array(points.landmarks, points.landmarks_count, self._landmark_dtype)
        xyz = np.stack([rows["x"], rows["y"], rows["z"]], -1)
        presence = np.where(rows["has_presence"], rows["presence"], np.float32(1.0))
        scores = np.zeros(len(MEDIAPIPE_BLENDSHAPE_NAMES), np.float32)
        if i < result.face_blendshapes_count:
            categories = result.face_blendshapes[i]
            cats = _c_array(categories.categories, categories.categories_count, self._category_dtype)
            if self._positions is None or len(self._positions) < len(cats):
                self._positions = _blendshape_positions(categories)
            index = cats["index"]
            known = (index >= 0) & (index < len(self._positions))
            position = self._positions[index[known]]
            scores[position[position >= 0]] = cats["score"][known][position >= 0]
        return xyz, presence, scores


def _blendshape_positions(categories) -> np.ndarray:
    """Category index -> position in MEDIAPIPE_BLENDSHAPE_NAMES (-1: a name we do not know), from the
    names in a ctypes ``MpCategoriesC`` (read once per landmarker: the model's categories are fixed)."""
    names = {}
    for j in range(categories.categories_count):
        cat = categories.categories[j]
        names[cat.index] = (cat.category_name or b"").decode()
    positions = np.full(max(names, default=-1) + 1, -1, np.int64)
    for index, name in names.items():
        if index >= 0 and name in MEDIAPIPE_BLENDSHAPE_NAMES:
            positions[index] = MEDIAPIPE_BLENDSHAPE_NAMES.index(name)
    return positions


def _struct_dtype(struct, fields: dict[str, str]) -> np.dtype:
    """A numpy view of a ctypes Structure's ``fields`` (name -> numpy format), at its offsets and size."""
    return np.dtype({"names": list(fields), "formats": list(fields.values()),
                     "offsets": [getattr(struct, name).offset for name in fields], "itemsize": ctypes.sizeof(struct)})


def _c_array(pointer, count: int, dtype: np.dtype) -> np.ndarray:
    """A copy of ``count`` C structs at a ctypes ``pointer`` as a numpy structured array."""
    if count == 0:
        return np.zeros(0, dtype)
    address = ctypes.cast(pointer, ctypes.c_void_p).value
    return np.frombuffer((ctypes.c_char * (count * dtype.itemsize)).from_address(address), dtype).copy()


def select_faces(faces: list[FaceObservation], image_size: tuple[int, int], rule: str) -> list[int]:
    """Indices of ``faces`` best first: by box area ("largest") or distance to the image centre ("centre")."""
    if rule == "largest":
        key = [-(f.box_px[2] * f.box_px[3]) for f in faces]
    elif rule == "centre":
        centre = np.array(image_size, np.float32) / 2
        key = [float(np.linalg.norm(f.box_px[:2] + f.box_px[2:] / 2 - centre)) for f in faces]
    else:
        raise ValueError(f"unknown face selection rule {rule!r} (use 'largest' or 'centre')")
    return list(np.argsort(key, kind="stable"))
