"""Depth-renderer throughput: views/s and peak memory for the paper's rendering settings, side by side.

    python benchmarks/render.py [--batch 32] [--views 10] [--points 1024] [--size 224] [--repeats 5]

Each row renders B clouds x V views of N points at S x S into encoder-ready images (B, V, 3, S, S)
(official normalisation + CLIP mean/std), measured two ways: a fresh output tensor per call, and one
output buffer reused across calls (``renderer(..., out=buf)``, as a training loop does). Times are the best
of ``--repeats`` calls after a warm-up. Each row runs in its own process so that its peak memory is its
own: the growth of the process's peak resident set (CPU) or torch's peak allocation (CUDA) over the
state before the first render, output buffer included.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

SETTINGS = [
    ("minimum", "square", {"dilation": 1}),
    ("minimum", "square", {"dilation": 2}),
    ("minimum", "square", {"dilation": 4}),
    ("minimum", "disk", {"radius": 0.02}),
    ("weighted", "square", {"dilation": 1}),
    ("weighted", "square", {"dilation": 2}),
    ("weighted", "square", {"dilation": 4}),
    ("weighted", "disk", {"radius": 0.02}),
]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(args: argparse.Namespace, depth: str, footprint: str, extra: dict) -> tuple[float, float, float]:
    """Best seconds per call with a fresh output, with a reused one, and peak MiB; run in a child process."""
    import torch

    from clip2point.render import DepthRenderer, official_views

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    points = torch.nn.functional.normalize(torch.randn(args.batch, args.points, 3, generator=gen), dim=-1)
    points = (points * torch.rand(args.batch, args.points, 1, generator=gen) ** (1 / 3)).to(device)
    azim, elev, dist = (t.to(device) for t in official_views(args.views))
    renderer = DepthRenderer(image_size=args.size, footprint=footprint, depth=depth, **extra)

    def timed(**kwargs) -> float:
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            renderer(points, azim, elev, dist, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    base = _peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = renderer(points, azim, elev, dist)  # warm-up, and the reused buffer
    fresh = timed()
    reused = timed(out=out)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _peak_rss_mib() - base
    return fresh, reused, peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--views", type=int, default=10, choices=(6, 10))
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    n_views = args.batch * args.views
    print(
        f"B={args.batch} V={args.views} N={args.points} S={args.size} device={args.device} "
        f"torch threads={torch.get_num_threads()}; best of {args.repeats}"
    )
    header = f"{'depth':<9} {'footprint':<12} {'views/s fresh':>13} {'views/s reused':>14} {'ms reused':>9} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    ctx = mp.get_context("spawn")
    rows = []
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for depth, footprint, extra in SETTINGS:
            fresh, reused, peak = pool.apply(_measure, (args, depth, footprint, extra))
            size = f"R={extra['dilation']}" if footprint == "square" else f"r={extra['radius']}"
            rows.append((f"{depth} {footprint} {size}", n_views / reused))
            print(
                f"{depth:<9} {footprint + ' ' + size:<12} {n_views / fresh:>13.0f} {n_views / reused:>14.0f} "
                f"{reused * 1e3:>9.1f} {peak:>9.0f}"
            )
    reference = dict(rows)["minimum square R=2"]
    print("reused-buffer throughput relative to minimum square R=2 (the paper's setting):")
    print("  " + ", ".join(f"{name}: {value / reference:.2f}x" for name, value in rows))


if __name__ == "__main__":
    main()
