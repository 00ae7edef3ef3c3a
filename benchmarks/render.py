"""Depth-renderer throughput: views/s and peak memory for the paper's rendering settings (Table 5's,
``clip2point.render.TABLE5_SETTINGS``) and the weighted disk, side by side.

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

from _timing import best_seconds, peak_rss_mib, unit_ball_clouds

from clip2point.settings import TABLE5_SETTINGS, RenderSettings

# Table 5's settings, then the weighted disk: a path of the renderer that Table 5 leaves out.
SETTINGS = (*TABLE5_SETTINGS, RenderSettings(footprint="disk", depth="weighted"))
REFERENCE = RenderSettings(footprint="square", depth="minimum", dilation=2)  # the paper's setting


def reused_buffer_seconds(renderer, points, views, repeats: int) -> float:
    """Best seconds per call of ``renderer(points, *views, out=buf)`` into one reused buffer (after a
    warm-up call that makes the buffer): what a training loop pays per batch."""
    out = renderer(points, *views)
    return best_seconds(lambda: renderer(points, *views, out=out), points.device, repeats)


def _measure(args: argparse.Namespace, settings: RenderSettings) -> tuple[float, float, float]:
    """Best seconds per call with a fresh output, with a reused one, and peak MiB; run in a child process."""
    import torch

    from clip2point.render import DepthRenderer, official_views

    device = torch.device(args.device)
    points = unit_ball_clouds(args.batch, args.points).to(device)
    views = [t.to(device) for t in official_views(args.views)]
    renderer = DepthRenderer(args.size, settings)
    base = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    reused = reused_buffer_seconds(renderer, points, views, args.repeats)
    fresh = best_seconds(lambda: renderer(points, *views), device, args.repeats)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib() - base
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
        for settings in SETTINGS:
            fresh, reused, peak = pool.apply(_measure, (args, settings))
            name = settings.label()
            rows.append((name, n_views / reused))
            print(
                f"{settings.depth:<9} {name.removeprefix(settings.depth + ' '):<12} {n_views / fresh:>13.0f} "
                f"{n_views / reused:>14.0f} {reused * 1e3:>9.1f} {peak:>9.0f}"
            )
    reference = dict(rows)[REFERENCE.label()]
    print(f"reused-buffer throughput relative to {REFERENCE.label()} (the paper's setting):")
    print("  " + ", ".join(f"{name}: {value / reference:.2f}x" for name, value in rows))


if __name__ == "__main__":
    main()
