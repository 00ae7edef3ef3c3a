"""The bundled toy CLIP: assets, loading through load_clip, zero-shot on fresh toy renders, the depth gap."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from clip2point.data.files import read_image
from clip2point.models import load_clip
from clip2point.models.backbone import toy_assets_dir
from clip2point.render.cameras import official_views
from clip2point.render.mesh import MeshRenderer
from clip2point.toy.clip_data import TRAIN_STREAM, TrainStream, captions, render_objects, to_clip_images
from clip2point.toy.shapes import make_shape
from clip2point.toy.train_clip import (
    HELD_OUT_SEED,
    MODEL_NAME,
    contrastive_loss,
    create_toy_clip,
    evaluate,
    text_encoder_of,
    zero_shot,
)
from clip2point.toy.world import object_rng

SIZE = 112  # the shipped encoder's input size


@pytest.fixture(scope="module")
def bundle():
    return load_clip(MODEL_NAME, "toy")


def test_assets_fit_the_budget_and_describe_a_small_resnet():
    config = json.loads((toy_assets_dir() / f"{MODEL_NAME}.json").read_text())
    assert config["vision_cfg"]["image_size"] == SIZE
    assert isinstance(config["vision_cfg"]["layers"], list)  # open_clip's ModifiedResNet
    total = sum(p.stat().st_size for p in toy_assets_dir().iterdir())
    assert total <= 20 * 2**20, total


@pytest.mark.slow
def test_zero_shot_on_held_out_renders_and_the_depth_gap(bundle):
    assert bundle.image_size == SIZE
    acc = evaluate(bundle.visual, bundle.text, bundle.image_size, seed=HELD_OUT_SEED, per_class=3)
    print(
        "\nToyCLIP zero-shot top-1 on fresh toy objects (per view / per object): "
        + ", ".join(f"{k} {v['view']:.1%} / {v['object']:.1%}" for k, v in acc.items())
    )
    assert acc["rgb"]["view"] >= 0.80
    for name in ("depth_disk", "depth_square2"):  # the domain gap CLIP2Point's pre-training closes
        assert acc[name]["view"] < acc["rgb"]["view"]


@pytest.mark.slow
def test_load_clip_predicts_like_the_training_model(bundle):
    model, tokenizer = create_toy_clip()
    state = load_file(toy_assets_dir() / f"{MODEL_NAME}.safetensors")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    images, _, _ = render_objects(HELD_OUT_SEED + 1, per_class=1, size=SIZE)
    images = images[:, :3]
    expected = zero_shot(model.visual, text_encoder_of(model, tokenizer), images)
    got = zero_shot(bundle.visual, bundle.text, images)
    assert got.shape == (10, 3, 10)
    assert torch.allclose(got, expected, atol=1e-5)


def test_renders_are_resized_as_the_pipeline_reads_the_toy_world_pngs(tmp_path):
    mesh = make_shape(2, object_rng(3, "shapenet", 2, 0))
    renderer = MeshRenderer(image_size=224)
    try:
        rgb = renderer.render(mesh.vertices, mesh.faces, *official_views(10), face_colors=mesh.face_colors)
    finally:
        renderer.release()
    Image.fromarray(rgb[4]).save(tmp_path / "4.png")
    x = to_clip_images(rgb, SIZE)
    assert x.shape == (10, 3, SIZE, SIZE)
    assert torch.allclose(x[4], read_image(tmp_path / "4.png", SIZE), atol=1e-6)
    white = (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor(
        [0.26862954, 0.26130258, 0.27577711]
    )
    assert torch.allclose(x[0, :, 0, 0], white)


def test_train_stream_is_deterministic_balanced_and_numbered_like_render_objects():
    stream = TrainStream(seed=7, size=SIZE, per_batch=10, views=2)
    try:
        images, labels, colours = stream.batch(1)
        again, _, _ = stream.batch(1)
        other, _, _ = stream.batch(2)
    finally:
        stream.release()
    assert images.shape == (20, 3, SIZE, SIZE) and torch.equal(images, again)
    assert not torch.allclose(images, other)
    assert labels.tolist() == [c for c in range(10) for _ in range(2)]
    # batch 1 holds object 1 of every class: the same meshes (colours) render_objects numbers 1
    rng = [np.random.default_rng([7, TRAIN_STREAM, c, 1]) for c in range(10)]
    assert colours[::2] == [make_shape(c, r).colour for c, r in enumerate(rng)]


def test_captions_mark_every_true_caption_as_a_positive():
    labels = torch.tensor([2, 2, 2, 5])
    colours = ["red", "blue", "red", "red"]
    texts, describes = captions(labels, colours, torch.Generator().manual_seed(0))
    assert len(texts) == 4
    for i in range(4):
        for j, text in enumerate(texts):
            names_class = text.endswith("chair") if labels[i] == 2 else text.endswith("monitor")
            names_other_colour = any(f" {c} " in f" {text} " for c in {"red", "blue"} - {colours[i]})
            assert describes[i, j] == (names_class and not names_other_colour), (i, text)
    assert describes.diagonal().all()


def test_contrastive_loss_matches_hand_computation():
    f = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=-1)
    g = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.5, 0.9], [0.1, 1.0]]), dim=-1)
    describes = torch.tensor([[True, True, False], [False, True, False], [False, True, True]])
    logits = 10 * f @ g.T
    rows = -sum(logits[i].log_softmax(0)[describes[i]].mean() for i in range(3)) / 3
    cols = -sum(logits[:, j].log_softmax(0)[describes[:, j]].mean() for j in range(3)) / 3
    assert torch.allclose(contrastive_loss(f, g, torch.tensor(10.0), describes), (rows + cols) / 2)
