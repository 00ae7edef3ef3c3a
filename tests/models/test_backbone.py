"""load_clip: random init, local files, the toy path, QuickGELU detection, encoders."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file

from clip2point.errors import ConfigError, InputError
from clip2point.models import load_clip, toy_assets_dir, uses_quick_gelu, wants_quick_gelu
from tests.tiny_clip import EMBED, SIZE, random_images, tiny_config


def source_model(name: str, seed: int, quick_gelu: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(name, None, force_quick_gelu=quick_gelu).eval()


def test_bundle_shapes(tiny_bundle):
    assert (tiny_bundle.image_size, tiny_bundle.embed_dim) == (SIZE, EMBED)
    assert tiny_bundle.visual(random_images(2)).shape == (2, EMBED)
    assert tiny_bundle.text(["image of a chair", "image of a bed", "x"]).shape == (3, EMBED)
    assert not tiny_bundle.quick_gelu and not uses_quick_gelu(tiny_bundle.visual)


def test_quick_gelu_decided_by_open_clip_tags_and_configs():
    base = open_clip.get_model_config("ViT-B-32")
    assert wants_quick_gelu("ViT-B-32", "openai", base)
    assert wants_quick_gelu("ViT-B-32", "laion400m_e32", base)  # quick-gelu LAION weights
    assert not wants_quick_gelu("ViT-B-32", "laion2b_s34b_b79k", base)
    assert not wants_quick_gelu("ViT-B-32", None, base)
    assert wants_quick_gelu("ViT-B-32-quickgelu", None, open_clip.get_model_config("ViT-B-32-quickgelu"))


def test_local_weights_load_with_the_activation_they_need(tiny_name, tmp_path):
    source = source_model(tiny_name, seed=5, quick_gelu=True)
    images = random_images(2, seed=4)
    expected = source.visual(images)
    flagged = tmp_path / "mine.safetensors"
    save_file(
        {k: v.contiguous() for k, v in source.state_dict().items()}, flagged, metadata={"quick_gelu": "true"}
    )
    openai_dir = tmp_path / "models--timm--clip.openai"
    openai_dir.mkdir()
    by_path = openai_dir / "open_clip_pytorch_model.bin"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, by_path)  # DataParallel prefix
    for path in (flagged, by_path):
        bundle = load_clip(tiny_name, str(path))
        assert bundle.quick_gelu
        assert all(isinstance(b.mlp.gelu, QuickGELU) for b in bundle.visual.transformer.resblocks)
        torch.testing.assert_close(bundle.visual(images), expected, rtol=0, atol=0)
    # the same weights in a GELU model give other features: the activation matters
    gelu = load_clip(tiny_name, str(flagged), quick_gelu=False)
    assert not uses_quick_gelu(gelu.visual)
    assert (gelu.visual(images) - expected).abs().max() > 1e-4


def test_quick_gelu_config_cannot_be_forced_off(tiny_name):
    with pytest.raises(ConfigError, match="QuickGELU"):
        load_clip(f"{tiny_name}-quickgelu", None, quick_gelu=False)
    assert load_clip(f"{tiny_name}-quickgelu", None).quick_gelu


def test_unfitting_weights_file_names_the_keys(tiny_name, tmp_path):
    state = dict(source_model(tiny_name, seed=6).state_dict())
    del state["visual.proj"]
    state["visual.extra"] = torch.zeros(3)
    state["ln_final.weight"] = torch.zeros(5)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(InputError, match=r"bad\.pt") as err:
        load_clip(tiny_name, str(path))
    message = str(err.value)
    assert "missing: visual.proj" in message and "unexpected: visual.extra" in message
    assert "mis-shaped: ln_final.weight (file (5,), expected (64,))" in message


def test_unknown_model_and_tag(tiny_name):
    with pytest.raises(ConfigError, match="not an open_clip model"):
        load_clip("NoSuchModel-99", None)
    with pytest.raises(ConfigError, match="laion2b_s34b_b79k"):
        load_clip("ViT-B-32", "no_such_tag")


def test_toy_path_loads_assets(tmp_path):
    source = source_model_from_config(tmp_path, "ToyTest")
    bundle = load_clip("ToyTest", "toy", toy_dir=tmp_path)
    images = random_images(3, seed=7)
    torch.testing.assert_close(bundle.visual(images), source.visual(images), rtol=0, atol=0)
    tokens = open_clip.get_tokenizer("ToyTest")(["image of a cup"])
    torch.testing.assert_close(bundle.text(["image of a cup"]), source.encode_text(tokens), rtol=0, atol=0)


def source_model_from_config(folder, name: str) -> torch.nn.Module:
    """Write ``<name>.json`` and random ``<name>.safetensors`` into ``folder``; return the source model."""
    (folder / f"{name}.json").write_text(json.dumps(tiny_config()))
    open_clip.add_model_config(folder / f"{name}.json")
    model = source_model(name, seed=8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / f"{name}.safetensors")
    return model


def test_missing_toy_assets_say_how_to_build_them(tmp_path):
    with pytest.raises(InputError, match=r"ToyCLIP\.safetensors.*python -m clip2point\.toy\.train_clip"):
        load_clip("ToyCLIP", "toy", toy_dir=tmp_path)
    assert toy_assets_dir().parts[-3:] == ("clip2point", "assets", "toy_clip")


def test_depth_and_image_encoders(tiny_bundle):
    depth = tiny_bundle.depth_encoder()
    image = tiny_bundle.image_encoder()
    assert all(p.requires_grad for p in depth.parameters()) and depth.training
    assert not any(p.requires_grad for p in image.parameters())
    image.train()
    assert not image.encoder.training
    x = random_images(2, seed=9)
    torch.testing.assert_close(depth.eval()(x), image(x))  # starts from CLIP (no_grad takes a fused path)
    with torch.no_grad():
        depth.proj.add_(1.0)
    assert not torch.equal(depth(x), image(x))  # a copy, not a view
