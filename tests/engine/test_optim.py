"""The pre-training optimiser: ``--preset paper`` steps exactly as the authors' ``torch_optimizer.Lamb``;
timm's LAMB (the option) takes longer steps on tensors whose norm exceeds torch-optimizer's cap of 10."""

from __future__ import annotations

import pytest
import torch
import torch_optimizer
from timm.optim import Lamb as TimmLamb

from clip2point.config import PretrainConfig, load_config
from clip2point.engine.optim import build_optimizer
from clip2point.errors import ConfigError


def parameters(scale: float = 1.0) -> list[torch.nn.Parameter]:
    """A 64 x 48 matrix of norm 30 (above the cap), a bias of norm 2 and a scalar like the balance ``s``."""
    g = torch.Generator().manual_seed(0)
    matrix = torch.randn(64, 48, generator=g)
    bias = torch.randn(48, generator=g)
    return [
        torch.nn.Parameter(scale * 30 * matrix / matrix.norm()),
        torch.nn.Parameter(scale * 2 * bias / bias.norm()),
        torch.nn.Parameter(torch.ones(())),
    ]


def step_with(optimiser: torch.optim.Optimizer, params, step: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    optimiser.step()


def test_paper_preset_steps_exactly_as_the_authors_lamb():
    settings = load_config(preset="paper").pretrain
    assert (settings.optimizer, settings.lr, settings.weight_decay) == ("lamb", 0.006, 0.0001)
    ours, theirs = parameters(), parameters()
    optimiser = build_optimizer(settings, ours)
    reference = torch_optimizer.Lamb(theirs, lr=0.006, weight_decay=1e-4)  # the authors' line
    for step in range(6):
        step_with(optimiser, ours, step)
        step_with(reference, theirs, step)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert type(optimiser) is torch_optimizer.Lamb
    assert optimiser.defaults == reference.defaults
    assert (optimiser.clamp_value, optimiser.adam, optimiser.debias) == (10, False, False)


def test_step_lengths_by_hand_torch_optimizer_caps_the_weight_norm_timm_does_not():
    """One step moves each tensor by lr * min(||w||, 10) (torch-optimizer) or lr * ||w|| (timm)."""
    lr = 0.006
    for name, expected in (("lamb", (lr * 10, lr * 2, lr * 1)), ("timm_lamb", (lr * 30, lr * 2, lr * 1))):
        params = parameters()
        before = [p.detach().clone() for p in params]
        optimiser = build_optimizer(PretrainConfig(optimizer=name, lr=lr, weight_decay=1e-4), params)
        assert isinstance(optimiser, torch_optimizer.Lamb if name == "lamb" else TimmLamb)
        step_with(optimiser, params, 0)
        moved = [float((p.detach() - b).norm()) for p, b in zip(params, before, strict=True)]
        assert moved == pytest.approx(expected, rel=1e-5), name


def test_unknown_optimizer_is_refused():
    with pytest.raises(
        ConfigError, match=r"'pretrain.optimizer': 'adam' is not allowed; expected one of 'lamb', 'timm_lamb'"
    ):
        load_config(overrides={"pretrain.optimizer": "adam"})
