"""Adapter training on frozen encoders (docs/method.md section 4): K-shot or full, several seeds -> mean and std.

Per seed: K samples per class from the train split (:func:`~clip2point.data.select_k_shot`, or all of
them with ``shots: null``), a fresh GDPA adapter, AdamW, cross-entropy on the adapter's cosine logits.
The reported epoch follows ``fewshot.selection`` (:meth:`~clip2point.config.FewShotConfig.protocol`):
``test`` evaluates the test split after every epoch and reports the best (the paper's protocol); ``val``
holds out a validation split of the train split (:func:`~clip2point.data.select_validation`), selects the
epoch on it and evaluates test once, with that epoch's adapter. Features come from :class:`SplitFeatures`:
from the feature cache, or rendered and encoded anew every epoch, with identical results.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clip2point.config import FewShotConfig
from clip2point.data import select_k_shot, select_validation
from clip2point.data.datasets import PointCloudDataset
from clip2point.engine.context import Experiment
from clip2point.engine.feature_cache import ChosenSamples, SplitFeatures
from clip2point.engine.metrics import Accuracy, accuracy, save_confusion_png
from clip2point.errors import ConfigError, InputError
from clip2point.models import GDPA
from clip2point.stats import Estimate, estimate, seed_metrics
from clip2point.tracking import Tracker


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training cross-entropy, training top-1 (%, in train mode) and the top-1 (%) the
    protocol looks at: ``val_acc`` under ``selection: val`` (``test_acc`` None: test is not looked at),
    ``test_acc`` under ``selection: test`` (``val_acc`` None)."""

    epoch: int
    loss: float
    train_acc: float
    val_acc: float | None
    test_acc: float | None

    @property
    def selection_acc(self) -> float:
        """The top-1 the epoch is selected on: validation, or test under ``selection: test``."""
        return self.val_acc if self.val_acc is not None else self.test_acc


@dataclass(frozen=True)
class SeedResult:
    """One seed's run under ``selection`` (``"val"`` or ``"test"``): the selected ``epoch`` (the first with the
    best validation top-1, or with the best test top-1), the test top-1 of that epoch's adapter
    (``test_acc``, %), its validation top-1 (``val_acc``; None under ``test``), the last epoch's test top-1
    (``last_acc``; None under ``val``, where test is evaluated once), the per-epoch history, the selected
    epoch's full test :class:`Accuracy` (per class, confusion) and its learned gate ``s_g`` (``gate``; None
    without ``fusion: gate``)."""

    seed: int
    selection: str
    epoch: int
    test_acc: float
    val_acc: float | None
    last_acc: float | None
    history: tuple[EpochStats, ...]
    accuracy: Accuracy
    gate: float | None = None


@dataclass(frozen=True)
class FewShotResult:
    """Every seed's result under one protocol (``protocol``, as tables label it); ``test`` and, where
    measured, ``val`` and ``last`` summarise the seeds (:class:`~clip2point.stats.Estimate`: mean, sample
    std, n, 95% interval)."""

    seeds: tuple[SeedResult, ...]
    protocol: str

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def test(self) -> Estimate:
        """Test top-1 at the selected epochs."""
        return estimate([s.test_acc for s in self.seeds])

    @property
    def val(self) -> Estimate | None:
        """Validation top-1 at the selected epochs (None under ``selection: test``)."""
        values = [s.val_acc for s in self.seeds]
        return None if None in values else estimate(values)

    @property
    def last(self) -> Estimate | None:
        """The last epoch's test top-1 (None under ``selection: val``: test is read once)."""
        values = [s.last_acc for s in self.seeds]
        return None if None in values else estimate(values)

    def metrics(self, prefix: str) -> dict[str, float]:
        """``<prefix>`` (test top-1 at the selected epochs) and, where measured, ``<prefix>_val`` (validation
        top-1 there), ``<prefix>_last`` (the last epoch's test top-1), ``<prefix>_epoch`` (the selected
        epoch) and ``<prefix>_gate`` (the learned gate there), each the mean over the seeds with every seed's
        value beside it (``<prefix>/seed<s>``, :func:`clip2point.stats.seed_metrics`): what MLflow holds and
        tables show as mean +- std, n and the 95% interval."""
        out = {}
        fields = (
            ("", "test_acc"),
            ("_val", "val_acc"),
            ("_last", "last_acc"),
            ("_epoch", "epoch"),
            ("_gate", "gate"),
        )
        for name, attribute in fields:
            values = {s.seed: getattr(s, attribute) for s in self.seeds}
            if None not in values.values():
                out |= seed_metrics(f"{prefix}{name}", values)
        return out


