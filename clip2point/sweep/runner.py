"""Run a study as a Ray Tune sweep: one MLflow parent run, a nested child run per trial, resumable.

Layout of a sweep's state: ``<storage>/sweeps/<study>/`` (a folder or a bucket, :mod:`clip2point.storage`)
is Tune's experiment directory (its trials and experiment state) plus ``clip2point_sweep.json`` (the MLflow
parent run id). Before anything starts, the storage is probed and the trials' resources are checked against
the cluster (:mod:`clip2point.sweep.resources`). ``resume=True`` restores the Tune experiment from the
storage alone, so any machine that reaches it can continue the sweep -- finished trials are not run again,
unfinished and errored ones are -- and re-attaches the MLflow parent; a trial whose MLflow child run already FINISHED (killed after it finished but before
Tune saved its state) reports that run's metrics instead of running again; child runs left RUNNING by a killed driver or an early-stopped trial are closed as
KILLED. A trial that raises is recorded FAILED (Tune: ERROR) with its traceback, and the others go on.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clip2point import storage
from clip2point.cluster import init_ray
from clip2point.config import ExperimentConfig
from clip2point.paths import check_name
from clip2point.prepare import prepare
from clip2point.schema import with_overrides
from clip2point.sweep.resources import concurrent_trials
from clip2point.sweep.study import SearchSetup, Study
from clip2point.tracking import Tracker

STATE_FILE = "clip2point_sweep.json"


@dataclass(frozen=True)
class TrialOutcome:
    """One trial's end: its name (cell or Tune trial id), params, final metrics, or the error it raised."""

    name: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    error: str | None = None


@dataclass(frozen=True)
class SweepOutcome:
    """A finished sweep: every trial's outcome and the MLflow parent run."""

    study: str
    trials: tuple[TrialOutcome, ...]
    parent_run_id: str
    tracking_uri: str
    experiment_path: str

    @property
    def failed(self) -> tuple[TrialOutcome, ...]:
        return tuple(t for t in self.trials if t.error is not None)


def sweep_storage(config: ExperimentConfig) -> str:
    """``<storage>/sweeps``: the folder of every sweep's Tune state (``config`` with resolved paths)."""
    return storage.join(config.storage, "sweeps")


def run_study(
    study: Study,
    config: ExperimentConfig,
    *,
    resume: bool = False,
    verbose: int = 1,
    within: Tracker | None = None,
) -> SweepOutcome:
    """Run ``study`` on ``config`` as a Tune sweep and return every trial's outcome (see the module doc).
    ``within``: an MLflow run to nest the sweep's parent run under (a whole reproduction)."""
    import ray
    from ray import tune

    config = prepare(config, probe_storage=True)
    uri = config.tracking.uri
    path = storage.join(sweep_storage(config), check_name(study.name, "study name"))
    state = storage.join(path, STATE_FILE)
    if not ray.is_initialized():
        init_ray(uri, include_dashboard=False, log_to_driver=verbose > 0)
    max_concurrent = concurrent_trials(study, config)
    filesystem, fs_path = storage.filesystem(path)
    restoring = resume and storage.exists(state) and tune.Tuner.can_restore(fs_path, filesystem)
    if resume and not restoring:
        print(f"note: nothing to resume at {path}; starting the sweep afresh")
    if not restoring:
        storage.remove(path)  # the previous sweep's resumable state; its results and runs stay in MLflow
    if restoring:
        parent = Tracker.resume(json.loads(storage.read_text(state)))
        _close_stale_children(parent, "resumed sweep: the driver stopped while this trial ran")
    else:
        parent = Tracker.start(config, study.name, parent=within, tags={"study": study.name, "kind": "sweep"})

    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, study=study, base=config, parent_id=parent.run_id, uri=uri),
        {"cpu": config.sweep.cpus_per_trial, "gpu": config.sweep.gpus_per_trial},
    )
    try:
        if restoring:
            tuner = tune.Tuner.restore(
                fs_path,
                trainable,
                resume_unfinished=True,
                restart_errored=True,
                storage_filesystem=filesystem,
            )
        else:
            search = study.search(config) if study.search is not None else None
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(study, config, search),
                tune_config=_tune_config(config, search, max_concurrent),
                run_config=tune.RunConfig(
                    name=study.name,
                    storage_path=posixpath.dirname(fs_path),
                    storage_filesystem=filesystem,
                    failure_config=tune.FailureConfig(max_failures=0),
                    verbose=verbose,
                ),
            )
            storage.write_text(state, json.dumps(parent.record()))
        grid = tuner.fit()
    except BaseException as error:
        parent.fail(error)
        raise
    _close_stale_children(parent, "stopped early by the scheduler")
    trials = tuple(_outcome(result) for result in grid)
    parent.set_tags({"trials": len(trials), "failed_trials": sum(t.error is not None for t in trials)})
    return SweepOutcome(study.name, trials, parent.run_id, uri, path)


