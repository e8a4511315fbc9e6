"""A table of real cameras' fields of view: a focal-length prior for devices the user did not calibrate.

Evidence order for the focal length (the lead's fusion): calibration profile > metadata focal length >
**this table** > the regressor's sequence prior > landmarks > a default. The table answers "this device
name / this EXIF make and model is camera X; its maker says its field of view is Y in mode Z", with an
honest log-normal uncertainty. Every figure names where it comes from; figures nobody published are not
in the table (generic OS names such as "Integrated Camera" or "FaceTime HD Camera" cover many different
cameras and are deliberately absent: use :func:`device_class_prior` for them).

Table JSON (format ``flamecam.camera_table``, version 1; ``resources/camera_table.json``)::

    {
      "format": "flamecam.camera_table", "version": 1,
      "crop_rules": {                      # named, cited rules for frames of another aspect ratio
        "android_camera3": {"rule": "inscribed", "source": "..."}
      },
      "cameras": [{
        "id": "logitech_c920",             # unique, [a-z0-9_]
        "name": "Logitech C920 HD Pro Webcam",
        "kind": "webcam",                  # webcam | phone | hmc
        "device_names": ["HD Pro Webcam C920", ...],   # webcams/hmc: names the OS reports (any OS)
        "makes": ["Apple"], "models": ["iPhone 13", "SM-S911*"],  # phones: EXIF/QuickTime/Android
                                           # make and model ("*" at the end: a model-code prefix)
        "lenses": {                        # webcams/hmc: "main"; phones: "main" and/or "front"
          "main": {
            "modes": [{"size": [1920, 1080],         # the sensor mode the figure refers to (W, H)
                       "fov_deg": 78,                 # number, or a list of user-selectable FOVs
                       "axis": "diagonal"}],          # diagonal | horizontal | vertical (of that mode)
                       # or "f35_mm": 26 instead of fov_deg: 35 mm-equivalent (CIPA: diagonal)
            "sigma_rel": 0.08,             # optional log-normal 1σ (default 0.08)
            "source": {"title": "...", "url": "...",       # the maker's spec sheet
                       "check": "..."}                     # how the figure was checked for this table
          }
        },
        "crop_rule": "android_camera3",    # optional: how other aspect ratios crop the mode (cited)
        "video_crop": 0.10,                # optional (phones): typical stabilisation crop of video
        "notes": "..."
      }]
    }

How a mode turns into a focal length for a frame of ``W x H`` (pinhole, square pixels):

* same aspect ratio as the mode (±1 %), any size: the same sensor area scaled (binning or resizing),
  ``f = f_mode · W / W_mode``;
* another aspect ratio: the largest centred rectangle of that aspect inside the mode's area (full width
  for wider frames, full height for narrower ones). When the entry cites that rule (``crop_rule``) σ is
  unchanged; otherwise the rule is an assumption and σ grows by ``UNDOCUMENTED_CROP_SIGMA`` in quadrature;
* portrait frames (H > W) of a landscape mode: the same camera rotated, looked up as ``H x W``;
* user-selectable FOVs (e.g. 65/78/90°) and an unknown front/main camera: a moment-matched log-normal
  over the equally likely choices;
* phone video: the maker's figures describe photos; video stabilisation crops a further ~10 %, so σ grows
  by ``video_crop`` in quadrature (the centre is not moved: stabilisation may be off).

Lookups return a :class:`TableMatch` (or None when the table does not know the camera): focal length in
pixels, log-normal 1σ, the camera, which mode matched and how, the citation and the kind.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE_FORMAT = "flamecam.camera_table"
TABLE_VERSION = 1
TABLE_PATH = Path(__file__).resolve().parents[1] / "resources" / "camera_table.json"
DEFAULT_SIGMA_REL = 0.08
UNDOCUMENTED_CROP_SIGMA = 0.10  # σ added when another aspect ratio's crop of the sensor is assumed, not cited
ASPECT_TOLERANCE = 0.01  # relative: 4032x3024 and 4080x3072 are both "4:3"
FULL_FRAME_HALF_DIAGONAL_MM = math.hypot(36.0, 24.0) / 2  # CIPA DC-008: 35 mm equivalent keeps the diagonal
KINDS = ("webcam", "phone", "hmc")
AXES = ("diagonal", "horizontal", "vertical")
LENSES = ("main", "front")
CLASS_KINDS = ("webcam", "phone_front", "phone_main", "hmc", "unknown")

# Device-class priors: the field of view along the frame's long side, as a ±2σ range in degrees. These are
# judgements, not maker figures; tests check that the table's own cameras fall inside them.
CLASS_LONG_SIDE_FOV_DEG = {
    "webcam": (45.0, 85.0, "USB webcams and laptop cameras: 55-90° diagonal on 16:9 is what makers publish"),
    "phone_main": (58.0, 78.0, "phone main cameras: 23-28 mm equivalent, video stabilisation narrows it"),
    "phone_front": (60.0, 92.0, "phone front cameras: 80-103° diagonal as published"),
    "hmc": (50.0, 100.0, "head-mounted face cameras: wide lenses framing the face from 10-20 cm "
                         "(no maker figures in the table)"),
    "unknown": (20.0, 120.0, "any camera: telephoto to ultra-wide"),
}


class TableError(ValueError):
    """The camera table (or one of its entries) is malformed; the message names the entry."""


@dataclass(frozen=True)
class TableMatch:
    """Focal-length evidence from the camera table or a device class: log-normal in ``focal_px``."""

    focal_px: float
    sigma_rel: float  # log-normal 1σ (≈ relative)
    camera: str  # display name
    mode: str  # which mode matched and how it was carried to this frame (scaled, cropped, rotated, ...)
    source: str  # citation (the maker's spec sheet), or why a class prior
    kind: str  # webcam | phone_front | phone_main | phone | hmc | unknown
    from_class_prior: bool = False  # True: no table entry, a device-class range

    def prior(self):
        """As the tracker's ``FocalPrior`` (source ``camera_table`` or ``device_class``)."""
        from core.tracker import FocalPrior  # noqa: PLC0415

        return FocalPrior(focal_px=self.focal_px, sigma_rel=self.sigma_rel,
                          source="device_class" if self.from_class_prior else "camera_table")

    def describe(self) -> str:
        return f"{self.camera}: {self.focal_px:.0f} px ± {self.sigma_rel:.0%} ({self.mode}; {self.source})"


