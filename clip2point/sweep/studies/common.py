"""What several studies share: the depth encoder they are given or pre-train once, K-shot trials, and the
study of adapters trained on that encoder (:func:`fewshot_study`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from clip2point import storage
from clip2point.config import ExperimentConfig
from clip2point.engine.context import Experiment
from clip2point.engine.fewshot import run_few_shot
from clip2point.engine.pretrain import run_pretraining, runs_folder
from clip2point.schema import with_overrides
from clip2point.sweep.study import AUTHORS, Cell, Column, Metrics, Report, Study
from clip2point.tracking import Tracker

ENCODER_RUN = "depth-encoder"
"""The pre-training run that studies needing a depth encoder share when the config names none."""

CLIP_SINGLE_PATH = {
    "fewshot.adapter.path": "single",
    "fewshot.adapter.aggregator": "global",
    "fewshot.adapter.fusion": "none",
    "model.depth_encoder": None,
}
"""Without pre-training (Tables 2, 3 and 5): a single-path adapter, global-view aggregator, on CLIP."""

FULL_GDPA = {
    "fewshot.adapter.path": "dual",
    "fewshot.adapter.aggregator": "global",
    "fewshot.adapter.fusion": "gate",
}
"""With pre-training (Tables 2 and 3): the full GDPA on the pre-trained depth encoder and CLIP."""


def with_depth_encoder(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with a pre-trained depth encoder: ``model.depth_encoder`` if set, else the best encoder of
    the pre-training run :data:`ENCODER_RUN` in ``<storage>/pretrain``, made first if missing (an earlier,
    possibly interrupted run of that name is resumed, which returns at once when it had finished). Studies
    use it as their ``prepare`` step, in the driver, before any trial."""
    if config.model.depth_encoder is not None:
        return config
    earlier = storage.exists(storage.join(runs_folder(config), ENCODER_RUN))
    verb = "resuming" if earlier else "starting"
    print(f"no model.depth_encoder given: {verb} the shared pre-training run {ENCODER_RUN!r}")
    result = run_pretraining(config, ENCODER_RUN, resume=earlier)
    return with_overrides(config, {"model.depth_encoder": result.best_file})


def fewshot_trial(config: ExperimentConfig, tracker: Tracker, report: Report) -> Metrics:
    """Adapters trained as ``config.fewshot`` says, one per seed: the test top-1 at the selected epochs
    (``fewshot_acc``, per seed), and the first seed's selection top-1 and loss after every epoch (for
    Tune's progress and schedulers); with ``sweep.authors_protocol`` also :func:`authors_metrics`."""

    def each_epoch(seed, stats) -> None:
        if seed == config.fewshot.seeds[0]:
            report({"selection_acc": stats.selection_acc, "loss": stats.loss})

    result = run_few_shot(Experiment.from_config(config), track=False, progress=False, on_epoch=each_epoch)
    return result.metrics("fewshot_acc") | authors_metrics(config)


def authors_metrics(config: ExperimentConfig, prefix: str = "fewshot_acc") -> Metrics:
    """With ``sweep.authors_protocol``: one more run of the cell under the authors' reporting protocol
    (:meth:`~clip2point.config.FewShotConfig.authors`: the first seed, the best test epoch, clouds sampled
    anew every epoch), as ``<prefix>_authors`` (that run's best test top-1) and ``<prefix>_authors_epoch``;
    without, nothing."""
    if not config.sweep.authors_protocol:
        return {}
    authors = dataclasses.replace(config, fewshot=config.fewshot.authors())
    run = run_few_shot(Experiment.from_config(authors), track=False, progress=False).seeds[0]
    return {f"{prefix}{AUTHORS}": run.test_acc, f"{prefix}{AUTHORS}_epoch": float(run.epoch)}


def fewshot_study(label: str, cells: tuple[Cell, ...] | Callable, **fields: Any) -> Study:
    """A study whose trials train adapters (:func:`fewshot_trial`) on the pre-trained depth encoder
    (:func:`with_depth_encoder`, its ``prepare``) and whose one column, ``fewshot_acc`` labelled ``label``,
    is their top-1; ``fields``: the rest of the :class:`Study`."""
    column = Column("fewshot_acc", label, fewshot=True)
    return Study(trial=fewshot_trial, columns=(column,), cells=cells, primary="fewshot_acc",
                 prepare=with_depth_encoder, **fields)  # fmt: skip
