"""``flamecam render --source VIDEO --recording REC``: the take drawn over its video, checked frame by frame."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from core.recording import FrameRecord, RecordingMeta, RecordingWriter

W, H, FRAMES, NO_FACE = 160, 120, 8, 4
SPEC = f"synthetic:width={W},height={H},seed=5,frames={FRAMES},background=plain"


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    """An image folder (flat frames of the synthetic camera's size) and a recording of the synthetic head's
    exact ground truth; frame NO_FACE has no pose."""
    from core.sources import open_source

    folder = tmp_path_factory.mktemp("frames")
    source = open_source(SPEC)
    meta = RecordingMeta.for_model(source.head, "builtin", W, H, source=SPEC, frame_rate_hz=30.0)
    rec_path = folder.parent / "take.fcrec"
    truths = []
    with RecordingWriter(rec_path, meta) as writer:
        for frame in source:
            t = frame.truth
            truths.append(t)
            # a flat image, so whatever the review draws is visible (over the render itself a shaded mesh hides)
            cv2.imwrite(str(folder / f"{frame.index:03d}.png"), np.full((H, W, 3), (160, 90, 40), np.uint8))
            writer.write_identity(frame.index, t.shape)
            fx, fy, cx, cy = (float(v) for v in t.intrinsics)
            record = FrameRecord(frame_index=frame.index, timestamp_s=frame.timestamp_s, expr=t.expr,
                                 rotation=t.rotation, translation=t.translation, fx=fx, fy=fy, cx=cx, cy=cy,
                                 jaw_pose=t.jaw_pose, neck_pose=t.neck_pose, eyes_pose=t.eyes_pose,
                                 rho_per_m=t.rho_per_m, focal_sigma_px=12.0, focal_state="estimating")
            if frame.index == NO_FACE:
                record.rotation, record.tracking_state = np.full(3, np.nan), "no_face"
            writer.write_frame(record)
    vertices = [source.vertices_cam(t) for t in truths]
    source.close()
    return folder, rec_path, vertices


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[..., ::-1].astype(np.int16))
    cap.release()
    return frames


def face_mask(vertices: np.ndarray, intrinsics) -> np.ndarray:
    """(H, W) bool: inside the convex hull of the projected mesh."""
    fx, fy, cx, cy = intrinsics
    px = np.stack([fx * vertices[:, 0] / vertices[:, 2] + cx, fy * vertices[:, 1] / vertices[:, 2] + cy], 1)
    mask = np.zeros((H, W), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(px.astype(np.float32)).astype(np.int32), 1)
    return mask.astype(bool)


def test_review_draws_the_take_over_its_video(take, tmp_path, capsys):
    from core.recording import load

    folder, rec_path, vertices = take
    rec = load(rec_path)
    plain = [cv2.imread(str(p))[..., ::-1].astype(np.int16) for p in sorted(folder.glob("*.png"))]
    text_rows = slice(0, 40)  # the burnt-in text lives in the top rows
    for mode in ("shaded", "wireframe", "landmarks"):
        out = tmp_path / f"review_{mode}.avi"
        assert main(["render", "--source", str(folder), "--recording", str(rec_path), "-o", str(out),
                     "--overlay", mode, "--quiet"]) == 0
        assert f"{FRAMES} frames ({W}x{H}" in capsys.readouterr().out
        video = read_video(out)
        assert len(video) == FRAMES and all(f.shape == (H, W, 3) for f in video)
        for i, frame in enumerate(video):
            diff = np.abs(frame - plain[i]).max(-1)
            assert diff[text_rows].max() > 100  # the text is there on every frame
            body = np.zeros((H, W), bool)
            body[40:] = True
            if i == NO_FACE:  # no pose: the plain video (up to Motion-JPEG noise)
                assert diff[body].mean() < 4
                continue
            inside = face_mask(vertices[i], rec.intrinsics[i]) & body
            outside = ~face_mask(vertices[i], rec.intrinsics[i]) & body
            outside &= cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
            changed = diff > 40
            assert changed[inside].mean() > (0.2 if mode == "shaded" else 0.05), (mode, i)
            assert changed[outside].mean() < 0.01, (mode, i)  # the drawing stays on the face: it lines up


def test_review_text_says_focal_rho_and_state(take):
    from app.review_video import status_text
    from core.recording import load

    rec = load(take[1])
    first, second = status_text(rec, 2)
    assert first == "frame 2  tracking"
    assert second == f"f {rec.fx[2]:.0f} px +/-12 (estimating)  rho {rec.rho_per_m[2]:.2f} 1/m"
    assert status_text(rec, NO_FACE)[0] == f"frame {NO_FACE}  no_face"
    assert status_text(rec, None) == ["not in the recording"]


def test_review_refuses_a_video_that_does_not_match(take, tmp_path, capsys):
    folder, rec_path, _ = take
    small = tmp_path / "small"
    small.mkdir()
    for p in sorted(folder.glob("*.png")):
        cv2.imwrite(str(small / p.name), cv2.resize(cv2.imread(str(p)), (W // 2, H // 2)))
    out = tmp_path / "r.avi"
    assert main(["render", "--source", str(small), "--recording", str(rec_path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"frames are {W // 2}×{H // 2} but the take was tracked on {W}×{H}" in err and err.count("\n") == 1
    short = tmp_path / "short"
    short.mkdir()
    for p in sorted(folder.glob("*.png"))[:3]:
        (short / p.name).write_bytes(p.read_bytes())
    assert main(["render", "--source", str(short), "--recording", str(rec_path), "-o", str(out)]) == 2
    assert "has 3 frames but" in capsys.readouterr().err
    assert main(["render", "--source", str(folder), "--recording", str(tmp_path / "none.fcrec"), "-o", str(out)]) == 2
    assert "recording not found" in capsys.readouterr().err
    assert main(["render", "--source", str(folder), "--recording", str(rec_path), "--overlay", "none", "-o",
                 str(out)]) == 2
    assert not out.exists()
