"""Where a pre-training worker's batches come from: the raw files or a pack (``pretrain.data``).

Both sources give ``len()`` steps per epoch and :meth:`epoch` batches of dicts with ``points (b, N, 3)``,
``azim``/``elev``/``dist`` ``(b,)`` and either ``image (b, 3, S, S)`` (raw files: the render, for the
frozen image encoder) or ``features (b, C)`` (a pack: the encoder's stored output). A pack deals each rank
its objects in :class:`~clip2point.data.pack_order.ShardOrder`; the raw files by ``DistributedSampler`` or,
with ``pretrain.shuffle_shard_size``, in the order of a pack with shards of that size: then both give the
same samples in the same order for the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler

from clip2point.data.pack import read_manifest
from clip2point.data.pack_order import ShardOrder
from clip2point.data.pack_stream import PackStream
from clip2point.engine.context import Experiment
from clip2point.registry import PRETRAIN_PAIRS


class FileBatches:
    """The ShapeNet55 pre-training pairs from ``data.root`` (PNG renders decoded per sample) through a
    ``DataLoader`` with ``pretrain.loader_workers`` processes, in ``DistributedSampler``'s order or a pack's
    (``pretrain.shuffle_shard_size``)."""

    def __init__(self, experiment: Experiment, rank: int, world: int, batch_size: int):
        pre = experiment.config.pretrain
        self.dataset = experiment.dataset("train", PRETRAIN_PAIRS)
        seed, shard = experiment.config.seed, pre.shuffle_shard_size
        self.sampler = (
            DistributedSampler(self.dataset, world, rank, shuffle=True, seed=seed, drop_last=True)
            if shard is None
            else ShardOrder.blocks(len(self.dataset), shard, seed, rank, world)
        )
        self.loader = DataLoader(
            self.dataset, batch_size=batch_size, sampler=self.sampler, drop_last=True,
            num_workers=pre.loader_workers, pin_memory=experiment.device.type == "cuda",
        )  # fmt: skip
        self.size = len(self.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        return iter(self.loader)


class PackBatches(PackStream):
    """The pack at ``pretrain.data``, streamed from its storage (:mod:`clip2point.data.pack_stream`)."""

    def __init__(self, experiment: Experiment, rank: int, world: int, batch_size: int):
        config = experiment.config
        manifest = read_manifest(config.pretrain.data)
        super().__init__(
            config.pretrain.data, manifest, seed=config.seed, rank=rank, world=world, batch_size=batch_size,
            num_points=config.data.num_points, sampling=config.pretrain.sampling,
            last_epoch=config.pretrain.epochs,
        )  # fmt: skip
        self.size = manifest.num_objects


def pretrain_batches(
    experiment: Experiment, rank: int, world: int, batch_size: int
) -> FileBatches | PackBatches:
    """This rank's batch source of ``batch_size`` samples: a pack when ``pretrain.data`` names one."""
    source = PackBatches if experiment.config.pretrain.data else FileBatches
    return source(experiment, rank, world, batch_size)
