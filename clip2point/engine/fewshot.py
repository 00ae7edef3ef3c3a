"""Adapter training on frozen encoders (docs/method.md section 4): K-shot or full, several seeds -> mean and std.

Per seed: K samples per class from the train split (:func:`~clip2point.data.select_k_shot`, or all of
them with ``shots: null``), a fresh GDPA adapter, AdamW, cross-entropy on the adapter's cosine logits,
top-1 on the test split after every epoch (best and last). Features come from :class:`SplitFeatures`:
from the feature cache, or rendered and encoded anew every epoch, with identical results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clip2point.config import FewShotConfig
from clip2point.data import select_k_shot
from clip2point.engine.context import Experiment
from clip2point.engine.feature_cache import SplitFeatures
from clip2point.engine.metrics import Accuracy, accuracy, save_confusion_png
from clip2point.errors import ConfigError, InputError
from clip2point.models import GDPA
from clip2point.tracking import Tracker


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training cross-entropy, training top-1 (%, in train mode) and test top-1 (%)."""

    epoch: int
    loss: float
    train_acc: float
    test_acc: float


@dataclass(frozen=True)
class SeedResult:
    """One seed's run: ``best`` (max test top-1 over epochs, %) at ``best_epoch``, ``last`` (the final
    epoch's), the per-epoch history and the final epoch's full :class:`Accuracy` (per class, confusion)."""

    seed: int
    best: float
    best_epoch: int
    last: float
    history: tuple[EpochStats, ...]
    final: Accuracy


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) of ``values``; the std of a single value is 0."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("mean_std of no values")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


@dataclass(frozen=True)
class FewShotResult:
    """Every seed's result; ``best_mean_std`` and ``last_mean_std`` (mean, sample std) summarise them."""

    seeds: tuple[SeedResult, ...]

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def best_mean_std(self) -> tuple[float, float]:
        return mean_std([s.best for s in self.seeds])

    @property
    def last_mean_std(self) -> tuple[float, float]:
        return mean_std([s.last for s in self.seeds])


def format_table(result: FewShotResult) -> str:
    """Per-seed best (epoch) and last top-1, then mean +- sample std over the seeds, as text."""
    lines = [f"{'seed':>6}  {'best (epoch)':>14}  {'last':>7}"]
    for s in result.seeds:
        lines.append(f"{s.seed:>6}  {s.best:7.2f} ({s.best_epoch:>4})  {s.last:7.2f}")
    (best_mean, best_std), (last_mean, last_std) = result.best_mean_std, result.last_mean_std
    lines.append(f"{'mean':>6}  {best_mean:6.2f} +- {best_std:<5.2f}  {last_mean:6.2f} +- {last_std:.2f}")
    lines.append(f"(top-1 %, n = {result.n} seeds, std = sample standard deviation)")
    return "\n".join(lines)


def build_adapter(config: FewShotConfig, views: int, dim: int) -> GDPA:
    """The GDPA of ``config.adapter`` for ``views`` views of ``dim``-d features, the official aggregator's
    dropout set to ``config.dropout``."""
    adapter = GDPA(views, dim, config.adapter)
    for module in adapter.modules():
        if isinstance(module, nn.Dropout):
            module.p = config.dropout
    return adapter


def select_train(
    labels: np.ndarray, shots: int | None, seed: int, class_names: Sequence[str]
) -> torch.Tensor:
    """Indices ``(K * shots,)`` of the training samples of one seed (all ``(M,)`` with ``shots`` None)."""
    if shots is None:
        return torch.arange(len(labels))
    try:
        return torch.from_numpy(select_k_shot(labels, shots, seed, class_names))
    except InputError as exc:
        raise InputError(f"fewshot.shots={shots}: {exc}; lower fewshot.shots or use null (full)") from None


