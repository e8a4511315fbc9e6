"""The camera table: the shipped file validates, lookups by device name / make+model, modes carried to
other frame sizes, aspect ratios and orientations, device-class priors, and evidence for files/webcams."""
from __future__ import annotations

import copy
import json
import math

import pytest
from PIL import ExifTags, Image

from core import camera_table as ct
from core.camera_table import (CLASS_LONG_SIDE_FOV_DEG, TableError, camera_table_evidence_for_file,
                               camera_table_evidence_for_webcam, device_class_prior, load_table, lookup_device,
                               lookup_make_model, normalize_name, parse_table)

FULL_FRAME_DIAGONAL_MM = math.hypot(36, 24)


def focal_for_fov(fov_deg: float, length_px: float) -> float:
    """Pinhole focal length, written out here independently of the module under test."""
    return length_px / 2 / math.tan(math.radians(fov_deg) / 2)


def test_the_shipped_table_validates_and_cites_every_figure():
    table = load_table()
    assert len(table) >= 30
    kinds = [e.kind for e in table.entries]
    assert kinds.count("webcam") >= 15 and kinds.count("phone") >= 15
    raw = json.loads(ct.TABLE_PATH.read_text())
    assert raw["format"] == "flamecam.camera_table" and raw["version"] == 1
    for entry in table.entries:
        assert entry.lenses, entry.id
        for key, lens in entry.lenses.items():
            assert len(lens.source_title) > 20 and lens.check, (entry.id, key)
            for mode in lens.modes:
                w, h = mode.size
                length = {"diagonal": math.hypot(w, h), "horizontal": w, "vertical": h}[mode.axis]
                for fov in mode.fovs_deg:
                    # physically sane: the diagonal FOV of every documented mode lies in 45-130°
                    diag = 2 * math.degrees(math.atan(math.hypot(w, h) / 2 / focal_for_fov(fov, length)))
                    assert 45 <= diag <= 130, (entry.id, key, fov, diag)
            assert 0.01 <= lens.sigma_rel <= 0.3
    ids = [e.id for e in table.entries]
    assert len(ids) == len(set(ids))


def _minimal_table():
    return {"format": "flamecam.camera_table", "version": 1, "crop_rules": {},
            "cameras": [{"id": "cam_a", "name": "Cam A", "kind": "webcam", "device_names": ["Cam A"],
                         "lenses": {"main": {"modes": [{"size": [1280, 720], "fov_deg": 70, "axis": "diagonal"}],
                                             "source": {"title": "Maker, Cam A data sheet: 70° diagonal",
                                                        "url": None, "check": "test"}}}}]}


@pytest.mark.parametrize("break_it, expect", [
    (lambda c: c["lenses"]["main"].pop("source"), "source"),
    (lambda c: c["lenses"]["main"]["source"].update(check=""), "check"),
    (lambda c: c["lenses"]["main"]["modes"][0].update(fov_deg=300), "physically sane"),
    (lambda c: c["lenses"]["main"]["modes"][0].update(size=[1280]), "size"),
    (lambda c: c["lenses"]["main"]["modes"][0].update(axis="sideways"), "axis"),
    (lambda c: c.update(kind="drone"), "kind"),
    (lambda c: c.update(crop_rule="nowhere"), "crop_rule"),
    (lambda c: c["lenses"].update(front=c["lenses"]["main"]), "single 'main' lens"),
])
def test_bad_entries_are_refused_naming_the_entry(break_it, expect):
    data = _minimal_table()
    good = parse_table(copy.deepcopy(data))
    assert len(good) == 1
    second = copy.deepcopy(data["cameras"][0])
    second.update(id="cam_b", name="Cam B", device_names=["Cam B"])
    break_it(second)
    data["cameras"].append(second)
    with pytest.raises(TableError) as err:
        parse_table(data, "t.json")
    assert "cam_b" in str(err.value) and expect in str(err.value) and "t.json" in str(err.value)


def test_duplicate_aliases_and_files(tmp_path):
    data = _minimal_table()
    twin = copy.deepcopy(data["cameras"][0])
    twin.update(id="cam_b", device_names=["CAM  a"])  # the same name once normalised
    data["cameras"].append(twin)
    with pytest.raises(TableError, match="cam_b.*also an alias of entry 'cam_a'"):
        parse_table(data)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TableError, match="not valid JSON"):
        load_table(bad)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**_minimal_table(), "version": 99}))
    with pytest.raises(TableError, match="newer"):
        load_table(newer)


@pytest.mark.parametrize("name", ["HD Pro Webcam C920", "hd pro webcam c920", "  HD  Pro Webcam C920 ",
                                  "Logitech HD Pro Webcam C920", "HD Pro Webcam C920 (046d:082d)",
                                  "HD Pro Webcam C920: HD Pro Webc"])
