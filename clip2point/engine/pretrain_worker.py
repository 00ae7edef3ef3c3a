"""The Ray Train per-worker loop of pre-training (docs/method.md section 2), for 1 worker or N DDP workers.

Each worker reads its shard of the ShapeNet55 pre-training pairs, from the raw files or streamed from a pack
(``pretrain.data``, :mod:`clip2point.engine.pretrain_data`; in a seeded order that is new every epoch),
renders every cloud at its sampled view at two jittered distances, encodes the depth maps with the trainable
depth encoder and the RGB render with the frozen image encoder (a pack holds its output), and steps LAMB on
the objective, with the cosine warm-restart schedule stepped every iteration. After every epoch
rank 0 measures zero-shot accuracy (pre-training val split and the downstream test set), uploads the best-val
depth encoder to the run folder in storage (:mod:`clip2point.storage`: a bucket or a shared folder, whichever
node rank 0 is on), writes the checkpoint that Ray Train persists there, and logs the epoch to MLflow
exactly once (also across restarts). A restarted worker (``FailureConfig``) or a resumed run continues from
the newest checkpoint that reads back completely. At every (re)start rank 0 tags the run with the Ray node
of each worker. A ``pretrain.micro_batch`` below the worker's batch runs the depth encoder in micro batches
with cached gradients (:mod:`clip2point.engine.grad_cache`): the same step in less memory.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from clip2point import storage
from clip2point.config import ExperimentConfig
from clip2point.engine.context import Experiment
from clip2point.engine.features import autocast
from clip2point.engine.grad_cache import contrastive_backward
from clip2point.engine.optim import build_optimizer
from clip2point.engine.pretrain_data import pretrain_batches
from clip2point.engine.pretrain_state import checkpoint_folder, read_newest, restore_state, write_state
from clip2point.engine.pretrain_step import (
    DepthImageContrast,
    distance_factors,
    loss_terms,
    render_pair,
    rows_in_micro_batches,
)
from clip2point.engine.zeroshot import evaluate_zero_shot
from clip2point.errors import ConfigError
from clip2point.models import PretrainObjective, export_official_depth, save_module, save_torch
from clip2point.tracking import MLFLOW_PARAM_LIMIT, Tracker

BEST_FILE = "best_depth_encoder.safetensors"
OFFICIAL_FILE = "best_eval.pth"


class ZeroShotProbe:
    """Zero-shot accuracy (%) of a depth encoder on the pre-training val split (``shapenet55`` test list, its
    own class names) and on ``pretrain.eval_dataset``'s test split, at the experiment's views. The clouds
    are read once and kept in memory, except those of a split sampled anew every epoch
    (``pretrain.sampling: random``), which are read for the epoch asked (0: before pre-training)."""

    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        self.sets = {}
        for key, name in (("val_acc", "shapenet55"), ("test_acc", experiment.config.pretrain.eval_dataset)):
            dataset = experiment.dataset("test", name)
            kept = None if dataset.per_epoch else [dataset[i] for i in range(len(dataset))]
            self.sets[key] = (
                dataset,
                kept,
                dataset.class_names,
                experiment.text_features(dataset.class_names),
            )

    def __call__(self, encoder: nn.Module, epoch: int = 0) -> dict[str, float]:
        e = self.experiment
        accuracy = {}
        for key, (dataset, kept, names, text) in self.sets.items():
            if kept is None:
                dataset.set_epoch(epoch)
            accuracy[key] = evaluate_zero_shot(
                encoder, text, names, dataset if kept is None else kept, e.renderer, e.views,
                batch_size=e.config.pretrain.eval_batch_size, device=e.device, progress=False,
                precision=e.config.precision,
            ).overall  # fmt: skip
        return accuracy


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The distance-jitter generator of one epoch, the same on every worker."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def log_once(tracker: Tracker, metrics: dict[str, float], step: int) -> None:
    """Log ``metrics`` at ``step`` unless that step is already in the run (a restart re-reaching it)."""
    probe = next(iter(metrics))
    if step not in {m.step for m in tracker.client.get_metric_history(tracker.run_id, probe)}:
        tracker.log_metrics(metrics, step)


class Worker:
    """One worker's training state; :meth:`run` is the loop."""

    def __init__(self, job: dict[str, Any]):
        import ray.train
        import ray.train.torch

        self.config: ExperimentConfig = job["config"]
        self.job = job
        pre = self.config.pretrain
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        if pre.batch_size % self.world:
            raise ConfigError(
                f"config key 'pretrain.batch_size': {pre.batch_size} is not divisible by "
                f"pretrain.num_workers={self.world}; allowed: a multiple of the number of workers"
            )
        self.micro_batch = pre.micro_batch or pre.batch_size // self.world
        self.device = ray.train.torch.get_device()
        self.precision = functools.partial(autocast, self.device, self.config.precision)
        torch.set_num_threads(max(1, int(pre.cpus_per_worker)))  # a fraction of a CPU: one thread
        torch.manual_seed(self.config.seed)
        self.experiment = Experiment.from_config(self.config, self.device)
        bundle = self.experiment.bundle
        self.image_encoder = bundle.image_encoder()
        objective = PretrainObjective(intra=pre.intra, temperature=pre.temperature)
        self.model = DepthImageContrast(bundle.depth_encoder(), objective, pre.negatives == "global")
        self.model.to(self.device)
        self.trainable: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.trainable = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.batches = pretrain_batches(self.experiment, self.rank, self.world, pre.batch_size // self.world)
        if len(self.batches) == 0:
            raise ConfigError(
                f"config key 'pretrain.batch_size': {pre.batch_size} exceeds the {self.batches.size} "
                "pre-training samples; allowed: at most the number of samples"
            )
        self.optimizer = build_optimizer(pre, self.model.parameters())
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=pre.restart_epochs * len(self.batches), T_mult=1, eta_min=pre.eta_min
        )
        self.run_dir: str = job["run_dir"]  # a storage location
        self.taken: set[str] = set()  # the run folder's names, so that checkpoint folder names never repeat
        self.tracker = Tracker.attach(job["tracking_uri"], job["run_id"]) if self.rank == 0 else None
        self.probe = ZeroShotProbe(self.experiment) if self.rank == 0 else None
        self.best = {"best_val_acc": -math.inf, "best_test_acc": math.nan, "best_epoch": 0.0}
        self.record_nodes()

    def record_nodes(self) -> None:
        """Tag the MLflow run with ``worker_nodes``: the Ray node id of every rank, in rank order, comma
        separated (rewritten by each (re)start, so it shows where the latest attempt ran)."""
        import ray

        nodes = [ray.get_runtime_context().get_node_id()]
        if self.world > 1:
            local, nodes = nodes[0], [None] * self.world
            dist.all_gather_object(nodes, local)
        if self.rank == 0:
            self.tracker.set_tags({"worker_nodes": ",".join(nodes)})

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over this worker's shard; the global batch's mean losses, ``s``, lr and timing."""
        pre = self.config.pretrain
        generator = epoch_generator(self.config.seed, epoch)
        self.trainable.train()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # read once, after the epoch
        start = time.perf_counter()
        for batch in self.batches.epoch(epoch):
            points, azim, elev, dist_ = (
                batch[k].to(self.device, non_blocking=True) for k in ("points", "azim", "elev", "dist")
            )
            factors = (
                distance_factors(pre.batch_size, self.rank, self.world, generator) if pre.intra else None
            )
            # rendered in micro batches like the depth encoder's: the step's memory does not grow with the batch
            with torch.no_grad():
                depth = render_pair(
                    self.experiment.renderer, points, azim, elev, dist_, factors, self.micro_batch
                )
            with autocast(self.device, self.config.precision):
                image_features = self.image_features(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss = contrastive_backward(
                self.trainable, depth, image_features, self.micro_batch, self.precision
            )
            self.optimizer.step()
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
            self.scheduler.step()
            sums += loss_terms(loss)
        if self.world > 1:
            dist.all_reduce(sums)
            sums /= self.world
        total, intra, cross = (sums / len(self.batches)).tolist()
        seconds = time.perf_counter() - start
        metrics = {"loss_total": total, "loss_cross": cross, "lr": lr}
        if pre.intra:
            metrics |= {"loss_intra": intra, "s": self.model.objective.s.item()}
        samples = len(self.batches) * pre.batch_size
        return metrics | {"epoch_seconds": seconds, "samples_per_second": samples / seconds}

    def image_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's frozen image features ``(b, C)``: stored in a pack, else the image encoder's output (in
        micro batches)."""
        if "features" in batch:
            return batch["features"].to(self.device, non_blocking=True)
        images = batch["image"].to(self.device, non_blocking=True)
        return rows_in_micro_batches(self.image_encoder, self.micro_batch, images)

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Rank 0: zero-shot accuracies; a val accuracy better than the best so far saves the depth encoder
        (and the official layout): on a tie the earlier epoch stays, as the authors' ``>``."""
        accuracy = self.probe(self.model.depth_encoder, epoch)
        if accuracy["val_acc"] > self.best["best_val_acc"]:
            self.best = {"best_val_acc": accuracy["val_acc"], "best_test_acc": accuracy["test_acc"],
                         "best_epoch": float(epoch)}  # fmt: skip
            self.save_best(epoch, accuracy)
        return accuracy | self.best

    def save_best(self, epoch: int, accuracy: dict[str, float]) -> None:
        """Upload the depth encoder (and its official layout) to the run folder in storage, atomically."""
        metadata = {"model": self.config.model.name, "pretrained": str(self.config.model.pretrained),
                    "epoch": str(epoch), **{k: f"{v:.4f}" for k, v in accuracy.items()}}  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            best = storage.upload(save_module(self.model.depth_encoder, Path(folder) / BEST_FILE, metadata),
                                  storage.join(self.run_dir, BEST_FILE))  # fmt: skip
            if self.config.pretrain.export_official:
                balance = self.model.objective.s.detach() if self.model.objective.s is not None else 1.0
                official = export_official_depth(
                    self.model.depth_encoder, self.experiment.bundle.visual, balance
                )
                storage.upload(save_torch(official, Path(folder) / OFFICIAL_FILE),
                               storage.join(self.run_dir, OFFICIAL_FILE))  # fmt: skip
        self.tracker.set_tags({"best_checkpoint": best, "best_epoch": epoch})

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        """Persist the epoch's checkpoint through Ray Train (all ranks call it: it is a barrier)."""
        import ray.train

        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if self.rank == 0:
                write_state(folder, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                            epoch=epoch, best=self.best, metrics=metrics)  # fmt: skip
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics | {"epoch": epoch}, checkpoint=checkpoint,
                             checkpoint_dir_name=checkpoint_folder(epoch, self.taken))  # fmt: skip

    def restore(self) -> int:
        """Continue from the newest checkpoint that reads back completely, from Ray Train's latest back
        (a damaged one is named in a warning and the run's tag ``damaged_checkpoints``); return the number
        of finished epochs."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        self.taken = set(storage.list_names(self.run_dir))
        if checkpoint is None:
            if self.rank == 0:
                log_once(self.tracker, self.probe(self.model.depth_encoder), 0)  # CLIP before pre-training
            return 0
        payload, folder, damaged = read_newest(self.run_dir, storage.name(checkpoint.path))
        epoch, self.best, metrics = restore_state(payload, self.model, self.optimizer, self.scheduler)
        if self.rank == 0:
            if damaged:
                self.job["on_epoch_end"].note(
                    f"warning: damaged checkpoint(s) skipped, continuing from {folder}: {'; '.join(damaged)}"
                )
                self.tracker.set_tags({"damaged_checkpoints": "; ".join(damaged)[:MLFLOW_PARAM_LIMIT]})
            log_once(self.tracker, metrics, epoch)  # in case the last run stopped between report and log
        return epoch

    def run(self, on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> None:
        for epoch in range(self.restore() + 1, self.config.pretrain.epochs + 1):
            metrics = self.train_epoch(epoch)
            if self.rank == 0:
                metrics |= self.evaluate(epoch)
            self.report(epoch, metrics)
            if self.rank == 0:
                log_once(self.tracker, metrics, epoch)
                if on_epoch_end is not None:
                    on_epoch_end(epoch, metrics)


def train_loop_per_worker(job: dict[str, Any]) -> None:
    """Ray Train entry point. ``job``: ``config`` (ExperimentConfig, absolute paths), ``run_dir`` (storage),
    ``tracking_uri``, ``run_id`` (the MLflow run the driver created) and ``on_epoch_end``
    (:class:`~clip2point.engine.progress.EpochHooks`: called on rank 0 after each epoch's checkpoint and log,
    and its ``note`` for messages to the user)."""
    Worker(job).run(job["on_epoch_end"])
