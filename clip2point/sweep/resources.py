"""Does a sweep fit its cluster? Checked before ``Tuner.fit``, because a trial whose Ray Train workers cannot
be placed waits for resources forever.

A trial reserves ``sweep.cpus_per_trial`` CPUs and ``sweep.gpus_per_trial`` GPUs; a study whose trials run
Ray Train (:attr:`~clip2point.sweep.study.Study.train_workers`) also needs, beside that reservation,
``pretrain.num_workers`` workers of ``pretrain.cpus_per_worker`` CPUs and, with ``pretrain.use_gpu``, one
GPU each. The cluster's capacity is what its autoscaler can grow to (the node types' maxima, where the
autoscaler reports them) or else the nodes it has now. Each reservation must fit on one node, the sum on
the cluster; and Tune may run only as many such trials at once as the cluster holds whole, or their
workers would wait on each other's trials.
"""

from __future__ import annotations

import math

from clip2point.config import ExperimentConfig
from clip2point.errors import ConfigError
from clip2point.sweep.study import Study

Bundle = dict[str, float]
KINDS = ("CPU", "GPU")
_EPS = 1e-9


def trial_bundles(study: Study, config: ExperimentConfig) -> list[tuple[str, Bundle]]:
    """What one trial reserves: ``(label, resources)`` for the trial and for each Ray Train worker."""
    sweep, pre = config.sweep, config.pretrain
    bundles = [("the trial", {"CPU": sweep.cpus_per_trial, "GPU": sweep.gpus_per_trial})]
    if study.train_workers:
        worker = {"CPU": float(pre.cpus_per_worker), "GPU": 1.0 if pre.use_gpu else 0.0}
        bundles += [("a Ray Train worker", worker)] * pre.num_workers
    return bundles


def cluster_capacity() -> tuple[Bundle, list[Bundle], str]:
    """(total CPUs/GPUs, each node's or node type's CPUs/GPUs, a description) of the connected cluster."""
    import ray

    nodes = [_pick(n["Resources"]) for n in ray.nodes() if n["Alive"]]
    try:
        config = ray._private.state.state.get_cluster_config()
        limits = ray._private.state.state.get_max_resources_from_cluster_config()
    except Exception:  # a private API: without it, the cluster is taken as it is now
        config, limits = None, None
    if config is not None and limits:
        types = [_pick(dict(group.resources)) for group in config.node_group_configs if group.max_count != 0]
        return _pick(limits), nodes + types, "at most (its autoscaler's node types at their maximum counts)"
    return _pick(ray.cluster_resources()), nodes, "(its nodes now)"


def _pick(resources) -> Bundle:
    return {kind: float(resources.get(kind, 0.0)) for kind in KINDS}


def concurrent_trials(study: Study, config: ExperimentConfig) -> int | None:
    """How many trials may run at once: ``sweep.max_concurrent``, lowered for a Ray Train study to what the
    cluster holds whole. Raises :class:`ConfigError` naming the numbers when one trial cannot fit."""
    bundles = trial_bundles(study, config)
    total, nodes, described = cluster_capacity()
    need = {kind: sum(b[kind] for _, b in bundles) for kind in KINDS}
    for label, bundle in bundles:
        if not any(all(bundle[k] <= node[k] + _EPS for k in KINDS) for node in nodes):
            raise ConfigError(
                f"sweep {study.name}: {label} needs {_show(bundle)} on one node, but no node of the cluster "
                f"has that (largest: {_show(_largest(nodes))}); allowed: smaller per-trial or per-worker "
                "resources (sweep.cpus_per_trial, sweep.gpus_per_trial, pretrain.cpus_per_worker, "
                "pretrain.use_gpu), or larger nodes"
            )
    parts = f"{len(bundles) - 1} Ray Train workers + the trial" if study.train_workers else "the trial"
    short = [k for k in KINDS if need[k] > total[k] + _EPS]
    if short:
        raise ConfigError(
            f"sweep {study.name}: one trial needs {_show(need)} ({parts}), but the cluster has "
            f"{described} {_show(total)}; allowed: fewer or smaller workers (pretrain.num_workers, "
            "pretrain.cpus_per_worker, pretrain.use_gpu), less per trial (sweep.cpus_per_trial, "
            "sweep.gpus_per_trial), or a larger cluster"
        )
    limit = config.sweep.max_concurrent
    if not study.train_workers:
        return limit
    whole = min(math.floor((total[k] + _EPS) / need[k]) for k in KINDS if need[k] > 0)
    return whole if limit is None else min(limit, whole)


def _largest(nodes: list[Bundle]) -> Bundle:
    return max(nodes, key=lambda n: (n["GPU"], n["CPU"]), default=dict.fromkeys(KINDS, 0.0))


def _show(bundle: Bundle) -> str:
    return ", ".join(f"{bundle[k]:g} {k}{'s' if bundle[k] != 1 else ''}" for k in KINDS)
