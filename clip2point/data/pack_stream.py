"""A pack (:mod:`clip2point.data.pack`) streamed to one Ray Train worker through Ray Data, all epochs at once.

A worker's stream is one Ray Data execution (``read_datasource`` of :func:`pack_windows`) for every epoch
from the first it is asked for to the run's last: starting an execution costs seconds, so it is paid once,
and the next epoch is read while this one trains. Its read tasks, one per shuffle window of
:mod:`clip2point.data.pack_order` and epoch, read that window's shards from the storage (the pyarrow
filesystem of :mod:`clip2point.storage`: nothing is copied to the node), check that each holds the indices
the manifest places there, and serve the window's objects in its order (:func:`serve_window`). Ray Data runs
them in parallel, keeps their blocks in task order and holds back when the consumer falls behind, so a
worker holds a few windows at a time whatever the pack's size. Each rank reads only its own shards; the
ranks together see every object once per epoch, in an order that is new each epoch and the same on every run.

A served sample: the cloud reduced to ``num_points`` as the raw files do (FPS, or the random subset of
``(seed, epoch, record)``; :func:`~clip2point.data.datasets.shapenet_points_batch`), the render of
:func:`~clip2point.data.datasets.pretrain_view` with its stored image feature ``(C,)`` and camera.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from clip2point import storage
from clip2point.data.datasets import pretrain_view, shapenet_points_batch
from clip2point.data.pack import Manifest, decode
from clip2point.data.pack_order import ShardOrder
from clip2point.errors import InputError

COLUMNS = ["index", "record", "label", "source", "cloud", "features", "cameras"]


@dataclass(frozen=True)
class Serving:
    """What a read task needs: the pack (``location``, shard ``files``), the rank's :class:`ShardOrder`,
    the samples each epoch serves (``per_epoch``: whole batches) and how a sample is served."""

    location: str
    files: tuple[str, ...]
    order: ShardOrder
    per_epoch: int
    num_points: int
    sampling: str
    embed_dim: int

    def served(self, epoch: int) -> list[int]:
        """How many objects each window of ``epoch`` serves: all, until ``per_epoch`` are reached."""
        counts, left = [], self.per_epoch
        for _, order in self.order.windows(epoch):
            counts.append(min(len(order), left))
            left -= counts[-1]
        return counts

    def shard(self, shard: int) -> pa.Table:
        """Shard ``shard``'s rows, checked to hold the indices the manifest places there."""
        fs, path = storage.filesystem(self.location)
        where = storage.join(self.location, self.files[shard])
        with storage.reported(where, "read the pack shard"):
            try:
                table = pq.read_table(f"{path}/{self.files[shard]}", filesystem=fs, columns=COLUMNS)
            except pa.ArrowInvalid as exc:
                raise InputError(f"pack shard {where} cannot be read ({exc}): repack") from exc
        held = self.order.held(shard)
        if not np.array_equal(table.column("index").to_numpy(), held):
            raise InputError(f"pack shard {where} does not hold the {len(held)} objects its manifest places "
                             f"there (indices {held[:3].tolist()} ...): repack")  # fmt: skip
        return table