# --- normalising names ------------------------------------------------------------------------------

_VENDOR_PREFIXES = ("logitech", "logi", "microsoft", "razer", "elgato", "anker", "insta360", "samsung",
                    "google", "apple", "hp", "dell", "lenovo")


def normalize_name(name: str | None) -> str:
    """Lower-case, no trademark signs, parenthesised ids, UVC entity suffix (": ...") or vendor prefix.

    ``"Microsoft® LifeCam HD-3000: Mi"`` -> ``"lifecam hd 3000"``; ``"Logitech BRIO (046d:085e)"`` ->
    ``"brio"``; ``"samsung SM-S711B"`` -> ``"sm s711b"``.
    """
    text = (name or "").replace("®", " ").replace("™", " ").replace("\x00", " ").lower()
    text = re.sub(r"\([^)]*\)", " ", text)  # (TM), (R), (046d:085e), (VID_046D&PID_085E)
    text = text.split(":", 1)[0] if re.search(r":\s", text) else text  # Linux uvcvideo "<product>: <entity>"
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    while len(words) > 1 and words[0] in _VENDOR_PREFIXES:
        words = words[1:]
    return " ".join(words)


def _make_key(make: str | None) -> str:
    """First word of a maker's name, lower-case: "SAMSUNG Electronics" -> "samsung"."""
    words = re.sub(r"[^a-z0-9]+", " ", (make or "").lower()).split()
    return words[0] if words else ""


def _model_matches(pattern: str, model_norm: str) -> bool:
    if pattern.endswith("*"):
        stem = normalize_name(pattern[:-1])
        return bool(stem) and model_norm.replace(" ", "").startswith(stem.replace(" ", ""))
    return normalize_name(pattern) == model_norm


# --- geometry --------------------------------------------------------------------------------------


def _axis_length_px(size: tuple[float, float], axis: str) -> float:
    w, h = size
    return {"diagonal": math.hypot(w, h), "horizontal": w, "vertical": h}[axis]


def _focal_px(fov_deg: float, length_px: float) -> float:
    from core.camera import fov_deg_to_focal  # noqa: PLC0415  (one implementation of the formula)

    return float(fov_deg_to_focal(fov_deg, length_px))


