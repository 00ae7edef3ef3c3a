"""Pre-training driver: a Ray Train ``TorchTrainer`` over :func:`~clip2point.engine.pretrain_worker.train_loop_per_worker`.

:func:`run_pretraining` resolves every relative path to an absolute one (Ray workers run in other working
directories), builds the toy world if the default data folder is missing, creates (or, with ``resume``,
re-opens) the MLflow run, and runs ``pretrain.num_workers`` workers (DDP: gloo on CPU, nccl on GPU) with
``FailureConfig(max_failures)``. A run lives in ``<storage>/pretrain/<name>/`` (a folder or a bucket,
:mod:`clip2point.storage`; checked writable before anything starts): Ray Train's epoch checkpoints
(``epoch_NNNN/state.pt``) and its record of them, the best-val depth encoder
``best_depth_encoder.safetensors`` (and ``best_eval.pth`` in the official layout with ``export_official``),
``config.yaml``, ``mlflow_run.json`` (the MLflow run that a resume continues) and, while a driver runs it,
``lease.json`` (:mod:`clip2point.lease`: one driver per run; a second start is refused, ``--resume`` takes
over the run of a driver that died). Each is written there by
the process that has it (the driver, or the rank-0 worker on whichever node), atomically; a restart after a
node loss and ``resume=True`` read only from there, so any machine that reaches the storage can continue a
run from its latest checkpoint; MLflow then holds each epoch once. A resume of a run that has all its
epochs trains nothing: no Ray Train run, no progress queue.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clip2point import lease, storage
from clip2point.config import ExperimentConfig, dump_config
from clip2point.data.pack import Encoder, check_encoder, read_manifest
from clip2point.engine.features import compute_precision
from clip2point.engine.pretrain_worker import BEST_FILE, train_loop_per_worker
from clip2point.engine.progress import EpochCallback, EpochHooks, driver_progress
from clip2point.errors import Clip2PointError, ConfigError
from clip2point.models import load_clip
from clip2point.paths import check_name
from clip2point.prepare import prepare
from clip2point.tracking import Tracker

RUN_FILE = "mlflow_run.json"


@dataclass(frozen=True)
class PretrainResult:
    """Where a run went and how it did; accuracies in %, ``baseline_*`` = the CLIP before pre-training
    (epoch 0), ``best_*`` = at the epoch of the best val accuracy. ``run_dir`` and ``best_file`` are storage
    locations (a path, or a URI such as ``s3://bucket/prefix/pretrain/<name>``)."""

    name: str
    run_dir: str
    run_id: str
    tracking_uri: str
    epochs: int
    best_epoch: int
    best_val_acc: float
    best_test_acc: float
    baseline_val_acc: float
    baseline_test_acc: float
    best_file: str


def default_run_name() -> str:
    return time.strftime("pretrain-%Y%m%d-%H%M%S")


def open_run(config: ExperimentConfig, name: str, run_dir: str, resume: bool) -> Tracker:
    """The MLflow run of ``run_dir`` (whose lease the caller holds): a new one, or with ``resume`` the
    recorded one, set back to RUNNING. A new run whose record cannot be written ends FAILED."""
    record = storage.join(run_dir, RUN_FILE)
    if resume:
        try:
            saved = json.loads(storage.read_text(record))
        except FileNotFoundError:
            raise ConfigError(
                f"--resume: no run named {name!r} to continue ({record} not found); "
                "allowed: the name of an earlier run in <storage>/pretrain"
            ) from None
        return Tracker.resume(saved)
    if set(storage.list_names(run_dir)) - set(lease.FILES):
        raise ConfigError(
            f"a pre-training run named {name!r} already exists in {run_dir}; "
            "allowed: --resume to continue it, or a new --name"
        )
    tracker = Tracker.start(config, name, tags={"stage": "pretrain", "run_dir": run_dir})
    with tracker.failing():
        storage.write_text(record, json.dumps(tracker.record(), indent=2))
        storage.write_text(storage.join(run_dir, "config.yaml"), dump_config(config))
    return tracker


def check_pack(config: ExperimentConfig) -> None:
    """Refuse a ``pretrain.data`` pack that cannot serve this run: unreadable, or its image features made by
    another backbone, preprocessing or precision (:func:`~clip2point.data.pack.check_encoder`)."""
    manifest = read_manifest(config.pretrain.data)
    bundle = load_clip(config.model.name, config.model.pretrained, "cpu")
    device = "cuda" if config.pretrain.use_gpu else "cpu"
    run = Encoder.of(bundle, compute_precision(device, config.precision))
    check_encoder(manifest.encoder, run, config.pretrain.data)


def runs_folder(config: ExperimentConfig) -> str:
    """``<storage>/pretrain``: the folder of every pre-training run (``config`` with resolved paths)."""
    return storage.join(config.storage, "pretrain")


def make_trainer(config: ExperimentConfig, name: str, job: dict):
    """The Ray Train ``TorchTrainer`` of a run (checkpoints under ``<storage>/pretrain/<name>``, written
    through the same pyarrow filesystem as :mod:`clip2point.storage`)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    pre = config.pretrain
    resources = {"CPU": pre.cpus_per_worker} | ({"GPU": 1} if pre.use_gpu else {})
    filesystem, path = storage.filesystem(runs_folder(config))
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=job,
        scaling_config=ray.train.ScalingConfig(
            num_workers=pre.num_workers, use_gpu=pre.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=pre.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=pre.keep_checkpoints),
        ),
    )


def train(
    config: ExperimentConfig,
    name: str,
    run_dir: str,
    tracker: Tracker,
    on_epoch_end: EpochCallback | None,
    progress: EpochCallback | None,
) -> None:
    """Fit the run's Ray Train trainer, the epochs reaching ``progress`` here through a queue on this node;
    a worker's :class:`Clip2PointError` is raised as it is (:func:`input_error`)."""
    with driver_progress(progress) as queue:
        job = {"config": config, "run_dir": run_dir, "tracking_uri": tracker.uri,
               "run_id": tracker.run_id, "on_epoch_end": EpochHooks(queue, on_epoch_end)}  # fmt: skip
        try:
            make_trainer(config, name, job).fit()
        except Exception as error:
            raise input_error(error) from error


def input_error(error: Exception) -> Exception:
    """What to raise for Ray Train's failed ``fit``: the :class:`Clip2PointError` that a worker raised (bad
    input, said plainly), if that is why it failed; else ``error``."""
    for failure in getattr(error, "worker_failures", {}).values():
        cause = getattr(failure, "cause", failure)  # Ray's RayTaskError wraps the worker's exception
        if isinstance(cause, Clip2PointError):
            return cause
    return error


def logged_epochs(tracker: Tracker) -> int:
    """The last epoch the run's MLflow run holds (each is logged once, after its checkpoint); 0: none."""
    return max((m.step for m in tracker.client.get_metric_history(tracker.run_id, "loss_total")), default=0)


def has_finished(tracker: Tracker, run_dir: str, epochs: int) -> bool:
    """Whether a resumed run has nothing left to train: MLflow holds epoch ``epochs`` and the best encoder is
    stored. Such a resume returns without starting Ray Train."""
    return logged_epochs(tracker) >= epochs and storage.exists(storage.join(run_dir, BEST_FILE))


def summarise(tracker: Tracker, name: str, run_dir: str) -> PretrainResult:
    """Read the run's outcome back from MLflow."""
    latest = tracker.client.get_run(tracker.run_id).data.metrics
    baseline = {
        key: next(m.value for m in tracker.client.get_metric_history(tracker.run_id, key) if m.step == 0)
        for key in ("val_acc", "test_acc")
    }
    return PretrainResult(
        name=name, run_dir=run_dir, run_id=tracker.run_id, tracking_uri=tracker.uri,
        epochs=logged_epochs(tracker), best_epoch=int(latest["best_epoch"]),
        best_val_acc=latest["best_val_acc"], best_test_acc=latest["best_test_acc"],
        baseline_val_acc=baseline["val_acc"], baseline_test_acc=baseline["test_acc"],
        best_file=storage.join(run_dir, BEST_FILE),
    )  # fmt: skip


def connect(config: ExperimentConfig, verbose: bool) -> None:
    """Join Ray (:func:`~clip2point.cluster.init_ray`: the running cluster, or a local instance) unless this
    process already has; ``verbose`` forwards the workers' output and Ray's own logs, else only errors."""
    import logging

    import ray

    from clip2point.cluster import init_ray

    if not ray.is_initialized():
        level = logging.INFO if verbose else logging.ERROR
        init_ray(config.tracking.uri, include_dashboard=False, log_to_driver=verbose, logging_level=level)


def run_pretraining(
    config: ExperimentConfig,
    name: str | None = None,
    *,
    resume: bool = False,
    on_epoch_end: EpochCallback | None = None,
    progress: EpochCallback | None = None,
    verbose: bool = False,
    log: Callable[[str], None] = print,
) -> PretrainResult:
    """Pre-train a depth encoder as ``config`` says; see the module docstring.

    ``name``: the run's folder name under ``<storage>/pretrain`` and MLflow run name (default
    ``pretrain-<date>-<time>``; :func:`~clip2point.paths.check_name`'s characters, ``/`` groups);
    ``resume``: continue the run of that name from its latest checkpoint (the config may raise
    ``pretrain.epochs``), taking over its lease if its driver died. ``on_epoch_end(epoch, metrics)`` runs
    on the rank-0 worker after each epoch (it must be picklable), ``progress(epoch, metrics)`` on this
    process (the driver). ``verbose``: when this call starts Ray, forward the workers' output and Ray's logs
    (else errors only). The workers must fit the cluster
    (:func:`~clip2point.sweep.resources.check_pretraining_fits`, a :class:`ConfigError` before anything
    starts). The MLflow run ends FINISHED, or FAILED with the traceback.
    """
    from clip2point.sweep.resources import check_pretraining_fits

    if resume and name is None:
        raise ConfigError("--resume needs the --name of the run to continue")
    name = check_name(default_run_name() if name is None else name)
    config = prepare(config, probe_storage=True)  # fail fast, before the MLflow run or anything else exists
    if config.pretrain.data:
        check_pack(config)
    run_dir = storage.join(runs_folder(config), name)
    with lease.held(run_dir, take_over=resume, stale_after=config.pretrain.lease_timeout,
                    what=f"pre-training run {name!r}"):  # fmt: skip
        connect(config, verbose)
        check_pretraining_fits(config)
        tracker = open_run(config, name, run_dir, resume)
        log(f"pre-training run {name!r}: {run_dir} (MLflow run {tracker.run_id} at {tracker.uri})")
        with tracker.active():
            if resume and has_finished(tracker, run_dir, config.pretrain.epochs):
                log(
                    f"pre-training run {name!r}: all {config.pretrain.epochs} epoch(s) done already, nothing to train"
                )
            else:
                train(config, name, run_dir, tracker, on_epoch_end, progress)
            result = summarise(tracker, name, run_dir)
            with tempfile.TemporaryDirectory() as folder:  # the encoder as the storage has it, into MLflow
                best = storage.download(result.best_file, Path(folder) / BEST_FILE)
                tracker.log_artifact(best, "checkpoints")
    return result
