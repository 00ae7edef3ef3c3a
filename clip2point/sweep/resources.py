"""Does a sweep, or a pre-training run, fit its cluster? Checked before ``Tuner.fit`` and ``TorchTrainer.fit``,
because a trial or run whose Ray Train workers cannot be placed waits for resources forever.

A trial reserves ``sweep.cpus_per_trial`` CPUs and ``sweep.gpus_per_trial`` GPUs; a study whose trials run
Ray Train (:attr:`~clip2point.sweep.study.Study.train_workers`) also needs, beside that reservation,
``pretrain.num_workers`` workers of ``pretrain.cpus_per_worker`` CPUs and, with ``pretrain.use_gpu``, one
GPU each. The cluster's capacity is what its autoscaler can grow to (the node types' maxima, where the
autoscaler reports them) or else the nodes it has now; under an autoscaler that does not report them (Ray's
v1: ``ray up``, ``ray start --autoscaling-config``) nothing is refused. Each reservation must fit on one
node, the sum on the cluster; and Tune may run only as many such trials at once as the cluster holds whole,
or their workers would wait on each other's trials. A pre-training run needs its workers alone (Ray Train's
controller takes no CPU).
"""

from __future__ import annotations

import math

from clip2point.config import ExperimentConfig
from clip2point.errors import ConfigError
from clip2point.sweep.study import Study

Bundle = dict[str, float]
KINDS = ("CPU", "GPU")
_EPS = 1e-9


def worker_bundles(config: ExperimentConfig) -> list[tuple[str, Bundle]]:
    """What Ray Train's workers reserve: ``pretrain.num_workers`` x (``pretrain.cpus_per_worker`` CPUs and,
    with ``pretrain.use_gpu``, one GPU)."""
    pre = config.pretrain
    worker = {"CPU": float(pre.cpus_per_worker), "GPU": 1.0 if pre.use_gpu else 0.0}
    return [("a Ray Train worker", worker)] * pre.num_workers


def trial_bundles(study: Study, config: ExperimentConfig) -> list[tuple[str, Bundle]]:
    """What one trial reserves: ``(label, resources)`` for the trial and for each Ray Train worker."""
    sweep = config.sweep
    bundles = [("the trial", {"CPU": sweep.cpus_per_trial, "GPU": sweep.gpus_per_trial})]
    return bundles + (worker_bundles(config) if study.train_workers else [])


def cluster_capacity() -> tuple[Bundle, list[Bundle], str, bool]:
    """(total CPUs/GPUs, each node's or node type's CPUs/GPUs, a description, whether that is all it can
    have) of the connected cluster. The last is False under Ray's v1 autoscaler (``ray up``, ``ray start
    --autoscaling-config``), which adds nodes but does not report how many it may: then the cluster is
    described as it is now, and may grow."""
    import ray

    nodes = [_pick(n["Resources"]) for n in ray.nodes() if n["Alive"]]
    try:
        config = ray._private.state.state.get_cluster_config()
        limits = ray._private.state.state.get_max_resources_from_cluster_config()
    except Exception:  # a private API: without it, the cluster is taken as it is now
        config, limits = None, None
    if config is not None and limits:
        types = [_pick(dict(group.resources)) for group in config.node_group_configs if group.max_count != 0]
        return (
            _pick(limits),
            nodes + types,
            "at most (its autoscaler's node types at their maximum counts)",
            True,
        )
    if _v1_autoscaler():
        return _pick(ray.cluster_resources()), nodes, "(its nodes now; its autoscaler may add more)", False
    return _pick(ray.cluster_resources()), nodes, "(its nodes now)", True


def _v1_autoscaler() -> bool:
    """Whether a v1 autoscaler that can add nodes runs. Its monitor writes a status record into the GCS
    key-value store, with the node type of each node; a plain ``ray.init()`` instance's monitor writes one
    too, but there every node's type is just ``node_<its id>`` (Ray's read-only provider)."""
    import json

    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        status = json.loads(_internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS) or "{}")
    except Exception:  # a private API: without it, no autoscaler is assumed
        return False
    types = (status.get("autoscaler_report") or {}).get("node_type_mapping") or {}
    return any(name != f"node_{node}" for node, name in types.items())


