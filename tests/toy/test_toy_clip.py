"""The bundled toy CLIP: assets, loading through load_clip, distinct class prompts, zero-shot on held-out toy
renders (several seeds) and on depth maps (the domain gap), the training data and loss."""

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
from clip2point.render.mesh import rgb_renderer
from clip2point.toy.clip_data import TRAIN_STREAM, TrainStream, captions, render_objects, to_clip_images
from clip2point.toy.shapes import make_shape
from clip2point.toy.train_clip import (
    HELD_OUT_SEEDS,
    MODEL_NAME,
    TrainSettings,
    accuracies,
    build_parser,
    closest_prompts,
    contrastive_loss,
    create_toy_clip,
    format_report,
    held_out_report,
    prompt_spread,
    text_encoder_of,
    zero_shot,
)
from clip2point.toy.world import object_rng, render_rgb

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
def test_distinct_prompts_and_zero_shot_on_held_out_objects(bundle):
    """The numbers docs/usage.md quotes for the shipped weights: the closest prompts (cosine 0.51, dresser /
    sofa); on 3 seeds x 40 held-out objects, RGB 95.5-97.0% per render and 100% per object, depth maps
    17-20% per render and 20% per object (almost every depth map read as "table")."""
    assert bundle.image_size == SIZE
    report = held_out_report(bundle.visual, bundle.text, bundle.image_size)
    print("\nToyCLIP zero-shot on held-out toy objects\n" + format_report(report))
    closest = report["closest_prompts"]
    assert closest["pair"] == ["dresser", "sofa"] and closest["cosine"] == pytest.approx(0.51, abs=0.005)
    assert list(report["held_out"]) == list(HELD_OUT_SEEDS)
    for seed, acc in report["held_out"].items():
        assert 0.9549 <= acc["rgb"]["view"] <= 0.9701 and acc["rgb"]["object"] == 1.0, seed
        for name in ("depth_disk", "depth_square2"):  # the domain gap CLIP2Point's pre-training closes
            assert 0.1699 <= acc[name]["view"] <= 0.2001 and acc[name]["object"] == pytest.approx(0.2), (
                seed,
                name,
            )


@pytest.mark.slow
def test_load_clip_predicts_like_the_training_model(bundle):
    model, tokenizer = create_toy_clip()
    state = load_file(toy_assets_dir() / f"{MODEL_NAME}.safetensors")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    images, _, _ = render_objects(HELD_OUT_SEEDS[0] - 1, per_class=1, size=SIZE)
    images = images[:, :3]
    expected = zero_shot(model.visual, text_encoder_of(model, tokenizer), images)
    got = zero_shot(bundle.visual, bundle.text, images)
    assert got.shape == (10, 3, 10)
    assert torch.allclose(got, expected, atol=1e-5)


def test_renders_are_resized_as_the_pipeline_reads_the_toy_world_pngs(tmp_path):
    mesh = make_shape(2, object_rng(3, "shapenet", 2, 0))
    renderer = rgb_renderer(image_size=224)
    try:
        rgb = render_rgb(renderer, mesh, *official_views(10))
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


def test_per_object_accuracy_averages_the_raw_view_logits():
    # one object of class 1: view 0 says class 0 weakly, view 1 says class 1; mean (0.175, 0.2) -> class 1
    # (averaging L2-normalised view logits instead would give (0.8, 0.4) -> class 0)
    logits = torch.tensor([[[0.05, 0.0], [0.3, 0.4]]])
    assert accuracies(logits, torch.tensor([1])) == {"view": 0.5, "object": 1.0}


def test_prompt_spread_matches_hand_computation():
    f = torch.tensor([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0]])  # unit rows; cosines 0.96, 0.0, 0.28
    # only the pair (0, 1) exceeds the margin 0.8: (0.96 - 0.8)^2 = 0.0256, twice among 6 ordered pairs
    assert torch.isclose(prompt_spread(f, 0.8), torch.tensor(2 * 0.0256 / 6))
    assert prompt_spread(f, 0.97) == 0


def test_closest_prompts_names_the_pair():
    def encode(texts: list[str]) -> torch.Tensor:  # one axis per class; "sofa" leans towards "bathtub"
        feats = torch.eye(len(texts))
        feats[texts.index("image of a sofa"), texts.index("image of a bathtub")] = 3.0
        return feats

    cosine, a, b = closest_prompts(encode)
    assert (a, b) == ("bathtub", "sofa") and abs(cosine - 3 / 10**0.5) < 1e-6


def test_command_line_defaults_are_the_training_settings():
    args = build_parser().parse_args(["--out", "x"])
    assert (
        TrainSettings(**{k: getattr(args, k) for k in TrainSettings.__dataclass_fields__}) == TrainSettings()
    )
    args = build_parser().parse_args(["--out", "x", "--steps", "7", "--lr", "0.01"])
    assert (args.steps, args.lr, args.threads) == (7, 0.01, 2)
