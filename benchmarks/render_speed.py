"""Per-frame costs: offscreen rendering, the head-model forward pass and the synthetic source.

* ``OffscreenRenderer.render`` (EGL, llvmpipe here): ICT at 512x512 and the built-in model at
  640x480, with 4x MSAA and without (samples=1); vertices change every frame (a trajectory),
  read-back included.
* ``HeadModelLayer`` forward (no grad) and forward+backward, full mesh and landmark subset
  (``layer.subset(ids)``), batch 1 and 64: ICT (rigid), built-in (rigid) and a FLAME-sized
  articulated fixture (5023 vertices, random FLAME-layout arrays from tests/fixtures_flame.py
  written to a temporary pickle and read by the FLAME loader; smplx LBS).
* ``SyntheticSource`` end to end (trajectory + forward + render), frames per second.

    python benchmarks/render_speed.py [--ict PATH] [--frames 60] [--json OUT.json]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (repository root on sys.path)
import numpy as np
from _common import load_models, parser, print_load, print_table, time_calls, timing_stats, write_json

WARMUP = 5
FLAME_VERTICES = 5023


def trajectory_vertices(head, width: int, height: int, frames: int):
    """Camera-space vertices and intrinsics of ``frames`` frames of the default synthetic trajectory."""
    import torch  # noqa: PLC0415

    from core import camera  # noqa: PLC0415
    from core.head_model import HeadModelLayer  # noqa: PLC0415
    from core.synthetic import SyntheticOptions, Trajectory  # noqa: PLC0415

    trajectory = Trajectory(SyntheticOptions(width=width, height=height, still=0.0), head)
    layer = HeadModelLayer(head)
    out = []
    for i in range(frames):
        truth = trajectory.at(i)
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32))[None]  # noqa: E731
        with torch.no_grad():
            verts = layer(t(truth.shape), t(truth.expr), t(truth.rotation), t(truth.neck_pose), t(truth.jaw_pose),
                          t(truth.eyes_pose))
            out.append(camera.model_to_camera(verts, t(truth.translation))[0].numpy())
    return out, trajectory.intrinsics


def bench_render(models: dict, frames: int) -> list[list]:
    from core.render import OffscreenRenderer  # noqa: PLC0415
    from core.synthetic_render import PLAIN_BACKGROUND  # noqa: PLC0415

    rows = []
    sizes = {"ict": (512, 512), "builtin": (640, 480)}
    for name, head in models.items():
        width, height = sizes[name]
        verts, intr = trajectory_vertices(head, width, height, frames + WARMUP)
        for samples in (4, 1):
            with OffscreenRenderer(width, height, samples=samples) as renderer:
                counter = iter(range(10 ** 9))

                def render():
                    v = verts[next(counter) % len(verts)]
                    return renderer.render(v, head.faces, intr, vertex_rgb=head.vertex_rgb, background=PLAIN_BACKGROUND)

                t = time_calls(render, frames, WARMUP)
                rows.append([name, f"{width}x{height}", len(head.faces), renderer.samples, t["mean_ms"], t["p50_ms"],
                             t["min_ms"], 1000 / t["mean_ms"]])
    return rows


def flame_fixture(folder: Path):
    from core.model_io import load_head_model  # noqa: PLC0415
    from tests.fixtures_flame import flame_like_arrays, write_flame_variant  # noqa: PLC0415

    path = folder / "flame_like_5023.pkl"
    write_flame_variant(path, "2023", flame_like_arrays(n_vert=FLAME_VERTICES))
    return load_head_model(path)


def landmark_vertex_ids(name: str, head) -> np.ndarray:
    """The vertices a 478-landmark fit evaluates: the embedding's triangle corners."""
    from core.embedding import embedding_for, identity_embedding  # noqa: PLC0415

    if name == "flame-like":  # random blob: no real embedding; 478 random triangles stand in for one
        faces = head.faces[np.random.default_rng(0).choice(len(head.faces), 478, replace=False)]
        return np.unique(faces)
    embedding = identity_embedding(head.faces) if head.kind == "builtin" else embedding_for(head)
    vids, _ = embedding.vertex_weights(head.faces)
    return np.unique(vids)


