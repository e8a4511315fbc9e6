"""``flamecam batch``: whole datasets, resumable, worker processes or Ray (issue 15).

Real worker processes, the real landmarker and tracker, on short synthetic videos rendered here
(320x240, a dozen frames) and on the real clips of ../shared/data/real (skipped where absent).
Runs go through ``app.cli.main`` in-process; the workers are spawned processes.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from core import batch
from core.recording import load
from core.session import SessionOptions

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
FRAMES = 12
COMPARED = ("frame_index", "timestamp_s", "expr", "jaw_pose", "neck_pose", "eyes_pose", "rotation", "translation",
            "fx", "fy", "cx", "cy", "rho_per_m", "focal_sigma_px", "fit_error_px", "confidence", "focal_state",
            "tracking_state", "landmarks_px", "shape_per_frame")

def run_batch(*args) -> int:
    return main(["batch", *map(str, args), "--quiet"])


def read_csv(out_dir: Path) -> dict[str, dict]:
    with open(out_dir / "batch_report.csv", newline="") as fh:
        return {row["input"]: row for row in csv.DictReader(fh)}


def assert_same_recordings(a: Path, b: Path) -> None:
    ra, rb = load(a), load(b)
    assert ra.complete and rb.complete and len(ra) == len(rb) > 0
    for name in COMPARED:
        np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=f"{name} differs: {a} vs {b}")


def render(path: Path, spec: str, frames: int = FRAMES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert main(["render", "--source", spec, "-o", str(path), "--frames", str(frames)]) == 0
    return path


def frames_of(video: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """root/s1/a.avi, root/s2/b.avi, root/s2/frames/ (images), and three bad inputs: root/s2/broken.mp4
    (not a video), root/s3/blank.avi (no face) and root/s3/mixed/ (images of two sizes)."""
    from core.embedding import embedding_for
    from core.model_io import load_head_model

    embedding_for(load_head_model("builtin"))  # learned once into the test cache, before the workers need it
    root = tmp_path_factory.mktemp("dataset")
    a = render(root / "s1" / "a.avi", "synthetic:width=320,height=240,seed=1,yaw=0.3")
    render(root / "s2" / "b.avi", "synthetic:width=320,height=240,seed=2,still=0.1")
    (root / "s2" / "frames").mkdir()
    pictures = frames_of(a)
    for i, bgr in enumerate(pictures[:8]):
        cv2.imwrite(str(root / "s2" / "frames" / f"{i:03d}.png"), bgr)
    (root / "s2" / "broken.mp4").write_bytes(b"this is not a video\n" * 100)
    (root / "s3" / "mixed").mkdir(parents=True)
    for i, bgr in enumerate(pictures[:4]):
        cv2.imwrite(str(root / "s3" / "mixed" / f"{i:03d}.png"), bgr if i < 3 else bgr[::2, ::2])
    writer = cv2.VideoWriter(str(root / "s3" / "blank.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for _ in range(10):
        writer.write(np.full((240, 320, 3), 128, np.uint8))
    writer.release()
    return root


@pytest.fixture(scope="module")
def sequential(dataset, tmp_path_factory):
    """The dataset tracked by one worker: (exit code, output folder)."""
    out = tmp_path_factory.mktemp("out_seq")
    code = run_batch(dataset, "-o", out, "--workers", "1")
    return code, out


GOOD = {"s1/a.avi": "s1/a.fcrec", "s2/b.avi": "s2/b.fcrec", "s2/frames": "s2/frames.fcrec"}
BAD = {"s2/broken.mp4": "OpenCV cannot open", "s3/blank.avi": "no face found in any of 10 frames",
       "s3/mixed": "every image of a sequence must have one size"}


@pytest.mark.slow
def test_batch_mirrors_the_tree_and_reports_each_file(dataset, sequential):
    code, out = sequential
    assert code == 4  # some inputs failed (EXIT_SOME_FAILED), the others are done
    for source, target in GOOD.items():
        rec = load(out / target)
        assert rec.complete and not list(out.rglob("*.partial"))
        assert rec.meta.extra["batch"]["input"] == str(dataset / source)
        assert len(rec) == (8 if source == "s2/frames" else FRAMES)
    assert not (out / "s2" / "broken.fcrec").exists() and not (out / "s3" / "blank.fcrec").exists()

    rows = read_csv(out)
    assert set(rows) == {str(dataset / s) for s in [*GOOD, *BAD]} | {"(total)"}
    for source, target in GOOD.items():
        row = rows[str(dataset / source)]
        rec = load(out / target)
        assert row["status"] == "done" and row["output"] == str(out / target) and row["error"] == ""
        assert int(row["frames"]) == len(rec) and int(row["frames_with_face"]) >= len(rec) - 1
        tracked = np.isin(rec.tracking_state_names(), ["tracking", "reacquired"])
        last = np.flatnonzero(tracked)[-1]
        assert float(row["focal_px"]) == pytest.approx(rec.fx[last], abs=0.05)
        assert float(row["focal_sigma_px"]) == pytest.approx(rec.focal_sigma_px[last], abs=0.05)
        assert float(row["rho_per_m"]) == pytest.approx(rec.rho_per_m[last], abs=1e-4)
        assert 0 < float(row["fit_error_px"]) < 5 and float(row["fps"]) > 0 and int(row["attempts"]) == 1
        assert row["focal_mode"] == "auto"
    for source, reason in BAD.items():
        row = rows[str(dataset / source)]
        assert row["status"] == "failed" and reason in row["error"], row
    total = rows["(total)"]
    assert total["status"] == "summary" and "3 done, 3 failed" in total["error"]

    report = json.loads((out / "batch_report.json").read_text())
    assert report["summary"]["done"] == 3 and report["summary"]["failed"] == 3 and report["summary"]["files"] == 6
    assert report["summary"]["frames_tracked"] == 2 * FRAMES + 8
    assert [r["input"] for r in report["files"]] == [r for r in rows if r != "(total)"]
    assert report["options"]["tracker_overrides"] == {"refine_units_per_frame": batch.OFFLINE_REFINE_UNITS}


@pytest.mark.slow
def test_batch_prints_a_line_per_file_and_a_summary(dataset, sequential, tmp_path, capsys):
    _, out = sequential
    assert run_batch(dataset / "s1", "-o", out / "s1") == 0  # the same file, same options: complete, skipped
    printed = capsys.readouterr()
    assert "1 files: 1 skipped; tracked 0 frames" in printed.out
    assert run_batch(dataset / "s2" / "broken.mp4", dataset / "s1" / "a.avi", "-o", tmp_path) == 4
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("[1/2] failed") and "broken.mp4" in line for line in lines), lines
    assert any(line.startswith("[2/2] done") and "a.avi" in line and "fps" in line for line in lines), lines
    assert "2 files: 1 done, 1 failed" in lines[-1] and "batch_report.csv" in lines[-1]


@pytest.mark.slow
def test_resume_skips_complete_and_redoes_partial(dataset, sequential, tmp_path):
    _, first = sequential
    out = tmp_path / "out"
    out.mkdir()
    for target in GOOD.values():  # a copy of the finished run
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        (out / target).write_bytes((first / target).read_bytes())
    kept = out / GOOD["s1/a.avi"]
    before = kept.stat().st_mtime_ns, kept.stat().st_ino
    truncated = out / GOOD["s2/b.avi"]  # a recording cut short, as by a kill
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    assert not load(truncated).complete
    left = out / GOOD["s2/frames"]  # a killed run's temporary file, no final one
    left.rename(batch.partial_path(left))
    assert run_batch(dataset / "s1", dataset / "s2" / "b.avi", dataset / "s2" / "frames", "-o", out) == 0
    assert (kept.stat().st_mtime_ns, kept.stat().st_ino) == before  # untouched
    rows = read_csv(out)
    assert rows[str(dataset / "s1/a.avi")]["status"] == "skipped"
    assert float(rows[str(dataset / "s1/a.avi")]["focal_px"]) > 0  # a skipped file's row is read from its recording
    assert rows[str(dataset / "s2/b.avi")]["status"] == "done" and rows[str(dataset / "s2/frames")]["status"] == "done"
    assert not batch.partial_path(left).exists()
    for target in (GOOD["s2/b.avi"], GOOD["s2/frames"]):
        assert_same_recordings(out / target, first / target)  # redone, and equal to the first run

    # Other options (or another input, or another flamecam version) make a different key: redone.
    two = (dataset / "s1", dataset / "s2" / "frames")
    assert run_batch(*two, "-o", out, "--max-frames", "5") == 0
    rows = read_csv(out)
    assert [rows[str(p)]["status"] for p in (dataset / "s1/a.avi", two[1])] == ["done", "done"]
    assert len(load(kept)) == 5
    os.utime(dataset / "s1" / "a.avi", ns=(before[0], before[0] + 10**9))  # the input changed (its time)
    assert run_batch(*two, "-o", out, "--max-frames", "5") == 0
    rows = read_csv(out)
    assert [rows[str(p)]["status"] for p in (dataset / "s1/a.avi", two[1])] == ["done", "skipped"]


@pytest.mark.slow
def test_two_workers_equal_one_frame_for_frame(dataset, sequential, tmp_path):
    _, first = sequential
    out = tmp_path / "parallel"
    assert run_batch(dataset, "-o", out, "--workers", "2") == 4
    for target in GOOD.values():
        assert_same_recordings(out / target, first / target)
    assert read_csv(out)[str(dataset / "s3/blank.avi")]["status"] == "failed"


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_file_retried(dataset, tmp_path, monkeypatch):
    from app.batch_worker import FAULT_ENV

    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(FAULT_ENV, str(markers))  # each file's first attempt kills its worker after 3 frames
    out = tmp_path / "out"
    assert run_batch(dataset / "s1" / "a.avi", dataset / "s2" / "b.avi", "-o", out, "--workers", "1") == 0
    assert len(list(markers.iterdir())) == 2
    rows = read_csv(out)
    assert [rows[str(dataset / s)]["attempts"] for s in ("s1/a.avi", "s2/b.avi")] == ["2", "2"]
    assert load(out / "s1" / "a.fcrec").complete and len(load(out / "s1" / "a.fcrec")) == FRAMES

    for marker in markers.iterdir():
        marker.unlink()
    out = tmp_path / "no_retries"
    assert run_batch(dataset / "s1" / "a.avi", "-o", out, "--retries", "0") == 4
    row = read_csv(out)[str(dataset / "s1/a.avi")]
    assert row["status"] == "failed" and "died (signal SIGKILL)" in row["error"]
    assert not (out / "a.fcrec").exists()


# --- inputs (no tracking) ------------------------------------------------------------------------------


def test_globs_lists_and_folders_expand_to_sequences(dataset, tmp_path):
    expansion = batch.expand_inputs([str(dataset / "s*" / "*.avi")])
    assert [i.path for i in expansion.inputs] == [dataset / "s1/a.avi", dataset / "s2/b.avi", dataset / "s3/blank.avi"]
    listing = tmp_path / "clips.txt"
    listing.write_text(f"# my dataset\n{dataset / 's2' / 'b.avi'} focal=900\n\n"
                       f"'{dataset / 's2' / 'frames'}' fov=60\n{dataset}/s1/*.avi\nmissing.mp4\n"
                       f"{dataset / 's1' / 'a.avi'} focal=-3\n")
    expansion = batch.expand_inputs([str(listing), str(dataset / "s2" / "b.avi")])
    assert [(i.path, i.kind, i.camera) for i in expansion.inputs] == [
        (dataset / "s2/b.avi", "video", (("focal", "900"),)),
        (dataset / "s2/frames", "images", (("fov_deg", "60"),)),
        (dataset / "s1/a.avi", "video", ())]  # b.avi named twice: the first mention wins
    problems = dict(expansion.problems)
    assert "no such file or folder" in problems[f"{listing}:6"]
    assert "must be a positive focal length" in problems[f"{listing}:7"]
    walked = batch.expand_inputs([str(dataset)]).inputs
    assert {i.path.relative_to(dataset).as_posix() for i in walked} == {
        "s1/a.avi", "s2/b.avi", "s2/broken.mp4", "s2/frames", "s3/blank.avi", "s3/mixed"}
    options = batch.replace_source(batch.offline_options(SessionOptions(focal="700")), expansion.inputs[1])
    assert (options.source, options.fov_deg, options.focal) == (str(dataset / "s2/frames"), 60.0, "auto")


def test_outputs_mirror_the_common_root_and_keep_names_apart(tmp_path):
    items = [batch.BatchInput(tmp_path / p, k) for p, k in
             [("d/x/a.mp4", "video"), ("d/x/a.mov", "video"), ("d/y/seq", "images"), ("d/z.mp4", "video")]]
    assert [p.relative_to(tmp_path / "o").as_posix() for p in batch.output_paths(items, tmp_path / "o")] == [
        "x/a.mp4.fcrec", "x/a.mov.fcrec", "y/seq.fcrec", "z.fcrec"]
    assert batch.output_paths(items[:1], tmp_path / "o") == [tmp_path / "o" / "a.fcrec"]


def test_batch_without_inputs_or_with_bad_options_says_so(tmp_path, capsys):
    assert run_batch(tmp_path / "nothing.mp4", "-o", tmp_path / "o") == 2
    assert "nothing to track: " in capsys.readouterr().err
    assert run_batch(tmp_path, "-o", tmp_path / "o", "--model", tmp_path / "none.pkl") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("flamecam batch: error: --model") and "no such file" in err[-1]
    assert run_batch(tmp_path, "-o", tmp_path / "o", "--fov", "500") == 2


def test_ray_missing_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert run_batch(tmp_path, "-o", tmp_path / "o", "--ray", "auto") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'flamecam[cluster]'" in err[0]


# --- real clips ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_clips_with_a_per_input_camera(tmp_path):
    clips = [REAL / "crop_512_c.mp4", REAL / "webcam_320x240_b.mp4"]
    if not all(c.exists() for c in clips):
        pytest.skip(f"real clips not found in {REAL} (../shared/data/real beside the repo)")
    listing = tmp_path / "real.txt"
    listing.write_text(f"{clips[0]}\n{clips[1]} fov=60\n")
    out = tmp_path / "out"
    assert run_batch(listing, "-o", out, "--max-frames", "40") == 0
    rows = read_csv(out)
    auto, fixed = rows[str(clips[0])], rows[str(clips[1])]
    assert auto["status"] == fixed["status"] == "done" and auto["frames"] == fixed["frames"] == "40"
    assert auto["focal_mode"] == "auto" and fixed["focal_mode"] == "fixed"
    assert float(fixed["focal_px"]) == pytest.approx(160 / np.tan(np.radians(30)), abs=0.06)  # 60° across 320 px
    assert load(out / "webcam_320x240_b.fcrec").meta.extra["batch"]["camera_from_list"] == {"fov_deg": "60"}


# --- Ray ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def local_ray(tmp_path):
    """A private Ray instance on this machine (loopback only) whose first attempt at each file kills its worker."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'flamecam[cluster]')")
    from app.batch_worker import FAULT_ENV

    markers = tmp_path / "markers"
    markers.mkdir()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {FAULT_ENV: str(markers),
                                                                "FLAMECAM_CACHE": os.environ["FLAMECAM_CACHE"],
                                                                "FLAMECAM_NO_DOWNLOAD": "1"}})
    try:
        yield markers
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_tasks_equal_a_sequential_run_and_retry_lost_workers(dataset, sequential, local_ray, tmp_path, capsys):
    _, first = sequential
    out = tmp_path / "ray"
    inputs = [dataset / "s1" / "a.avi", dataset / "s2" / "b.avi"]
    assert run_batch(*inputs, "-o", out, "--ray", "auto", "--cpus-per-task", "1", "--retries", "2") == 0
    assert "is shared by all 1 Ray node(s)" in capsys.readouterr().err
    assert len(list(local_ray.iterdir())) == 2  # both files' first attempts were killed
    rows = read_csv(out)
    for source in inputs:
        assert rows[str(source)]["status"] == "done" and rows[str(source)]["attempts"] == "2"
    for target in ("s1/a.fcrec", "s2/b.fcrec"):
        assert_same_recordings(out / target, first / target)


@pytest.mark.slow
def test_refine_in_a_batch_rewrites_the_recording_refined(dataset, tmp_path):
    out = tmp_path / "refined"
    assert run_batch(dataset / "s1" / "a.avi", "-o", out, "--refine") == 0
    rec = load(out / "a.fcrec")
    assert rec.complete and rec.summary["refined"] is True and len(rec) == FRAMES
    assert rec.meta.extra["batch"]["options"]["keep_history"] is True
    assert not list(out.glob("*.partial")) and not list(out.glob("*.refining"))


def test_dry_run_lists_and_tracks_nothing(dataset, tmp_path, capsys):
    out = tmp_path / "dry"
    assert run_batch(dataset, "-o", out, "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"track    {dataset / 's1/a.avi'} → {out / 's1/a.fcrec'}" in lines
    assert len([line for line in lines if line.startswith("track ")]) == 6
    assert not list(out.rglob("*.fcrec"))