def _pick(resources) -> Bundle:
    return {kind: float(resources.get(kind, 0.0)) for kind in KINDS}


def check_fit(
    who: str, whole: str, bundles: list[tuple[str, Bundle]], parts: str, keys: str
) -> tuple[Bundle, Bundle]:
    """``(need, total)``: the CPUs/GPUs ``bundles`` need together, and the connected cluster's capacity.
    Raises :class:`ConfigError` naming the numbers and ``keys`` (the config keys that set them) when one
    bundle fits no node or all of them exceed the cluster (unless its autoscaler may grow it beyond what
    it reports: :func:`cluster_capacity`). Messages start with ``who`` (``"sweep <name>"``);
    ``whole`` names what the bundles make up (``"one trial"``), ``parts`` lists them (``"2 Ray Train
    workers + the trial"``)."""
    total, nodes, described, known = cluster_capacity()
    need = {kind: sum(b[kind] for _, b in bundles) for kind in KINDS}
    if not known:  # the autoscaler may add larger nodes, or more: nothing to refuse
        return need, total
    for label, bundle in bundles:
        if not any(all(bundle[k] <= node[k] + _EPS for k in KINDS) for node in nodes):
            raise ConfigError(
                f"{who}: {label} needs {_show(bundle)} on one node, but no node of the cluster has that "
                f"(largest: {_show(_largest(nodes))}); allowed: fewer or smaller {keys}, or larger nodes"
            )
    if any(need[k] > total[k] + _EPS for k in KINDS):
        raise ConfigError(
            f"{who}: {whole} needs {_show(need)} ({parts}), but the cluster has {described} {_show(total)}; "
            f"allowed: fewer or smaller {keys}, or a larger cluster"
        )
    return need, total


def check_pretraining_fits(config: ExperimentConfig) -> None:
    """Raise :class:`ConfigError` unless the run's Ray Train workers fit the connected cluster."""
    pre = config.pretrain
    check_fit(
        "pre-training",
        "the run",
        worker_bundles(config),
        f"{pre.num_workers} Ray Train worker{'s' if pre.num_workers != 1 else ''}",
        "workers (pretrain.num_workers, pretrain.cpus_per_worker, pretrain.use_gpu)",
    )


def concurrent_trials(study: Study, config: ExperimentConfig) -> int | None:
    """How many trials may run at once: ``sweep.max_concurrent``, lowered for a Ray Train study to what the
    cluster holds whole. Raises :class:`ConfigError` naming the numbers when one trial cannot fit."""
    bundles = trial_bundles(study, config)
    parts = f"{len(bundles) - 1} Ray Train workers + the trial" if study.train_workers else "the trial"
    keys = (
        "workers (pretrain.num_workers, pretrain.cpus_per_worker, pretrain.use_gpu), less per trial "
        "(sweep.cpus_per_trial, sweep.gpus_per_trial)"
    )
    need, total = check_fit(f"sweep {study.name}", "one trial", bundles, parts, keys)
    limit = config.sweep.max_concurrent
    if not study.train_workers:
        return limit
    whole = max(
        1, min(math.floor((total[k] + _EPS) / need[k]) for k in KINDS if need[k] > 0)
    )  # >= 1: growing
    return whole if limit is None else min(limit, whole)


def _largest(nodes: list[Bundle]) -> Bundle:
    return max(nodes, key=lambda n: (n["GPU"], n["CPU"]), default=dict.fromkeys(KINDS, 0.0))


def _show(bundle: Bundle) -> str:
    return ", ".join(f"{bundle[k]:g} {k}{'s' if bundle[k] != 1 else ''}" for k in KINDS)