def bench_layers(models: dict, frames: int) -> list[list]:
    import torch  # noqa: PLC0415

    from core.head_model import HeadModelLayer  # noqa: PLC0415

    rows = []
    for name, head in models.items():
        full = HeadModelLayer(head)
        ids = landmark_vertex_ids(name, head)
        layers = {"full": full, "subset": full.subset(ids)}
        for batch in (1, 64):
            gen = torch.Generator().manual_seed(0)
            inputs = [torch.randn(batch, head.num_shape, generator=gen), torch.rand(batch, head.num_expr, generator=gen),
                      0.2 * torch.randn(batch, 3, generator=gen), 0.1 * torch.randn(batch, 3, generator=gen),
                      0.1 * torch.randn(batch, 3, generator=gen), 0.1 * torch.randn(batch, 6, generator=gen)]
            for kind, layer in layers.items():
                def forward():
                    with torch.no_grad():
                        return layer(*inputs)

                def forward_backward():
                    leaves = [x.clone().requires_grad_(True) for x in inputs]
                    layer(*leaves).square().sum().backward()

                fwd = time_calls(forward, frames, WARMUP)
                fwd_bwd = time_calls(forward_backward, frames, WARMUP)
                rows.append([name, "articulated" if head.is_articulated else "rigid", kind, layer.num_out, batch,
                             fwd["mean_ms"], fwd["p50_ms"], fwd["min_ms"], fwd_bwd["mean_ms"], fwd_bwd["p50_ms"],
                             fwd_bwd["min_ms"]])
    return rows


def bench_source(ict: Path | None, frames: int) -> list[list]:
    from core.synthetic import SyntheticOptions, SyntheticSource  # noqa: PLC0415

    rows = []
    configs = [("builtin", SyntheticOptions(frames=frames + WARMUP)),
               ("builtin", SyntheticOptions(frames=frames + WARMUP, background="random", lighting="random", noise=2.0))]
    if ict is not None:
        configs = [("ict", SyntheticOptions(model=str(ict), width=512, height=512, frames=frames + WARMUP)),
                   ("ict", SyntheticOptions(model=str(ict), width=512, height=512, frames=frames + WARMUP,
                                            background="random", lighting="random", noise=2.0))] + configs
    for name, opts in configs:
        source = SyntheticSource(opts)
        try:
            times, last = [], time.perf_counter()
            for frame in source:
                now = time.perf_counter()
                if frame.index >= WARMUP:
                    times.append(now - last)
                last = now
        finally:
            source.close()
        t = timing_stats(times)
        rows.append([name, f"{opts.width}x{opts.height}", opts.background, opts.noise, t["mean_ms"], t["p50_ms"],
                     t["min_ms"], 1000 / t["mean_ms"]])
    return rows


def main() -> None:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=60, help="timed calls per row (after warm-up); at least 50")
    args = ap.parse_args()
    if args.frames < 50:
        ap.error("--frames must be at least 50")
    import torch  # noqa: PLC0415

    print_load("at start")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.frames} timed calls per row after "
          f"{WARMUP} warm-up calls")
    models = load_models(args)
    ict = _common.ict_path(args) if "ict" in models else None
    tables = [print_table("Offscreen render (EGL) per frame, read-back included",
                          ["model", "size", "triangles", "MSAA", "mean ms", "p50 ms", "min ms", "frames/s"],
                          bench_render(models, args.frames))]
    with tempfile.TemporaryDirectory() as tmp:
        layer_models = {**models, "flame-like": flame_fixture(Path(tmp))}
        tables.append(print_table(
            "HeadModelLayer per call (subset: the landmark embedding's vertices; flame-like: 478 random triangles)",
            ["model", "pose", "vertices", "out", "batch", "fwd mean ms", "fwd p50 ms", "fwd min ms",
             "fwd+bwd mean ms", "fwd+bwd p50 ms", "fwd+bwd min ms"], bench_layers(layer_models, args.frames)))
    tables.append(print_table("SyntheticSource end to end (trajectory + forward + render), per frame",
                              ["model", "size", "background", "noise", "mean ms", "p50 ms", "min ms", "frames/s"],
                              bench_source(ict, args.frames)))
    print("\n'min': the fastest call, the least disturbed by other processes on a busy machine; "
          "frames/s = 1000 / mean.")
    print_load("at end")
    write_json(args.json, "render_speed", tables)


if __name__ == "__main__":
    main()
