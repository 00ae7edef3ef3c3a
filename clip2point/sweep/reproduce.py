"""The whole paper as one resumable workflow: ``python sweeps/reproduce.py``.

Stages, in order, each a study run as its Ray Tune sweep (:data:`STAGES`):

1. ``pretrain``: pre-training with and without the intra-modality loss (the ``ablation_pretrain`` study:
   two Ray Train runs); the best encoder of the run *with* it
   (:data:`~clip2point.sweep.studies.pretrain.WITH_INTRA`) is the reproduction's depth encoder;
2. every other study of :data:`~clip2point.sweep.studies.REPRODUCTION`, in the paper's order: ``table1``
   to ``table4`` on that encoder (those whose ``prepare`` gives them one), ``table5`` (rendering, no
   pre-training) and ``search`` (the adapter search).

Each stage's config is the study's own setting (:meth:`~clip2point.sweep.study.Study.settings`:
``sweeps/<study>.yaml``, or ``sweeps/<study>.paper.yaml`` with ``--preset paper``) under the
reproduction's ``--config`` and ``-o`` overrides, with the stage's storage under ``<storage>/reproduce`` and
the encoder of stage 1. One MLflow run is the parent of the whole reproduction; every stage's sweep parent
is nested under it.

The workflow's state (``<storage>/reproduce/state.json``, in the storage: a folder or a bucket, written
atomically after every change) records the
MLflow parent and, per stage, whether it finished, its trials' metrics and the paper's values. A second
call continues where the first stopped: finished stages are not run again, an interrupted stage's sweep
is resumed (its finished trials are kept). At the end ``results/paper.md`` gathers every table
(:mod:`clip2point.sweep.paper`).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clip2point import storage
from clip2point.config import ExperimentConfig, load_config
from clip2point.errors import InputError
from clip2point.prepare import prepare
from clip2point.sweep.cli import run_and_report
from clip2point.sweep.paper import write_paper
from clip2point.sweep.runner import SweepOutcome
from clip2point.sweep.studies import REPRODUCTION, pretrain
from clip2point.sweep.studies.common import with_depth_encoder
from clip2point.sweep.study import Study
from clip2point.tracking import Tracker

STATE_FILE = "state.json"
STAGES = (pretrain.STUDY, *(study for study in REPRODUCTION if study is not pretrain.STUDY))
"""The reproduction's studies in the order it runs them: the pre-training first, as its encoder serves the
studies after it that need one (:func:`needs_encoder`)."""


def needs_encoder(study: Study) -> bool:
    """Whether the study takes the pre-training stage's encoder: it prepares with a depth encoder."""
    return study.prepare is with_depth_encoder


@dataclass(frozen=True)
class Layers:
    """Where a stage's config comes from: the studies' YAMLs (:meth:`Study.settings`), the ``preset``, the
    user's ``config`` file and ``overrides`` (the reproduction's command line)."""

    preset: str | None = None
    config: Path | None = None
    overrides: Mapping[str, Any] | None = None

    def base(self) -> ExperimentConfig:
        """The reproduction's own config (storage, tracking, data root...), ready to run (storage probed)."""
        return prepare(load_config(self.config, self.overrides, preset=self.preset), probe_storage=True)

    def for_stage(self, study: Study, storage: str, encoder: str | None) -> ExperimentConfig:
        """The stage's config: the study's YAML, then the user's file and overrides, then the
        reproduction's storage and (for stages that take it) the encoder of the pre-training stage."""
        study_file = study.settings(self.preset)
        if not study_file.is_file():
            raise InputError(f"stage {study.stage}: the study's setting {study_file} is missing")
        files = [study_file, *([self.config] if self.config else [])]
        extra = {"storage": storage} | ({"model.depth_encoder": encoder} if needs_encoder(study) else {})
        return load_config(files, {**(self.overrides or {}), **extra}, preset=self.preset)


class State:
    """The reproduction's progress in ``<folder>/state.json`` (a storage location); every change is
    written at once."""

    def __init__(self, folder: str, data: dict):
        self.location, self.data = storage.join(folder, STATE_FILE), data

    @classmethod
    def load(cls, folder: str, fresh: bool) -> State:
        location = storage.join(folder, STATE_FILE)
        if fresh or not storage.exists(location):
            return cls(folder, {"stages": {}})
        try:
            data = json.loads(storage.read_text(location))
        except ValueError as exc:
            raise InputError(f"cannot read the reproduction's state {location}: {exc}; use --fresh") from exc
        older = [key for key, record in data.get("stages", {}).items()
                 if record.get("status") == "finished" and "baselines" not in record]  # fmt: skip
        if older:
            raise InputError(
                f"the reproduction's state {location} was written by an older clip2point (finished stages "
                f"{', '.join(older)} record no baselines); use --fresh"
            )
        return cls(folder, data)

    def save(self) -> None:
        storage.write_text(self.location, json.dumps(self.data, indent=1))

    def stage(self, key: str) -> dict:
        return self.data["stages"].setdefault(key, {"status": "pending", "attempts": 0})


