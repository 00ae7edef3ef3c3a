"""Prompt texts and features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clip2point.errors import InputError
from clip2point.models import encode_prompts, prompt_texts


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
