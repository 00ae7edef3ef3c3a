"""NT-Xent against a per-anchor loop, the pre-training objective, and where its gradient goes."""

from __future__ import annotations

import math

import pytest
import torch

from clip2point.errors import InputError
from clip2point.models import PretrainObjective, nt_xent
from tests.tiny_clip import random_images


def reference_nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> float:
    """SimCLR NT-Xent written out anchor by anchor in float64 with math.exp (independent of the library)."""
    n = a.shape[0]
    z = [v / v.norm() for v in torch.cat([a, b]).double()]
    total = 0.0
    for i in range(2 * n):
        partner = i + n if i < n else i - n
        denom = sum(math.exp(float(z[i] @ z[j]) / temperature) for j in range(2 * n) if j != i)
        total += -math.log(math.exp(float(z[i] @ z[partner]) / temperature) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("n", [2, 3, 8])
@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0, 0.02])
def test_nt_xent_matches_per_anchor_loop(n, temperature):
    g = torch.Generator().manual_seed(n)
    a, b = torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)
    expected = reference_nt_xent(a, b, temperature)
    assert nt_xent(a, b, temperature).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_nt_xent_hand_value_orthogonal_pairs():
    # a = b = (e1, e2): each anchor has positive cosine 1 and two negatives of cosine 0
    a = torch.eye(2, 4)
    for t in (0.25, 1.0):
        expected = math.log(1 + 2 * math.exp(-1 / t))
        assert nt_xent(a, a.clone(), t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_tiny_temperature_is_finite():
    a = torch.eye(2, 4)
    loss = nt_xent(a, a.clone(), 1e-4)  # exp(1/t) overflows float32; log-softmax must not
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    loss = nt_xent(x, y, 1e-3)
    assert torch.isfinite(loss)
    # at tiny temperature the loss tends to (max negative cosine - positive cosine) / t, averaged
    zx, zy = torch.nn.functional.normalize(torch.cat([x, y]).double(), dim=-1).split(4)
    z = torch.cat([zx, zy])
    sim = z @ z.T
    worst = []
    for i in range(8):
        p = (i + 4) % 8
        others = [sim[i, j] for j in range(8) if j not in (i, p)]
        worst.append(max(0.0, float(max(others) - sim[i, p])))
    assert loss.item() == pytest.approx(sum(worst) / 8 / 1e-3, rel=1e-3, abs=1e-2)


def test_nt_xent_ignores_feature_scale():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    assert nt_xent(7.0 * a, 0.1 * b).item() == pytest.approx(nt_xent(a, b).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        (torch.randn(1, 4), torch.randn(1, 4), {}, "at least 2"),
        (torch.randn(3, 4), torch.randn(2, 4), {}, "one shape"),
        (torch.randn(3), torch.randn(3), {}, r"\(N, C\)"),
        (torch.randn(3, 4), torch.randn(3, 4), {"temperature": 0.0}, "temperature"),
    ],
)
def test_nt_xent_rejects_bad_input(a, b, kwargs, match):
    with pytest.raises(InputError, match=match):
        nt_xent(a, b, **kwargs)


def test_objective_formula_and_balance_gradient():
    g = torch.Generator().manual_seed(3)
    img, d1, d2 = (torch.randn(4, 8, generator=g) for _ in range(3))
    objective = PretrainObjective()
    assert objective.s.item() == 1.0
    with torch.no_grad():
        objective.s.fill_(2.0)
    loss = objective(img, d1, d2)
    intra, cross = nt_xent(d1, d2), nt_xent((d1 + d2) / 2, img)
    assert loss.intra.item() == pytest.approx(intra.item(), rel=1e-6)
    assert loss.cross.item() == pytest.approx(cross.item(), rel=1e-6)
    assert loss.total.item() == pytest.approx(intra.item() / 4 + cross.item() + math.log(3), rel=1e-6)
    loss.total.backward()
    # d/ds (L_intra / s^2 + log(s + 1)) = -2 L_intra / s^3 + 1 / (s + 1)
    assert objective.s.grad.item() == pytest.approx(-2 * intra.item() / 8 + 1 / 3, rel=1e-5)


def test_cross_only_objective():
    g = torch.Generator().manual_seed(4)
    img, d = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    objective = PretrainObjective(intra=False)
    assert list(objective.parameters()) == []
    loss = objective(img, d)
    assert loss.intra is None
    assert loss.total.item() == pytest.approx(nt_xent(d, img).item(), rel=1e-6)
    with pytest.raises(InputError, match="one undistorted view"):
        objective(img, d, d)
    with pytest.raises(InputError, match="both distances"):
        PretrainObjective()(img, d)


def test_pretraining_gradient_reaches_depth_side_only(tiny_bundle):
    depth = tiny_bundle.depth_encoder()
    image = tiny_bundle.image_encoder()
    objective = PretrainObjective()
    images = random_images(3, seed=1)
    near, far = random_images(3, seed=2), random_images(3, seed=3)
    loss = objective(image(images), depth(near), depth(far))
    loss.total.backward()
    depth_grads = [p.grad for p in depth.parameters()]
    assert all(g is not None for g in depth_grads)
    assert sum(float(g.abs().sum()) for g in depth_grads) > 0
    assert objective.s.grad is not None
    assert all(not p.requires_grad and p.grad is None for p in image.parameters())
    assert all(p.grad is None for p in tiny_bundle.text.parameters())
    # the depth copy does not share storage with the frozen CLIP encoder
    assert depth.conv1.weight.data_ptr() != image.encoder.conv1.weight.data_ptr()
