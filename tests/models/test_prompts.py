"""Prompt texts and features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clip2point.data import MODELNET10, MODELNET40, SCANOBJECTNN, SHAPENET55
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


def test_official_prompts_spell_names_as_the_authors_scripts():
    # Their ModelNet10 list keeps night_stand's underscore; their ModelNet40 list has "night stand".
    assert prompt_texts(MODELNET10, "official")[6] == "image of a night_stand"
    assert prompt_texts(MODELNET10, "spaces")[6] == "image of a night stand"
    official40 = prompt_texts(MODELNET40, "official")
    assert [official40[i] for i in (15, 16, 23, 28, 36)] == [
        "image of a flower pot", "image of a glass box", "image of a night stand", "image of a range hood",
        "image of a tv stand",
    ]  # fmt: skip
    assert official40 == prompt_texts(MODELNET40, "spaces")
    assert prompt_texts(SCANOBJECTNN, "official") == [f"image of a {n}" for n in SCANOBJECTNN]
    assert prompt_texts(SHAPENET55, "official")[17] == "image of a cellular telephone"
    with pytest.raises(InputError, match=r"prompt style 'raw' is not allowed; use one of spaces, official"):
        prompt_texts(MODELNET10, "raw")


def test_prompt_features_are_normalised_text_features(tiny_bundle):
    feats = encode_prompts(tiny_bundle.text, ["tv_stand", "cup"])
    assert feats.shape == (2, tiny_bundle.embed_dim)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2))
    direct = F.normalize(tiny_bundle.text(["image of a tv stand", "image of a cup"]), dim=-1)
    torch.testing.assert_close(feats, direct)