def _cell(value: float | None) -> str:
    return "      -" if value is None else f"{value:7.2f}"


def format_table(result: FewShotResult) -> str:
    """Per seed: the selected epoch, its validation and test top-1 and the last epoch's test top-1; then
    mean +- sample std over the seeds, and the protocol that chose the epochs."""
    lines = [f"{'seed':>6}  {'epoch':>5}  {'val':>7}  {'test':>7}  {'last':>7}"]
    for s in result.seeds:
        lines.append(
            f"{s.seed:>6}  {s.epoch:>5}  {_cell(s.val_acc)}  {_cell(s.test_acc)}  {_cell(s.last_acc)}"
        )
    summary = [result.val, result.test, result.last]
    shown = ["-" if e is None else f"{e.mean:.2f} +- {e.std:.2f}" for e in summary]
    lines.append(f"{'mean':>6}  {'':>5}  " + "  ".join(shown))
    lines.append(
        f"(top-1 %, n = {result.n} seeds, std = sample standard deviation; epoch: {result.protocol})"
    )
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


def select_samples(
    labels: np.ndarray, config: FewShotConfig, seed: int, class_names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One seed's training indices and, under ``selection: val``, the validation indices held out of the
    same train split (``val_shots`` per class beside the K shots, or ``val_fraction`` of each class taken
    out of the full split); None under ``selection: test``."""
    train = select_train(labels, config.shots, seed, class_names)
    if config.selection == "test":
        return train, None
    size = {"per_class": config.val_shots} if config.shots is not None else {"fraction": config.val_fraction}
    try:
        kept, val = select_validation(labels, train.numpy(), seed, **size)
    except InputError as exc:
        raise InputError(
            f"fewshot.selection='val': {exc}; lower fewshot.shots or use selection 'test'"
        ) from None
    return torch.from_numpy(kept), torch.from_numpy(val)


def _batches(count: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled split of ``range(count)`` into batches; a trailing batch of one sample is dropped
    (BatchNorm cannot train on it)."""
    batches = list(torch.randperm(count, generator=generator).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


@torch.no_grad()
def predict(
    adapter: GDPA,
    features: SplitFeatures,
    text: torch.Tensor,
    batch_size: int,
    indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits ``(M, K)`` of the samples ``indices (M,)`` of ``features`` (default: every sample), adapter in
    eval mode (its mode is restored)."""
    was_training = adapter.training
    adapter.eval()
    indices = torch.arange(len(features)) if indices is None else indices
    try:
        chunks = [_call(adapter, features(idx), text) for idx in indices.split(batch_size)]
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
    val_indices: torch.Tensor | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    before_epoch: Callable[[int], None] | None = None,
) -> SeedResult:
    """Train ``adapter`` (only it: the encoders behind ``train``/``test`` are frozen) on the samples
    ``train_indices`` of ``train`` for ``epochs`` with AdamW and cross-entropy on its cosine logits against
    prompt features ``text (K, C)``, and select an epoch.

    With ``val_indices`` (samples of ``train`` held out of training) the validation top-1 is measured after
    every epoch, the first epoch with the best one is selected and ``test`` is evaluated once, with that
    epoch's adapter (``selection: val``). Without, ``test`` is evaluated after every epoch and the first
    epoch with the best test top-1 is selected (``selection: test``, the paper's). Either way ``adapter``
    ends with the selected epoch's weights. ``seed`` fixes the batch order and the dropout masks (the caller
    seeds the adapter's initialisation); the global RNG is restored. ``before_epoch(epoch)`` is called
    before each epoch (1, 2, ...; :func:`run_few_shot` moves re-sampled clouds to the epoch's draw)."""
    if epochs < 1:
        raise ConfigError(f"fewshot.epochs={epochs} must be >= 1")
    device = text.device
    optimiser = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history: list[EpochStats] = []
    labels = train.labels.to(device)
    best, best_state, best_test = -math.inf, None, None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for epoch in range(1, epochs + 1):
            if before_epoch is not None:
                before_epoch(epoch)
            adapter.train()
            # summed on the device and read once per epoch: the host never waits for a batch
            total_loss = torch.zeros((), dtype=torch.float64, device=device)
            correct, seen = torch.zeros((), dtype=torch.int64, device=device), 0
            for batch in _batches(len(train_indices), batch_size, generator):
                idx = train_indices[batch]
                logits = _call(adapter, train(idx), text)
                target = labels[idx.to(device, non_blocking=True)]
                loss = F.cross_entropy(logits, target)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total_loss += loss.detach().double() * len(idx)
                correct += (logits.argmax(1) == target).sum()
                seen += len(idx)
            loss_mean, train_acc = total_loss.item() / seen, 100.0 * correct.item() / seen
            if val_indices is None:
                tested = accuracy(predict(adapter, test, text, batch_size), test.labels, class_names)
                stats = EpochStats(epoch, loss_mean, train_acc, None, tested.overall)
            else:
                val_logits = predict(adapter, train, text, batch_size, val_indices)
                validated = accuracy(val_logits, train.labels[val_indices], class_names)
                stats = EpochStats(epoch, loss_mean, train_acc, validated.overall, None)
            history.append(stats)
            if stats.selection_acc > best:  # the first epoch reaching the maximum
                best, best_state = stats.selection_acc, copy.deepcopy(adapter.state_dict())
                best_test = tested if val_indices is None else None
            if on_epoch is not None:
                on_epoch(stats)
    adapter.load_state_dict(best_state)
    selected = next(s for s in history if s.selection_acc == best)
    if val_indices is not None:  # the one look at the test split
        best_test = accuracy(predict(adapter, test, text, batch_size), test.labels, class_names)
    last = history[-1].test_acc
    gate = getattr(adapter, "gate", None)
    return SeedResult(
        seed, "test" if val_indices is None else "val", selected.epoch, best_test.overall, selected.val_acc,
        last, tuple(history), best_test, None if gate is None else gate.item(),
    )  # fmt: skip


def move_to_epoch(datasets: Sequence[PointCloudDataset], epoch: int) -> None:
    """Serve ``epoch``'s clouds from each of ``datasets`` (re-sampled ones; a no-op for fixed clouds)."""
    for dataset in datasets:
        dataset.set_epoch(epoch)


def chosen_samples(
    train_set: PointCloudDataset, samples: dict[int, tuple[torch.Tensor, torch.Tensor | None]]
) -> tuple[ChosenSamples, dict[int, tuple[torch.Tensor, torch.Tensor | None]]]:
    """The samples of ``train_set`` that some seed trains or validates on, as a :class:`ChosenSamples`, and
    every seed's ``(train, val)`` indices remapped into it (positions in it of the same samples)."""
    drawn = [idx for pair in samples.values() for idx in pair if idx is not None]
    needed = torch.unique(torch.cat(drawn))  # sorted
    remap = {
        seed: tuple(None if idx is None else torch.searchsorted(needed, idx) for idx in pair)
        for seed, pair in samples.items()
    }
    return ChosenSamples(train_set, needed.numpy()), remap


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
    dataset (train split, ``fewshot.shots`` per class) and tested on its test split at the epoch
    ``fewshot.selection`` picks, once per seed of ``fewshot.seeds``, on the features of
    :func:`frozen_encoders`. Under ``fewshot.resample`` both splits' clouds are sampled anew for every
    epoch (the same draws for every seed, from ``seed`` of the config); their features come from the feature
    cache once per epoch: the test split's, and of the train split only the seeds' samples
    (:func:`chosen_samples`), each an entry per epoch shared by every cell with the same encoders, rendering
    and draw.

    Writes ``confusion_seed<s>.png`` (the selected epoch, on test) to ``out_dir`` (default
    ``<project>/runs/fewshot/<dataset>``). With ``track``, one MLflow run (tagged ``protocol``) holds the
    config, the summary metrics (:meth:`FewShotResult.metrics` with prefix ``fewshot_acc``) and the table
    (``results.txt``); one nested run per seed holds the per-epoch
    ``loss``, ``train_acc`` and ``val_acc`` or (``selection: test``) ``test_acc`` (step = epoch), the
    selected epoch's results and its confusion matrix. ``on_epoch(seed, stats)`` is called after every
    epoch (sweeps report through it)."""
    config = experiment.config
    fs, device = config.fewshot, experiment.device
    if not fs.seeds:
        raise ConfigError("fewshot.seeds is empty; give at least one seed, e.g. [0, 1, 2]")
    num_views, dim = experiment.views.num_views, experiment.bundle.embed_dim
    encoders = frozen_encoders(experiment)
    train_set, test_set = (experiment.dataset(split, resample=fs.resample) for split in ("train", "test"))
    class_names = train_set.class_names
    samples = {seed: select_samples(train_set.labels, fs, seed, class_names) for seed in fs.seeds}
    out = experiment.output_dir("fewshot", out_dir)
    tags = {
        "depth_encoder": experiment.depth_encoder_label, "dataset_fingerprint": train_set.fingerprint(),
        "protocol": fs.protocol(detail=True),
    }  # fmt: skip
    parent = Tracker.start(config, f"fewshot-{config.data.dataset}", tags=tags) if track else None
    with parent.active() if parent else nullcontext():
        train_source = train_set
        if fs.resample:  # of a re-sampled train split only the seeds' samples are worth rendering each epoch
            train_source, samples = chosen_samples(train_set, samples)
        train, test = (
            SplitFeatures(ds, encoders, experiment.renderer, experiment.views, cache_dir=fs.feature_cache,
                          batch_size=fs.batch_size, device=device, progress=progress,
                          precision=config.precision)
            for ds in (train_source, test_set)
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
                        measured = {"val_acc": stats.val_acc, "test_acc": stats.test_acc}
                        child.log_metrics(
                            {"loss": stats.loss, "train_acc": stats.train_acc}
                            | {k: v for k, v in measured.items() if v is not None},
                            stats.epoch,
                        )
                    if on_epoch:
                        on_epoch(seed, stats)

                adapter = seeded_adapter(fs, num_views, dim, seed, device)
                train_indices, val_indices = samples[seed]
                result = train_adapter(
                    adapter, train, test, text, class_names, train_indices, epochs=fs.epochs,
                    batch_size=fs.batch_size, lr=fs.lr, weight_decay=fs.weight_decay, seed=seed,
                    val_indices=val_indices, on_epoch=report,
                    before_epoch=partial(move_to_epoch, (train_set, test_set)) if fs.resample else None,
                )  # fmt: skip
                title = f"{config.data.dataset} seed {seed}, epoch {result.epoch} ({fs.protocol()})"
                picture = save_confusion_png(result.accuracy, out / f"confusion_seed{seed}.png", title=title)
                if child:
                    chosen = {"selected_test_acc": result.test_acc, "selected_epoch": result.epoch}
                    if result.val_acc is not None:
                        chosen["selected_val_acc"] = result.val_acc
                    if result.gate is not None:
                        chosen["selected_gate"] = result.gate
                    child.log_metrics(chosen, fs.epochs)
                    child.log_artifact(picture)
            results.append(result)
        summary = FewShotResult(tuple(results), fs.protocol())
        if parent:
            parent.log_metrics(summary.metrics("fewshot_acc"), fs.epochs)
            parent.log_text(format_table(summary), "results.txt")
    return summary
