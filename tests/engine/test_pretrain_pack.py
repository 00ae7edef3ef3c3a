"""Pre-training from a pack streamed through Ray Data: the same losses and zero-shot accuracy as the raw
files for the same seed and order (fp32, CPU), and a pack of another backbone or image size refused before anything
starts."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow import MlflowClient

from clip2point.data.pack import MANIFEST
from clip2point.engine.pack import pack_dataset
from clip2point.engine.pretrain import run_pretraining
from clip2point.errors import ConfigError
from clip2point.schema import with_overrides
from tests.engine.pretrain_fixtures import tiny_config_for
from tests.tiny_clip import write_tiny_clip

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_packed_pretraining_equals_the_raw_files(ray_session, tmp_path):
    config = tiny_config_for(tmp_path, **{"precision": "fp32", "pretrain.sampling": "random"})
    pack = tmp_path / "pack"
    pack_dataset(config, str(pack), shard_size=5, log=lambda _: None)
    raw = run_pretraining(  # the raw files in the pack's order
        with_overrides(config, {"pretrain.shuffle_shard_size": 5}), "raw", log=lambda _: None
    )
    packed = run_pretraining(
        with_overrides(config, {"pretrain.data": str(pack)}), "packed", log=lambda _: None
    )
    client = MlflowClient(config.tracking.uri)
    for key in ("loss_total", "loss_intra", "loss_cross", "s"):
        got, want = history(client, packed.run_id, key), history(client, raw.run_id, key)
        assert [s for s, _ in got] == [s for s, _ in want] == [1, 2], key
        assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-6, rel=0), key
    for key in ("val_acc", "test_acc"):
        assert history(client, packed.run_id, key) == history(client, raw.run_id, key), key
    assert (packed.best_epoch, packed.best_test_acc) == (raw.best_epoch, raw.best_test_acc)


def test_a_pack_of_another_backbone_or_image_size_is_refused(ray_session, tmp_path):
    config = tiny_config_for(tmp_path)
    pack = tmp_path / "pack"
    pack_dataset(config, str(pack), shard_size=8, log=lambda _: None)
    other = write_tiny_clip(tmp_path / "other", seed=1)  # same architecture, other weights
    with pytest.raises(
        ConfigError,
        match=rf"pack {pack} holds image features of backbone .*differs in backbone, weights_sha256\)",
    ):
        run_pretraining(with_overrides(config, {"pretrain.data": str(pack), "model.name": other}), "x")
    resized = tmp_path / "resized"
    shutil.copytree(pack, resized)
    manifest = json.loads((resized / MANIFEST).read_text())
    manifest["encoder"]["image_size"] = 224
    (resized / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"224 px.*this run uses .* 32 px.*\(differs in image_size\)"):
        run_pretraining(with_overrides(config, {"pretrain.data": str(resized)}), "y")
    assert not (tmp_path / "runs" / "pretrain").exists()  # refused before any run was made
