"""The order in which a pack's objects reach the ranks each epoch: shards shuffled, then shuffled in windows.

A pack stores its ``N`` objects in a fixed mixed order (:func:`stored_order`), shard after shard, so that
every shard holds a sample of all classes whatever the source's order. Epoch ``e`` of a run with seed ``s``
and ``world`` ranks, over shards of ``sizes[k]`` objects:

1. the shards in the order ``numpy.random.default_rng((s, e, SHARD_STREAM)).permutation(len(sizes))``, each
   with its objects in stored order: one sequence of all ``N`` objects;
2. rank ``r`` takes the positions ``r * n .. (r + 1) * n - 1`` of it, ``n = N // world`` (the last
   ``N % world`` objects of the epoch sit out, as ``DistributedSampler(drop_last=True)``'s remainder);
3. that slice is cut where its shards change into pieces; consecutive pieces are grouped into windows of
   at least :data:`WINDOW` objects (the last one may hold fewer), and window ``w`` is served in the order
   ``numpy.random.default_rng((s, e, r, w, WINDOW_STREAM)).permutation(size)``.

So every rank reads only its own shards (whole shards but at most two shared with a neighbour rank), a
window's objects are all a reader holds, the ranks together hold every object once per epoch, and the
order is new each epoch and the same on every run. :class:`ShardOrder` is also a ``Sampler``: the raw
files follow a pack's order with it (``pretrain.shuffle_shard_size``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler

WINDOW = 1024  # objects at least in a shuffle window (the last one of an epoch may hold fewer)
SHARD_STREAM, WINDOW_STREAM, STORED_STREAM = 11, 12, 13  # seed words of the shard, window, stored orders


@functools.lru_cache(maxsize=2)
def stored_order(total: int) -> np.ndarray:
    """``(total,)`` int64, read-only: the indices of a pack's objects in the order its shards store them,
    ``numpy.random.default_rng(STORED_STREAM).permutation(total)``."""
    order = np.random.default_rng(STORED_STREAM).permutation(total)
    order.flags.writeable = False
    return order


@dataclass(frozen=True)
class Piece:
    """Rows ``start .. stop - 1`` of shard ``shard``."""

    shard: int
    start: int
    stop: int


@functools.lru_cache(maxsize=8)
def rank_windows(
    sizes: tuple[int, ...], seed: int, epoch: int, rank: int, world: int
) -> tuple[tuple[tuple[Piece, ...], np.ndarray], ...]:
    """``rank``'s windows of ``epoch``: each its pieces and the order ``(size,)`` int64 in which it serves
    the pieces' objects (positions into their concatenation)."""
    n = sum(sizes) // world
    shards = np.random.default_rng((seed, epoch, SHARD_STREAM)).permutation(len(sizes))
    pieces, position, lo, hi = [], 0, rank * n, (rank + 1) * n  # this rank's positions of the epoch
    for shard in shards.tolist():
        start, stop = max(lo - position, 0), min(hi - position, sizes[shard])
        if start < stop:
            pieces.append(Piece(shard, start, stop))
        position += sizes[shard]
    windows, group, count = [], [], 0
    for piece in pieces:
        group.append(piece)
        count += piece.stop - piece.start
        if count >= WINDOW or piece is pieces[-1]:
            rng = np.random.default_rng((seed, epoch, rank, len(windows), WINDOW_STREAM))
            windows.append((tuple(group), rng.permutation(count)))
            group, count = [], 0
    return tuple(windows)


class ShardOrder(Sampler[int]):
    """One rank's objects of a pack with shards of ``sizes`` objects (see the module docstring): ``len()``
    objects per epoch, :meth:`set_epoch` as ``DistributedSampler``'s."""

    def __init__(self, sizes: tuple[int, ...], seed: int, rank: int, world: int) -> None:
        self.sizes, self.seed, self.rank, self.world, self.epoch = tuple(sizes), seed, rank, world, 0
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    @classmethod
    def blocks(cls, total: int, size: int, seed: int, rank: int, world: int) -> ShardOrder:
        """The order of a pack of ``total`` objects cut into shards of ``size`` (the last one: the rest)."""
        return cls((size,) * (total // size) + ((total % size,) if total % size else ()), seed, rank, world)

    def __len__(self) -> int:
        return sum(self.sizes) // self.world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def windows(self, epoch: int) -> tuple[tuple[tuple[Piece, ...], np.ndarray], ...]:
        return rank_windows(self.sizes, self.seed, epoch, self.rank, self.world)

    def held(self, shard: int) -> np.ndarray:
        """The indices of the objects shard ``shard`` holds, in row order (the stored order is computed
        where it is needed, not carried by a pickled order: 8 bytes per object)."""
        return stored_order(int(self.offsets[-1]))[self.offsets[shard] : self.offsets[shard + 1]]

    def indices(self, pieces: tuple[Piece, ...]) -> np.ndarray:
        """``(size,)`` int64: the pack indices of ``pieces``' objects, in their concatenation's order."""
        return np.concatenate([self.held(p.shard)[p.start : p.stop] for p in pieces])

    def __iter__(self) -> Iterator[int]:
        for pieces, order in self.windows(self.epoch):
            yield from self.indices(pieces)[order].tolist()
