"""What a study is: a set of config cells (or a search space), a trial function, and the paper's numbers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clip2point.config import ExperimentConfig
from clip2point.tracking import Tracker

Metrics = dict[str, float]
Report = Callable[[Mapping[str, float]], None]
"""Sends intermediate metrics of a trial (e.g. per epoch) to Tune and MLflow."""
Trial = Callable[[ExperimentConfig, Tracker, Report], Metrics]
"""Runs one trial on its config; returns its final metrics. For metric ``m`` a trial may also return
``m_std`` and ``m_n`` (spread and count over seeds); tables show ``mean +- std (n)``."""


@dataclass(frozen=True)
class Cell:
    """One row of a study's table: a name, the config overrides that define it, the paper's values."""

    name: str
    overrides: Mapping[str, Any]
    paper: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    """A metric shown in the results table and plot; ``fewshot``: its numbers come from few-shot training,
    so the table labels them with the protocol that chose the epoch (``fewshot.selection``)."""

    metric: str
    label: str
    fewshot: bool = False


@dataclass(frozen=True)
class Study:
    """A study of the paper, run as one Ray Tune sweep.

    Grid studies list ``cells``; each trial runs one cell's overrides. Search studies (``search``) build
    their own Tune search space, algorithm and scheduler from the config (see ``hpo_fewshot``); their
    trials' params are dotted config keys. ``paper_reference`` names the table of the paper.
    """

    name: str
    title: str
    trial: Trial
    columns: tuple[Column, ...]
    cells: tuple[Cell, ...] = ()
    paper_reference: str = ""
    primary: str = ""
    search: Callable[[ExperimentConfig], SearchSetup] | None = None
    prepare: Callable[[ExperimentConfig], ExperimentConfig] | None = None
    """Runs once in the driver before the sweep (e.g. pre-trains the encoder every trial shares)."""

    def cell(self, name: str) -> Cell:
        for cell in self.cells:
            if cell.name == name:
                return cell
        raise KeyError(f"study {self.name} has no cell {name!r}")


@dataclass(frozen=True)
class SearchSetup:
    """A search study's Tune pieces: ``param_space`` over dotted config keys, ``search_alg``,
    ``scheduler``, ``num_samples``, and the metric/mode they optimise."""

    param_space: Mapping[str, Any]
    metric: str
    mode: str
    num_samples: int
    search_alg: Any = None
    scheduler: Any = None
