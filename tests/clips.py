"""Short videos made by the tests themselves (nothing is committed): the synthetic head rendered by
``flamecam render``, with its ground truth in the synthetic source."""
from __future__ import annotations

from pathlib import Path


def render_head_video(path: Path, frames: int = 60, fps: float = 25.0, seed: int = 2) -> Path:
    """``flamecam render --source synthetic:fps=FPS,seed=SEED -o PATH --frames N`` (640x480, mp4v)."""
    from app.cli import main

    assert main(["render", "--source", f"synthetic:fps={fps:g},seed={seed}", "-o", str(path), "--frames",
                 str(frames), "--quiet"]) == 0
    return path
