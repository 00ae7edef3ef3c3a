"""Gradient caching (:mod:`clip2point.engine.grad_cache`): a step of batch 32 in micro batches of 8 equals
the step of batch 32 in one pass (the losses, and every parameter's gradient, ``s`` included, within 1e-5
relative) for a toy encoder and for ViT-B-32 (random weights, 32 px) on 1 worker, and for a toy encoder and
a tiny ViT on 2 Ray Train workers with global negatives; dropout and batch statistics replay per micro
batch; a micro batch that does not divide the per-worker batch is refused. (The whole pre-training loop in
micro batches on 2 workers: ``tests/cluster/test_multinode.py``.)"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import open_clip
import pytest
import torch
from torch import nn

from clip2point.config import PretrainConfig, load_config
from clip2point.engine.grad_cache import contrastive_backward
from clip2point.engine.pretrain_step import DepthImageContrast
from clip2point.errors import ConfigError
from clip2point.models import PretrainObjective
from tests.tiny_clip import SIZE, tiny_config

BATCH, MICRO, S, C = 32, 8, 4, 16
Step = tuple[list[float], dict[str, torch.Tensor]]


def mlp(dropout: float = 0.0, batch_norm: bool = False) -> nn.Module:
    """A toy depth encoder: ``(M, 3, S, S) -> (M, C)``."""
    norm = [nn.BatchNorm1d(32)] if batch_norm else []
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * S * S, 32), *norm, nn.GELU(), nn.Dropout(dropout), nn.Linear(32, C)
    )


def vit_b32() -> nn.Module:
    """ViT-B-32's visual tower (random weights) at 32 px: one patch and the class token."""
    return open_clip.create_model("ViT-B-32", None, force_image_size=32).visual


def tiny_vit() -> nn.Module:
    """The tests' tiny open_clip ViT (2 layers, width 64, 32 px)."""
    return open_clip.CLIP(**tiny_config()).visual


def contrast(encoder: Callable[[], nn.Module], intra: bool = True) -> DepthImageContrast:
    """``encoder()`` with seeded weights and the objective at ``s = 1.3`` (a non-trivial gradient of ``s``)."""
    torch.manual_seed(0)
    objective = PretrainObjective(intra=intra)
    if intra:
        with torch.no_grad():
            objective.s.fill_(1.3)
    return DepthImageContrast(encoder().train(), objective)


