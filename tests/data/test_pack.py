"""Packing pre-training data into shards with Ray tasks: exact contents, resume after a failure, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from clip2point.data import ShapeNet55Pretrain, read_image
from clip2point.data.pack import FORMAT, MANIFEST, PENDING, decode, read_manifest, shard_name
from clip2point.data.pack_order import stored_order
from clip2point.engine.pack import pack_dataset
from clip2point.errors import InputError
from clip2point.models import load_clip
from clip2point.render import official_views
from tests.engine.pretrain_fixtures import tiny_config_for

pytestmark = pytest.mark.ray


def quiet(_: str) -> None:
    pass


def rows_of(pack: Path) -> dict[int, dict]:
    table = {}
    for shard in sorted(pack.glob("shard-*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            table[row["index"]] = row
    return table


def test_pack_holds_clouds_features_cameras_and_resumes_after_a_failure(ray_session, tmp_path):
    config = tiny_config_for(tmp_path)
    root, out = Path(config.data.root), tmp_path / "pack"
    bad = root / "ShapeNet55" / "shapenet_pc" / "02691156-m12.npy"  # object 12
    bad_shard = shard_name(int(np.flatnonzero(stored_order(16) == 12)[0]) // 4)  # its shard of 4
    good = bad.read_bytes()
    bad.write_bytes(b"not a cloud")
    with pytest.raises(InputError, match="cannot read .npy file .*02691156-m12.npy"):
        pack_dataset(config, str(out), shard_size=4, log=quiet)
    assert not (out / MANIFEST).exists() and (out / PENDING).exists()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    assert kept and bad_shard not in kept and not list(out.glob(".*tmp"))  # nothing half-written
    bad.write_bytes(good)
    lines = []
    manifest = pack_dataset(config, str(out), shard_size=4, log=lines.append)
    assert f"{len(kept)} already packed" in lines[0]
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept  # finished shards not redone
    assert not (out / PENDING).exists() and read_manifest(str(out)) == manifest
    assert manifest.num_objects == 16 and [s.objects for s in manifest.shards] == [4, 4, 4, 4]
    bundle = load_clip(config.model.name, config.model.pretrained)
    assert manifest.encoder.backbone == config.model.name and manifest.encoder.image_size == bundle.image_size
    assert manifest.encoder.precision == "float32" and manifest.embed_dim == bundle.embed_dim

    raw = ShapeNet55Pretrain(root, "train", num_points=64)
    rows = rows_of(out)
    assert sorted(rows) == list(range(16))
    azim, elev, dist = official_views(10)
    encoder = bundle.image_encoder()
    for index in (0, 12):
        row, record = rows[index], int(raw.records[index])
        assert row["record"] == record and row["label"] == int(raw.labels[index])
        np.testing.assert_array_equal(decode(row["cloud"], 3), np.load(raw.sources[record]))
        cameras = decode(row["cameras"], 3)
        np.testing.assert_array_equal(cameras, torch.stack([azim, elev, dist], 1).numpy())
        synset, model = raw.model_ids[record]
        images = [read_image(root / "rendering" / f"{synset}_{model}" / f"{v}.png", bundle.image_size,
                             bundle.norm) for v in range(10)]  # fmt: skip
        want = encoder(torch.stack(images)).numpy()
        np.testing.assert_allclose(decode(row["features"], bundle.embed_dim), want, rtol=0, atol=1e-6)

    with pytest.raises(InputError, match="already holds a finished pack"):
        pack_dataset(config, str(out), shard_size=4, log=quiet)


def test_unfinished_pack_with_other_settings_is_refused(ray_session, tmp_path):
    config = tiny_config_for(tmp_path)
    out = tmp_path / "pack"
    out.mkdir()
    (out / PENDING).write_text(json.dumps({"shard_size": 3}))
    with pytest.raises(
        InputError, match=r"pack.json: an unfinished pack with other settings \(encoder, format, layout"
    ):
        pack_dataset(config, str(out), shard_size=4, log=quiet)


def write_generic(root: Path, cameras: int = 3, renders: int = 3) -> Path:
    from PIL import Image

    folder = root / "mug" / "a"
    folder.mkdir(parents=True)
    np.save(folder / "cloud.npy", np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))
    for i in range(renders):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    entries = [{"azim": 30.0 * i, "elev": 10.0, "dist": 1.5} for i in range(cameras)]
    (folder / "cameras.json").write_text(json.dumps(entries))
    return folder


def test_generic_layout_packs_its_cameras(ray_session, tmp_path):
    config = tiny_config_for(tmp_path)
    write_generic(tmp_path / "renders")
    manifest = pack_dataset(config, str(tmp_path / "pack"), layout="generic", root=str(tmp_path / "renders"),
                            log=quiet)  # fmt: skip
    assert manifest.class_names == ("mug",) and manifest.num_objects == 1
    row = rows_of(tmp_path / "pack")[0]
    np.testing.assert_array_equal(decode(row["cameras"], 3), [[0, 10, 1.5], [30, 10, 1.5], [60, 10, 1.5]])
    assert decode(row["features"], manifest.embed_dim).shape == (3, manifest.embed_dim)


def test_bad_input_is_named_and_nothing_is_written(tmp_path):
    config = tiny_config_for(tmp_path)
    folder = write_generic(tmp_path / "renders", cameras=2)
    out = tmp_path / "pack"
    with pytest.raises(InputError, match=rf"{folder / 'cameras.json'} lists 2 cameras for 3 renders"):
        pack_dataset(config, str(out), layout="generic", root=str(tmp_path / "renders"), log=quiet)
    (tmp_path / "empty" / "mug").mkdir(parents=True)
    with pytest.raises(InputError, match="nothing to pack in .*empty: no objects"):
        pack_dataset(config, str(out), layout="generic", root=str(tmp_path / "empty"), log=quiet)
    assert not out.exists()


def test_reading_a_bad_pack_names_the_file(ray_session, tmp_path):
    config = tiny_config_for(tmp_path)
    out = tmp_path / "pack"
    with pytest.raises(InputError, match=f"no pack at {out}: .*manifest.json not found, not a pack"):
        read_manifest(str(out))
    pack_dataset(config, str(out), shard_size=8, log=quiet)
    manifest_file = out / MANIFEST
    text = manifest_file.read_text()

    shard = out / shard_name(1)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        InputError, match=f"pack shard {shard} has {len(data) // 2} bytes, .* records {len(data)}"
    ):
        read_manifest(str(out))
    shard.write_bytes(data)

    manifest_file.write_text(text.replace(f'"format": {FORMAT}', f'"format": {FORMAT + 1}'))
    with pytest.raises(
        InputError, match=f"{manifest_file} has pack format {FORMAT + 1}; .* reads format {FORMAT}: upgrade"
    ):
        read_manifest(str(out))
    manifest_file.write_text(text.replace(f'"format": {FORMAT}', '"format": 1'))  # shards in source order
    with pytest.raises(
        InputError, match=f"{manifest_file} has pack format 1; .* reads format {FORMAT}: repack"
    ):
        read_manifest(str(out))
    raw = json.loads(text)
    manifest_file.write_text(json.dumps(raw | {"num_objects": 0, "shards": []}))
    with pytest.raises(InputError, match=f"{manifest_file}: the pack holds 0 objects"):
        read_manifest(str(out))
    manifest_file.write_text(text)
    assert read_manifest(str(out)).num_objects == 16
    os.remove(out / shard_name(0))
    with pytest.raises(InputError, match=f"pack shard {out / shard_name(0)} is missing"):
        read_manifest(str(out))
