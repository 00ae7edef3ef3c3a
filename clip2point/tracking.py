"""MLflow tracking: where runs go, and what every run logs.

- Where: ``config.tracking.uri`` if set, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<project>/mlflow.db``
  with an absolute path (the checkout's root for an editable install, else the current directory), so
  Ray workers with other working directories write to the same store and a bare ``mlflow ui`` started in
  the project root shows every run. Resolve it once in the driver (:func:`resolve_tracking_uri`) and pass
  the result on.
- What: the flattened config as params (``render.dilation`` ...), metrics with their step, tags for the git
  revision, package version, host and dataset fingerprint, the config YAML as an artefact, plus whatever
  the engine adds (pictures, checkpoints). A run that raises ends as FAILED with its traceback logged.

A :class:`Tracker` addresses one run by id through ``MlflowClient`` (no global "active run"), so it can be
created in a driver and re-attached in a Ray worker with :meth:`Tracker.attach`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from clip2point import __version__
from clip2point.paths import project_root
from clip2point.schema import flatten, to_dict

TRACKING_ENV = "MLFLOW_TRACKING_URI"  # read by MLflow itself, and here
MLFLOW_PARAM_LIMIT = 500  # MLflow's cap on the length of one param value


def resolve_tracking_uri(configured: str | None = None) -> str:
    """The tracking URI to use: ``configured``, else ``$MLFLOW_TRACKING_URI``, else the project's sqlite file."""
    if configured:
        return configured
    env = os.environ.get(TRACKING_ENV)
    if env:
        return env
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def git_revision(root: Path | None = None) -> str:
    """``git describe``-style revision of the checkout (``<sha>`` plus ``-dirty``), or ``"unknown"``."""
    root = root or project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


class Tracker:
    """One MLflow run, addressed by id. Create with :meth:`start`, re-attach elsewhere with :meth:`attach`."""

    def __init__(self, uri: str, run_id: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.run_id = run_id
        self.client = MlflowClient(tracking_uri=uri)

    @classmethod
    def start(
        cls,
        config: Any,
        run_name: str,
        *,
        experiment: str | None = None,
        uri: str | None = None,
        parent: Tracker | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Tracker:
        """Create a run for ``config`` (an :class:`~clip2point.config.ExperimentConfig` or any config
        dataclass), log its params, tags and YAML. ``parent`` nests it under another run (sweeps)."""
        from mlflow import MlflowClient

        uri = resolve_tracking_uri(uri or getattr(getattr(config, "tracking", None), "uri", None))
        experiment = experiment or getattr(getattr(config, "tracking", None), "experiment", "clip2point")
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else _create_experiment(client, experiment)
        all_tags = {
            "git_revision": git_revision(),
            "clip2point_version": __version__,
            "host": socket.gethostname(),
            **(tags or {}),
        }
        if parent is not None:
            all_tags["mlflow.parentRunId"] = parent.run_id
        run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        tracker = cls(uri, run.info.run_id)
        tracker.log_params(flatten(config))
        client.log_text(tracker.run_id, yaml.safe_dump(to_dict(config), sort_keys=False), "config.yaml")
        return tracker

    @classmethod
    def attach(cls, uri: str, run_id: str) -> Tracker:
        """The same run, from another process (e.g. a Ray worker)."""
        return cls(uri, run_id)

    def record(self) -> dict[str, str]:
        """Where this run is, ``{"tracking_uri": ..., "run_id": ...}``: what a driver keeps in its storage
        so that a later process can :meth:`resume` the run."""
        return {"tracking_uri": self.uri, "run_id": self.run_id}

    @classmethod
    def resume(cls, record: Mapping[str, str]) -> Tracker:
        """The run a :meth:`record` names, set RUNNING again: a resumed pre-training run, sweep or
        reproduction continues its MLflow run."""
        tracker = cls.attach(record["tracking_uri"], record["run_id"])
        tracker.client.update_run(tracker.run_id, status="RUNNING")
        return tracker

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        values = [Param(k, str(v)[:MLFLOW_PARAM_LIMIT]) for k, v in params.items()]
        for i in range(0, len(values), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=values[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log numeric ``metrics`` at ``step`` (epoch or iteration), all with the same timestamp."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=values)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run as ``FINISHED``, ``FAILED`` or ``KILLED``."""
        self.client.set_terminated(self.run_id, status=status)

    def fail(self, error: BaseException) -> None:
        """End the run for ``error``: KILLED if it was stopped from outside (``KeyboardInterrupt``, or the
        ``SystemExit`` with which Ray Tune ends a trial its scheduler stops early), with the reason as tag
        ``killed_reason``; else FAILED, with the traceback (artefact ``error.txt``) and tag ``error``."""
        described = f"{type(error).__name__}: {error}"[:MLFLOW_PARAM_LIMIT]
        if isinstance(error, KeyboardInterrupt | SystemExit):
            self.client.set_tag(self.run_id, "killed_reason", f"stopped from outside ({described})")
            self.finish("KILLED")
            return
        self.client.log_text(self.run_id, "".join(traceback.format_exception(error)), "error.txt")
        self.client.set_tag(self.run_id, "error", described)
        self.finish("FAILED")

    @contextmanager
    def failing(self) -> Iterator[Tracker]:
        """``with tracker.failing():`` ends the run FAILED/KILLED with the traceback if the block raises, and
        leaves it running otherwise."""
        try:
            yield self
        except BaseException as error:
            self.fail(error)
            raise

    @contextmanager
    def active(self) -> Iterator[Tracker]:
        """``with tracker.active():`` ends the run FINISHED, or FAILED/KILLED with the traceback if it raises."""
        with self.failing():
            yield self
        self.finish()


def _create_experiment(client, name: str) -> str:
    """Create experiment ``name``, tolerating a concurrent creator (parallel trials)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