def inputs(size: int, dim: int, views: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth images ``(BATCH, views, 3, size, size)`` and image features ``(BATCH, dim)``, seeded."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, views, 3, size, size, generator=g), torch.randn(BATCH, dim, generator=g)


def step(trainable: nn.Module, depth, image, micro: int, precision=nullcontext) -> Step:
    """One step's ``[total, intra, cross]`` losses and every parameter's gradient."""
    trainable.zero_grad(set_to_none=True)
    loss = contrastive_backward(trainable, depth, image, micro, precision)
    values = [t.item() if t is not None else 0.0 for t in loss]
    return values, {k: p.grad.clone() for k, p in trainable.named_parameters()}


def relative_differences(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> dict[str, float]:
    """``|got - want| / |want|`` (Frobenius norms) per parameter."""
    assert got.keys() == want.keys()
    return {k: ((got[k] - w).norm() / w.norm()).item() for k, w in want.items()}


def assert_same_step(got: Step, want: Step, rtol: float = 1e-5) -> None:
    assert got[0] == pytest.approx(want[0], rel=rtol)
    assert all(g.abs().sum() > 0 for g in want[1].values())  # every gradient is there and not zero
    worst = relative_differences(got[1], want[1])
    assert max(worst.values()) <= rtol, worst


@pytest.mark.parametrize("intra", [True, False])
def test_micro_batches_equal_one_pass_for_a_toy_encoder(intra):
    depth, image = inputs(S, C, views=2 if intra else 1)
    model = contrast(mlp, intra)
    one_pass = step(model, depth, image, BATCH)
    assert_same_step(step(model, depth, image, MICRO), one_pass)
    assert_same_step(step(model, depth, image, 1), one_pass)  # 32 micro batches of one sample
    if intra:
        assert one_pass[1]["objective.s"].abs() > 0.1
    # plain accumulation (the mean of the micro batches' own losses) has fewer negatives: not the same step
    model.zero_grad(set_to_none=True)
    sum(model(d, i).total for d, i in zip(depth.split(MICRO), image.split(MICRO), strict=True)).backward()
    accumulated = {k: p.grad / (BATCH // MICRO) for k, p in model.named_parameters()}
    assert max(relative_differences(accumulated, one_pass[1]).values()) > 0.05


def test_micro_batches_in_bf16_autocast_equal_one_pass_within_bf16_rounding():
    """Under bf16 autocast the losses and ``s``'s gradient are the same; the encoder's gradients are rounded
    to bf16 per micro batch (then summed in float32) instead of once: within one bf16 rounding (2^-8) of one
    pass's, and as close to the float32 gradients as one pass's are."""
    depth, image = inputs(S, C)
    model = contrast(mlp)

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    one_pass, cached = step(model, depth, image, BATCH, bf16), step(model, depth, image, MICRO, bf16)
    fp32 = step(model, depth, image, BATCH)
    assert cached[0] == pytest.approx(one_pass[0], rel=1e-6)
    worst = relative_differences(cached[1], one_pass[1])
    assert worst.pop("objective.s") <= 1e-6 and max(worst.values()) <= 2**-8, worst
    to_fp32 = relative_differences(one_pass[1], fp32[1])
    assert max(to_fp32.values()) > 1e-3  # autocast was on
    assert max(relative_differences(cached[1], fp32[1]).values()) <= 1.25 * max(to_fp32.values())


@pytest.mark.slow
def test_micro_batches_equal_one_pass_for_vit_b32():
    depth, image = inputs(32, 512)
    model = contrast(vit_b32)
    assert_same_step(step(model, depth, image, MICRO), step(model, depth, image, BATCH))


def test_dropout_and_batch_statistics_replay_per_micro_batch():
    """An encoder with dropout and BatchNorm: the cached step equals one pass whose forward runs micro batch
    by micro batch from the same RNG state (same masks, statistics of each micro batch), and the running
    statistics move once per micro batch, as in that forward."""
    depth, image = inputs(S, C)
    reference, cached = (
        contrast(lambda: mlp(0.5, batch_norm=True)),
        contrast(lambda: mlp(0.5, batch_norm=True)),
    )
    torch.manual_seed(7)
    features = torch.cat([reference.encode(d) for d in depth.split(MICRO)])
    loss = reference.contrast(features, image)
    loss.total.backward()
    want = [loss.total.item(), loss.intra.item(), loss.cross.item()]
    want_grads = {k: p.grad.clone() for k, p in reference.named_parameters()}
    torch.manual_seed(7)
    assert_same_step(step(cached, depth, image, MICRO), (want, want_grads))
    for name, buffer in reference.depth_encoder.named_buffers():
        torch.testing.assert_close(dict(cached.depth_encoder.named_buffers())[name], buffer, msg=name)
    assert cached.depth_encoder[2].num_batches_tracked.item() == BATCH // MICRO


@pytest.mark.parametrize(
    ("batch", "workers", "micro", "per_worker"), [(32, 2, 6, 16), (32, 1, 64, 32), (12, 3, 8, 4)]
)
def test_a_micro_batch_that_does_not_divide_the_per_worker_batch_is_refused(
    batch, workers, micro, per_worker
):
    message = (
        rf"'pretrain.micro_batch': {micro} does not divide the per-worker batch pretrain.batch_size / "
        rf"pretrain.num_workers = {batch} / {workers} = {per_worker}; allowed: a divisor of {per_worker}"
    )
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"pretrain.batch_size": batch, "pretrain.num_workers": workers,
                               "pretrain.micro_batch": micro})  # fmt: skip
    assert PretrainConfig(batch_size=batch, num_workers=workers, micro_batch=per_worker // 2).micro_batch
    assert PretrainConfig(batch_size=batch, num_workers=workers).micro_batch is None  # the whole batch


ENCODERS = {"mlp": (mlp, S, C), "tiny_vit": (tiny_vit, SIZE, 32)}


def two_worker_steps(job: dict) -> None:
    """A Ray Train worker of 2: its half of the batch through DDP with global negatives, in one pass and in
    micro batches of ``MICRO``; saves the losses, the DDP-averaged gradients and the indices of the gradient
    buckets DDP all-reduced to ``job["out"]``."""
    import ray.train
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    rank = ray.train.get_context().get_world_rank()
    torch.set_num_threads(1)
    half = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
    reductions = []  # the gradient buckets DDP all-reduces

    def counted(state, bucket):
        reductions.append(bucket.index())
        return default_hooks.allreduce_hook(state, bucket)

    for name, (encoder, size, dim) in ENCODERS.items():
        depth, image = inputs(size, dim)
        ddp = nn.parallel.DistributedDataParallel(contrast(encoder))
        ddp.register_comm_hook(None, counted)
        for micro in (BATCH // 2, MICRO):
            reductions.clear()
            values, grads = step(ddp, depth[half], image[half], micro)
            grads = {k.removeprefix("module."): g for k, g in grads.items()}
            torch.save((values, grads, reductions), Path(job["out"]) / f"{name}_{micro}_rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.ray
def test_micro_batches_on_two_ray_workers_equal_one_batch_in_one_pass(ray_session, tmp_path):
    import ray.train
    from ray.train.torch import TorchTrainer

    TorchTrainer(
        two_worker_steps,
        train_loop_config={"out": str(tmp_path)},
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(storage_path=str(tmp_path / "ray")),
    ).fit()
    for name, (encoder, size, dim) in ENCODERS.items():
        depth, image = inputs(size, dim)
        one_batch = step(contrast(encoder), depth, image, BATCH)  # one worker, the whole batch, one pass
        for rank in (0, 1):
            one_pass = torch.load(tmp_path / f"{name}_{BATCH // 2}_rank{rank}.pt", weights_only=True)
            cached = torch.load(tmp_path / f"{name}_{MICRO}_rank{rank}.pt", weights_only=True)
            assert_same_step(one_pass[:2], one_batch)
            assert_same_step(cached[:2], one_batch)
            assert one_pass[2] and cached[2] == one_pass[2]  # micro batches: one all-reduce of each bucket
