"""A pack (:mod:`clip2point.data.pack`) streamed to one Ray Train worker through Ray Data, epoch by epoch.

Every epoch each worker reads the pack's shards from the storage (``read_parquet`` on the pyarrow
filesystem of :mod:`clip2point.storage`: nothing is copied to the node), keeps the objects that
``DistributedSampler`` (seeded with the run's seed, ``set_epoch(epoch)``, ``drop_last``) deals to its rank,
serves each one (:func:`serve`) in Ray Data tasks and sorts them into the sampler's order. So the workers
together see every object once per epoch (up to the sampler's ``drop_last`` remainder), in a shuffle that
is new every epoch and the same on every run, and a pack gives the same samples, in the same order, as
the raw files with the same seed. A worker holds a few batches at a time, whatever the pack's size; the
sort works in partitions of :data:`SORT_PARTITION` samples, and Ray Data spills what it holds to disk when
the object store is full. The serve tasks hold the epoch's sampler order, 8 bytes per object.

A served sample: the cloud reduced to ``num_points`` as the raw files do (FPS, or the random subset of
``(seed, epoch, record)``; :func:`~clip2point.data.datasets.shapenet_points`), the render of
:func:`~clip2point.data.datasets.pretrain_view` with its stored image feature ``(C,)`` and camera.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from clip2point import storage
from clip2point.data.datasets import pretrain_view, shapenet_points
from clip2point.data.pack import Manifest, decode

SORT_PARTITION = 4096  # samples per partition of the sort into the sampler's order: bounds a task's memory
COLUMNS = ["index", "record", "label", "source", "cloud", "features", "cameras"]


@functools.lru_cache(maxsize=4)
def rank_positions(total: int, seed: int, epoch: int, rank: int, world: int) -> np.ndarray:
    """``(total,)`` int64: where each served index comes in ``rank``'s order of ``epoch`` (-1: another
    rank's, or dropped), as ``DistributedSampler(shuffle=True, seed=seed, drop_last=True)`` deals them."""
    sampler = DistributedSampler(range(total), world, rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    order = np.fromiter(iter(sampler), dtype=np.int64)
    positions = np.full(total, -1, dtype=np.int64)
    positions[order] = np.arange(len(order))
    return positions


def serve(
    rows: dict[str, np.ndarray], *, total: int, seed: int, epoch: int, rank: int, world: int,
    num_points: int, sampling: str, embed_dim: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Pack rows -> this rank's samples of ``epoch``: ``order`` (k,) int64, ``points (k, num_points, 3)``,
    ``features (k, C)``, ``azim``/``elev``/``dist`` ``(k,)`` float32, ``label``/``record`` ``(k,)`` int64."""
    positions = rank_positions(total, seed, epoch, rank, world)[rows["index"]]
    kept = np.flatnonzero(positions >= 0)
    points = np.zeros((len(kept), num_points, 3), np.float32)
    features = np.zeros((len(kept), embed_dim), np.float32)
    cameras = np.zeros((len(kept), 3), np.float32)
    for out, i in enumerate(kept):
        key = (seed, epoch, int(rows["record"][i]))
        views = decode(rows["cameras"][i], 3)
        view = pretrain_view(key, len(views))
        cloud = decode(rows["cloud"][i], 3)
        points[out] = shapenet_points(cloud, num_points, sampling, key, "train", str(rows["source"][i]))
        features[out] = decode(rows["features"][i], embed_dim)[view]
        cameras[out] = views[view]
    return {"order": positions[kept], "points": points, "features": features, "azim": cameras[:, 0],
            "elev": cameras[:, 1], "dist": cameras[:, 2], "label": rows["label"][kept],
            "record": rows["record"][kept]}  # fmt: skip


class PackStream:
    """One worker's batches of ``batch_size`` samples from the pack at ``location``: ``len()`` steps per epoch,
    :meth:`epoch` yields them as dicts of tensors (the keys of :func:`serve`)."""

    def __init__(
        self, location: str, manifest: Manifest, *, seed: int, rank: int, world: int, batch_size: int,
        num_points: int, sampling: str,
    ) -> None:  # fmt: skip
        self.location, self.manifest, self.batch_size = location, manifest, batch_size
        self.options = {"total": manifest.num_objects, "seed": seed, "rank": rank, "world": world,
                        "num_points": num_points, "sampling": sampling, "embed_dim": manifest.embed_dim}  # fmt: skip

    def __len__(self) -> int:
        o = self.options
        return (
            len(DistributedSampler(range(o["total"]), o["world"], o["rank"], drop_last=True))
            // self.batch_size
        )

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        fs, path = storage.filesystem(self.location)
        files = [f"{path}/{shard.file}" for shard in self.manifest.shards]
        data = ray.data.read_parquet(files, filesystem=fs, columns=COLUMNS)
        data = data.map_batches(serve, batch_format="numpy", fn_kwargs=self.options | {"epoch": epoch})
        count = len(self) * self.batch_size  # this rank's samples: orders 0 .. count - 1
        boundaries = list(range(SORT_PARTITION, count, SORT_PARTITION)) or [count]
        ordered = data.sort("order", boundaries=boundaries)
        yield from ordered.iter_torch_batches(batch_size=self.batch_size, drop_last=True)
