"""Pre-training throughput: samples/s of one full pre-training step, per stage, side by side.

    python benchmarks/pretrain_throughput.py                          # ViT-B-32, batch 256, bf16 on CUDA
    python benchmarks/pretrain_throughput.py --precision fp32         # the same step without autocast
    python benchmarks/pretrain_throughput.py --model ToyCLIP --pretrained toy --batch 32 --device cpu
    python benchmarks/pretrain_throughput.py --batch 32 --micro-batch 32 8 2 --device cpu   # gradient caching

A step is what the Ray Train worker does per iteration (docs/method.md section 2), built from the same
library pieces: render each cloud's sampled view at two jittered distances (:func:`render_pair`), encode
the RGB render with the frozen image encoder, encode both depth maps with the depth encoder
(:class:`DepthImageContrast`), the pre-training objective, backward (:func:`contrastive_backward`: in one
pass, or with ``--micro-batch`` below the batch in micro batches with cached gradients), LAMB step.
``--precision bf16`` runs the encoders under bf16 autocast (the worker's default on CUDA), ``fp32`` without
it. Weights are random unless ``--pretrained`` names a tag or file (speed does not depend on them). Inputs
are synthetic. Prints the median time of each stage and the whole step over ``--steps`` steps after
``--warmup``, with the share of each stage, and peak memory: on CUDA torch's peak allocation, on the CPU
the peak resident set (Linux), each with the memory held before the step (weights, optimiser state), whose
difference is what the step itself needs. Several ``--micro-batch`` values run one after the other on the
same model and are compared side by side, with ratios to the first.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from _timing import clock, reset_peak_resident, resident_mib, unit_ball_clouds

from clip2point.config import PretrainConfig
from clip2point.engine.grad_cache import contrastive_backward
from clip2point.engine.optim import build_optimizer
from clip2point.engine.pretrain_step import DepthImageContrast, distance_factors, render_pair
from clip2point.models import PretrainObjective, load_clip
from clip2point.render import DepthRenderer, official_views

STAGES = ("render", "image encoder", "depth encoder + loss + backward", "optimiser")


@dataclass
class Step:
    """One worker's training state on synthetic inputs: ``points (b, N, 3)``, each sample's view
    ``azim``/``elev``/``dist (b,)``, RGB renders ``rgb (b, 3, S, S)`` and the distance-jitter factors."""

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


@dataclass(frozen=True)
class StepTiming:
    """Median seconds of each stage (:data:`STAGES`) and of the whole step; the last step's loss; memory
    in MiB: ``peak_mib`` during the timed steps and ``resting_mib`` before them (CUDA: torch's allocations;
    the CPU: the process's resident set, Linux)."""

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
        """What the step needs beyond the weights and optimiser state it starts with."""
        return self.peak_mib - self.resting_mib

    def share(self, stage: str) -> float:
        return self.stages[stage] / self.total


def build_step(
    model: str, pretrained: str | None, batch: int, points: int, device: torch.device, optimizer: str = "lamb"
) -> Step:
    """The worker's parts (depth encoder + objective, frozen image encoder, the ``optimizer`` at the
    paper's lr and weight decay, renderer at the backbone's size and mean/std) for ``model`` with
    ``pretrained`` weights, and synthetic inputs."""
    bundle = load_clip(model, pretrained, device)
    s = bundle.image_size
    gen = torch.Generator().manual_seed(0)
    net = DepthImageContrast(bundle.depth_encoder(), PretrainObjective(), global_negatives=False).to(device)
    views = official_views(10)
    index = torch.randint(0, 10, (batch,), generator=gen)
    return Step(
        model=net,
        image_encoder=bundle.image_encoder(),
        optimiser=build_optimizer(
            PretrainConfig(optimizer=optimizer, lr=6e-3, weight_decay=1e-4), net.parameters()
        ),
        renderer=DepthRenderer(s, norm=bundle.norm),
        points=unit_ball_clouds(batch, points).to(device),
        view=tuple(v[index].to(device) for v in views),
        rgb=torch.randn(batch, 3, s, s, generator=gen).to(device),
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
    """One training step, the depth encoder in micro batches of ``micro_batch`` samples (None: the whole
    batch, one pass); ``mark()`` before the first stage and after each one. Returns the 5 marks and the
    step's loss (a detached device scalar: reading it is left to the caller)."""
    marks = [mark()]
    with torch.no_grad():
        depth = render_pair(step.renderer, step.points, *step.view, step.factors)
    marks.append(mark())
    with precision_context(step.device, precision):
        image_features = step.image_encoder(step.rgb)
    marks.append(mark())
    loss = contrastive_backward(
        step.model, depth, image_features, micro_batch or step.batch,
        lambda: precision_context(step.device, precision),
    ).total  # fmt: skip
    marks.append(mark())
    step.optimiser.step()
    step.optimiser.zero_grad(set_to_none=True)
    marks.append(mark())
    return marks, loss.detach()


def measure_step(
    step: Step, precision: str, steps: int, warmup: int, micro_batch: int | None = None
) -> StepTiming:
    """Median stage and step times over ``steps`` steps after ``warmup`` untimed ones, and peak memory
    during the timed steps (``micro_batch``: as :func:`run_step`)."""
    device = step.device
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
    """One row per micro batch, with ratios to the first row."""
    first = timings[0]
    print(
        f"\n{'micro batch':>11} {'samples/s':>10} {'peak MiB':>9} {'step MiB':>9} "
        f"{'time ratio':>10} {'peak ratio':>10} {'step-memory ratio':>17}"
    )
    for t in timings:
        print(
            f"{t.micro_batch:>11} {t.samples_per_second:>10.3g} {t.peak_mib:>9,.0f} {t.step_mib:>9,.0f} "
            f"{t.total / first.total:>10.2f} {first.peak_mib / t.peak_mib:>9.2f}x "
            f"{first.step_mib / t.step_mib:>16.2f}x"
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
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision", choices=("bf16", "fp32"), help="default: bf16 on CUDA, fp32 on the CPU"
    )
    parser.add_argument("--optimizer", choices=("lamb", "timm_lamb"), default="lamb", help="default: lamb")
    parser.add_argument(
        "--micro-batch", type=int, nargs="+", help="samples per depth-encoder pass (default: the batch)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    step = build_step(args.model, args.pretrained, args.batch, args.points, device, args.optimizer)
    print(f"{args.model} ({args.pretrained or 'random'}) S={step.renderer.image_size} batch={args.batch} "
          f"N={args.points} device={device} {precision}; median of {args.steps} steps")  # fmt: skip
    timings = []
    for micro_batch in args.micro_batch or [args.batch]:
        timings.append(measure_step(step, precision, args.steps, args.warmup, micro_batch))
        print_stages(timings[-1])
    if len(timings) > 1:
        print_comparison(timings)


if __name__ == "__main__":
    main()
