"""Prompt texts, features and the per-(model, class list) cache."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

from clip2point.errors import InputError
from clip2point.models import PromptCache, encode_prompts, load_clip, prompt_texts


def test_prompt_texts():
    assert prompt_texts(["night_stand", "flower_pot", "chair"]) == [
        "image of a night stand",
        "image of a flower pot",
        "image of a chair",
    ]
    with pytest.raises(InputError, match="empty"):
        prompt_texts([])


def test_prompt_features_are_normalised_text_features(tiny_bundle):
    feats = encode_prompts(tiny_bundle.text, ["tv_stand", "cup"])
    assert feats.shape == (2, tiny_bundle.embed_dim)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2))
    direct = F.normalize(tiny_bundle.text(["image of a tv stand", "image of a cup"]), dim=-1)
    torch.testing.assert_close(feats, direct)


def test_cache_per_model_and_class_list(tiny_name):
    torch.manual_seed(1)
    first = load_clip(tiny_name, None).text
    torch.manual_seed(2)
    second = load_clip(tiny_name, None).text
    cache = PromptCache()
    a = cache.features(first, ["bed", "sofa"])
    assert cache.features(first, ["bed", "sofa"]) is a  # hit
    assert cache.features(first, ["sofa", "bed"]) is not a
    other = cache.features(second, ["bed", "sofa"])
    assert not torch.allclose(other, a)  # another model never sees the first's entry
    torch.testing.assert_close(other, encode_prompts(second, ["bed", "sofa"]))
    with torch.no_grad():
        first.clip.token_embedding.weight.mul_(2.0).add_(0.1)  # in-place weight change invalidates
    changed = cache.features(first, ["bed", "sofa"])
    assert not torch.allclose(changed, a)
    torch.testing.assert_close(changed, encode_prompts(first, ["bed", "sofa"]))
    ref = weakref.ref(first)
    del first
    gc.collect()
    assert ref() is None  # the cache does not keep models alive
