"""Focal length from photo and video metadata: a prior in pixels with an honest uncertainty.

Cameras often record their lens: EXIF in photos (``FocalLength`` in mm, the
``FocalLengthIn35mmFilm`` equivalent, and sometimes the sensor's size through
``FocalPlaneXResolution``), and QuickTime metadata in iPhone videos
(``com.apple.quicktime.camera.focal_length.35mm_equivalent``). That gives a focal length in
pixels, but only approximately — it is a **prior** for the tracker
(``FocalPrior(source="metadata")``), never a fixed value:

* **35 mm equivalent** ``f35``: by its definition (CIPA DC-008) the equivalent focal length
  keeps the *diagonal* field of view of a 36×24 mm frame (43.27 mm diagonal), so
  ``f_px = f35 · diag_px / 43.27`` for the image as stored (resizing does not change it).
  Uncertain by ±8 % (1σ) for photos: the value is rounded to whole millimetres, some vendors
  convert by width instead of diagonal (4 % apart at 4:3), and focusing close changes the
  effective focal length. Videos: ±15 %, since phones crop the sensor and stabilise digitally
  after the value was written.
* **Focal length + sensor size**: ``f_px = f_mm · W_px / sensor_width_mm`` with the sensor width
  from ``FocalPlaneXResolution`` (pixels per unit at the sensor, over ``ExifImageWidth``): ±4 %.
  Used when present and consistent with ``f35``.

A crop after capture (stored aspect ratio ≠ the one in EXIF) makes the estimate unusable: no
prior then, with a note. Parsing is pure Python (Pillow for EXIF; a small ISO-BMFF atom walker
for QuickTime keys that never reads the media data).

Which device made the file (for ``core.camera_table`` when no focal length is recorded): EXIF
``Make``/``Model``/``LensModel``; in QuickTime/MP4 files the ``moov/meta`` or ``moov/udta/meta``
keys (Apple ``com.apple.quicktime.make``/``model``/``camera.lens_model``; Android's
``com.android.manufacturer``/``com.android.model``, which AOSP's MPEG4Writer writes only when the
device sets ``media.recorder.show_manufacturer_and_model``), and the classic ``udta`` text atoms
``©mak``/``©mod`` (QuickTime international text, or iTunes-style ``data`` items).
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from core.sources import IMAGE_SUFFIXES

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.27
SIGMA_35MM_PHOTO = 0.08
SIGMA_35MM_VIDEO = 0.15
SIGMA_SENSOR = 0.04
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # EXIF FocalPlaneResolutionUnit: inch, cm, mm, µm
QT_FOCAL_35MM = "com.apple.quicktime.camera.focal_length.35mm_equivalent"
QT_MAKE, QT_MODEL = "com.apple.quicktime.make", "com.apple.quicktime.model"
# where a video names its maker and model, best first (values of read_quicktime_keys)
VIDEO_MAKE_KEYS = (QT_MAKE, "com.android.manufacturer", "\u00a9mak")
VIDEO_MODEL_KEYS = (QT_MODEL, "com.android.model", "\u00a9mod")
VIDEO_CAMERA_KEYS = ("com.apple.quicktime.camera.identifier", "com.apple.quicktime.camera.lens_model")


@dataclass(frozen=True)
class FocalEstimate:
    """A focal length in pixels derived from metadata, with its 1σ relative uncertainty."""

    focal_px: float
    sigma_rel: float
    method: str  # human-readable: which fields, which formula

    def prior(self):
        from core.tracker import FocalPrior  # noqa: PLC0415

        return FocalPrior(focal_px=self.focal_px, sigma_rel=self.sigma_rel, source="metadata")


@dataclass(frozen=True)
class CameraMetadata:
    """Camera fields read from one file (any may be None)."""

    path: str
    kind: str  # "exif" | "quicktime"
    make: str | None = None
    model: str | None = None
    focal_length_mm: float | None = None
    focal_35mm: float | None = None
    sensor_width_mm: float | None = None  # along the recorded image's x axis, from FocalPlaneXResolution
    recorded_size: tuple[int, int] | None = None  # ExifImageWidth/Height when given
    notes: list[str] = field(default_factory=list)
    lens_model: str | None = None  # EXIF LensModel / QuickTime camera.lens_model, e.g. "iPhone 13 front camera ..."
    camera_position: str | None = None  # "front" | "main" (a rear camera) | None, from lens_model / identifier
    make_model_key: str | None = None  # which field named the device (e.g. "com.android.model", "EXIF Model")

    @property
    def camera_name(self) -> str | None:
        """``Make Model`` (without repeating the make), e.g. for looking up a camera profile."""
        make, model = (self.make or "").strip(), (self.model or "").strip()
        if model and make and model.lower().startswith(make.lower()):
            return model
        return " ".join(p for p in (make, model) if p) or None

    @property
    def is_video(self) -> bool:
        return self.kind == "quicktime"

    def focal_estimate(self, image_size: tuple[int, int]) -> FocalEstimate | None:
        """Focal length in pixels for frames of ``image_size`` (W, H) as decoded, or None."""
        w, h = image_size
        if self.recorded_size is not None:
            rw, rh = self.recorded_size
            # a crop after capture changes the field of view the metadata describes
            if rw > 0 and rh > 0 and abs(rw * h - rh * w) > max(h, rh) and abs(rw * w - rh * h) > max(w, rh):
                return None
        from35 = None
        if self.focal_35mm and self.focal_35mm > 0:
            f = self.focal_35mm * math.hypot(w, h) / FULL_FRAME_DIAGONAL_MM
            sigma = SIGMA_35MM_VIDEO if self.is_video else SIGMA_35MM_PHOTO
            from35 = FocalEstimate(f, sigma, f"35 mm-equivalent focal length {self.focal_35mm:g} mm "
                                             f"× image diagonal / 43.27 mm")
        from_sensor = None
        if self.focal_length_mm and self.sensor_width_mm and self.focal_length_mm > 0 and self.sensor_width_mm > 0:
            # sensor_width_mm runs along the recorded image's x axis; frames may be stored rotated
            rec = self.recorded_size
            x_px = w if rec is None or (rec[0] >= rec[1]) == (w >= h) else h
            f = self.focal_length_mm * x_px / self.sensor_width_mm
            from_sensor = FocalEstimate(f, SIGMA_SENSOR if not self.is_video else SIGMA_35MM_VIDEO,
                                        f"focal length {self.focal_length_mm:g} mm × width / sensor width "
                                        f"{self.sensor_width_mm:.2f} mm")
        if from_sensor is not None and (from35 is None or abs(math.log(from_sensor.focal_px / from35.focal_px)) < 0.1):
            return from_sensor
        return from35


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip("\x00 \t\r\n")
    return text or None


def camera_position(*texts) -> str | None:
    """'front' | 'main' (a rear camera: the main one is the table's guess) | None from lens or camera
    identifier texts such as Apple's "iPhone 13 front camera 2.71mm f/2.2" or "Back"."""
    for text in texts:
        words = set(re.findall(r"[a-z]+", str(text or "").lower()))
        if "front" in words:
            return "front"
        if words & {"back", "rear"}:
            return "main"
    return None


def _rational(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def read_exif(path: str | Path) -> CameraMetadata | None:
    """EXIF camera fields of an image (None if it has no EXIF or is not an image Pillow reads)."""
    from PIL import ExifTags, Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with Image.open(path) as img:
            exif = img.getexif()
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    if not exif:
        return None
    base = ExifTags.Base
    sub = exif.get_ifd(ExifTags.IFD.Exif)

    def get(tag):
        return sub.get(tag, exif.get(tag))

    width, height = get(base.ExifImageWidth), get(base.ExifImageHeight)
    recorded = (int(width), int(height)) if width and height else None
    sensor_w = None
    fpx, unit = _rational(get(base.FocalPlaneXResolution)), get(base.FocalPlaneResolutionUnit)
    if fpx and recorded and int(unit or 2) in _UNIT_MM:
        sensor_w = recorded[0] / fpx * _UNIT_MM[int(unit or 2)]  # along the image's x axis
    make, model, lens = (_text(get(tag)) for tag in (base.Make, base.Model, base.LensModel))
    meta = CameraMetadata(str(path), "exif", make, model, _rational(get(base.FocalLength)),
                          _rational(get(base.FocalLengthIn35mmFilm)), sensor_w, recorded, lens_model=lens,
                          camera_position=camera_position(lens),
                          make_model_key="EXIF Make/Model" if (make or model) else None)
    if not any((meta.make, meta.model, meta.focal_length_mm, meta.focal_35mm)):
        return None
    return meta


# --- QuickTime / MP4 metadata ---------------------------------------------------------------------

_CONTAINERS = {b"moov", b"udta", b"meta", b"trak", b"mdia", b"minf", b"stbl"}


def _atoms(fh, start: int, end: int):
    """(type, payload start, payload end) of the atoms between two file offsets."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        header = 8
        if size == 1:
            ext = fh.read(8)
            if len(ext) < 8:
                return
            size = struct.unpack(">Q", ext)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _meta_children(fh, start: int, end: int):
    # QuickTime's moov/meta is a plain container; ISO's meta (e.g. in udta) starts with 4 bytes of
    # version/flags. Tell them apart by whether a plausible child atom starts right away.
    fh.seek(start + 4)
    kind = fh.read(4)
    offset = 0 if kind in (b"hdlr", b"keys", b"ilst") else 4
    return _atoms(fh, start + offset, end)


def _data_value(raw: bytes):
    """Decode the payload of an ilst 'data' atom (type indicator, locale, value)."""
    if len(raw) < 8:
        return None
    type_code = struct.unpack(">I", raw[:4])[0] & 0xFFFFFF
    value = raw[8:]
    if type_code == 1:
        return value.decode("utf-8", "replace").strip("\x00")  # Android writes a trailing NUL
    if type_code in (21, 22) and len(value) in (1, 2, 4, 8):
        fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[len(value)]
        return struct.unpack(">" + (fmt if type_code == 21 else fmt.upper()), value)[0]
    if type_code == 23 and len(value) == 4:
        return struct.unpack(">f", value)[0]
    if type_code == 24 and len(value) == 8:
        return struct.unpack(">d", value)[0]
    return None


def _udta_text(raw: bytes):
    """A ``udta`` ``©xxx`` atom: QuickTime international text ([u16 size][u16 language] text) or an
    iTunes-style item holding a ``data`` atom."""
    if len(raw) >= 16 and raw[4:8] == b"data":
        size = struct.unpack(">I", raw[:4])[0]
        return _data_value(raw[8:size]) if 16 <= size <= len(raw) else None
    if len(raw) >= 4:
        size = struct.unpack(">H", raw[:2])[0]
        if 0 < size <= len(raw) - 4:
            return raw[4:4 + size].decode("utf-8", "replace").strip("\x00") or None
    return None


def read_quicktime_keys(path: str | Path) -> dict[str, object]:
    """The metadata of a QuickTime/MP4 file as {key: value} (may be empty): the ``meta`` keys/ilst
    items (``moov/meta`` or ``moov/udta/meta``; iTunes-style ``ilst`` items keyed by their four-char
    code such as ``©mak``) and ``udta`` text atoms (``©mak``, ``©mod``, ...)."""
    out: dict[str, object] = {}
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        def walk(start, end, depth, parent=b""):
            for kind, a, b in _atoms(fh, start, end):
                if parent == b"udta" and kind[:1] == b"\xa9" and b - a <= 4096:
                    fh.seek(a)
                    value = _udta_text(fh.read(b - a))
                    if value is not None:
                        out.setdefault(kind.decode("latin-1"), value)
                elif kind == b"meta":
                    keys: list[str] = []
                    items: list[tuple[int, int, int]] = []
                    for child, c0, c1 in _meta_children(fh, a, b):
                        if child == b"keys":
                            fh.seek(c0)
                            head = fh.read(8)
                            count = struct.unpack(">I", head[4:8])[0] if len(head) == 8 else 0
                            pos = c0 + 8
                            for _ in range(min(count, 4096)):
                                fh.seek(pos)
                                entry = fh.read(8)
                                if len(entry) < 8:
                                    break
                                esize = struct.unpack(">I", entry[:4])[0]
                                if esize < 8 or pos + esize > c1:
                                    break
                                keys.append(fh.read(esize - 8).decode("utf-8", "replace"))
                                pos += esize
                        elif child == b"ilst":
                            for item, i0, i1 in _atoms(fh, c0, c1):
                                items.append((item, i0, i1))
                    for item, i0, i1 in items:
                        index = struct.unpack(">I", item)[0]
                        if 1 <= index <= len(keys):
                            name = keys[index - 1]
                        elif item[:1] == b"\xa9" or item.isalpha():  # iTunes-style item: its code is the key
                            name = item.decode("latin-1")
                        else:
                            continue
                        for dkind, d0, d1 in _atoms(fh, i0, i1):
                            if dkind == b"data" and d1 - d0 <= 4096:
                                fh.seek(d0)
                                value = _data_value(fh.read(d1 - d0))
                                if value is not None:
                                    out[name] = value
                                break
                elif kind in _CONTAINERS and depth < 6:
                    walk(a, b, depth + 1, kind)

        walk(0, size, 0)
    return out


def read_video_metadata(path: str | Path) -> CameraMetadata | None:
    try:
        keys = read_quicktime_keys(path)
    except OSError:
        return None
    f35 = keys.get(QT_FOCAL_35MM)
    make_key = next((k for k in VIDEO_MAKE_KEYS if _text(keys.get(k))), None)
    model_key = next((k for k in VIDEO_MODEL_KEYS if _text(keys.get(k))), None)
    if f35 is None and make_key is None and model_key is None:
        return None
    f35_value = _rational(f35) if not isinstance(f35, str) else _rational(f35.strip())
    lens = _text(keys.get(VIDEO_CAMERA_KEYS[1]))
    return CameraMetadata(str(path), "quicktime", _text(keys.get(make_key)) if make_key else None,
                          _text(keys.get(model_key)) if model_key else None, None, f35_value, lens_model=lens,
                          camera_position=camera_position(*(keys.get(k) for k in VIDEO_CAMERA_KEYS)),
                          make_model_key="/".join(dict.fromkeys(k for k in (make_key, model_key) if k)) or None)


def read_camera_metadata(path: str | Path) -> CameraMetadata | None:
    """EXIF for images, QuickTime keys for videos; None when the file carries no camera fields."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_exif(path)
    return read_video_metadata(path)


def focal_from_metadata(path: str | Path, image_size: tuple[int, int]) -> tuple[FocalEstimate | None, str]:
    """(estimate or None, a sentence for the user) for frames of ``image_size`` from ``path``."""
    meta = read_camera_metadata(path)
    if meta is None:
        return None, f"{Path(path).name}: no focal length metadata"
    est = meta.focal_estimate(image_size)
    if est is None:
        if meta.recorded_size and meta.focal_35mm:
            return None, (f"{Path(path).name}: focal length metadata ignored: the image was cropped after capture "
                          f"(recorded {meta.recorded_size[0]}x{meta.recorded_size[1]}, now "
                          f"{image_size[0]}x{image_size[1]})")
        return None, f"{Path(path).name}: metadata has no focal length"
    return est, (f"metadata prior {est.focal_px:.0f} px ± {est.sigma_rel:.0%} from {est.method}"
                 + (f" ({meta.camera_name})" if meta.camera_name else ""))