def f35_to_diagonal_fov_deg(f35_mm: float) -> float:
    """Diagonal field of view of a 35 mm-equivalent focal length (CIPA DC-008 keeps the diagonal)."""
    return math.degrees(2 * math.atan(FULL_FRAME_HALF_DIAGONAL_MM / f35_mm))


def _same_aspect(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(math.log((a[0] / a[1]) / (b[0] / b[1]))) <= ASPECT_TOLERANCE


def _mixture(log_means: list[float], sigmas: list[float]) -> tuple[float, float]:
    """Moment-matched log-normal of an equal-weight mixture: (mean of log f, 1σ)."""
    mean = sum(log_means) / len(log_means)
    var = sum(s * s + (m - mean) ** 2 for m, s in zip(log_means, sigmas)) / len(log_means)
    return mean, math.sqrt(var)


def _lognormal_from_range(lo: float, hi: float) -> tuple[float, float]:
    """(median, σ) of the log-normal whose ±2σ interval is [lo, hi]."""
    return math.sqrt(lo * hi), math.log(hi / lo) / 4


# --- the table -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    size: tuple[int, int]
    fovs_deg: tuple[float, ...]  # one, or the user-selectable choices
    axis: str
    f35_mm: float | None = None

    @property
    def aspect_text(self) -> str:
        w, h = self.size
        g = math.gcd(w, h)
        return f"{w // g}:{h // g}" if w // g < 30 else f"{w / h:.2f}:1"

    def describe(self) -> str:
        what = (f"{self.f35_mm:g} mm equivalent" if self.f35_mm is not None else
                "/".join(f"{v:g}" for v in self.fovs_deg) + f"° {self.axis}")
        return f"{self.size[0]}x{self.size[1]} ({self.aspect_text}) {what}"


@dataclass(frozen=True)
class Lens:
    modes: tuple[Mode, ...]
    sigma_rel: float
    source_title: str
    source_url: str | None
    check: str

    @property
    def citation(self) -> str:
        return self.source_title + (f" <{self.source_url}>" if self.source_url else "")


@dataclass(frozen=True)
class CameraEntry:
    id: str
    name: str
    kind: str
    device_names: tuple[str, ...]
    makes: tuple[str, ...]
    models: tuple[str, ...]
    lenses: dict[str, Lens]
    crop_rule: str | None
    crop_rule_source: str | None
    video_crop: float
    notes: str = ""


@dataclass(frozen=True)
class CameraTable:
    entries: tuple[CameraEntry, ...]
    path: str = ""

    def __len__(self) -> int:
        return len(self.entries)

    def by_device_name(self, device_name: str) -> CameraEntry | None:
        key = normalize_name(device_name)
        if not key:
            return None
        for entry in self.entries:
            if any(normalize_name(n) == key for n in entry.device_names):
                return entry
        return None

    def by_make_model(self, make: str | None, model: str | None) -> CameraEntry | None:
        model_norm = normalize_name(model)
        if not model_norm:
            return None
        make_norm = _make_key(make)
        for entry in self.entries:
            if not any(_model_matches(p, model_norm) for p in entry.models):
                continue
            if make_norm and entry.makes and make_norm not in {_make_key(m) for m in entry.makes}:
                continue
            return entry
        return None


def _fail(where: str, message: str):
    raise TableError(f"camera table {where}: {message}")


def _number(value, where: str, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"{what} must be a number, got {value!r}")
    if not lo <= value <= hi:
        _fail(where, f"{what} {value:g} is outside the physically sane range [{lo:g}, {hi:g}]")
    return float(value)


def _parse_mode(data: Any, where: str) -> Mode:
    if not isinstance(data, dict):
        _fail(where, f"a mode must be an object, got {data!r}")
    size = data.get("size")
    if (not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                 and 16 <= v <= 20000 for v in size)):
        _fail(where, f"mode size must be [width, height] in pixels, got {size!r}")
    axis = data.get("axis", "diagonal")
    if axis not in AXES:
        _fail(where, f"mode axis must be one of {', '.join(AXES)}, got {axis!r}")
    if ("fov_deg" in data) == ("f35_mm" in data):
        _fail(where, "a mode gives exactly one of fov_deg or f35_mm")
    f35 = None
    if "f35_mm" in data:
        f35 = _number(data["f35_mm"], where, "f35_mm", 10.0, 80.0)
        if axis != "diagonal":
            _fail(where, "a 35 mm-equivalent focal length describes the diagonal (axis must be diagonal)")
        fovs = (f35_to_diagonal_fov_deg(f35),)
    else:
        raw = data["fov_deg"]
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            _fail(where, "fov_deg list is empty")
        fovs = tuple(_number(v, where, "fov_deg", 25.0, 140.0) for v in values)
    return Mode((size[0], size[1]), fovs, axis, f35)


