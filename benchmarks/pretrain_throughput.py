"""Pre-training throughput: samples/s of one full pre-training step, per stage, side by side.

    python benchmarks/pretrain_throughput.py                          # ViT-B-32, batch 256, bf16 on CUDA
    python benchmarks/pretrain_throughput.py --precision fp32         # the same step without autocast
    python benchmarks/pretrain_throughput.py --model ToyCLIP --pretrained toy --batch 32 --device cpu
    python benchmarks/pretrain_throughput.py --batch 64 --micro-batch 64 16 4 --steps 1 --warmup 0 --device cpu
    python benchmarks/pretrain_throughput.py --packed                 # stored image features (a pack)

A step is what the Ray Train worker does per iteration (docs/method.md section 2), built from the same
library pieces: render each cloud's sampled view at two jittered distances
(:func:`render_pair` with ``micro_batch``), encode the RGB render with the frozen image encoder (``--packed``: take a pack's stored image features instead),
encode both depth maps with the depth encoder (:class:`DepthImageContrast`), the pre-training objective,
backward (:func:`contrastive_backward`: in one pass, or with ``--micro-batch`` below the batch in micro
batches with cached gradients, rendering and image encoder in micro batches too), LAMB step.
``--precision bf16`` runs the encoders under bf16 autocast (the worker's default on CUDA), ``fp32`` without
it. Weights are random unless ``--pretrained`` names a tag or file (speed does not depend on them). Inputs
are synthetic. Prints the median time of each stage and the whole step over ``--steps`` steps after
``--warmup``, with the share of each stage, and memory: the fixed part held before the timed steps
(weights, gradients, optimiser state; on the CPU also the process's libraries) and the peak during them,
whose difference is what the step itself needs (on CUDA torch's allocations, on the CPU the resident set,
Linux). Several ``--micro-batch`` values each run in a fresh process (a process's peak never falls) and are
compared side by side, with ratios to the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from contextlib import nullcontext

import torch
from _timing import clock, reset_peak_resident, resident_mib, unit_ball_clouds

from clip2point.config import PretrainConfig
from clip2point.engine.grad_cache import contrastive_backward
from clip2point.engine.optim import build_optimizer
from clip2point.engine.pretrain_step import (
    DepthImageContrast,
    distance_factors,
    render_pair,
    rows_in_micro_batches,
)
from clip2point.models import PretrainObjective, load_clip
from clip2point.render import DepthRenderer, official_views

JSON_PREFIX = "json: "  # the line of a child's output (measure_isolated) that carries its StepTiming
STAGES = ("render", "image encoder", "depth encoder + loss + backward", "optimiser")


@dataclasses.dataclass
class Step:
    """One worker's training state on synthetic inputs: ``points (b, N, 3)``, each sample's view
    ``azim``/``elev``/``dist (b,)``, RGB renders ``rgb (b, 3, S, S)`` (or a pack's stored image features
    ``(b, C)``, with the identity as ``image_encoder``) and the distance-jitter factors."""

    model: DepthImageContrast
    image_encoder: torch.nn.Module
    optimiser: torch.optim.Optimizer
    renderer: DepthRenderer
    points: torch.Tensor
    view: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    rgb: torch.Tensor
    factors: tuple[torch.Tensor, torch.Tensor]

    @property
    def device(self) -> torch.device:
        return self.points.device

    @property
    def batch(self) -> int:
        return self.points.shape[0]


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """Median seconds of each stage (:data:`STAGES`) and of the whole step; the last step's loss; memory
    in MiB: ``peak_mib`` during the timed steps and ``resting_mib`` before them, after the warm-up: the
    fixed part (weights, gradients, optimiser state; on the CPU also the process's libraries). CUDA:
    torch's allocations; the CPU: the process's resident set (Linux)."""

    stages: dict[str, float]
    total: float
    batch: int
    micro_batch: int
    loss: float
    peak_mib: float
    resting_mib: float

    @property
    def samples_per_second(self) -> float:
        return self.batch / self.total

    @property
    def step_mib(self) -> float:
        """The batch-dependent part: what the step needs beyond the weights, gradients and optimiser state
        it starts with."""
        return self.peak_mib - self.resting_mib

    def share(self, stage: str) -> float:
        return self.stages[stage] / self.total


def build_step(
    model: str,
    pretrained: str | None,
    batch: int,
    points: int,
    device: torch.device,
    optimizer: str = "lamb",
    packed: bool = False,
) -> Step:
    """The worker's parts (depth encoder + objective, frozen image encoder, the ``optimizer`` at the
    paper's lr and weight decay, renderer at the backbone's size and mean/std) for ``model`` with
    ``pretrained`` weights, and synthetic inputs. ``packed``: the step fed from a pack, whose stored image
    features ``(b, C)`` (the encoder's output of the same renders) replace the image encoder (``rgb`` holds
    them, the encoder is the identity)."""
    bundle = load_clip(model, pretrained, device)
    s = bundle.image_size
    gen = torch.Generator().manual_seed(0)
    net = DepthImageContrast(bundle.depth_encoder(), PretrainObjective(), global_negatives=False).to(device)
    views = official_views(10)
    index = torch.randint(0, 10, (batch,), generator=gen)
    rgb = torch.randn(batch, 3, s, s, generator=gen).to(device)
    image_encoder = bundle.image_encoder()
    if packed:  # what a pack stores: the frozen encoder's float32 output of the render
        rgb, image_encoder = image_encoder(rgb).float(), torch.nn.Identity()
    return Step(
        model=net,
        image_encoder=image_encoder,
        optimiser=build_optimizer(
            PretrainConfig(optimizer=optimizer, lr=6e-3, weight_decay=1e-4), net.parameters()
        ),
        renderer=DepthRenderer(s, norm=bundle.norm),
        points=unit_ball_clouds(batch, points).to(device),
        view=tuple(v[index].to(device) for v in views),
        rgb=rgb,
        factors=distance_factors(batch, 0, 1, gen),
    )


def precision_context(device: torch.device, precision: str):
    """bf16 autocast on ``device`` for ``"bf16"``, nothing for ``"fp32"``. Unlike the library's
    :func:`clip2point.engine.features.autocast` (fp32 on the CPU), also on the CPU, so that the CPU
    fallback of ``gpu_check.py`` exercises the bf16 path it will measure on the GPU."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def run_step(
    step: Step, precision: str, mark: Callable[[], float], micro_batch: int | None = None
) -> tuple[list[float], torch.Tensor]:
    """One training step as the worker takes it, in micro batches of ``micro_batch`` samples (None: the
    whole batch, one pass): the depth maps rendered and the frozen image encoder run micro batch by micro
    batch (:func:`rows_in_micro_batches`), the depth encoder with cached gradients; the gradients are set
    to None before the backward and kept after the optimiser step, as the worker does. ``mark()`` before
    the first stage and after each one. Returns the 5 marks and the step's loss (a detached device scalar:
    reading it is left to the caller)."""
    micro = micro_batch or step.batch
    marks = [mark()]
    with torch.no_grad():
        depth = render_pair(step.renderer, step.points, *step.view, step.factors, micro)
    marks.append(mark())
    with precision_context(step.device, precision):
        image_features = rows_in_micro_batches(step.image_encoder, micro, step.rgb)
    marks.append(mark())
    step.optimiser.zero_grad(set_to_none=True)
    loss = contrastive_backward(
        step.model, depth, image_features, micro, lambda: precision_context(step.device, precision)
    ).total
    marks.append(mark())
    step.optimiser.step()
    marks.append(mark())
    return marks, loss.detach()


