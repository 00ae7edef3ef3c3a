"""Evaluating a DPA checkpoint: the authors' best_test.pth and its conversion give the accuracy computed by
hand from their layout (their adapter written out from key names), on ModelNet40_Ply with every point."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clip2point.commands import evaluate_dpa as evaluate_dpa_verb
from clip2point.config import load_config
from clip2point.engine.context import Experiment
from clip2point.engine.dpa import evaluate_dpa
from clip2point.errors import ConfigError, InputError
from clip2point.models import convert_official, load_clip, load_dpa, save_torch
from clip2point.render import official_views
from tests.data.data_writers import write_ply
from tests.models.official_files import official_adapter, official_adapter_forward, random_official_visual
from tests.tiny_clip import EMBED

LABELS = (0, 3, 23, 23, 39, 8)


@pytest.fixture
def world(tmp_path, tiny_name):
    rng = np.random.default_rng(0)
    for i, label in enumerate(LABELS):  # 50 points each: every point is used (num_points: null)
        write_ply(tmp_path / "data" / "ModelNet40_Ply" / f"{label}_{i:04d}.ply", rng.normal(size=(50, 3)))
    state = random_official_visual("pre_model.", 1) | random_official_visual("ori_model.", 2)
    state |= official_adapter("adapter1.", 10, 3) | official_adapter("adapter2.", 10, 4)
    state |= {f"selector.view_selector.views_{k}": v for k, v in official_views(10)._asdict().items()}
    path = save_torch(state, tmp_path / "best_test.pth")
    overrides = {
        "model.name": f"{tiny_name}-quickgelu", "model.pretrained": None, "data.root": str(tmp_path / "data"),
        "fewshot.feature_cache": str(tmp_path / "cache"), "fewshot.batch_size": 4,
    }  # fmt: skip
    return path, state, load_config(overrides=overrides, preset="official-eval")


def by_hand(experiment: Experiment, state: dict) -> torch.Tensor:
    """Logits (M, K) of the authors' DPA from its state dict: both visual encoders on the 10 depth maps of
    each whole cloud, their adapters, the average, cosine against the prompts."""
    dataset = experiment.dataset("test")
    bundle = experiment.bundle
    pre, ori = bundle.depth_encoder().eval(), bundle.depth_encoder().eval()
    pre.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("pre_model.")})
    ori.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("ori_model.")})
    text = experiment.text_features(dataset.class_names)
    rows = []
    with torch.no_grad():
        for i in range(len(dataset)):
            images = experiment.renderer(dataset[i]["points"][None], *official_views(10))[0]  # (10, 3, S, S)
            fused = (
                official_adapter_forward(state, "adapter1.", pre(images)[None])
                + official_adapter_forward(state, "adapter2.", ori(images)[None])
            ) / 2
            rows.append(F.normalize(fused, dim=-1) @ text.T)
    return torch.cat(rows)


def test_authors_file_and_its_conversion_give_the_accuracy_by_hand(world, tmp_path, capsys):
    path, state, config = world
    # the tiny CLIP's weights are random (model.pretrained: null): seeded, the same for the verb below
    torch.manual_seed(0)
    experiment = Experiment(config)
    assert [len(experiment.dataset("test")[i]["points"]) for i in range(6)] == [50] * 6  # every point
    predicted = by_hand(experiment, state).argmax(1)
    labels = torch.tensor(sorted(LABELS))
    expected = 100.0 * float((predicted == labels).float().mean())
    confusion = np.zeros((40, 40), np.int64)
    np.add.at(confusion, (labels.numpy(), predicted.numpy()), 1)
    authors = load_dpa(experiment.bundle, path)
    assert authors.adapter.depth_adapter.views == 10
    result = evaluate_dpa(experiment, authors, progress=False)
    assert result.num_samples == 6
    assert result.overall == pytest.approx(expected)
    np.testing.assert_array_equal(result.confusion, confusion)  # every prediction, not only the count
    converted = tmp_path / "dpa.safetensors"
    convert_official(path, converted, kind="dpa", model=config.model.name, views=10)
    again = evaluate_dpa(experiment, load_dpa(experiment.bundle, converted), progress=False)
    np.testing.assert_array_equal(again.confusion, confusion)

    parser = argparse.ArgumentParser()
    evaluate_dpa_verb.add_arguments(parser)
    overrides = [f"{k}={v}" for k, v in (("model.name", config.model.name), ("model.pretrained", "null"),
                 ("data.root", config.data.root), ("fewshot.feature_cache", config.fewshot.feature_cache))]  # fmt: skip
    args = parser.parse_args(
        [str(path), "--preset", "official-eval", *[p for o in overrides for p in ("-o", o)]]
    )
    torch.manual_seed(0)
    assert evaluate_dpa_verb.run(args) == 0
    printed = capsys.readouterr().out
    assert "DPA best_test.pth on modelnet40_ply (test, 10 views)" in printed
    assert f"overall top-1: {expected:.2f}%" in printed


def test_load_dpa_refuses_other_files_and_a_wrong_activation(world, tiny_name, tmp_path):
    path, _, _ = world
    plain = load_clip(tiny_name, None)  # GELU, the file's encoders are QuickGELU
    with pytest.raises(ConfigError, match=r"use QuickGELU, but model.name='C2PTiny' .* builds GELU"):
        load_dpa(plain, path)
    other = save_torch({"weights": torch.ones(())}, tmp_path / "best_eval.pth")
    with pytest.raises(InputError, match=r"best_eval\.pth is not a DPA checkpoint"):
        load_dpa(load_clip(f"{tiny_name}-quickgelu", None), other)
    assert EMBED == plain.embed_dim