def _parse_lens(data: Any, where: str) -> Lens:
    if not isinstance(data, dict):
        _fail(where, "a lens must be an object")
    modes = data.get("modes")
    if not isinstance(modes, list) or not modes:
        _fail(where, "a lens needs at least one mode")
    source = data.get("source")
    if not isinstance(source, dict) or not str(source.get("title", "")).strip():
        _fail(where, "every figure needs a source: {\"title\": ..., \"url\": ..., \"check\": ...}")
    if not str(source.get("check", "")).strip():
        _fail(where, "source.check must say how the figure was checked")
    url = source.get("url")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        _fail(where, f"source.url must be an http(s) URL or null, got {url!r}")
    sigma = _number(data.get("sigma_rel", DEFAULT_SIGMA_REL), where, "sigma_rel", 0.01, 1.0)
    return Lens(tuple(_parse_mode(m, f"{where}, mode {i}") for i, m in enumerate(modes)), sigma,
                str(source["title"]).strip(), url, str(source["check"]).strip())


def _strings(data: dict, key: str, where: str) -> tuple[str, ...]:
    values = data.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        _fail(where, f"{key} must be a list of non-empty strings")
    return tuple(values)


def parse_table(data: Any, path: str = "<table>") -> CameraTable:
    """Validate and parse the table JSON; :class:`TableError` names the offending entry."""
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        _fail(path, f'not a flamecam camera table (missing "format": "{TABLE_FORMAT}")')
    version = data.get("version")
    if not isinstance(version, int) or version > TABLE_VERSION:
        _fail(path, f"version {version!r} is newer than this flamecam reads ({TABLE_VERSION})")
    rules = data.get("crop_rules", {})
    if not isinstance(rules, dict):
        _fail(path, "crop_rules must be an object")
    for name, rule in rules.items():
        if not isinstance(rule, dict) or rule.get("rule") != "inscribed" or not str(rule.get("source", "")).strip():
            _fail(f"{path}, crop rule {name!r}", 'a crop rule is {"rule": "inscribed", "source": "..."}')
    cameras = data.get("cameras")
    if not isinstance(cameras, list):
        _fail(path, "cameras must be a list")
    entries, seen_ids, seen_names = [], set(), {}
    for index, raw in enumerate(cameras):
        label = raw.get("id") if isinstance(raw, dict) else None
        where = f"{path}, entry {index} ({label or 'no id'})"
        if not isinstance(raw, dict):
            _fail(where, "an entry must be an object")
        entry_id = raw.get("id")
        if not isinstance(entry_id, str) or not re.fullmatch(r"[a-z0-9_]+", entry_id):
            _fail(where, f"id must match [a-z0-9_]+, got {entry_id!r}")
        if entry_id in seen_ids:
            _fail(where, f"duplicate id {entry_id!r}")
        seen_ids.add(entry_id)
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            _fail(where, "name is missing")
        kind = raw.get("kind")
        if kind not in KINDS:
            _fail(where, f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        device_names, makes, models = (_strings(raw, k, where) for k in ("device_names", "makes", "models"))
        if kind == "phone" and not models:
            _fail(where, "a phone entry needs models (EXIF/QuickTime model strings)")
        if kind != "phone" and not device_names:
            _fail(where, "a webcam/hmc entry needs device_names (what the OS reports)")
        for alias in device_names:
            key = normalize_name(alias)
            if not key:
                _fail(where, f"device name {alias!r} is empty after normalising")
            if seen_names.get(key, entry_id) != entry_id:
                _fail(where, f"device name {alias!r} is also an alias of entry {seen_names[key]!r}")
            seen_names[key] = entry_id
        lenses_raw = raw.get("lenses")
        if not isinstance(lenses_raw, dict) or not lenses_raw or not set(lenses_raw) <= set(LENSES):
            _fail(where, f"lenses must be an object with keys among {', '.join(LENSES)}")
        if kind != "phone" and set(lenses_raw) != {"main"}:
            _fail(where, "webcam and hmc entries have a single 'main' lens")
        lenses = {k: _parse_lens(v, f"{where}, lens {k}") for k, v in lenses_raw.items()}
        crop_rule = raw.get("crop_rule")
        crop_source = None
        if crop_rule is not None:
            if crop_rule not in rules:
                _fail(where, f"crop_rule {crop_rule!r} is not one of the table's crop_rules")
            crop_source = str(rules[crop_rule]["source"])
        video_crop = _number(raw.get("video_crop", 0.0), where, "video_crop", 0.0, 0.3)
        entries.append(CameraEntry(entry_id, name.strip(), kind, device_names, makes, models, lenses, crop_rule,
                                   crop_source, video_crop, str(raw.get("notes", ""))))
    return CameraTable(tuple(entries), path)


def load_table(path: str | Path | None = None) -> CameraTable:
    """Read and validate a camera table (default: the shipped ``resources/camera_table.json``)."""
    path = Path(path) if path is not None else TABLE_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TableError(f"cannot read camera table {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise TableError(f"camera table {path}: not valid JSON ({exc})") from exc
    return parse_table(data, str(path))


@lru_cache(maxsize=1)
def shipped_table() -> CameraTable:
    return load_table(TABLE_PATH)


# --- carrying a mode to a frame --------------------------------------------------------------------


def _mode_focal(entry: CameraEntry, lens: Lens, image_size: tuple[int, int]) -> tuple[float, float, str]:
    """(log focal_px, σ, how) for ``lens`` at ``image_size`` (W, H) as decoded."""
    w, h = int(image_size[0]), int(image_size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {w}x{h}")
    notes: list[str] = []
    mode_landscape = lens.modes[0].size[0] >= lens.modes[0].size[1]
    if (h > w) == mode_landscape and w != h:
        w, h = h, w  # the camera held the other way: same optics, axes swapped
        notes.append("portrait frame: the camera rotated")
    exact = [m for m in lens.modes if _same_aspect(m.size, (w, h))]
    sigma = lens.sigma_rel
    if exact:
        mode = exact[0]
        scale = w / mode.size[0]
        if (w, h) != mode.size:
            notes.insert(0, f"same aspect, scaled from {mode.size[0]}x{mode.size[1]}")
    else:
        # nearest aspect ratio, then the largest centred rectangle of this aspect inside it
        mode = min(lens.modes, key=lambda m: abs(math.log((m.size[0] / m.size[1]) / (w / h))))
        wider = w / h > mode.size[0] / mode.size[1]
        scale = w / mode.size[0] if wider else h / mode.size[1]
        how = "full-width" if wider else "full-height"
        if entry.crop_rule:
            notes.insert(0, f"{w}x{h} is a {how} crop of it ({entry.crop_rule_source})")
        else:
            sigma = math.hypot(sigma, UNDOCUMENTED_CROP_SIGMA)
            notes.insert(0, f"{w}x{h}: assumed a {how} crop of it (not documented: σ widened)")
    length = _axis_length_px(mode.size, mode.axis)
    logs = [math.log(_focal_px(fov, length) * scale) for fov in mode.fovs_deg]
    if len(logs) > 1:
        mean, sigma = _mixture(logs, [sigma] * len(logs))
        notes.append(f"user-selectable FOV {'/'.join(f'{v:g}' for v in mode.fovs_deg)}°, setting unknown")
    else:
        mean = logs[0]
    return mean, sigma, "; ".join([mode.describe()] + notes)


def _match(entry: CameraEntry, lens_key: str, image_size, is_video: bool = False) -> TableMatch:
    lens = entry.lenses[lens_key]
    mean, sigma, how = _mode_focal(entry, lens, image_size)
    if is_video and entry.video_crop > 0:
        sigma = math.hypot(sigma, entry.video_crop)
        how += f"; video: stabilisation may crop ~{entry.video_crop:.0%} (σ widened)"
    kind = entry.kind if entry.kind != "phone" else f"phone_{lens_key}"
    label = entry.name if entry.kind != "phone" else f"{entry.name} ({lens_key} camera)"
    return TableMatch(math.exp(mean), sigma, label, how, lens.citation, kind)


# --- public lookups --------------------------------------------------------------------------------


def lookup_device(device_name: str | None, image_size: tuple[int, int],
                  table: CameraTable | None = None) -> TableMatch | None:
    """The table's evidence for a webcam (or HMC) by the name the OS reports, at ``image_size`` (W, H);
    None when the table does not know the device."""
    table = table or shipped_table()
    entry = table.by_device_name(device_name or "")
    if entry is None or "main" not in entry.lenses:
        return None
    return _match(entry, "main", image_size)


def lookup_make_model(make: str | None, model: str | None, image_size: tuple[int, int], is_video: bool,
                      camera: str | None = None, table: CameraTable | None = None) -> TableMatch | None:
    """The table's evidence for a photo or video whose metadata names ``make``/``model``.

    ``camera``: 'front' | 'main' | None (unknown: an equal mixture of the two, using the phone-front or
    phone-main device class for a side the maker did not publish). None when the table does not know the
    model, or knows it but not the requested camera.
    """
    if camera not in (None, "front", "main"):
        raise ValueError(f"camera must be 'front', 'main' or None, got {camera!r}")
    table = table or shipped_table()
    entry = table.by_make_model(make, model)
    if entry is None:
        return None
    if camera is not None:
        return _match(entry, camera, image_size, is_video) if camera in entry.lenses else None
    if entry.kind != "phone":
        return _match(entry, "main", image_size, is_video)
    # which camera took it is unknown: both, equally likely; a side without a maker figure is its class
    matches = [_match(entry, key, image_size, is_video) if key in entry.lenses
               else device_class_prior(f"phone_{key}", image_size) for key in LENSES]
    mean, sigma = _mixture([math.log(m.focal_px) for m in matches], [m.sigma_rel for m in matches])
    how = "front or main camera unknown: equal mixture of " + " and ".join(
        f"{m.kind.split('_', 1)[1]} ({m.focal_px:.0f} px{', class prior' if m.from_class_prior else ''})"
        for m in matches)
    if is_video and entry.video_crop > 0:
        how += f"; video: stabilisation may crop ~{entry.video_crop:.0%} (σ widened)"
    citations = dict.fromkeys(entry.lenses[k].citation for k in LENSES if k in entry.lenses)
    return TableMatch(math.exp(mean), sigma, entry.name, how, "; ".join(citations), "phone")


def device_class_prior(kind: str, image_size: tuple[int, int]) -> TableMatch:
    """A broad prior for a device the table does not know: ``kind`` in webcam | phone_front | phone_main |
    hmc | unknown. The ±2σ interval spans the class's field-of-view range along the frame's long side."""
    if kind not in CLASS_LONG_SIDE_FOV_DEG:
        raise ValueError(f"device class must be one of {', '.join(CLASS_KINDS)}, got {kind!r}")
    lo_deg, hi_deg, why = CLASS_LONG_SIDE_FOV_DEG[kind]
    long_side = float(max(image_size))
    # a wider field of view is a shorter focal length
    median, sigma = _lognormal_from_range(_focal_px(hi_deg, long_side), _focal_px(lo_deg, long_side))
    return TableMatch(median, sigma, "unknown camera" if kind == "unknown" else f"unknown {kind.replace('_', ' ')}",
                      f"device class: {lo_deg:g}-{hi_deg:g}° along the long side = ±2σ",
                      f"flamecam device-class range ({why})", kind, from_class_prior=True)


def camera_table_evidence_for_file(path: str | Path, image_size: tuple[int, int],
                                   table: CameraTable | None = None) -> TableMatch | None:
    """Table evidence for a photo/video whose metadata (EXIF, QuickTime, Android MP4, ©mak/©mod) names
    the device; None when there is no make/model or the table does not know it."""
    from core.metadata import read_camera_metadata  # noqa: PLC0415

    meta = read_camera_metadata(path)
    if meta is None or not (meta.make or meta.model):
        return None
    return lookup_make_model(meta.make, meta.model, image_size, meta.is_video, meta.camera_position, table)


def camera_table_evidence_for_webcam(index_or_name: int | str, image_size: tuple[int, int],
                                     table: CameraTable | None = None) -> TableMatch | None:
    """Table evidence for a webcam given its OpenCV index (the OS device name is read as for camera
    profiles) or the device name itself."""
    if isinstance(index_or_name, int):
        from core.profiles import webcam_device_name  # noqa: PLC0415

        name = webcam_device_name(index_or_name)
        if name is None:
            return None
    else:
        name = index_or_name
    return lookup_device(name, image_size, table)