def measure_step(
    step: Step, precision: str, steps: int, warmup: int, micro_batch: int | None = None
) -> StepTiming:
    """Median stage and step times over ``steps`` steps after ``warmup`` untimed ones, and peak memory
    during the timed steps (``micro_batch``: as :func:`run_step`). The warm-up allocates the gradients and
    the optimiser state, part of the fixed memory; ``warmup=0``: one untimed step of two samples does (on
    the CPU, where a step of the whole batch takes minutes). The peak is the process's since the warm-up: measure one
    setting per process on the CPU (:func:`measure_isolated`), where freed memory is not given back."""
    device = step.device
    if warmup == 0:
        two = dataclasses.replace(step, points=step.points[:2], view=tuple(v[:2] for v in step.view),
                                  rgb=step.rgb[:2], factors=tuple(f[:2] for f in step.factors))  # fmt: skip
        run_step(two, precision, lambda: 0.0)  # the smallest batch with negatives
    for _ in range(warmup):
        run_step(step, precision, lambda: 0.0, micro_batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        resting = torch.cuda.memory_allocated(device) / 2**20
    else:
        resting = reset_peak_resident()
    per_stage: dict[str, list[float]] = {name: [] for name in STAGES}
    totals = []
    for _ in range(steps):
        marks, loss = run_step(step, precision, lambda: clock(device), micro_batch)
        for name, start, end in zip(STAGES, marks[:-1], marks[1:], strict=True):
            per_stage[name].append(end - start)
        totals.append(marks[-1] - marks[0])
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else resident_mib("VmHWM")
    medians = {name: statistics.median(times) for name, times in per_stage.items()}
    return StepTiming(
        medians, statistics.median(totals), step.batch, micro_batch or step.batch, loss.item(), peak, resting
    )


def print_stages(timing: StepTiming) -> None:
    print(f"{'stage (micro batch ' + str(timing.micro_batch) + ')':<34} {'ms':>9} {'share':>7}")
    for name in STAGES:
        print(f"{name:<34} {timing.stages[name] * 1e3:>9.1f} {timing.share(name):>7.1%}")
    print(f"{'whole step':<34} {timing.total * 1e3:>9.1f}")
    print(
        f"throughput: {timing.samples_per_second:.1f} samples/s; loss after the last step {timing.loss:.4f}; "
        f"peak memory {timing.peak_mib:,.0f} MiB, {timing.step_mib:,.0f} MiB above the "
        f"{timing.resting_mib:,.0f} MiB held before the step"
    )


def print_comparison(timings: list[StepTiming]) -> None:
    """One row per micro batch, with ratios to the first row: samples/s, the fixed memory (weights,
    gradients, optimiser state), the peak of the process and the step's own (peak above the fixed)."""
    first = timings[0]
    print(
        f"\n{'micro batch':>11} {'samples/s':>10} {'time ratio':>10} {'fixed MiB':>9} {'peak MiB':>9} "
        f"{'step MiB':>9} {'peak ratio':>10} {'step-memory ratio':>17}"
    )
    for t in timings:
        print(
            f"{t.micro_batch:>11} {t.samples_per_second:>10.3g} {t.total / first.total:>10.2f} "
            f"{t.resting_mib:>9,.0f} {t.peak_mib:>9,.0f} {t.step_mib:>9,.0f} "
            f"{first.peak_mib / t.peak_mib:>9.2f}x {first.step_mib / t.step_mib:>16.2f}x"
        )


def measure_isolated(argv: list[str], micro_batch: int) -> StepTiming:
    """This script run with ``argv`` for ``micro_batch`` alone in a fresh process (its output passed
    through): each setting's peak memory from its own start, not the high-water mark an earlier one left."""
    command = [sys.executable, __file__, *argv, "--micro-batch", str(micro_batch), "--json"]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    lines = result.stdout.splitlines()
    print("\n".join(line for line in lines if not line.startswith(JSON_PREFIX)), flush=True)
    return StepTiming(
        **json.loads(next(line for line in lines if line.startswith(JSON_PREFIX))[len(JSON_PREFIX) :])
    )


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
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps (0: one step of two samples allocates the state)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision", choices=("bf16", "fp32"), help="default: bf16 on CUDA, fp32 on the CPU"
    )
    parser.add_argument("--optimizer", choices=("lamb", "timm_lamb"), default="lamb", help="default: lamb")
    parser.add_argument(
        "--micro-batch", type=int, nargs="+",
        help="samples per depth-encoder pass (default: the batch); several: each in a fresh process",
    )  # fmt: skip
    parser.add_argument(
        "--packed", action="store_true", help="stored image features instead of the image encoder (a pack)"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # measure_isolated's child
    args = parser.parse_args()
    micro_batches = args.micro_batch or [args.batch]
    if len(micro_batches) > 1:
        print_comparison([measure_isolated(sys.argv[1:], m) for m in micro_batches])
        return
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    step = build_step(
        args.model, args.pretrained, args.batch, args.points, device, args.optimizer, args.packed
    )
    print(f"{args.model} ({args.pretrained or 'random'}) S={step.renderer.image_size} batch={args.batch} "
          f"N={args.points} device={device} {precision}{' packed' if args.packed else ''}; median of "
          f"{args.steps} steps")  # fmt: skip
    timing = measure_step(step, precision, args.steps, args.warmup, micro_batches[0])
    print_stages(timing)
    if args.json:
        print(JSON_PREFIX + json.dumps(dataclasses.asdict(timing)))


if __name__ == "__main__":
    main()
