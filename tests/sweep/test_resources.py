"""Before a sweep starts: its trials and their Ray Train workers must fit the cluster (else a ConfigError
naming the numbers, and nothing is created), Ray Train studies run only as many trials at once as fit
whole, and a storage that cannot be written stops it with a StorageError."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from clip2point.config import load_config
from clip2point.errors import ConfigError, StorageError
from clip2point.sweep.resources import concurrent_trials
from clip2point.sweep.runner import run_study
from clip2point.sweep.studies import STUDIES
from clip2point.sweep.study import Cell
from tests.sweep.dummy_study import scored

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


def never_runs(config, tracker, report):
    raise AssertionError("no trial may start")


TRAIN_STUDY = scored("train_study", "Trials that run Ray Train", never_runs, cells=(Cell("a", {}), Cell("b", {})),
                     train_workers=True)  # fmt: skip
PLAIN_STUDY = scored("plain_study", "Trials alone", never_runs, cells=(Cell("a", {}),))


def config_for(tmp_path, *files, **overrides):
    base = {"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "storage": str(tmp_path / "storage"),
            "data.root": str(tmp_path / "data"), "sweep.results_dir": str(tmp_path / "results")}  # fmt: skip
    return load_config(list(files), overrides=base | overrides)


def test_concurrency_is_what_fits_whole(ray_session, tmp_path):  # the cluster: 2 CPUs, no GPU
    # A Ray Train trial needs 0.01 + 1 CPUs: two would hold 2 CPUs with one worker each waiting for a third.
    beside = {"sweep.cpus_per_trial": 0.01, "pretrain.num_workers": 1, "pretrain.cpus_per_worker": 1}
    assert concurrent_trials(TRAIN_STUDY, config_for(tmp_path, **beside, **{"sweep.max_concurrent": 8})) == 1
    assert concurrent_trials(TRAIN_STUDY, config_for(tmp_path, **beside)) == 1
    assert concurrent_trials(PLAIN_STUDY, config_for(tmp_path, **{"sweep.max_concurrent": 3})) == 3
    assert concurrent_trials(PLAIN_STUDY, config_for(tmp_path)) is None  # as many as Tune can place
    # The toy pre-training ablation's worker takes 0.99 CPUs: both of its runs train at once on 2 CPUs.
    toy = config_for(tmp_path, ROOT / "sweeps" / "ablation_pretrain.yaml")
    assert (toy.sweep.cpus_per_trial, toy.pretrain.cpus_per_worker, toy.sweep.max_concurrent) == (
        0.01,
        0.99,
        2,
    )
    assert concurrent_trials(STUDIES["ablation_pretrain"], toy) == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"sweep.cpus_per_trial": 1, "pretrain.num_workers": 2, "pretrain.cpus_per_worker": 1},
            r"sweep train_study: one trial needs 3 CPUs, 0 GPUs \(2 Ray Train workers \+ the trial\), but "
            r"the cluster has \(its nodes now\) 2 CPUs, 0 GPUs; allowed: fewer or smaller workers",
        ),
        (
            {"sweep.cpus_per_trial": 0.5, "pretrain.num_workers": 1, "pretrain.use_gpu": True},
            r"sweep train_study: a Ray Train worker needs 2 CPUs, 1 GPU on one node, but no node of the "
            r"cluster has that \(largest: 2 CPUs, 0 GPUs\)",
        ),
    ],
    ids=["too many workers", "a GPU the cluster lacks"],
)
def test_a_sweep_that_cannot_fit_fails_before_anything_starts(ray_session, tmp_path, overrides, message):
    config = config_for(tmp_path, **overrides)
    with pytest.raises(ConfigError, match=message):
        run_study(TRAIN_STUDY, config, verbose=0)
    assert MlflowClient(config.tracking.uri).search_runs(["0"]) == []  # no parent run was created
    assert MlflowClient(config.tracking.uri).get_experiment_by_name("clip2point") is None


def test_a_sweep_on_a_missing_bucket_fails_before_anything_starts(bucket, tmp_path):
    config = config_for(tmp_path, storage="s3://no-such-bucket-c2p/clip2point")
    with pytest.raises(
        StorageError, match=r"storage s3://no-such-bucket-c2p/clip2point .*the bucket does not"
    ):
        run_study(PLAIN_STUDY, config, verbose=0)
    assert MlflowClient(config.tracking.uri).get_experiment_by_name("clip2point") is None