def serve_window(spec: Serving, epoch: int, window: int) -> list[pa.Table]:
    """Window ``window`` of ``epoch``, served: one block of ``points (k, num_points, 3)``, ``features
    (k, C)``, ``azim``/``elev``/``dist`` ``(k,)`` float32, ``label``/``record`` ``(k,)`` int64."""
    from ray.data.block import BlockAccessor

    pieces, order = spec.order.windows(epoch)[window]
    columns: dict[str, list] = {name: [] for name in COLUMNS[1:]}
    for piece in pieces:  # the pieces' rows, concatenated: blobs as zero-copy buffers
        rows = spec.shard(piece.shard).slice(piece.start, piece.stop - piece.start)
        for name, values in columns.items():
            blobs = name in ("cloud", "features", "cameras")
            values.extend(v.as_buffer() if blobs else v.as_py() for v in rows.column(name).combine_chunks())
    taken = order[: spec.served(epoch)[window]].tolist()
    records, labels, sources, clouds, features, cameras = (
        [values[i] for i in taken] for values in columns.values()
    )
    keys = [(spec.order.seed, epoch, r) for r in records]
    cameras = [decode(c, 3) for c in cameras]
    views = [pretrain_view(key, len(c)) for key, c in zip(keys, cameras, strict=True)]
    features = [decode(f, spec.embed_dim) for f in features]
    clouds = [decode(c, 3) for c in clouds]
    points = shapenet_points_batch(clouds, spec.num_points, spec.sampling, keys, "train", sources)
    camera = np.stack([c[v] for c, v in zip(cameras, views, strict=True)]).astype(np.float32)
    batch = {"points": points, "features": np.stack([f[v] for f, v in zip(features, views, strict=True)]),
             "azim": camera[:, 0], "elev": camera[:, 1], "dist": camera[:, 2],
             "label": np.array(labels, np.int64), "record": np.array(records, np.int64)}  # fmt: skip
    return [BlockAccessor.batch_to_block(batch)]


def pack_windows(spec: Serving, epochs: range):
    """The Ray Data source (a ``ray.data.Datasource``) of a rank's windows of ``epochs``: one read task per
    window and epoch, in order."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    size = 4 * (3 * spec.num_points + spec.embed_dim + 7)  # bytes of a served sample

    class PackWindows(Datasource):
        def get_name(self) -> str:
            return "PackWindows"

        def estimate_inmemory_data_size(self) -> int:
            return len(epochs) * spec.per_epoch * size

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
            return [
                ReadTask(functools.partial(serve_window, spec, epoch, window),
                         BlockMetadata(num_rows=count, size_bytes=count * size, exec_stats=None, input_files=None))
                for epoch in epochs for window, count in enumerate(spec.served(epoch)) if count
            ]  # fmt: skip

    return PackWindows()


class PackStream:
    """One worker's batches of ``batch_size`` samples from the pack at ``location``: ``len()`` steps per epoch,
    :meth:`epoch` yields them as dicts of tensors (the keys of :func:`serve_window`). One Ray Data execution
    serves epoch after epoch up to ``last_epoch`` (None: the epoch asked for); asking for another epoch than
    the next one, or leaving an epoch unfinished, starts a new one."""

    def __init__(
        self, location: str, manifest: Manifest, *, seed: int, rank: int, world: int, batch_size: int,
        num_points: int, sampling: str, last_epoch: int | None = None,
    ) -> None:  # fmt: skip
        order = ShardOrder(tuple(s.objects for s in manifest.shards), seed, rank, world)
        self.batch_size, self.last_epoch = batch_size, last_epoch
        self.spec = Serving(location, tuple(s.file for s in manifest.shards), order,
                            len(order) // batch_size * batch_size, num_points, sampling, manifest.embed_dim)  # fmt: skip
        self.next_epoch: int | None = None
        self.batches: Iterator[dict[str, torch.Tensor]] | None = None

    def __len__(self) -> int:
        return self.spec.per_epoch // self.batch_size

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        if self.next_epoch != epoch:
            self.close()
            self.batches = self.start(epoch)
        batches, self.next_epoch = self.batches, None  # until this epoch is done
        for _ in range(len(self)):
            yield next(batches)
        self.next_epoch = epoch + 1

    def start(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of epochs ``epoch`` .. ``last_epoch``, one execution."""
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        epochs = range(epoch, max(epoch, self.last_epoch or epoch) + 1)
        data = ray.data.read_datasource(pack_windows(self.spec, epochs))
        return iter(data.iter_torch_batches(batch_size=self.batch_size))

    def close(self) -> None:
        """End the running execution (if any)."""
        if self.batches is not None:
            self.batches.close()
        self.batches = self.next_epoch = None
