"""Adapters: parameter counts per switch combination, the maths of each form, learning, frozen encoders."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from clip2point.errors import ConfigError, InputError
from clip2point.models import (
    GDPA,
    AdapterSettings,
    FewShotClassifier,
    GlobalViewAggregator,
    InterViewAdapter,
    zero_shot_logits,
)
from tests.tiny_clip import EMBED, SIZE

V, C, K, B = 4, 6, 3, 5


def expected_params(path: str, aggregator: str, fusion: str, variant: str) -> int:
    """Hand formula: Linear(V*C, C) + Linear(C, C) (+ official: V view weights, two BatchNorms of 2C;
    inter-view: V matrices C x C), per path, plus one gate scalar."""
    if aggregator == "global":
        per_path = (V * C * C + C) + (C * C + C) + (V + 2 * C + 2 * C if variant == "official" else 0)
    else:
        per_path = (V * C * C + C) + (C * C + C) + V * C * C
    return per_path * (2 if path == "dual" else 1) + (1 if fusion == "gate" else 0)


VALID = [
    (path, aggregator, fusion, variant)
    for path, aggregator, fusion, variant in itertools.product(
        ("single", "dual"), ("global", "inter_view"), ("gate", "average", "none"), ("paper", "official")
    )
    if (path == "dual" or fusion == "none") and (aggregator == "global" or variant == "paper")
]


@pytest.mark.parametrize(("path", "aggregator", "fusion", "variant"), VALID)
def test_gdpa_param_count_and_shape(path, aggregator, fusion, variant):
    adapter = GDPA(V, C, AdapterSettings(path, aggregator, fusion, variant))
    assert sum(p.numel() for p in adapter.parameters()) == expected_params(path, aggregator, fusion, variant)
    g = torch.Generator().manual_seed(0)
    depth, clip, text = (
        torch.randn(B, V, C, generator=g),
        torch.randn(B, V, C, generator=g),
        torch.randn(K, C),
    )
    logits = adapter(depth, text, clip if path == "dual" else None)
    assert logits.shape == (B, K)
    assert logits.abs().max() <= 1 + 1e-6  # cosine, no logit scale


def test_every_other_combination_is_refused():
    everything = itertools.product(
        ("single", "dual"), ("global", "inter_view"), ("gate", "average", "none"), ("paper", "official")
    )
    refused = [combo for combo in everything if combo not in VALID]
    assert len(VALID) == 12 and len(refused) == 12  # single: 3 forms x fusion none; dual: 3 forms x 3 fusions
    for combo in refused:
        with pytest.raises(ConfigError):
            AdapterSettings(*combo)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"path": "triple"},
            "'fewshot.adapter.path': 'triple' is not allowed; expected one of 'single', 'dual'",
        ),
        ({"aggregator": "mean"}, "'fewshot.adapter.aggregator': 'mean'"),
        ({"fusion": "concat"}, "'fewshot.adapter.fusion': 'concat'.*'gate', 'average', 'none'"),
        ({"path": "single", "fusion": "gate"}, "needs the dual path"),
        ({"path": "single", "fusion": "average"}, "needs the dual path"),
        ({"aggregator": "inter_view", "variant": "official"}, "global aggregator only"),
    ],
)
def test_adapter_settings_reject_bad_switches(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AdapterSettings(**kwargs)


def test_gdpa_checks_inputs():
    adapter = GDPA(V, C, AdapterSettings("dual", variant="paper"))
    x, text = torch.randn(B, V, C), torch.randn(K, C)
    with pytest.raises(InputError, match="dual path"):
        adapter(x, text)
    with pytest.raises(InputError, match=rf"\(B, {V}, {C}\)"):
        adapter(torch.randn(B, V + 1, C), text, x)


def test_paper_aggregator_is_two_linear_layers():
    agg = GlobalViewAggregator(V, C, "paper")
    x = torch.randn(B, V, C)
    h = torch.relu(x.reshape(B, V * C) @ agg.fc1.weight.T + agg.fc1.bias)
    torch.testing.assert_close(agg(x), h @ agg.fc2.weight.T + agg.fc2.bias)


def test_official_aggregator_in_eval_mode_matches_formula():
    torch.manual_seed(1)
    agg = GlobalViewAggregator(V, C, "official")
    with torch.no_grad():
        for bn in (agg.view_norm, agg.norm):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        agg.view_weights.copy_(torch.tensor([0.5, 1.0, -2.0, 0.25]))
    agg.eval()
    x = torch.randn(B, V, C)

    def bn(t, m):
        return (t - m.running_mean) / torch.sqrt(m.running_var + m.eps) * m.weight + m.bias

    scaled = x * torch.tensor([0.5, 1.0, -2.0, 0.25]).view(1, V, 1)
    h = bn(scaled, agg.view_norm).reshape(B, V * C) @ agg.fc1.weight.T + agg.fc1.bias
    expected = torch.relu(bn(h, agg.norm)) @ agg.fc2.weight.T + agg.fc2.bias
    torch.testing.assert_close(agg(x), expected)
    assert torch.equal(GlobalViewAggregator(V, C, "official").view_weights, torch.full((V,), 0.5))


def test_inter_view_adapter_residual_form():
    adapter = InterViewAdapter(V, C)
    x = torch.randn(B, V, C)
    g = torch.relu(x.reshape(B, V * C) @ adapter.fc1.weight.T + adapter.fc1.bias)
    g = g @ adapter.fc2.weight.T + adapter.fc2.bias
    w = adapter.expand.weight.reshape(V, C, C)  # W_v for each view
    expected = torch.stack([x[:, v] + torch.relu(g @ w[v].T) for v in range(V)], dim=1)
    torch.testing.assert_close(adapter(x), expected)


def test_fusions():
    torch.manual_seed(2)
    depth, clip, text = torch.randn(B, V, C), torch.randn(B, V, C), torch.randn(K, C)
    gated = GDPA(V, C, AdapterSettings("dual", "global", "gate", "paper"))
    with torch.no_grad():
        gated.gate.fill_(0.3)
    fused = 0.3 * gated.clip_adapter(clip) + gated.depth_adapter(depth)
    torch.testing.assert_close(
        gated(depth, text, clip), F.normalize(fused, dim=-1) @ F.normalize(text, dim=-1).T
    )
    average = GDPA(V, C, AdapterSettings("dual", "global", "average", "paper"))
    plain = GDPA(V, C, AdapterSettings("dual", "global", "none", "paper"))
    plain.load_state_dict(average.state_dict())
    mean = (average.depth_adapter(depth) + average.clip_adapter(clip)) / 2
    torch.testing.assert_close(
        average(depth, text, clip), F.normalize(mean, dim=-1) @ F.normalize(text, dim=-1).T
    )
    torch.testing.assert_close(plain(depth, text, clip), average(depth, text, clip))  # cosine ignores the 1/2


def test_inter_view_logits_average_per_view_cosines():
    torch.manual_seed(3)
    adapter = GDPA(V, C, AdapterSettings("single", "inter_view", "none", "paper"))
    depth, text = torch.randn(B, V, C), torch.randn(K, C)
    adapted = adapter.depth_adapter(depth)
    expected = sum(F.cosine_similarity(adapted[:, v, None], text[None], dim=-1) for v in range(V)) / V
    torch.testing.assert_close(adapter(depth, text), expected)


def test_zero_shot_head_is_mean_of_view_cosines():
    feats, text = torch.randn(B, V, C), torch.randn(K, C)
    expected = torch.zeros(B, K)
    for b, v, k in itertools.product(range(B), range(V), range(K)):
        expected[b, k] += F.cosine_similarity(feats[b, v], text[k], dim=0) / V
    torch.testing.assert_close(zero_shot_logits(feats, text), expected)


def test_gate_and_view_weights_learn():
    torch.manual_seed(4)
    n, c = 24, 8
    labels = torch.arange(n) % K
    text = torch.randn(K, c)
    depth = 0.8 * text[labels][:, None] + torch.randn(n, V, c)
    clip = 0.8 * text[labels][:, None] + torch.randn(n, V, c)
    adapter = GDPA(V, c, AdapterSettings("dual", "global", "gate", "official"))
    gate0, weights0 = adapter.gate.item(), adapter.depth_adapter.view_weights.detach().clone()
    optimiser = torch.optim.AdamW(adapter.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(adapter(depth, text, clip) / 0.1, labels)
        optimiser.zero_grad()
        loss.backward()
        assert adapter.gate.grad.abs() > 0 and adapter.depth_adapter.view_weights.grad.abs().sum() > 0
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert adapter.gate.item() != pytest.approx(gate0, abs=1e-3)
    assert (adapter.depth_adapter.view_weights - weights0).abs().max() > 1e-3


def test_frozen_encoders_only_adapter_learns(tiny_bundle):
    views = 2
    adapter = GDPA(views, EMBED, AdapterSettings("dual", "global", "gate", "official"))
    model = FewShotClassifier(tiny_bundle.depth_encoder(), adapter, tiny_bundle.visual)
    model.train()
    assert not model.depth.encoder.training and not model.clip.encoder.training
    images = torch.randn(3, views, 3, SIZE, SIZE)
    loss = F.cross_entropy(model(images, torch.randn(4, EMBED)), torch.tensor([0, 1, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("adapter."):
            assert p.grad is not None, name
        else:
            assert p.grad is None and not p.requires_grad, name
    with pytest.raises(InputError, match="CLIP encoder"):
        FewShotClassifier(tiny_bundle.depth_encoder(), adapter)