def run_reproduction(layers: Layers, *, fresh: bool = False, command: str = "", verbose: int = 0) -> Path:
    """Run (or continue) the reproduction; returns the path of ``results/paper.md``."""
    base = layers.base()
    folder = storage.join(base.storage, "reproduce")
    state = State.load(folder, fresh)
    tracker = _parent(base, state)
    try:
        for study in STAGES:
            record = state.stage(study.stage)
            if record["status"] == "finished":
                print(f"stage {study.stage} ({study.name}): finished earlier, kept")
                continue
            _run_stage(study, record, layers, state, tracker, folder, command, verbose)
        paper = write_paper(state.data, base, command)
        tracker.log_artifact(paper)
    except BaseException as error:
        tracker.fail(error)
        raise
    tracker.finish()
    return paper


def _parent(config: ExperimentConfig, state: State) -> Tracker:
    """The reproduction's MLflow parent run: the recorded one (set RUNNING again), or a new one."""
    if "parent" in state.data:
        return Tracker.resume(state.data["parent"])
    tracker = Tracker.start(config, "reproduce", tags={"kind": "reproduction"})
    state.data["parent"] = tracker.record()
    state.save()
    return tracker


def _run_stage(study, record, layers, state, tracker, storage, command, verbose) -> None:
    """Run one stage (resuming its sweep if an earlier attempt started it) and record its outcome: each
    cell's paper values and the cell it is compared with (by name: ``results/paper.md`` is written from
    the record)."""
    encoder = state.stage(pretrain.STUDY.stage).get("encoder")
    if needs_encoder(study) and encoder is None:
        raise InputError(f"stage {study.stage} needs the pre-training stage's encoder, which is not recorded")
    config = layers.for_stage(study, storage, encoder)  # made ready to run by run_and_report
    resume = record["attempts"] > 0
    record["attempts"] += 1
    record["status"] = "running"
    state.save()
    print(f"stage {study.stage} ({study.name}): {'resuming' if resume else 'starting'}")
    start = time.monotonic()
    outcome = run_and_report(study, config, resume=resume, command=command, verbose=verbose, within=tracker)
    if outcome.failed:
        failed = "; ".join(f"{t.name}: {t.error}" for t in outcome.failed)
        raise RuntimeError(
            f"stage {study.stage}: {len(outcome.failed)} trial(s) failed ({failed}); run again"
        )
    cells = study.cells_for(config)
    papers = {cell.name: dict(cell.paper) for cell in cells}
    baselines = {cell.name: study.baseline_of(cell) for cell in cells}
    record |= {
        "status": "finished",
        "seconds": round(time.monotonic() - start, 1),
        "sweep_run_id": outcome.parent_run_id,
        "protocol": study.protocol(config, detail=True),
        "authors_protocol": config.fewshot.authors().protocol(detail=True)
        if any(column.authors(config) for column in study.columns)
        else None,
        "columns": {column.metric: column.title(config) for column in study.columns},
        "cells": list(papers),
        "baselines": {name: baseline.name for name, baseline in baselines.items() if baseline is not None},
        "trials": [
            {
                "name": t.name,
                "metrics": dict(t.metrics),
                "params": _plain(t.params),
                "paper": papers.get(t.name, {}),
            }
            for t in outcome.trials
        ],
    }
    if study is pretrain.STUDY:
        record["encoder"] = _best_encoder(outcome)
    state.save()
    tracker.set_tags({f"stage.{study.stage}": "finished"})


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Trial params as JSON-ready values."""
    return {k: v if isinstance(v, str | int | float | bool | None) else str(v) for k, v in params.items()}


def _best_encoder(outcome: SweepOutcome) -> str:
    """The best depth encoder of the pre-training trial with the intra-modality loss (its MLflow run's tag)."""
    from mlflow import MlflowClient

    cell = pretrain.WITH_INTRA.name
    client = MlflowClient(outcome.tracking_uri)
    experiment = client.get_run(outcome.parent_run_id).info.experiment_id
    runs = client.search_runs(
        [experiment],
        f"tags.mlflow.parentRunId = '{outcome.parent_run_id}' and tags.cell = '{cell}' "
        "and attributes.status = 'FINISHED'",
    )
    if not runs or "best_checkpoint" not in runs[0].data.tags:
        raise InputError(f"the pre-training stage recorded no best encoder for {cell!r}")
    return runs[0].data.tags["best_checkpoint"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python sweeps/reproduce.py``: see the module docstring; exit 0, 1 if a stage failed, 2 on bad
    input."""
    import argparse
    import sys

    from clip2point.commands.common import add_config_arguments
    from clip2point.errors import Clip2PointError
    from clip2point.schema import parse_override

    parser = argparse.ArgumentParser(
        prog="python sweeps/reproduce.py",
        description="Every table of the paper, one resumable workflow (pre-training, then every study); "
        "writes results/paper.md. Calling it again continues where it stopped.",
    )
    add_config_arguments(parser)
    parser.add_argument("--fresh", action="store_true", help="start over instead of continuing")
    parser.add_argument("--verbose", action="store_true", help="Tune's status tables")
    args = parser.parse_args(argv)
    command = "python " + shlex.join(["sweeps/reproduce.py", *(sys.argv[1:] if argv is None else argv)])
    layers = Layers(args.preset, args.config, dict(parse_override(o) for o in args.overrides))
    start = time.monotonic()
    try:
        paper = run_reproduction(layers, fresh=args.fresh, command=command, verbose=int(args.verbose))
    except Clip2PointError as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"reproduce: {error}", file=sys.stderr)
        return 1
    print(f"wrote {paper} ({(time.monotonic() - start) / 60:.1f} minutes in this call)")
    return 0
