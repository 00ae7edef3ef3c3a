"""Hyper-parameter search for few-shot adapter training: Optuna (through Ray Tune) with ASHA early stopping.

The space: adapter learning rate and weight decay (log-uniform), dropout (uniform) and the number of
epochs. Each trial trains the configured adapter on the first of ``fewshot.seeds`` and reports, after every
epoch, the top-1 that ``fewshot.selection`` selects on (``selection_acc``): the validation split's by
default, the test split's under ``selection: test``. ASHA stops weak trials early on it, Optuna's TPE
proposes the next ones and the best trial is the one with the highest; each trial's test top-1 at its
selected epoch is reported beside it (measured once per trial under ``val``). The best trial's settings are
printed and saved as ``results/hpo_fewshot.best.yaml`` (overrides for ``--config`` / ``-o``).
"""

from __future__ import annotations

from clip2point.config import ExperimentConfig
from clip2point.engine.context import Experiment
from clip2point.engine.fewshot import run_few_shot
from clip2point.schema import with_overrides
from clip2point.sweep.study import Column, Metrics, Report, SearchSetup, Study
from clip2point.tracking import Tracker

METRIC = "selection_acc"


def epoch_choices(epochs: int) -> list[int]:
    """A quarter, half and all of the configured epochs (distinct, at least 1)."""
    return sorted({max(1, epochs // 4), max(1, epochs // 2), epochs})


def search(config: ExperimentConfig) -> SearchSetup:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    epochs = epoch_choices(config.fewshot.epochs)
    space = {
        "fewshot.lr": tune.loguniform(1e-4, 1e-2),
        "fewshot.weight_decay": tune.loguniform(1e-5, 1e-2),
        "fewshot.dropout": tune.uniform(0.0, 0.5),
        "fewshot.epochs": tune.choice(epochs),
    }
    return SearchSetup(
        param_space=space,
        metric=METRIC,
        mode="max",
        num_samples=config.sweep.num_samples,
        search_alg=OptunaSearch(seed=config.seed),
        scheduler=ASHAScheduler(
            time_attr="training_iteration", max_t=max(epochs) + 1, grace_period=max(1, min(epochs) // 2)
        ),
    )


def hpo_trial(config: ExperimentConfig, tracker: Tracker, report: Report) -> Metrics:
    """Train with the proposed settings on one seed; report the selection top-1 every epoch."""
    config = with_overrides(config, {"fewshot.seeds": [config.fewshot.seeds[0]]})
    result = run_few_shot(
        Experiment.from_config(config),
        track=False,
        progress=False,
        on_epoch=lambda seed, stats: report({METRIC: stats.selection_acc, "loss": stats.loss}),
    )
    seed = result.seeds[0]
    selected = seed.val_acc if seed.val_acc is not None else seed.test_acc
    return {METRIC: selected, "test_acc": seed.test_acc, "selected_epoch": seed.epoch}


STUDY = Study(
    name="hpo_fewshot",
    title="Few-shot adapter hyper-parameter search (Optuna + ASHA)",
    trial=hpo_trial,
    columns=(
        Column(METRIC, "selection top-1 (searched)", fewshot=True),
        Column("test_acc", "test top-1 at the selected epoch", fewshot=True),
    ),
    paper_reference="docs/method.md section 4 (AdamW lr 1e-3, weight decay 1e-4, dropout 0.075)",
    primary=METRIC,
    search=search,
    stage="search",
    heading="Adapter hyper-parameter search",
    about="Optuna (TPE) with ASHA early stopping, best first.",
)