def test_device_names_match_across_case_vendor_usb_id_and_uvc_suffix(name):
    match = lookup_device(name, (1920, 1080))
    assert match is not None and "C920" in match.camera and match.kind == "webcam"
    assert match.focal_px == pytest.approx(focal_for_fov(78, math.hypot(1920, 1080)))
    assert match.sigma_rel == pytest.approx(0.08) and not match.from_class_prior
    assert "logitech" in match.source.lower()
    prior = match.prior()
    assert (prior.focal_px, prior.sigma_rel, prior.source) == (match.focal_px, match.sigma_rel, "camera_table")


def test_unknown_and_generic_devices_are_not_matched():
    for name in ("Integrated Camera", "FaceTime HD Camera", "USB2.0 HD UVC WebCam", "", None, "webcam:0"):
        assert lookup_device(name, (1280, 720)) is None
    assert normalize_name("Microsoft® LifeCam HD-3000: Mi") == "lifecam hd 3000"
    assert lookup_device("Microsoft® LifeCam HD-3000: Mi", (1280, 720)).camera == "Microsoft LifeCam HD-3000"


def test_modes_scale_with_size_and_crop_for_other_aspects():
    full = lookup_device("HD Pro Webcam C920", (1920, 1080))
    small = lookup_device("HD Pro Webcam C920", (1280, 720))
    assert small.focal_px == pytest.approx(full.focal_px * 1280 / 1920) and "scaled" in small.mode
    assert small.sigma_rel == full.sigma_rel
    # 4:3 from the 16:9 mode: a full-height crop; the C920's entry cites a measurement of that
    vga = lookup_device("HD Pro Webcam C920", (640, 480))
    assert vga.focal_px == pytest.approx(full.focal_px * 480 / 1080) and vga.sigma_rel == full.sigma_rel
    assert "full-height" in vga.mode and "wimsworld" in vga.mode
    # the same crop for a camera whose entry does not document it: the same geometry, a wider σ, said so
    ms = lookup_device("Microsoft LifeCam HD-3000", (1280, 720))
    ms_vga = lookup_device("Microsoft LifeCam HD-3000", (640, 480))
    assert ms_vga.focal_px == pytest.approx(ms.focal_px * 480 / 720)
    assert ms_vga.sigma_rel == pytest.approx(math.hypot(0.08, ct.UNDOCUMENTED_CROP_SIGMA))
    assert "not documented" in ms_vga.mode


def test_portrait_frames_are_the_camera_rotated():
    landscape = lookup_device("Razer Kiyo", (1920, 1080))
    portrait = lookup_device("Razer Kiyo", (1080, 1920))
    assert portrait.focal_px == pytest.approx(landscape.focal_px) and "portrait" in portrait.mode
    phone_land = lookup_make_model("Google", "Pixel 8", (4080, 3072), False, "main")
    phone_port = lookup_make_model("Google", "Pixel 8", (3072, 4080), False, "main")
    assert phone_port.focal_px == pytest.approx(phone_land.focal_px)


def test_selectable_fields_of_view_give_a_wider_prior_between_the_settings():
    brio = lookup_device("Logitech BRIO", (1920, 1080))
    diag = math.hypot(1920, 1080)
    assert focal_for_fov(90, diag) < brio.focal_px < focal_for_fov(65, diag)
    assert brio.sigma_rel > 0.15 and "user-selectable" in brio.mode


def test_phones_by_make_and_model():
    # EXIF "samsung" / "SM-S711B" (Galaxy S23 FE): a model-code prefix, any case of the make
    for make, model in [("samsung", "SM-S711B"), ("SAMSUNG", "SM-S711U1"), (None, "SM-S711B"),
                        ("samsung", "Galaxy S23 FE")]:
        match = lookup_make_model(make, model, (4000, 3000), False, "main")
        assert match is not None and "S23 FE" in match.camera and match.kind == "phone_main", (make, model)
    main = lookup_make_model("samsung", "SM-S711B", (4000, 3000), False, "main")
    front = lookup_make_model("samsung", "SM-S711B", (4000, 3000), False, "front")
    assert main.focal_px == pytest.approx(focal_for_fov(84, 5000))
    assert front.focal_px == pytest.approx(focal_for_fov(80, 5000)) and front.kind == "phone_front"
    assert lookup_make_model("Apple", "SM-S711B", (4000, 3000), False, "main") is None  # make contradicts
    assert lookup_make_model("samsung", "SM-A546B", (4000, 3000), False) is None  # not in the table
    assert lookup_make_model("Google", "Pixel 7", (4080, 3072), False, "main").camera.startswith("Google Pixel 7 ")
    assert "Pro" in lookup_make_model("Google", "Pixel 7 Pro", (4080, 3072), False, "main").camera


def test_apple_main_camera_35mm_equivalent_and_unknown_front():
    iphone = lookup_make_model("Apple", "iPhone 13", (4032, 3024), False, "main")
    assert iphone.focal_px == pytest.approx(26 * 5040 / FULL_FRAME_DIAGONAL_MM)  # 5040 = diagonal of 4032x3024
    assert lookup_make_model("Apple", "iPhone 13", (4032, 3024), False, "front") is None  # Apple publishes none
    either = lookup_make_model("Apple", "iPhone 13", (4032, 3024), False)
    front_class = device_class_prior("phone_front", (4032, 3024))
    assert either.focal_px == pytest.approx(math.sqrt(iphone.focal_px * front_class.focal_px))
    assert either.sigma_rel > iphone.sigma_rel and "class prior" in either.mode


