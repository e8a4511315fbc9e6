"""Focal length from EXIF and QuickTime metadata: a prior in pixels with its uncertainty."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from PIL import ExifTags, Image

from core.metadata import (FULL_FRAME_DIAGONAL_MM, SIGMA_35MM_PHOTO, SIGMA_35MM_VIDEO, SIGMA_SENSOR,
                           focal_from_metadata, read_camera_metadata, read_quicktime_keys)

B = ExifTags.Base


def write_jpeg(path, size=(400, 300), make="Apple", model="iPhone 12", f35=None, f_mm=None, exif_size=None,
               focal_plane_x=None, unit=None):
    img = Image.new("RGB", size, (120, 90, 60))
    exif = Image.Exif()
    if make:
        exif[B.Make] = make
    if model:
        exif[B.Model] = model
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    if f35 is not None:
        sub[B.FocalLengthIn35mmFilm] = f35
    if f_mm is not None:
        sub[B.FocalLength] = f_mm
    if exif_size is not None:
        sub[B.ExifImageWidth], sub[B.ExifImageHeight] = exif_size
    if focal_plane_x is not None:
        sub[B.FocalPlaneXResolution] = focal_plane_x
        sub[B.FocalPlaneResolutionUnit] = unit
    img.save(path, exif=exif)
    return path


def test_35mm_equivalent_uses_the_diagonal(tmp_path):
    path = write_jpeg(tmp_path / "a.jpg", size=(400, 300), f35=26, exif_size=(4032, 3024))
    est, message = focal_from_metadata(path, (400, 300))
    assert est.focal_px == pytest.approx(26 * 500 / FULL_FRAME_DIAGONAL_MM)  # 500 = diagonal of 400x300
    assert est.sigma_rel == SIGMA_35MM_PHOTO and "35 mm" in message and "iPhone 12" in message
    prior = est.prior()
    assert prior.source == "metadata" and prior.focal_px == est.focal_px
    meta = read_camera_metadata(path)
    assert meta.camera_name == "Apple iPhone 12"


def test_focal_and_sensor_size(tmp_path):
    # 6.17 mm wide sensor at 4000 px: 4000 / 6.17 px per mm; f = 4.5 mm -> 2917 px at full size
    path = write_jpeg(tmp_path / "b.jpg", size=(1000, 750), f_mm=4.5, exif_size=(4000, 3000),
                      focal_plane_x=4000 / 6.17, unit=4, f35=25)
    est, _ = focal_from_metadata(path, (1000, 750))
    assert est.focal_px == pytest.approx(4.5 * 1000 / 6.17, rel=1e-6)
    assert est.sigma_rel == SIGMA_SENSOR
    # inconsistent 35 mm value (e.g. a wrong focal-plane tag): fall back to the 35 mm equivalent
    bad = write_jpeg(tmp_path / "c.jpg", size=(1000, 750), f_mm=4.5, exif_size=(4000, 3000),
                     focal_plane_x=4000 / 20.0, unit=4, f35=25)
    est_bad, _ = focal_from_metadata(bad, (1000, 750))
    assert est_bad.sigma_rel == SIGMA_35MM_PHOTO
    assert est_bad.focal_px == pytest.approx(25 * 1250 / FULL_FRAME_DIAGONAL_MM)


def test_cropped_images_get_no_prior(tmp_path):
    path = write_jpeg(tmp_path / "crop.jpg", size=(640, 360), f35=26, exif_size=(4032, 3024))
    est, message = focal_from_metadata(path, (640, 360))
    assert est is None and "cropped" in message
    rotated = write_jpeg(tmp_path / "rot.jpg", size=(300, 400), f35=26, exif_size=(4032, 3024))
    assert focal_from_metadata(rotated, (300, 400))[0] is not None  # stored rotated, not cropped


def test_no_metadata(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (32, 32)).save(plain)
    assert read_camera_metadata(plain) is None
    est, message = focal_from_metadata(plain, (32, 32))
    assert est is None and "no focal length metadata" in message
    only_make = write_jpeg(tmp_path / "m.jpg", make="Canon", model="EOS R5")
    est, message = focal_from_metadata(only_make, (400, 300))
    assert est is None and "no focal length" in message
    assert read_camera_metadata(only_make).camera_name == "Canon EOS R5"
    assert read_camera_metadata(tmp_path / "missing.jpg") is None


def _atom(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def write_quicktime(path, entries: dict, mdat_bytes: int = 5000, big_mdat: bool = False):
    """A minimal MOV: ftyp, mdat, moov/meta/{hdlr, keys, ilst} with QuickTime 'mdta' keys."""
    keys = b"".join(struct.pack(">I", 8 + len(k.encode())) + b"mdta" + k.encode() for k in entries)
    items = b""
    for i, value in enumerate(entries.values(), start=1):
        if isinstance(value, str):
            data = struct.pack(">II", 1, 0) + value.encode()
        elif isinstance(value, float):
            data = struct.pack(">II", 23, 0) + struct.pack(">f", value)
        else:
            data = struct.pack(">II", 21, 0) + struct.pack(">i", value)
        items += _atom(struct.pack(">I", i), _atom(b"data", data))
    meta = _atom(b"meta", _atom(b"hdlr", b"\0" * 25) + _atom(b"keys", struct.pack(">II", 0, len(entries)) + keys)
                 + _atom(b"ilst", items))
    if big_mdat:  # 64-bit size field
        mdat = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 16 + mdat_bytes) + b"\0" * mdat_bytes
    else:
        mdat = _atom(b"mdat", b"\0" * mdat_bytes)
    path.write_bytes(_atom(b"ftyp", b"qt  \0\0\0\0qt  ") + mdat + _atom(b"moov", _atom(b"mvhd", b"\0" * 100) + meta))
    return path


@pytest.mark.parametrize("big_mdat", [False, True])
def test_quicktime_35mm_key(tmp_path, big_mdat):
    path = write_quicktime(tmp_path / "clip.mov", {"com.apple.quicktime.make": "Apple",
                                                   "com.apple.quicktime.model": "iPhone 15 Pro",
                                                   "com.apple.quicktime.camera.focal_length.35mm_equivalent": 24,
                                                   "com.apple.quicktime.location.accuracy.horizontal": 4.5},
                           big_mdat=big_mdat)
    keys = read_quicktime_keys(path)
    assert keys["com.apple.quicktime.model"] == "iPhone 15 Pro"
    assert keys["com.apple.quicktime.location.accuracy.horizontal"] == pytest.approx(4.5)
    est, message = focal_from_metadata(path, (1920, 1080))
    assert est.focal_px == pytest.approx(24 * math.hypot(1920, 1080) / FULL_FRAME_DIAGONAL_MM)
    assert est.sigma_rel == SIGMA_35MM_VIDEO and "iPhone 15 Pro" in message


def test_videos_without_keys_and_garbage(tmp_path):
    import cv2

    video = tmp_path / "plain.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    assert read_camera_metadata(video) is None
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"\x00\x00\x00\x10moov\x00\x00\x00\xffmeta" + b"\x01" * 40)  # sizes run past the end
    assert read_camera_metadata(junk) is None
    truncated = write_quicktime(tmp_path / "t.mov", {"com.apple.quicktime.camera.focal_length.35mm_equivalent": 24})
    truncated.write_bytes(truncated.read_bytes()[:-6])
    assert read_quicktime_keys(truncated) == {}  # the moov atom runs past the end: ignored, no crash
    assert read_camera_metadata(truncated) is None


# --- which device made a video: Android keys, udta/meta, ©mak/©mod ---------------------------------------


def _keys_meta(entries: dict, iso: bool) -> bytes:
    """A 'meta' atom with mdta keys and their ilst items; ``iso``: a full box (version/flags) as in udta."""
    keys = b"".join(struct.pack(">I", 8 + len(k.encode())) + b"mdta" + k.encode() for k in entries)
    items = b""
    for i, value in enumerate(entries.values(), start=1):
        items += _atom(struct.pack(">I", i), _atom(b"data", struct.pack(">II", 1, 0) + value.encode()))
    body = _atom(b"hdlr", b"\0" * 8 + b"mdta" + b"\0" * 13) + _atom(b"keys", struct.pack(">II", 0, len(entries)) + keys)
    return _atom(b"meta", (b"\0" * 4 if iso else b"") + body + _atom(b"ilst", items))


def _movie(path, moov_children: bytes):
    path.write_bytes(_atom(b"ftyp", b"mp42\0\0\0\0isommp42") + _atom(b"mdat", b"\0" * 3000)
                     + _atom(b"moov", _atom(b"mvhd", b"\0" * 100) + moov_children))
    return path


@pytest.mark.parametrize("in_udta", [False, True])
def test_android_manufacturer_and_model_keys(tmp_path, in_udta):
    # as AOSP's MPEG4Writer writes them: UTF-8 strings with their trailing NUL
    meta = _keys_meta({"com.android.version": "14\0", "com.android.manufacturer": "samsung\0",
                       "com.android.model": "SM-S711B\0"}, iso=in_udta)
    path = _movie(tmp_path / "android.mp4", _atom(b"udta", meta) if in_udta else meta)
    keys = read_quicktime_keys(path)
    assert keys["com.android.model"] == "SM-S711B" and keys["com.android.version"] == "14"
    meta = read_camera_metadata(path)
    assert (meta.make, meta.model, meta.is_video) == ("samsung", "SM-S711B", True)
    assert meta.make_model_key == "com.android.manufacturer/com.android.model"
    assert meta.focal_estimate((1920, 1080)) is None  # names the device, not the focal length
    from core.camera_table import camera_table_evidence_for_file

    match = camera_table_evidence_for_file(path, (1080, 1920))
    assert match is not None and "S23 FE" in match.camera and "stabilisation" in match.mode


def _intl_text(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">HH", len(raw), 0x55C4) + raw  # QuickTime international text, language 'und'


def test_udta_copyright_make_and_model_atoms(tmp_path):
    udta = _atom(b"udta", _atom(b"\xa9mak", _intl_text("Google")) + _atom(b"\xa9mod", _intl_text("Pixel 8"))
                 + _atom(b"\xa9xyz", _intl_text("+48.8577+002.2950/")))
    path = _movie(tmp_path / "legacy.mov", udta)
    keys = read_quicktime_keys(path)
    assert keys["\u00a9mak"] == "Google" and keys["\u00a9xyz"].startswith("+48.85")
    meta = read_camera_metadata(path)
    assert (meta.make, meta.model, meta.make_model_key) == ("Google", "Pixel 8", "\u00a9mak/\u00a9mod")
    assert meta.camera_name == "Google Pixel 8"


def test_itunes_style_ilst_items_and_apple_camera_side(tmp_path):
    ilst = _atom(b"ilst", _atom(b"\xa9mak", _atom(b"data", struct.pack(">II", 1, 0) + b"Apple"))
                 + _atom(b"\xa9mod", _atom(b"data", struct.pack(">II", 1, 0) + b"iPhone 12")))
    mdir = _atom(b"meta", b"\0" * 4 + _atom(b"hdlr", b"\0" * 8 + b"mdir" + b"\0" * 13) + ilst)
    path = _movie(tmp_path / "itunes.m4v", _atom(b"udta", mdir))
    meta = read_camera_metadata(path)
    assert (meta.make, meta.model) == ("Apple", "iPhone 12") and meta.camera_position is None
    apple = write_quicktime(tmp_path / "front.mov", {"com.apple.quicktime.make": "Apple",
                                                     "com.apple.quicktime.model": "iPhone 15",
                                                     "com.apple.quicktime.camera.lens_model":
                                                         "iPhone 15 front camera 2.69mm f/1.9"})
    assert read_camera_metadata(apple).camera_position == "front"
    back = write_quicktime(tmp_path / "back.mov", {"com.apple.quicktime.model": "iPhone 15",
                                                   "com.apple.quicktime.camera.identifier": "Back"})
    assert read_camera_metadata(back).camera_position == "main"


def test_exif_lens_model_says_which_camera(tmp_path):
    path = tmp_path / "front.jpg"
    img = Image.new("RGB", (400, 300))
    exif = Image.Exif()
    exif[B.Make], exif[B.Model] = "Apple", "iPhone 13\x00"
    exif.get_ifd(ExifTags.IFD.Exif)[B.LensModel] = "iPhone 13 front camera 2.71mm f/2.2"
    img.save(path, exif=exif)
    meta = read_camera_metadata(path)
    assert meta.model == "iPhone 13" and meta.camera_position == "front" and not meta.is_video
    assert meta.make_model_key == "EXIF Make/Model"
    from core.camera_table import camera_table_evidence_for_file

    assert camera_table_evidence_for_file(path, (400, 300)) is None  # Apple publishes no front-camera figure
    main = write_jpeg(tmp_path / "main.jpg", size=(400, 300), make="Apple", model="iPhone 13")
    match = camera_table_evidence_for_file(main, (400, 300))  # camera unknown: main figure + front class
    assert match is not None and match.kind == "phone" and "unknown" in match.mode
