"""Adapters: parameter counts per switch combination, the maths of each form, learning, frozen encoders."""

from __future__ import annotations

import itertools
import math

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
    inter-view: V matrices C x C, official with a bias of V*C), per path, plus one gate scalar."""
    per_path = (V * C * C + C) + (C * C + C) + (V + 2 * C + 2 * C if variant == "official" else 0)
    if aggregator == "inter_view":
        per_path += V * C * C + (V * C if variant == "official" else 0)
    return per_path * (2 if path == "dual" else 1) + (1 if fusion == "gate" else 0)


VALID = [
    (path, aggregator, fusion, variant)
    for path, aggregator, fusion, variant in itertools.product(
        ("single", "dual"), ("global", "inter_view"), ("gate", "average", "none"), ("paper", "official")
    )
    if path == "dual" or fusion == "none"
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
    assert len(VALID) == 16 and len(refused) == 8  # single: 4 forms x fusion none; dual: 4 forms x 3 fusions
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
        ({"aggregator": "inter_view", "variant": "authors"}, "'fewshot.adapter.variant': 'authors'"),
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
    fc1, fc2 = adapter.globals.fc1, adapter.globals.fc2
    g = torch.relu(x.reshape(B, V * C) @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias
    w = adapter.expand.weight.reshape(V, C, C)  # W_v for each view
    expected = torch.stack([x[:, v] + torch.relu(g @ w[v].T) for v in range(V)], dim=1)
    torch.testing.assert_close(adapter(x), expected)


def test_official_inter_view_parameters_have_pointclip_shapes():
    """PointCLIP's few-shot Adapter for V views of C features holds, by shape: fusion_ratio (V,), the view
    BatchNorm (C,) x 4, Linear(V*C, C), BatchNorm1d(C), Linear(C, C), Linear(C, V*C) with its bias."""
    pointclip = [(V,), (C,), (C,), (C,), (C,), (C, V * C), (C,), (C,), (C,), (C,), (C,), (C, C), (C,)]
    pointclip += [(V * C, C), (V * C,)]
    adapter = InterViewAdapter(V, C, "official")
    ours = [tuple(t.shape) for t in adapter.state_dict().values() if t.ndim > 0]  # less num_batches_tracked
    assert sorted(ours) == sorted(pointclip)


def official_tiny_adapter() -> InterViewAdapter:
    """V = 2 views of C = 2 features, weights set by hand, BatchNorms the identity (eval mode)."""
    adapter = InterViewAdapter(2, 2, "official")
    agg = adapter.globals
    with torch.no_grad():
        for bn in (agg.view_norm, agg.norm):
            bn.eps = 0.0
            bn.running_var.fill_(1.0)
        agg.view_weights.copy_(torch.tensor([0.5, 1.0]))
        agg.fc1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 1]]))
        agg.fc1.bias.zero_()
        agg.fc2.weight.copy_(torch.tensor([[1.0, -1], [0, 1]]))
        agg.fc2.bias.zero_()
        adapter.expand.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [-1, 0]]))
        adapter.expand.bias.copy_(torch.tensor([0.0, 0, 0, 0.5]))
    return adapter.eval()


def test_official_inter_view_forward_by_hand():
    """x = [[1, 2], [3, -1]]: view weights -> [0.5, 1, 3, -1]; fc1 -> [0.5, 2]; ReLU; fc2 -> G = [-1.5, 2];
    ReLU(G) = [0, 2]; W_0 -> [0, 2], W_1 + b_1 -> [2, 0.5]; ReLU; 0.6 * adapted + 0.4 * x."""
    adapter = official_tiny_adapter()
    x = torch.tensor([[[1.0, 2], [3, -1]]])
    expected = torch.tensor([[[0.4, 2.0], [2.4, -0.1]]])  # 0.6*[[0,2],[2,0.5]] + 0.4*x
    torch.testing.assert_close(adapter(x), expected)
    paper = InterViewAdapter(2, 2, "paper")
    paper.globals.load_state_dict({k: v for k, v in adapter.globals.state_dict().items() if "fc" in k})
    with torch.no_grad():
        paper.expand.weight.copy_(adapter.expand.weight)
    # the paper form: no view weights or BatchNorm, no ReLU on G, no bias, 1:1 residual: fc1 -> [1, 2],
    # fc2 -> G = [-1, 2]; W_0 G = [-1, 2], W_1 G = [1, 1]; ReLU -> [[0, 2], [1, 1]]; plus x
    torch.testing.assert_close(paper(x), x + torch.tensor([[[0.0, 2.0], [1.0, 1.0]]]))


def test_official_inter_view_logits_score_concatenated_views():
    """Features [0.4, 2.0, 2.4, -0.1] (|f|^2 = 9.93) against T_0 = [1, 0] and T_1 = [0, 1] repeated over
    the 2 views (|T|^2 = 2): (0.4 + 2.4) / sqrt(19.86) and (2.0 - 0.1) / sqrt(19.86)."""
    gdpa = GDPA(2, 2, AdapterSettings("single", "inter_view", "none", "official"))
    gdpa.depth_adapter = official_tiny_adapter()
    logits = gdpa(torch.tensor([[[1.0, 2], [3, -1]]]), torch.eye(2))
    torch.testing.assert_close(logits, torch.tensor([[2.8, 1.9]]) / math.sqrt(19.86))


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
