"""A cheap study for the sweep machinery: its trial scores a config without any model."""

import os
import time
from pathlib import Path

import torch

from clip2point.stats import seed_metrics
from clip2point.sweep.study import Cell, Column, SearchSetup, Study


def score_trial(config, tracker, report):
    """Scores ``10 * dilation`` (seeds 0, 1, 2: one less, equal, one more); ``radius`` 0.5 raises; a marker
    file per run in ``$DUMMY_STUDY_MARKERS``, where set, counts executions. ``global_draw``: the first number
    the trial draws from torch's global RNG."""
    global_draw = float(torch.rand(()))
    if markers := os.environ.get("DUMMY_STUDY_MARKERS"):
        (Path(markers) / f"{config.render.dilation}-{config.render.radius}-{time.time_ns()}").touch()
    score = 10.0 * config.render.dilation
    for epoch in range(2):
        report({"progress": float(epoch), "score": score})  # searches need their metric in every report
    time.sleep(float(os.environ.get("DUMMY_STUDY_SLEEP", "0")))
    if config.render.radius == 0.5:
        raise RuntimeError("this cell is broken on purpose")
    return seed_metrics("score", {0: score - 1, 1: score, 2: score + 1}) | {"global_draw": global_draw}


def radius_search(config):
    """Optuna (TPE, seeded) over ``render.radius``: the values it proposes show whether a resumed search
    continued its sampler or started over (a fresh sampler with the same seed proposes the same values)."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    return SearchSetup(
        param_space={"render.radius": tune.uniform(0.01, 0.2)},
        metric="score",
        mode="max",
        num_samples=config.sweep.num_samples,
        search_alg=OptunaSearch(seed=0),
    )


def scored(name: str, title: str, trial=score_trial, **fields) -> Study:
    """A study of these tests: its one column is ``score`` (its primary metric), nothing published."""
    return Study(name=name, title=title, trial=trial, columns=(Column("score", "score"),), primary="score",
                 paper_reference="nowhere", **fields)  # fmt: skip


DUMMY_SEARCH = scored("dummy_search", "Dummy search", search=radius_search)

DUMMY = scored(
    "dummy_study",
    "Dummy study",
    cells=(
        Cell("R=1", {"render.dilation": 1}, {"score": 9.0}),
        Cell("R=2", {"render.dilation": 2}, {"score": 21.0}),
        Cell("broken", {"render.radius": 0.5}),
    ),
)
