"""The pre-training optimiser: ``--preset paper`` steps exactly as the authors' ``torch_optimizer.Lamb``
(bit for bit, with the same state layout, and without reading a value back from the device); timm's LAMB
(the option) takes longer steps on tensors whose norm exceeds torch-optimizer's cap of 10."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_optimizer
from timm.optim import Lamb as TimmLamb

from clip2point.config import PretrainConfig, load_config
from clip2point.engine import lamb
from clip2point.engine.lamb import Lamb, chunks
from clip2point.engine.optim import build_optimizer
from clip2point.errors import ConfigError
from tests.host_sync import no_host_sync


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


def with_degenerate(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """``params`` and a zero tensor (``||w|| = 0``: trust ratio 1) and one with no gradient (skipped)."""
    return [*params, torch.nn.Parameter(torch.zeros(5)), torch.nn.Parameter(torch.ones(3))]


def step_all_but_last(optimiser: torch.optim.Optimizer, params, step: int) -> None:
    step_with(optimiser, params[:-1], step)


@pytest.mark.parametrize("run_elements", [lamb.CPU_CHUNK_ELEMENTS, 100])  # one run; a run per tensor
def test_paper_preset_steps_exactly_as_the_authors_lamb(monkeypatch, run_elements):
    monkeypatch.setattr(lamb, "CPU_CHUNK_ELEMENTS", run_elements)
    settings = load_config(preset="paper").pretrain
    assert (settings.optimizer, settings.lr, settings.weight_decay) == ("lamb", 0.006, 0.0001)
    ours, theirs = with_degenerate(parameters()), with_degenerate(parameters())
    optimiser = build_optimizer(settings, ours)
    reference = torch_optimizer.Lamb(theirs, lr=0.006, weight_decay=1e-4)  # the authors' line
    for step in range(6):
        step_all_but_last(optimiser, ours, step)
        step_all_but_last(reference, theirs, step)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(ours[-1], torch.ones(3)) and ours[-1] not in optimiser.state  # no gradient: untouched
    assert type(optimiser) is Lamb and optimiser.defaults == reference.defaults
    assert optimiser.clamp_value == reference.clamp_value == 10
    assert (reference.adam, reference.debias) == (False, False)
    ours_state, their_state = optimiser.state_dict()["state"], reference.state_dict()["state"]
    assert ours_state.keys() == their_state.keys()
    for key, slot in ours_state.items():
        assert slot.keys() == their_state[key].keys() and slot["step"] == their_state[key]["step"] == 6
        for name in ("exp_avg", "exp_avg_sq", "weight_norm", "adam_norm"):
            torch.testing.assert_close(slot[name], their_state[key][name], rtol=0, atol=0)
        torch.testing.assert_close(
            slot["trust_ratio"], torch.as_tensor(their_state[key]["trust_ratio"]).float()
        )


def test_a_zero_tensor_steps_with_trust_ratio_one():
    """||w|| = 0: the first step is lr * u with u = m / (sqrt(v) + eps) = 0.1 g / (sqrt(0.001) |g| + 1e-6)."""
    param = torch.nn.Parameter(torch.zeros(5))
    grad = torch.tensor([1.0, -2.0, 0.5, 3.0, -0.25])
    param.grad = grad.clone()
    optimiser = Lamb([param], lr=0.006, weight_decay=1e-4)
    optimiser.step()
    expected = -0.006 * (0.1 * grad) / ((0.001 * grad.square()).sqrt() + 1e-6)
    torch.testing.assert_close(param.detach(), expected, rtol=1e-6, atol=0)
    assert float(optimiser.state[param]["trust_ratio"]) == 1.0


def test_runs_keep_the_order_and_hold_at_most_the_given_elements_unless_one_tensor_is_larger():
    sizes = [3, 4, 10, 1, 1, 2]
    tensors = [torch.empty(n) for n in sizes]
    runs = chunks(tensors, 5)
    assert [[t.numel() for t in run] for run in runs] == [[3], [4], [10], [1, 1, 2]]
    assert [t for run in runs for t in run] == tensors and chunks(tensors, None) == [tensors]


def test_a_torch_optimizer_checkpoint_resumes_in_ours_and_steps_the_same():
    ours, theirs = parameters(), parameters()
    reference = torch_optimizer.Lamb(theirs, lr=0.006, weight_decay=1e-4)
    for step in range(3):
        step_with(reference, theirs, step)
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b)
    optimiser = Lamb(ours, lr=0.006, weight_decay=1e-4)
    optimiser.load_state_dict(copy.deepcopy(reference.state_dict()))  # as read from a file: no shared tensors
    for step in range(3, 6):
        step_with(optimiser, ours, step)
        step_with(reference, theirs, step)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_step_reads_nothing_back_from_the_device():
    """On the meta device every read of a value (``.item()``, ``if tensor``, a tensor as a Python number)
    raises: where torch-optimizer's step reads the norms back, ours runs through."""
    params = [
        torch.nn.Parameter(torch.empty(64, 48, device="meta")),
        torch.nn.Parameter(torch.empty(48, device="meta")),
    ]
    for p in params:
        p.grad = torch.empty_like(p)
    with pytest.raises(RuntimeError, match="meta tensors"):
        torch_optimizer.Lamb(params, lr=0.006, weight_decay=1e-4).step()
    optimiser = Lamb(params, lr=0.006, weight_decay=1e-4)
    with no_host_sync():  # nor a copy from the host
        optimiser.step()
        optimiser.step()
    assert [optimiser.state[p]["step"] for p in params] == [2, 2]
    assert optimiser.state[params[0]]["trust_ratio"].device.type == "meta"


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [("lr", 0.0, "lr must be > 0"), ("eps", -1.0, "eps must be >= 0"), ("betas", (0.9, 1.0), "betas must lie"),
     ("weight_decay", -1e-4, "weight_decay must be >= 0")],
)  # fmt: skip
def test_bad_lamb_settings_are_refused(argument, value, message):
    settings = {"lr": 0.006} | {argument: value}
    with pytest.raises(ValueError, match=f"Lamb: {message}"):
        Lamb(parameters(), **settings)


def test_sparse_gradients_are_refused():
    param = torch.nn.Parameter(torch.ones(4))
    param.grad = torch.ones(4).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        Lamb([param], lr=0.006).step()


def test_step_lengths_by_hand_torch_optimizer_caps_the_weight_norm_timm_does_not():
    """One step moves each tensor by lr * min(||w||, 10) (torch-optimizer) or lr * ||w|| (timm)."""
    lr = 0.006
    for name, expected in (("lamb", (lr * 10, lr * 2, lr * 1)), ("timm_lamb", (lr * 30, lr * 2, lr * 1))):
        params = parameters()
        before = [p.detach().clone() for p in params]
        optimiser = build_optimizer(PretrainConfig(optimizer=name, lr=lr, weight_decay=1e-4), params)
        assert isinstance(optimiser, Lamb if name == "lamb" else TimmLamb)
        step_with(optimiser, params, 0)
        moved = [float((p.detach() - b).norm()) for p, b in zip(params, before, strict=True)]
        assert moved == pytest.approx(expected, rel=1e-5), name


def test_unknown_optimizer_is_refused():
    with pytest.raises(
        ConfigError, match=r"'pretrain.optimizer': 'adam' is not allowed; expected one of 'lamb', 'timm_lamb'"
    ):
        load_config(overrides={"pretrain.optimizer": "adam"})
