"""One LAMB step over a depth encoder's parameters: torch-optimizer's ``Lamb`` against ours, side by side.

    python benchmarks/lamb.py                     # ViT-B-32's depth encoder (random weights), CPU and CUDA if any
    python benchmarks/lamb.py --model ToyCLIP --pretrained toy

Both optimisers get the same parameters and gradients and the paper's lr and weight decay; the table gives
the milliseconds per ``step()`` (best of ``--repeats``, timed until the device has finished), the ratio, and
the largest difference between the two after the timed steps (0 on the CPU: the arithmetic is the same).
torch-optimizer's step reads three values per tensor back from the device; ours reads none.
"""

from __future__ import annotations

import argparse

import torch
import torch_optimizer
from _timing import best_seconds

from clip2point.engine.lamb import Lamb
from clip2point.models import load_clip


def parameters_with_gradients(model: str, pretrained: str | None) -> list[torch.nn.Parameter]:
    """The depth encoder's parameters (CPU), each with a seeded random gradient."""
    params = list(load_clip(model, pretrained, torch.device("cpu")).depth_encoder().parameters())
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    return params


def copies(params: list[torch.nn.Parameter], device: torch.device) -> list[torch.nn.Parameter]:
    """Independent copies of ``params`` and their gradients on ``device``."""
    out = []
    for p in params:
        q = torch.nn.Parameter(p.detach().to(device, copy=True))
        q.grad = p.grad.to(device, copy=True)
        out.append(q)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default=None, help="weights tag (default: random weights)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"{args.model} ({args.pretrained or 'random weights'}) depth encoder, lr 6e-3, weight decay 1e-4, "
          f"best of {args.repeats} steps\n")  # fmt: skip
    print(
        "| device | tensors | parameters | torch-optimizer Lamb, ms | ours, ms | speed-up | max difference |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    params = parameters_with_gradients(args.model, args.pretrained)
    for device in devices:
        theirs, ours = copies(params, device), copies(params, device)
        reference = torch_optimizer.Lamb(theirs, lr=6e-3, weight_decay=1e-4)
        optimiser = Lamb(ours, lr=6e-3, weight_decay=1e-4)
        their_ms = best_seconds(reference.step, device, args.repeats) * 1e3
        our_ms = best_seconds(optimiser.step, device, args.repeats) * 1e3
        difference = max(float((a - b).detach().abs().max()) for a, b in zip(ours, theirs, strict=True))
        count = sum(p.numel() for p in params)
        print(f"| {device.type} | {len(params)} | {count:,} | {their_ms:.2f} | {our_ms:.2f} | "
              f"{their_ms / our_ms:.2f}x | {difference:.2e} |")  # fmt: skip


if __name__ == "__main__":
    main()