def _batches(count: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled split of ``range(count)`` into batches; a trailing batch of one sample is dropped
    (BatchNorm cannot train on it)."""
    batches = list(torch.randperm(count, generator=generator).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


@torch.no_grad()
def predict(adapter: GDPA, features: SplitFeatures, text: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits ``(M, K)`` of every sample of ``features`` (adapter in eval mode; its mode is restored)."""
    was_training = adapter.training
    adapter.eval()
    try:
        chunks = [
            _call(adapter, features(idx), text) for idx in torch.arange(len(features)).split(batch_size)
        ]
    finally:
        adapter.train(was_training)
    return torch.cat(chunks)


def _call(adapter: GDPA, per_encoder: list[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
    """The adapter's logits ``(B, K)`` from the features of ``[depth encoder]`` or ``[depth, CLIP]``."""
    depth, *clip = per_encoder
    return adapter(depth, text, clip[0] if clip else None)


def train_adapter(
    adapter: GDPA,
    train: SplitFeatures,
    test: SplitFeatures,
    text: torch.Tensor,
    class_names: Sequence[str],
    train_indices: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> SeedResult:
    """Train ``adapter`` (only it: the encoders behind ``train``/``test`` are frozen) on the samples
    ``train_indices`` of ``train`` for ``epochs`` with AdamW and cross-entropy on its cosine logits against
    prompt features ``text (K, C)``; evaluate on ``test`` after every epoch. ``seed`` fixes the batch order
    and the dropout masks (the caller seeds the adapter's initialisation); the global RNG is restored."""
    if epochs < 1:
        raise ConfigError(f"fewshot.epochs={epochs} must be >= 1")
    device = text.device
    optimiser = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history: list[EpochStats] = []
    labels = train.labels.to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for epoch in range(1, epochs + 1):
            adapter.train()
            total_loss, correct, seen = 0.0, 0, 0
            for batch in _batches(len(train_indices), batch_size, generator):
                idx = train_indices[batch]
                logits = _call(adapter, train(idx), text)
                target = labels[idx.to(device)]
                loss = F.cross_entropy(logits, target)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total_loss += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == target).sum())
                seen += len(idx)
            final = accuracy(predict(adapter, test, text, batch_size), test.labels, class_names)
            stats = EpochStats(epoch, total_loss / seen, 100.0 * correct / seen, final.overall)
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
    best = max(history, key=lambda s: s.test_acc)  # the first epoch reaching the maximum
    return SeedResult(seed, best.test_acc, best.epoch, history[-1].test_acc, tuple(history), final)


def frozen_encoders(experiment: Experiment) -> list[nn.Module]:
    """The encoders feeding the adapter: ``[depth]`` (single path) or ``[depth, CLIP visual]`` (dual); the
    depth encoder is the experiment's (``model.depth_encoder``, or CLIP's visual encoder itself)."""
    depth = experiment.depth_encoder
    dual = experiment.config.fewshot.adapter.path == "dual"
    return [depth, experiment.bundle.visual] if dual else [depth]


def seeded_adapter(config: FewShotConfig, views: int, dim: int, seed: int, device: torch.device) -> GDPA:
    """:func:`build_adapter` initialised under ``torch.manual_seed(seed)``, the global RNG restored."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return build_adapter(config, views, dim).to(device)


def run_few_shot(
    experiment: Experiment,
    *,
    out_dir: str | Path | None = None,
    track: bool = True,
    progress: bool = True,
    on_epoch: Callable[[int, EpochStats], None] | None = None,
) -> FewShotResult:
    """The ``clip2point fewshot`` experiment: adapters of ``fewshot.adapter`` trained on the config's
    dataset (train split, ``fewshot.shots`` per class) and tested on its test split, once per seed of
    ``fewshot.seeds``, on the features of :func:`frozen_encoders`.

    Writes ``confusion_seed<s>.png`` (final epoch) to ``out_dir`` (default
    ``<project>/runs/fewshot/<dataset>``). With ``track``, one MLflow run holds the config, the summary
    metrics (``best_acc_mean/std``, ``last_acc_mean/std``) and the table (``results.txt``); one nested run
    per seed holds the per-epoch ``loss``, ``train_acc`` and ``test_acc`` (step = epoch) and its confusion
    matrix. ``on_epoch(seed, stats)`` is called after every epoch (sweeps report through it)."""
    config = experiment.config
    fs, device = config.fewshot, experiment.device
    if not fs.seeds:
        raise ConfigError("fewshot.seeds is empty; give at least one seed, e.g. [0, 1, 2]")
    num_views, dim = experiment.views.num_views, experiment.bundle.embed_dim
    encoders = frozen_encoders(experiment)
    train_set, test_set = experiment.dataset("train"), experiment.dataset("test")
    class_names = train_set.class_names
    selections = {seed: select_train(train_set.labels, fs.shots, seed, class_names) for seed in fs.seeds}
    out = experiment.output_dir("fewshot", out_dir)
    tags = {"depth_encoder": experiment.depth_encoder_label, "dataset_fingerprint": train_set.fingerprint()}
    parent = Tracker.start(config, f"fewshot-{config.data.dataset}", tags=tags) if track else None
    with parent.active() if parent else nullcontext():
        train, test = (
            SplitFeatures(ds, encoders, experiment.renderer, experiment.views, cache_dir=fs.feature_cache,
                          batch_size=fs.batch_size, device=device, progress=progress,
                          precision=config.precision)
            for ds in (train_set, test_set)
        )  # fmt: skip
        text = experiment.text_features(class_names)
        results = []
        for seed in fs.seeds:
            child = (
                Tracker.start(config, f"seed-{seed}", parent=parent, tags={"seed": seed}) if parent else None
            )
            with child.active() if child else nullcontext():

                def report(stats: EpochStats, seed: int = seed, child: Tracker | None = child) -> None:
                    if child:
                        child.log_metrics(
                            {"loss": stats.loss, "train_acc": stats.train_acc, "test_acc": stats.test_acc},
                            stats.epoch,
                        )
                    if on_epoch:
                        on_epoch(seed, stats)

                adapter = seeded_adapter(fs, num_views, dim, seed, device)
                result = train_adapter(
                    adapter, train, test, text, class_names, selections[seed], epochs=fs.epochs,
                    batch_size=fs.batch_size, lr=fs.lr, weight_decay=fs.weight_decay, seed=seed, on_epoch=report,
                )  # fmt: skip
                title = f"{config.data.dataset} seed {seed}"
                picture = save_confusion_png(result.final, out / f"confusion_seed{seed}.png", title=title)
                if child:
                    child.log_metrics({"best_acc": result.best, "last_acc": result.last}, fs.epochs)
                    child.log_artifact(picture)
            results.append(result)
        summary = FewShotResult(tuple(results))
        if parent:
            (best_mean, best_std), (last_mean, last_std) = summary.best_mean_std, summary.last_mean_std
            parent.log_metrics(
                {"best_acc_mean": best_mean, "best_acc_std": best_std, "last_acc_mean": last_mean,
                 "last_acc_std": last_std, "num_seeds": summary.n},
                fs.epochs,
            )  # fmt: skip
            parent.log_text(format_table(summary), "results.txt")
    return summary
