"""Pre-training step maths without Ray: global negatives across 2 gloo processes equal one process on the
whole batch (loss and gradients), gradient reaches only the depth encoder and s, view-pair rendering, and
a step that never makes the host wait for the device (meta tensors, :mod:`tests.host_sync`)."""

from __future__ import annotations

import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from clip2point.config import PretrainConfig
from clip2point.engine.grad_cache import contrastive_backward
from clip2point.engine.optim import build_optimizer
from clip2point.engine.pretrain_step import DepthImageContrast, distance_factors, loss_terms, render_pair
from clip2point.models import FrozenEncoder, PretrainObjective
from clip2point.models.losses import PretrainLoss
from clip2point.render import TABLE5_SETTINGS, DepthRenderer, official_views
from tests.host_sync import HostSync, no_host_sync
from tests.tiny_clip import SIZE, random_images

BATCH, C, S = 8, 16, 4
MODES = (True, False)


def make_model(global_negatives: bool, intra: bool = True) -> DepthImageContrast:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * S * S, C))
    objective = PretrainObjective(intra=intra)
    if intra:
        with torch.no_grad():
            objective.s.fill_(1.3)  # s != 1, so the balance term's gradient is not trivial
    return DepthImageContrast(encoder, objective, global_negatives)


def batch_data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 2, 3, S, S, generator=g), torch.randn(BATCH, C, generator=g)


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def shard_worker(rank: int, port: int, queue) -> None:
    """Rank ``rank`` of 2: its half of the batch through DDP, for global and per-worker negatives."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    warnings.simplefilter("error", FutureWarning)  # e.g. a deprecated collective: each worker printed one
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        depth, image = batch_data()
        half = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
        for global_negatives in MODES:
            model = make_model(global_negatives)
            ddp = nn.parallel.DistributedDataParallel(model)  # kept alive through backward (its hooks)
            loss = ddp(depth[half], image[half])
            loss.total.backward()
            shard = {k: g.tolist() for k, g in grads(model).items()}  # by value, not shared memory
            queue.put((global_negatives, rank, loss.total.item(), shard))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_shards() -> dict[bool, list]:
    """{global_negatives: [(rank, loss, DDP-averaged grads) for rank 0, 1]} from 2 gloo processes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=shard_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in range(4)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return {mode: sorted(r[1:] for r in results if r[0] == mode) for mode in (True, False)}