def _param_space(study: Study, config: ExperimentConfig, search: SearchSetup | None) -> dict[str, Any]:
    """A search study's space, or a grid over the study's cells."""
    from ray import tune

    if search is not None:
        return dict(search.param_space)
    return {"cell": tune.grid_search([cell.name for cell in study.cells_for(config)])}


def _tune_config(config: ExperimentConfig, search: SearchSetup | None, max_concurrent: int | None):
    """Tune's settings: concurrency, and for a search study its algorithm, scheduler and budget.
    Trials reuse their Ray actors: a finished trial's process (torch and open_clip already imported, about
    5 s of start-up on 2 CPU cores) runs the next trial. Nothing a trial computes depends on what ran before
    it in that process: every random draw is seeded from the trial's config (:func:`_run_trial`), and a
    cell's results are the same in any process (``tests/sweep/test_studies.py`` recomputes one)."""
    from ray import tune

    if search is None:
        return tune.TuneConfig(
            max_concurrent_trials=max_concurrent, trial_name_creator=_trial_name, reuse_actors=True
        )
    return tune.TuneConfig(
        metric=search.metric,
        mode=search.mode,
        search_alg=search.search_alg,
        scheduler=search.scheduler,
        num_samples=search.num_samples,
        max_concurrent_trials=max_concurrent,
        reuse_actors=True,
    )


def _trial_name(trial) -> str:
    cell = trial.config.get("cell")
    return f"{cell}_{trial.trial_id}".replace(" ", "_").replace("=", "") if cell else str(trial)


def _run_trial(params: dict, *, study: Study, base: ExperimentConfig, parent_id: str, uri: str) -> None:
    """One trial, inside a Ray worker: config from the params, a nested MLflow run, the study's trial. The
    global torch RNG starts from ``config.seed`` in every trial, whether its process is fresh or ran other
    trials before (a model with random weights, ``model.pretrained: null``, is then the same in each)."""
    import torch
    from ray import tune

    overrides = dict(study.cell(params["cell"], base).overrides) if "cell" in params else {}
    overrides.update({k: v for k, v in params.items() if k != "cell"})
    config = with_overrides(base, overrides)
    torch.manual_seed(config.seed)
    trial_id = tune.get_context().get_trial_id()
    name = params.get("cell", trial_id)
    parent = Tracker.attach(uri, parent_id)
    done = _finished_child(parent, str(name))
    if done is not None:  # finished before an interruption that Tune's saved state missed: not run again
        tune.report({**done.data.metrics, "step": 0, "final": True})
        return
    tracker = Tracker.start(
        config,
        f"{study.name}/{name}",
        parent=parent,
        tags={"study": study.name, "cell": str(name), "tune_trial_id": trial_id},
    )
    step = 0

    def report(metrics: Mapping[str, float]) -> None:
        nonlocal step
        tracker.log_metrics(metrics, step)
        tune.report({**metrics, "step": step})
        step += 1

    with tracker.active():
        final = study.trial(config, tracker, report)
        tracker.log_metrics(final, step)
    tune.report({**final, "step": step, "final": True})


def _outcome(result) -> TrialOutcome:
    params = dict(result.config or {})
    name = str(params.get("cell", Path(str(result.path)).name))
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
    error = None
    if result.error is not None:
        cause = getattr(result.error, "cause", None) or result.error  # unwrap Ray's RayTaskError
        error = f"{type(cause).__name__}: {cause}".splitlines()[0]
    return TrialOutcome(name, params, metrics, error)


def _children(parent: Tracker, condition: str) -> list:
    experiment = parent.client.get_run(parent.run_id).info.experiment_id
    return parent.client.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{parent.run_id}' and {condition}"
    )


def _finished_child(parent: Tracker, cell: str):
    """The FINISHED child run of ``cell`` (a grid cell's name or a search trial's id), if any."""
    found = _children(parent, f"tags.cell = '{cell}' and attributes.status = 'FINISHED'")
    return found[0] if found else None


def _close_stale_children(parent: Tracker, reason: str) -> None:
    """Mark child runs still RUNNING (their process is gone) as KILLED, saying why."""
    for run in _children(parent, "attributes.status = 'RUNNING'"):
        parent.client.set_tag(run.info.run_id, "killed_reason", reason)
        parent.client.set_terminated(run.info.run_id, status="KILLED")
