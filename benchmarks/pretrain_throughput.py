"""Pre-training throughput: samples/s of one full pre-training step, per stage, side by side.

    python benchmarks/pretrain_throughput.py                          # ViT-B-32, batch 256, bf16 on CUDA
    python benchmarks/pretrain_throughput.py --precision fp32         # the authors' precision
    python benchmarks/pretrain_throughput.py --model ToyCLIP --pretrained toy --batch 32 --device cpu

A step is what the Ray Train worker does per iteration (docs/method.md section 2): render each cloud's sampled view
at two jittered distances, encode the RGB render with the frozen image encoder, encode both depth maps with
the depth encoder, the pre-training objective, backward, LAMB step. Weights are random unless
``--pretrained`` names a tag or file (speed does not depend on them). Inputs are synthetic. Prints the
median time of each stage and the whole step over ``--steps`` steps after ``--warmup``, with the share of
each stage, and peak GPU memory.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from clip2point.config import PretrainConfig
from clip2point.engine.features import autocast, compute_precision
from clip2point.engine.optim import build_optimizer
from clip2point.engine.pretrain_step import DepthImageContrast, render_pair
from clip2point.models import PretrainObjective, load_clip
from clip2point.render import DepthRenderer, official_views


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument(
        "--pretrained", default=None, help="open_clip tag, weights file or 'toy' (default random)"
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision", choices=("bf16", "fp32"), default="bf16", help="bf16 autocast on CUDA, or fp32"
    )
    parser.add_argument("--optimizer", choices=("lamb", "timm_lamb"), default="lamb")
    args = parser.parse_args()

    device = torch.device(args.device)
    bundle = load_clip(args.model, args.pretrained, device)
    s = bundle.image_size
    model = DepthImageContrast(
        bundle.depth_encoder().to(device), PretrainObjective().to(device), global_negatives=False
    )
    image_encoder = bundle.image_encoder()
    optimiser = build_optimizer(
        PretrainConfig(optimizer=args.optimizer, lr=6e-3, weight_decay=1e-4), model.parameters()
    )
    renderer = DepthRenderer(image_size=s)
    azim, elev, dist = (t.to(device) for t in official_views(10))
    gen = torch.Generator(device="cpu").manual_seed(0)
    points = torch.nn.functional.normalize(torch.randn(args.batch, args.points, 3, generator=gen), dim=-1).to(
        device
    )
    view = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    rgb = torch.randn(args.batch, 3, s, s, generator=gen).to(device)
    factors = (
        1 + (torch.rand(args.batch, generator=gen) - 0.5) / 5,
        1 + (torch.rand(args.batch, generator=gen) - 0.5) / 5,
    )

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    stages: dict[str, list[float]] = {
        "render": [],
        "image encoder": [],
        "depth encoder + loss + backward": [],
        "optimiser": [],
    }
    totals = []
    for step in range(args.warmup + args.steps):
        t0 = sync()
        depth = render_pair(renderer, points, azim[view], elev[view], dist[view], factors)
        t1 = sync()
        with torch.no_grad(), autocast(device, args.precision):
            image_features = image_encoder(rgb)
        t2 = sync()
        with autocast(device, args.precision):
            loss = model(depth, image_features).total
        loss.backward()
        t3 = sync()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        t4 = sync()
        if step >= args.warmup:
            for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                stages[name].append(dt)
            totals.append(t4 - t0)
    total = statistics.median(totals)
    print(f"{args.model} ({args.pretrained or 'random'}) S={s} batch={args.batch} N={args.points} device={device} "
          f"{compute_precision(device, args.precision)}, {args.optimizer}; median of {args.steps} steps")  # fmt: skip
    print(f"{'stage':<34} {'ms':>9} {'share':>7}")
    for name, times in stages.items():
        median = statistics.median(times)
        print(f"{name:<34} {median * 1e3:>9.1f} {median / total:>7.1%}")
    print(f"{'whole step':<34} {total * 1e3:>9.1f}")
    print(f"throughput: {args.batch / total:.1f} samples/s")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
