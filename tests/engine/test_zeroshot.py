"""Zero-shot engine: the batched loop equals the formula computed sample by sample; metrics by hand."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clip2point.data import MODELNET10, build_dataset
from clip2point.engine.features import extract_view_features
from clip2point.engine.metrics import accuracy, save_confusion_png
from clip2point.engine.zeroshot import evaluate_zero_shot
from clip2point.models import encode_prompts
from clip2point.render import DepthRenderer, official_views
from tests.data.data_writers import make_modelnet
from tests.tiny_clip import SIZE

CLASSES = ["bathtub", "bed", "chair"]


@pytest.fixture
def tiny_modelnet(tmp_path):
    make_modelnet(tmp_path, MODELNET10, splits=("test",), per_class={c: 2 for c in CLASSES})
    return build_dataset("modelnet10", tmp_path, "test", num_points=64)


def test_zero_shot_equals_per_sample_formula(tiny_bundle, tiny_modelnet):
    renderer = DepthRenderer(image_size=SIZE, footprint="square", dilation=2)
    views = official_views(6)
    text = encode_prompts(tiny_bundle.text, MODELNET10)
    result = evaluate_zero_shot(
        tiny_bundle.visual, text, MODELNET10, tiny_modelnet, renderer, views, batch_size=4, progress=False
    )
    # Independent: one sample at a time, cosine per view, mean over views, argmax.
    predicted = []
    for i in range(len(tiny_modelnet)):
        item = tiny_modelnet[i]
        images = renderer(item["points"].unsqueeze(0), *views)[0]  # (V, 3, S, S)
        with torch.no_grad():
            feats = F.normalize(tiny_bundle.visual(images), dim=-1)
        predicted.append(int((feats @ F.normalize(text, dim=-1).T).mean(0).argmax()))
    labels = [int(tiny_modelnet[i]["label"]) for i in range(len(tiny_modelnet))]
    expected = 100.0 * np.mean([p == t for p, t in zip(predicted, labels, strict=True)])
    assert result.num_samples == 6
    assert result.overall == pytest.approx(expected)
    assert result.confusion.sum() == 6
    assert result.confusion[labels[0], predicted[0]] >= 1


def test_features_keep_dataset_order_and_encoder_mode(tiny_bundle, tiny_modelnet):
    renderer = DepthRenderer(image_size=SIZE)
    encoder = tiny_bundle.visual.train()
    feats, labels = extract_view_features(
        encoder, renderer, tiny_modelnet, official_views(10), batch_size=4, progress=False
    )
    assert feats.shape == (6, 10, tiny_bundle.embed_dim) and feats.dtype == torch.float32
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert encoder.training  # restored after extraction
    single, _ = extract_view_features(
        encoder, renderer, tiny_modelnet, official_views(10), batch_size=1, progress=False
    )
    torch.testing.assert_close(single, feats, atol=1e-5, rtol=1e-5)  # batching changes nothing
    encoder.eval()


def test_accuracy_by_hand(tmp_path):
    logits = torch.tensor([[2.0, 1, 0], [0, 3, 1], [0, 0, 1], [1, 0, 0], [0, 2, 1]])
    labels = torch.tensor([0, 1, 2, 2, 2])
    result = accuracy(logits, labels, ["a", "b", "c"])
    assert result.overall == pytest.approx(60.0)
    assert result.per_class == {"a": 100.0, "b": 100.0, "c": pytest.approx(100 / 3)}
    assert result.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
    assert result.mean_per_class == pytest.approx((100 + 100 + 100 / 3) / 3)
    empty_class = accuracy(logits[:2], labels[:2], ["a", "b", "c"])
    assert np.isnan(empty_class.per_class["c"]) and empty_class.mean_per_class == 100.0
    png = save_confusion_png(result, tmp_path / "cm.png", title="toy")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zeroshot_command_prints_logs_and_draws(tiny_name, tiny_modelnet, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from clip2point.cli import main

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    args = [
        "zeroshot",
        "-o",
        f"model.name={tiny_name}",
        "-o",
        "model.pretrained=null",
        "-o",
        f"data.root={tmp_path}",
    ]
    assert main([*args, "-o", "render.views=6", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "zero-shot on modelnet10 (test, 6 samples, 6 views)" in printed
    assert "overall top-1:" in printed and "bathtub" in printed
    assert (tmp_path / "out" / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "out" / "views.png").stat().st_size > 1000
    run = MlflowClient(store).search_runs(
        MlflowClient(store).get_experiment_by_name("clip2point").experiment_id
    )[0]
    assert run.info.status == "FINISHED" and run.data.params["render.views"] == "6"
    overall = float(printed.split("overall top-1:")[1].split("%")[0])
    assert run.data.metrics["zeroshot_acc"] == pytest.approx(overall, abs=0.005)  # what was printed
    assert run.data.metrics["zeroshot_acc"] in {100 * k / 6 for k in range(7)}  # 6 samples
    assert run.data.tags["encoder"] == "CLIP visual encoder"
    reference = build_dataset("modelnet10", tmp_path, "test", 1024, seed=0, align=True)
    assert run.data.tags["dataset_fingerprint"] == reference.fingerprint()
    assert main([*args, "-o", "data.dataset=modelnet40"]) == 2  # no ModelNet40 there: a clear error
    assert "ModelNet40" in capsys.readouterr().err


@pytest.mark.slow
def test_ensure_toy_world_builds_once_and_only_for_toy_roots(tmp_path):
    from clip2point.config import load_config
    from clip2point.prepare import ensure_toy_world

    toy = tmp_path / "toy"
    toy.mkdir()  # an unfinished earlier attempt
    config = load_config(overrides={"data.root": str(toy)})
    ensure_toy_world(config, size="small", progress=False)
    marker = toy / "toy_world.json"
    assert marker.exists() and len(build_dataset("modelnet10", toy, "test", 64)) == 20
    stamp = marker.stat().st_mtime_ns
    ensure_toy_world(config, size="small", progress=False)
    assert marker.stat().st_mtime_ns == stamp  # built once
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".toy-building")]
    old = json.loads(marker.read_text()) | {"version": 1}  # a world an older version of the code built
    marker.write_text(json.dumps(old))
    ensure_toy_world(config, size="small", progress=False)
    assert json.loads(marker.read_text())["version"] > 1  # rebuilt with this version's world
    ensure_toy_world(
        load_config(overrides={"data.root": str(tmp_path / "real")}), size="small", progress=False
    )
    assert not (tmp_path / "real").exists()  # not a toy root: nothing built


def test_an_encoder_with_nan_weights_is_an_error_not_zero_accuracy(tiny_bundle, tiny_modelnet, tmp_path):
    from clip2point.errors import InputError
    from clip2point.models import load_module, save_module

    encoder = tiny_bundle.depth_encoder()
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.fill_(float("nan"))
    text = encode_prompts(tiny_bundle.text, MODELNET10)
    renderer = DepthRenderer(image_size=SIZE)
    with pytest.raises(InputError, match=r"non-finite features \(NaN or inf\) for 6 of 6 samples"):
        evaluate_zero_shot(
            encoder, text, MODELNET10, tiny_modelnet, renderer, official_views(6), progress=False
        )
    saved = save_module(encoder, tmp_path / "nan.safetensors", {})
    with pytest.raises(InputError, match=r"nan\.safetensors has non-finite values \(NaN or inf\) in "):
        load_module(tiny_bundle.depth_encoder(), saved)
