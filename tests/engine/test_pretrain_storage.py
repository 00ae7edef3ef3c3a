"""Pre-training refuses a storage it cannot write, and a run name that would leave the storage, within seconds
and before anything exists: no MLflow run, no run record, no Ray. (Runs that do write to a bucket:
tests/cluster/test_multinode.py.)"""

from __future__ import annotations

import os
import time

import pytest
from mlflow import MlflowClient

from clip2point.engine.pretrain import run_pretraining
from clip2point.errors import LeaseError, StorageError
from tests.cluster.fake_cluster import free_port
from tests.engine.pretrain_fixtures import tiny_config_for
from tests.test_lease import hold_forever


@pytest.mark.parametrize(
    "case, reason",
    [
        ("no such bucket", "the bucket does not exist"),
        ("refused credentials", "the credentials were refused"),
        ("unreachable endpoint", "the endpoint cannot be reached"),
    ],
)
def test_bad_storage_stops_pretraining_before_it_starts(
    case, reason, bucket, s3_server, monkeypatch, tmp_path
):
    target = f"s3://{'no-such-bucket-c2p' if case == 'no such bucket' else bucket}/clip2point"
    if case == "refused credentials":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    if case == "unreachable endpoint":
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    config = tiny_config_for(tmp_path, storage=target)
    start = time.monotonic()
    with pytest.raises(StorageError, match=rf"storage {target} .*: cannot write a probe file: {reason}"):
        run_pretraining(config, "never", log=lambda _: None)
    assert time.monotonic() - start < 15
    assert MlflowClient(config.tracking.uri).get_experiment_by_name("clip2point") is None
    assert s3_server.keys(bucket) == []


@pytest.mark.parametrize("name", ["../../escape", "/tmp/c2p-absolute-run", "a//b", ""])
def test_a_run_name_that_would_leave_the_storage_is_refused_before_anything_starts(name, tmp_path, capsys):
    from clip2point.cli import main

    storage = tmp_path / "deep" / "er" / "runs"
    status = main(["pretrain", "--name", name, "-o", f"storage={storage}",
                   "-o", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(f"clip2point pretrain: error: run name {name!r} is not allowed")
    assert list(tmp_path.iterdir()) == [] and not os.path.exists("/tmp/c2p-absolute-run")


def test_a_run_another_process_holds_is_refused_naming_the_holder(no_ray, tmp_path):
    import ray

    config = tiny_config_for(tmp_path, **{"pretrain.lease_timeout": 2.0})
    holder = hold_forever(str(tmp_path / "runs" / "pretrain" / "same"))  # another driver of run 'same'
    try:
        for resume in (False, True):
            with pytest.raises(LeaseError, match=rf"^pre-training run 'same' is held by .*:{holder.pid} "):
                run_pretraining(config, "same", resume=resume, log=lambda _: None)
    finally:
        holder.kill()
        holder.wait()
    assert MlflowClient(config.tracking.uri).get_experiment_by_name("clip2point") is None
    assert not ray.is_initialized()


def test_a_run_folder_that_cannot_be_written_fails_fast_without_an_mlflow_run(tmp_path):
    config = tiny_config_for(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "pretrain").write_text("a file where the runs folder should be")
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"storage .*/runs/pretrain/r: cannot create lease.json"):
        run_pretraining(config, "r", log=lambda _: None)
    assert time.monotonic() - start < 15
    assert MlflowClient(config.tracking.uri).get_experiment_by_name("clip2point") is None
