"""A pack's streamed order: every object once per epoch over the ranks, new each epoch, the same from the seed;
one Ray Data execution over several epochs serves what fresh ones serve, exactly the raw files' samples."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from clip2point.data import ShapeNet55Pretrain
from clip2point.data.pack import MANIFEST, read_manifest, shard_name
from clip2point.data.pack_order import SHARD_STREAM, STORED_STREAM, WINDOW, WINDOW_STREAM, ShardOrder
from clip2point.data.pack_stream import PackStream
from clip2point.engine.pack import pack_dataset
from clip2point.errors import InputError
from tests.engine.pretrain_fixtures import tiny_config_for


def test_every_object_once_per_epoch_in_a_new_order_from_the_seed():
    sizes = (300,) * 15 + (101,)  # 4,601 objects: one sits out of each epoch on 2 ranks
    orders = {
        (epoch, rank): list(ShardOrder(sizes, 5, rank, 2).windows(epoch))
        for epoch in (1, 2)
        for rank in (0, 1)
    }
    for epoch in (1, 2):
        seen = []
        for rank in (0, 1):
            order = ShardOrder(sizes, 5, rank, 2)
            order.set_epoch(epoch)
            indices = list(order)
            assert len(indices) == len(order) == 2300
            again = ShardOrder(sizes, 5, rank, 2)
            again.set_epoch(epoch)
            assert indices == list(again)  # the same from the seed
            windows = order.windows(epoch)
            assert len(windows) >= 2 and all(len(o) >= WINDOW for _, o in windows[:-1])
            assert (
                len({p.shard for pieces, _ in windows for p in pieces}) <= 2300 // 300 + 2
            )  # its own shards
            seen += indices
        counts = Counter(seen)
        assert len(counts) == 4600 and set(counts.values()) == {1}
    assert orders[1, 0] != orders[2, 0]

    # the documented definition, by hand, for 1 rank over shards of 2 and 3 objects (one window)
    order = ShardOrder((2, 3), 7, 0, 1)
    order.set_epoch(4)
    stored = np.random.default_rng(STORED_STREAM).permutation(5)  # shards: stored[:2], stored[2:]
    shards = np.random.default_rng((7, 4, SHARD_STREAM)).permutation(2)
    sequence = np.concatenate([stored[:2] if s == 0 else stored[2:] for s in shards])
    assert list(order) == sequence[np.random.default_rng((7, 4, 0, 0, WINDOW_STREAM)).permutation(5)].tolist()
    assert list(ShardOrder.blocks(5, 2, 7, 0, 1).sizes) == [2, 2, 1]


@pytest.mark.ray
def test_one_execution_over_epochs_serves_the_raw_files_samples(ray_session, tmp_path):
    config = tiny_config_for(tmp_path, **{"pretrain.sampling": "random"})
    pack = tmp_path / "pack"
    pack_dataset(config, str(pack), shard_size=5, log=lambda _: None)  # shards of 5, 5, 5, 1 objects
    manifest = read_manifest(str(pack))
    options = {"seed": config.seed, "world": 2, "batch_size": 3, "num_points": 64, "sampling": "random"}
    raw = ShapeNet55Pretrain(config.data.root, "train", num_points=64, seed=config.seed, sampling="random")
    for rank in (0, 1):
        long = PackStream(str(pack), manifest, rank=rank, last_epoch=2, **options)
        assert len(long) == 2  # 8 objects per rank, whole batches of 3
        for epoch in (1, 2):
            got = list(long.epoch(epoch))
            if epoch == 2:  # the long execution's second epoch == a fresh execution's
                fresh = list(PackStream(str(pack), manifest, rank=rank, **options).epoch(epoch))
                for batch, again in zip(got, fresh, strict=True):
                    assert batch.keys() == again.keys()
                    assert all(np.array_equal(batch[k], again[k]) for k in batch)
            order = ShardOrder.blocks(16, 5, config.seed, rank, 2)
            order.set_epoch(epoch)
            raw.set_epoch(epoch)
            want = [raw[i] for i in list(order)[:6]]
            points = np.concatenate([b["points"].numpy() for b in got])
            np.testing.assert_array_equal(points, np.stack([w["points"] for w in want]))
            for key in ("azim", "elev", "dist", "label"):
                np.testing.assert_array_equal(
                    np.concatenate([b[key].numpy() for b in got]), np.array([float(w[key]) for w in want])
                )
        long.close()

    manifest_file = pack / MANIFEST
    raw_manifest = json.loads(manifest_file.read_text())
    first, second = (pack / shard_name(i) for i in (0, 1))
    first_bytes, second_bytes = first.read_bytes(), second.read_bytes()
    first.write_bytes(second_bytes)  # shards 0 and 1 swapped, the manifest made to agree on the sizes
    second.write_bytes(first_bytes)
    shards = raw_manifest["shards"]
    shards[0]["bytes"], shards[1]["bytes"] = len(second_bytes), len(first_bytes)
    manifest_file.write_text(json.dumps(raw_manifest))
    stream = PackStream(str(pack), read_manifest(str(pack)), rank=0, **options | {"world": 1})
    with pytest.raises(
        InputError, match=rf"pack shard {pack}/shard-0000[01].parquet does not hold the 5 objects"
    ):
        list(stream.epoch(1))
