"""Focal-length evidence is fused, never replaced; the estimate scales with the image; metadata is used."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.tracker import FocalPrior, Tracker, TrackerOptions, fuse_focal_priors
from core.tracker.types import describe_shares


def test_fusion_is_a_product_of_log_normals_with_shares():
    a, b = FocalPrior(1000.0, 0.1, "metadata", "EXIF"), FocalPrior(1500.0, 0.3, "regressor", "regressor")
    fused = fuse_focal_priors([a, b])
    wa, wb = 1 / 0.1 ** 2, 1 / 0.3 ** 2
    assert fused.focal_px == pytest.approx(math.exp((wa * math.log(1000) + wb * math.log(1500)) / (wa + wb)))
    assert fused.sigma_rel == pytest.approx((wa + wb) ** -0.5)
    assert dict(fused.shares) == pytest.approx({"EXIF": wa / (wa + wb), "regressor": wb / (wa + wb)})
    # Fusing a fused belief again carries its parts through; shares always sum to one.
    again = fuse_focal_priors([fused, FocalPrior(800.0, 0.5, "device_class", "webcam")])
    assert sum(s for _, s in again.shares) == pytest.approx(1.0)
    assert set(dict(again.shares)) == {"EXIF", "regressor", "webcam"}
    assert fuse_focal_priors([a]) is a
    assert describe_shares((("EXIF", 0.905), ("landmarks", 0.095))) == "EXIF 90% + landmarks 10%"
    with pytest.raises(ValueError):
        fuse_focal_priors([None])


def _builtin_exact_landmarks(head, scale: float, frames: int = 40):
    """Exact landmarks (landmark i = vertex i of the built-in model) of a head turning in front of a
    640x480 camera of focal 700 px at 0.5 m, all pixel quantities scaled by ``scale``."""
    from core.camera import (axis_angle_to_matrix, euler_to_axis_angle, model_to_camera, project_perspective,
                             translation_for_center)
    from core.head_model import HeadModelLayer

    layer = HeadModelLayer(head, np.arange(478))
    rng = np.random.default_rng(3)
    intr = np.array([700.0, 700.0, 320.0, 240.0]) * scale
    out = []
    for i in range(frames):
        yaw, pitch = 0.5 * math.sin(i / 6), 0.2 * math.sin(i / 9)
        rot = euler_to_axis_angle(yaw, pitch, 0.0)
        centre = np.array([0.02 * math.sin(i / 7), 0.0, 0.5])
        trans = translation_for_center(head.head_center.astype(np.float64), axis_angle_to_matrix(rot), centre)
        with torch.no_grad():
            verts = layer(torch.zeros(1, head.num_shape), torch.zeros(1, head.num_expr))[0].numpy().astype(np.float64)
        uv = project_perspective(model_to_camera(verts, trans, rot), intr)
        out.append(uv + rng.normal(0, 0.5 * scale, uv.shape))
    return out, (int(640 * scale), int(480 * scale))


def test_the_focal_estimate_scales_with_the_image(builtin_model):
    """Resize the footage by s and the focal length in pixels scales by s (the landmark noise model is
    relative to the face, priors scale with the image): the metamorphic check of the issue, exactly."""
    from core.embedding import identity_embedding

    emb = identity_embedding(builtin_model.faces)
    focal = {}
    for scale in (1.0, 2.0):
        frames, size = _builtin_exact_landmarks(builtin_model, scale)
        tracker = Tracker(builtin_model, emb, size, TrackerOptions(smoothing=False))
        for i, uv in enumerate(frames):
            tracker.step(uv, i / 30, i)
        tracker.refine_shared(3)
        focal[scale] = (tracker.focal_px, tracker.focal_sigma_rel)
    assert focal[2.0][0] / focal[1.0][0] == pytest.approx(2.0, rel=0.01), focal
    assert focal[2.0][1] == pytest.approx(focal[1.0][1], rel=0.02), focal


@pytest.mark.slow
def test_exif_of_rendered_photos_gives_their_focal_length(tmp_path):
    """Renders of known focal length saved as JPEGs with the EXIF 35 mm equivalent a phone would write:
    `flamecam track FOLDER` ends within 5 % of the truth, and says the estimate rests on EXIF."""
    import cv2
    from PIL import ExifTags, Image

    from app.cli import main
    from core.recording import load
    from core.sources import open_source

    width, height, focal = 640, 480, 1400.0  # a long lens: landmarks alone would not find it
    f35 = round(focal * 43.2666 / math.hypot(width, height))
    folder = tmp_path / "photos"
    folder.mkdir()
    source = open_source(f"synthetic:width={width},height={height},focal={focal:g},frames=12,still=0.1")
    try:
        for frame in source:
            exif = Image.Exif()
            exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = "samsung", "SM-S721B"
            exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = f35
            Image.fromarray(frame.rgb).save(folder / f"{frame.index:03d}.jpg", exif=exif, quality=95)
    finally:
        source.close()
    assert cv2.imread(str(folder / "000.jpg")) is not None
    out = tmp_path / "photos.fcrec"
    assert main(["track", str(folder), "-o", str(out), "--quiet"]) == 0
    rec = load(out)
    assert rec.meta.focal_mode == "metadata"
    tracked = np.isin(rec.tracking_state_names(), ["tracking", "reacquired"])
    f_final = float(rec.fx[np.flatnonzero(tracked)[-1]])
    assert abs(f_final / focal - 1) < 0.05, f_final
    shares = dict(rec.summary["focal_evidence"])
    assert max(shares, key=shares.get).startswith("EXIF (samsung SM-S721B"), shares
