"""What a study is: a set of config cells (or a search space), a trial function, the paper's numbers, its
section of ``results/paper.md`` and its settings files. A study module holds its :class:`Study` and nothing
about it lives elsewhere: adding a study takes that module (its ``STUDY`` listed in
:data:`~clip2point.sweep.studies.REPRODUCTION`), its YAMLs (:meth:`Study.settings`) and the launcher
``sweeps/<name>.py`` that every study has."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clip2point.config import ExperimentConfig
from clip2point.paths import project_root
from clip2point.tracking import Tracker

Metrics = dict[str, float]
Report = Callable[[Mapping[str, float]], None]
"""Sends intermediate metrics of a trial (e.g. per epoch) to Tune and MLflow."""
Trial = Callable[[ExperimentConfig, Tracker, Report], Metrics]
"""Runs one trial on its config; returns its final metrics. A metric ``m`` measured over seeds comes with
each seed's value as ``m/seed<s>`` (``m`` itself is their mean); tables then show mean +- std, n and the
95% confidence interval (:mod:`clip2point.stats`)."""


@dataclass(frozen=True)
class Cell:
    """One row of a study's table: a name, the config overrides that define it, the paper's values and
    (``baseline``) the row of the same study it is compared with in ``results/paper.md`` (None: the
    study's :attr:`Study.baseline`)."""

    name: str
    overrides: Mapping[str, Any]
    paper: Mapping[str, float | None] = field(default_factory=dict)
    baseline: Cell | None = None


AUTHORS = "_authors"
"""Suffix of a few-shot metric measured under the authors' reporting protocol (``sweep.authors_protocol``)."""


@dataclass(frozen=True)
class Column:
    """A metric shown in the results table and plot; ``fewshot``: its numbers come from few-shot training,
    so the table labels them with the protocol that chose the epoch (``fewshot.selection``)."""

    metric: str
    label: str
    fewshot: bool = False

    def authors(self, config: ExperimentConfig) -> bool:
        """Whether the tables show this column also under the authors' protocol, beside the configured."""
        return self.fewshot and config.sweep.authors_protocol

    def title(self, config: ExperimentConfig) -> str:
        """The label with ``{shots}`` filled from the config (``fewshot.shots``; ``all`` for the full split)."""
        shots = config.fewshot.shots
        return self.label.replace("{shots}", "all" if shots is None else str(shots))


@dataclass(frozen=True)
class Study:
    """A study of the paper, run as one Ray Tune sweep.

    Grid studies list ``cells`` (or make them from the config, e.g. one per dataset of
    ``sweep.datasets``); each trial runs one cell's overrides. Search studies (``search``) build their own
    Tune search space, algorithm and scheduler from the config (see ``hpo_fewshot``); their trials' params
    are dotted config keys. ``paper_reference`` names the table of the paper; ``plot`` draws the study's
    picture when bars per cell are not the right one (``plot(study, rows, path, toy, config) -> path``).

    In the reproduction (:mod:`clip2point.sweep.reproduce`) the study is the stage ``stage``; its section of
    ``results/paper.md`` has the ``heading`` and the text ``about``, and compares each cell with its
    baseline (:attr:`Cell.baseline`, else ``baseline``: every other cell against that one). A baseline that
    is not one of the study's cells is a ``ValueError`` when the study is made (fixed cells) or its cells
    are (cells made from the config), so a renamed or dropped cell cannot blank a column.
    """

    name: str
    title: str
    trial: Trial
    columns: tuple[Column, ...]
    cells: tuple[Cell, ...] | Callable[[ExperimentConfig], tuple[Cell, ...]] = ()
    paper_reference: str = ""
    primary: str = ""
    stage: str = ""
    heading: str = ""
    about: str = ""
    baseline: Cell | None = None
    search: Callable[[ExperimentConfig], SearchSetup] | None = None
    prepare: Callable[[ExperimentConfig], ExperimentConfig] | None = None
    """Runs once in the driver before the sweep (e.g. pre-trains the encoder every trial shares)."""
    train_workers: bool = False
    """Each trial runs Ray Train (``pretrain.num_workers`` workers beside the trial's own resources); the
    sweep checks that they fit the cluster (:mod:`clip2point.sweep.resources`)."""
    plot: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if callable(self.cells):
            return  # checked when made: cells_for
        self._checked(self.cells)

    def cells_for(self, config: ExperimentConfig) -> tuple[Cell, ...]:
        """The grid's cells for ``config`` (empty for a search study)."""
        return self._checked(tuple(self.cells(config))) if callable(self.cells) else self.cells

    def _checked(self, cells: tuple[Cell, ...]) -> tuple[Cell, ...]:
        """``cells``, after checking that their names are distinct and every baseline is one of them."""
        names = [cell.name for cell in cells]
        if len(set(names)) != len(names):
            raise ValueError(f"study {self.name}: cell names repeat: {names}")
        wanted = [("its baseline", self.baseline)] + [
            (f"cell {c.name!r}'s baseline", c.baseline) for c in cells
        ]
        for role, cell in wanted:
            if cell is not None and cell not in cells:
                raise ValueError(
                    f"study {self.name}: {role} {cell.name!r} is not one of its cells ({', '.join(names)})"
                )
        return cells

    def baseline_of(self, cell: Cell) -> Cell | None:
        """The cell ``cell`` is compared with in ``results/paper.md`` (None: not compared)."""
        baseline = cell.baseline or self.baseline
        return None if baseline == cell else baseline

    def settings(self, preset: str | None = None) -> Path:
        """The study's settings file: ``sweeps/<name>.yaml`` (its toy setting, the default of
        ``sweeps/<name>.py``), or ``sweeps/<name>.paper.yaml`` for the ``paper`` preset."""
        suffix = ".paper.yaml" if preset == "paper" else ".yaml"
        return project_root() / "sweeps" / f"{self.name}{suffix}"

    def protocol(self, config: ExperimentConfig, detail: bool = False) -> str:
        """How the few-shot epochs of this study's trials are chosen (:meth:`FewShotConfig.protocol`), for
        the shots its cells train on: the cells' own when they all set the same (``None``: the full split),
        ``K`` when they set several."""
        cells = self.cells_for(config)
        shots = {cell.overrides["fewshot.shots"] for cell in cells if "fewshot.shots" in cell.overrides}
        if len(shots) > 1:
            return config.fewshot.protocol(detail, shots="K")
        if shots and all("fewshot.shots" in cell.overrides for cell in cells):
            return dataclasses.replace(config.fewshot, shots=shots.pop()).protocol(detail)
        return config.fewshot.protocol(detail)

    def cell(self, name: str, config: ExperimentConfig) -> Cell:
        for cell in self.cells_for(config):
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