def test_phone_video_crops_and_stabilisation():
    photo = lookup_make_model("Google", "Pixel 8", (4080, 3072), False, "main")
    video = lookup_make_model("Google", "Pixel 8", (1920, 1080), True, "main")
    # 16:9 video from the 4:3 sensor: the full-width crop AOSP documents; stabilisation widens σ only
    assert video.focal_px == pytest.approx(photo.focal_px * 1920 / 4080)
    assert video.sigma_rel == pytest.approx(math.hypot(0.08, 0.10)) and "stabilisation" in video.mode
    assert "full-width" in video.mode and "AOSP" in video.mode
    apple = lookup_make_model("Apple", "iPhone 15 Pro", (1920, 1080), True, "main")
    assert apple.focal_px == pytest.approx(24 * 5040 / FULL_FRAME_DIAGONAL_MM * 1920 / 4032)
    assert apple.sigma_rel == pytest.approx(math.sqrt(0.08 ** 2 + ct.UNDOCUMENTED_CROP_SIGMA ** 2 + 0.10 ** 2))
    both = lookup_make_model("samsung", "SM-S911B", (1080, 1920), True)
    assert "unknown" in both.mode and "stabilisation" in both.mode and both.kind == "phone"
    f_front = lookup_make_model("samsung", "SM-S911B", (1080, 1920), True, "front").focal_px
    f_main = lookup_make_model("samsung", "SM-S911B", (1080, 1920), True, "main").focal_px
    assert min(f_front, f_main) < both.focal_px < max(f_front, f_main)


@pytest.mark.parametrize("kind", list(CLASS_LONG_SIDE_FOV_DEG))
@pytest.mark.parametrize("size", [(1280, 720), (640, 480), (1080, 1920)])
def test_device_class_priors_span_their_documented_range(kind, size):
    prior = device_class_prior(kind, size)
    lo_deg, hi_deg, _ = CLASS_LONG_SIDE_FOV_DEG[kind]
    long_side = max(size)
    f_short = prior.focal_px * math.exp(-2 * prior.sigma_rel)
    f_long = prior.focal_px * math.exp(2 * prior.sigma_rel)
    assert f_short == pytest.approx(focal_for_fov(hi_deg, long_side), rel=1e-9)
    assert f_long == pytest.approx(focal_for_fov(lo_deg, long_side), rel=1e-9)
    assert prior.from_class_prior and prior.kind == kind
    with pytest.raises(ValueError):
        device_class_prior("drone", size)


def test_unknown_prior_is_broad_and_the_table_sits_inside_the_classes():
    assert device_class_prior("unknown", (1280, 720)).sigma_rel > 0.5
    assert device_class_prior("webcam", (1280, 720)).sigma_rel < device_class_prior("unknown", (1280, 720)).sigma_rel
    table = load_table()
    outside = []
    for entry in table.entries:
        for key in entry.lenses:
            size = (1920, 1080) if entry.kind == "webcam" else (4000, 3000)
            cls = "webcam" if entry.kind == "webcam" else f"phone_{key}"
            match = (lookup_device(entry.device_names[0], size) if entry.kind == "webcam"
                     else lookup_make_model(entry.makes[0], entry.models[0], size, False, key))
            prior = device_class_prior(cls, size)
            if abs(math.log(match.focal_px / prior.focal_px)) > 2 * prior.sigma_rel:
                outside.append((entry.id, key))
    assert not outside, f"table cameras outside their device class's ±2σ: {outside}"


def test_evidence_for_webcam_by_index_or_name(monkeypatch):
    import core.profiles

    monkeypatch.setattr(core.profiles, "webcam_device_name", lambda index: "Razer Kiyo" if index == 2 else None)
    by_index = camera_table_evidence_for_webcam(2, (1280, 720))
    assert by_index is not None and by_index.camera == "Razer Kiyo"
    assert by_index == camera_table_evidence_for_webcam("Razer Kiyo", (1280, 720))
    assert camera_table_evidence_for_webcam(5, (1280, 720)) is None  # the OS names no device


def test_evidence_for_a_photo_without_focal_length(tmp_path):
    path = tmp_path / "selfie.jpg"
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = "Google", "Pixel 7"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.LensModel] = "Pixel 7 front camera 2.74mm f/2.2"
    Image.new("RGB", (300, 400), (90, 80, 70)).save(path, exif=exif)
    match = camera_table_evidence_for_file(path, (300, 400))
    assert match is not None and match.kind == "phone_front" and "Pixel 7" in match.camera
    # portrait 300x400 of the 4:3 sensor: rotated, then scaled; the front camera's 92.8° diagonal
    assert match.focal_px == pytest.approx(focal_for_fov(92.8, 500), rel=0.005)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (32, 32)).save(plain)
    assert camera_table_evidence_for_file(plain, (32, 32)) is None
