"""Depth-renderer throughput: views/s and peak memory for the paper's settings, side by side.

    python benchmarks/render.py [--batch 32] [--views 10] [--points 1024] [--size 224] [--repeats 5]

Each row renders B clouds x V views of N points at S x S to encoder-ready images (B, V, 3, S, S)
(official normalisation + CLIP mean/std), the output a CLIP encoder consumes. Peak memory is the
process's resident-set growth (CPU) or torch's peak allocation (CUDA) during the row's renders.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from clip2point.render import DepthRenderer, official_views

SETTINGS = [
    ("minimum", "square", dict(dilation=1)),
    ("minimum", "square", dict(dilation=2)),
    ("minimum", "square", dict(dilation=4)),
    ("minimum", "disk", dict(radius=0.02)),
    ("weighted", "square", dict(dilation=1)),
    ("weighted", "square", dict(dilation=2)),
    ("weighted", "square", dict(dilation=4)),
    ("weighted", "disk", dict(radius=0.02)),
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--views", type=int, default=10, choices=(6, 10))
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    points = torch.nn.functional.normalize(torch.randn(args.batch, args.points, 3, generator=gen), dim=-1)
    points = (points * torch.rand(args.batch, args.points, 1, generator=gen)).to(device)
    azim, elev, dist = (t.to(device) for t in official_views(args.views))
    n_views = args.batch * args.views
    print(
        f"B={args.batch} V={args.views} N={args.points} S={args.size} device={device} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"{'depth':<9} {'footprint':<12} {'views/s':>9} {'ms/batch':>9} {'peak MiB':>9}")
    rows = []
    for depth, footprint, extra in SETTINGS:
        renderer = DepthRenderer(image_size=args.size, footprint=footprint, depth=depth, **extra)
        renderer(points, azim, elev, dist)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        base = peak_rss_mib()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = renderer(points, azim, elev, dist)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            del out
        best = min(times)
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib() - base
        size = f"R={extra['dilation']}" if footprint == "square" else f"r={extra['radius']}"
        label = f"{footprint} {size}"
        rows.append((depth, label, n_views / best))
        print(f"{depth:<9} {label:<12} {n_views / best:>9.0f} {best * 1e3:>9.1f} {peak:>9.0f}")
    fastest = max(r[2] for r in rows)
    print("ratios to the fastest row: " + ", ".join(f"{d}/{f}: {v / fastest:.2f}" for d, f, v in rows))


if __name__ == "__main__":
    main()