@pytest.mark.slow
def test_global_negatives_on_two_shards_equal_one_batch(two_shards):
    model = make_model(global_negatives=True)
    depth, image = batch_data()
    loss = model(depth, image)
    loss.total.backward()
    reference = grads(model)
    for rank, value, shard_grads in two_shards[True]:
        assert value == pytest.approx(loss.total.item(), rel=1e-5), rank
        for name, grad in reference.items():  # DDP-averaged gradients == the one-batch gradients
            torch.testing.assert_close(torch.tensor(shard_grads[name]), grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_per_worker_negatives_average_the_shard_losses(two_shards):
    model = make_model(global_negatives=False)
    depth, image = batch_data()
    halves = [model(depth[i : i + BATCH // 2], image[i : i + BATCH // 2]) for i in (0, BATCH // 2)]
    mean = (halves[0].total + halves[1].total) / 2
    mean.backward()
    reference = grads(model)
    full = make_model(global_negatives=False)(depth, image).total.item()
    results = two_shards[False]
    assert [v for _, v, _ in results] == pytest.approx([h.total.item() for h in halves], rel=1e-5)
    assert abs(results[0][1] - full) > 1e-3  # not the global-batch loss
    for name, grad in reference.items():
        torch.testing.assert_close(torch.tensor(results[0][2][name]), grad, rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_reaches_only_depth_encoder_and_s(tiny_bundle):
    image_encoder = tiny_bundle.image_encoder()
    model = DepthImageContrast(tiny_bundle.depth_encoder(), PretrainObjective(intra=True))
    images = random_images(4, seed=2)
    depth = torch.stack([random_images(4, seed=3), random_images(4, seed=4)], dim=1)
    loss = model(depth, image_encoder(images))
    loss.total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.depth_encoder.parameters())
    assert model.objective.s.grad is not None and model.objective.s.grad != 0
    assert all(p.grad is None and not p.requires_grad for p in image_encoder.parameters())
    assert all(p.grad is None for p in tiny_bundle.visual.parameters())  # the CLIP the copy came from
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        *(f"depth_encoder.{n}" for n, _ in model.depth_encoder.named_parameters()),
        "objective.s",
    }


def test_without_intra_contrasts_one_undistorted_view():
    model = make_model(global_negatives=True, intra=False)
    depth, image = batch_data()
    loss = model(depth[:, :1], image)
    assert loss.intra is None and loss.total is loss.cross
    from clip2point.models import nt_xent

    expected = nt_xent(model.depth_encoder(depth[:, 0]), image)
    assert loss.total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_distance_factors_do_not_depend_on_the_worker_count():
    one = distance_factors(12, 0, 1, torch.Generator().manual_seed(5))
    shards = [distance_factors(12, r, 3, torch.Generator().manual_seed(5)) for r in range(3)]
    for side in (0, 1):
        assert one[side].shape == (12,)
        for r in range(3):  # rank r holds global rows r, r + 3, ... (DistributedSampler's deal)
            torch.testing.assert_close(shards[r][side], one[side][r::3])
        assert ((one[side] >= 0.9) & (one[side] <= 1.1)).all()
    assert not torch.equal(one[0], one[1])  # two independent draws


def test_render_pair_renders_each_sample_at_its_own_jittered_view():
    renderer = DepthRenderer(image_size=SIZE)
    points = torch.rand(3, 50, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    azim, elev, dist_ = torch.tensor([0.0, 90.0, -45.0]), torch.tensor([0.0, 0.0, 225.0]), torch.ones(3)
    f1, f2 = torch.tensor([0.9, 1.0, 1.1]), torch.tensor([1.05, 0.95, 1.0])
    pair = render_pair(renderer, points, azim, elev, dist_, (f1, f2))
    assert pair.shape == (3, 2, 3, SIZE, SIZE)
    for i in range(3):
        for k, f in enumerate((f1, f2)):
            one = renderer(points[i : i + 1], azim[i : i + 1], elev[i : i + 1], dist_[i : i + 1] * f[i])
            torch.testing.assert_close(pair[i, k], one[0, 0])
    single = render_pair(renderer, points, azim, elev, dist_, None)
    assert single.shape == (3, 1, 3, SIZE, SIZE)
    torch.testing.assert_close(single, renderer(points, azim[:, None], elev[:, None], dist_[:, None]))


def test_a_training_step_makes_no_host_sync(tiny_bundle):
    """The worker's step (render the pair, frozen image encoder, depth encoder + loss, backward in one pass
    and in micro batches, LAMB, schedule, the loss sums) on meta tensors under no_host_sync: on a GPU the host never waits for the
    device within a step, so it queues the next step while the device computes."""
    meta = torch.device("meta")
    model = DepthImageContrast(tiny_bundle.depth_encoder(), PretrainObjective()).to(meta)  # global negatives
    image_encoder = FrozenEncoder(tiny_bundle.depth_encoder()).to(meta)  # a copy: the session's CLIP stays
    optimiser = build_optimizer(PretrainConfig(), model.parameters())  # the default: the authors' LAMB
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimiser, T_0=4)
    renderer = DepthRenderer(SIZE, norm=tiny_bundle.norm)
    generator = torch.Generator().manual_seed(0)
    points = (torch.rand(4, 50, 3, generator=generator) - 0.5).to(meta)  # as from a pinned batch
    azim, elev, dist_ = (v[torch.tensor([0, 3, 5, 9])].to(meta) for v in official_views(10))
    image = torch.empty(4, 3, SIZE, SIZE, device=meta)
    sums = torch.zeros(3, dtype=torch.float64, device=meta)
    with no_host_sync():
        for micro_batch in (4, 2):  # one pass, then cached gradients in micro batches
            factors = distance_factors(4, 0, 1, generator)  # drawn on the CPU, as the worker does
            with torch.no_grad():
                depth = render_pair(renderer, points, azim, elev, dist_, factors)
            image_features = image_encoder(image)
            optimiser.zero_grad(set_to_none=True)
            loss = contrastive_backward(model, depth, image_features, micro_batch)
            optimiser.step()
            scheduler.step()
            sums += loss_terms(loss)
    assert depth.shape == (4, 2, 3, SIZE, SIZE) and sums.shape == (3,) and sums.device == meta


def test_each_kind_of_host_sync_is_caught():
    """The detector of the test above sees every way the host can wait for a device, the renderer's
    value checks included (why render_pair skips them)."""
    t = torch.ones(4, 3, device="meta")
    renderer, views = DepthRenderer(SIZE), [v.to("meta") for v in official_views(6)]
    syncs = {
        "item": lambda: t.sum().item(),
        "bool": lambda: bool(t[0, 0] > 0),
        "to host": lambda: t.cpu(),
        "tolist": lambda: t.tolist(),
        "host data on the device": lambda: torch.tensor([1.0, 2.0], device="meta"),
        "new_tensor": lambda: t.new_tensor(float("inf")),
        "blocking copy": lambda: torch.ones(2).to("meta"),
        "nonzero": lambda: t.nonzero(),
        "boolean mask": lambda: t[t > 0],
        "checked render": lambda: renderer(t[None], *views),
    }
    for name, call in syncs.items():
        with no_host_sync(), pytest.raises(HostSync):
            call()
            pytest.fail(f"{name} not caught")
    with no_host_sync():  # what the step does instead; every footprint and depth mode
        torch.tensor([1.0, 2.0]).to("meta", non_blocking=True)
        for settings in TABLE5_SETTINGS:
            DepthRenderer(SIZE, settings)(t[None], *views, check_values=False)


def test_loss_terms_are_the_step_losses_in_float64_on_their_device():
    total, intra, cross = torch.tensor(2.5), torch.tensor(1.25), torch.tensor(0.75)
    terms = loss_terms(PretrainLoss(total, intra, cross))
    assert terms.dtype == torch.float64 and terms.tolist() == [2.5, 1.25, 0.75]
    assert loss_terms(PretrainLoss(cross, None, cross)).tolist() == [0.75, 0.0, 0.75]
    # an epoch: the per-step sums divided by the step count, as the worker reads them once
    steps = [PretrainLoss(torch.tensor(t), torch.tensor(i), torch.tensor(c)) for t, i, c in
             ((3.0, 1.0, 2.0), (2.0, 0.5, 1.0), (1.0, 0.25, 0.5))]  # fmt: skip
    sums = sum(loss_terms(s) for s in steps)
    assert (sums / len(steps)).tolist() == [2.0, 0.5833333333333334, 3.5 / 3]
    weight = nn.Parameter(torch.tensor(2.0))
    assert not loss_terms(PretrainLoss(weight * 1.0, None, weight * 1.0)).requires_grad
