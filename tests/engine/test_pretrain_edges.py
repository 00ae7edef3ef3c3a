"""Pre-training at its edges, through the command line (each run its own process): two starts of one run at
once, each to start a local Ray (one runs, the other is refused naming it; one MLflow run), then resumes that
join the running Ray ($RAY_ADDRESS): a damaged latest checkpoint (the resume continues from the previous one,
naming the damaged file, and re-runs the lost epoch exactly as the first run did: same weights, optimiser
and scheduler state, loss, and per-epoch random point subsets) and no readable checkpoint at all (a clear
error, the MLflow run FAILED)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from clip2point.config import save_config
from clip2point.engine.pretrain_state import read_state
from tests.engine.pretrain_fixtures import tiny_config_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def pretrain(config_file: Path, *args: str, ray_address: str | None = None) -> subprocess.Popen:
    """``clip2point pretrain`` in its own process: it starts a local Ray, or joins the one at ``ray_address``."""
    command = [sys.executable, "-m", "clip2point.cli", "pretrain", "--config", str(config_file), *args]
    env = os.environ | ({"RAY_ADDRESS": ray_address} if ray_address else {})
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=500)
    return process.returncode, err


def cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def assert_same_epoch(again: dict, first: dict) -> None:
    """Two checkpoints of one epoch: the same weights, optimiser and scheduler state, and loss."""
    assert again["epoch"] == first["epoch"] and again["scheduler"] == first["scheduler"]
    for key, tensor in first["model"].items():
        torch.testing.assert_close(again["model"][key], tensor, msg=key)
    for index, slot in first["optimizer"]["state"].items():
        for name, value in slot.items():
            torch.testing.assert_close(again["optimizer"]["state"][index][name], value, msg=f"{index}.{name}")
    for key in ("loss_total", "loss_cross", "loss_intra", "s"):
        assert again["metrics"][key] == pytest.approx(first["metrics"][key], rel=1e-6), key


def test_one_writer_per_run_and_resume_past_damaged_checkpoints(ray_session, tmp_path):
    import ray

    running = ray.get_runtime_context().gcs_address  # the tests' Ray, which the resumes join
    config = tiny_config_for(tmp_path, **{"pretrain.sampling": "random"})  # new point subsets every epoch
    config_file = tmp_path / "tiny.yaml"
    save_config(config, config_file)
    run_dir = tmp_path / "runs" / "pretrain" / "grp" / "twice"
    client = MlflowClient(config.tracking.uri)

    started = [pretrain(config_file, "--name", "grp/twice") for _ in range(2)]
    (code_a, err_a), (code_b, err_b) = (finish(p) for p in started)
    assert sorted([code_a, code_b]) == [0, 2], (err_a[-2000:], err_b[-2000:])
    winner, loser = (started[0], err_b) if code_a == 0 else (started[1], err_a)
    assert re.search(
        rf"^clip2point pretrain: error: pre-training run 'grp/twice' is held by \S+:{winner.pid} ", loser
    )
    (run,) = client.search_runs([client.get_experiment_by_name("clip2point").experiment_id])
    assert run.info.run_name == "grp/twice" and run.info.status == "FINISHED"
    assert json.loads((run_dir / "mlflow_run.json").read_text())["run_id"] == run.info.run_id
    assert not (run_dir / "lease.json").exists()

    uninterrupted = read_state(run_dir / "epoch_0002")
    cut_short(run_dir / "epoch_0002" / "state.pt")
    code, err = finish(
        pretrain(
            config_file, "--name", "grp/twice", "--resume", "-o", "pretrain.epochs=3", ray_address=running
        )
    )
    assert code == 0, err[-3000:]
    assert "warning: damaged checkpoint(s) skipped, continuing from epoch_0001: " in err, err[-3000:]
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    damaged = resumed.data.tags["damaged_checkpoints"]
    assert damaged == (
        f"cannot read pre-training checkpoint {run_dir / 'epoch_0002' / 'state.pt'}: PytorchStreamReader failed "
        "reading zip archive: failed finding central directory"
    )
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "epoch_seconds")) == [1, 2, 3]

    # epoch 2 re-run under a new folder name: Ray Train, evicting the old epoch_0002, must not delete it
    assert sorted(p.name for p in run_dir.glob("epoch_*")) == ["epoch_0002.1", "epoch_0003"]
    assert_same_epoch(read_state(run_dir / "epoch_0002.1"), uninterrupted)  # epoch 2 again, from epoch 1
    for folder in ("epoch_0002.1", "epoch_0003"):  # every checkpoint Ray Train keeps
        cut_short(run_dir / folder / "state.pt")
    code, err = finish(
        pretrain(
            config_file, "--name", "grp/twice", "--resume", "-o", "pretrain.epochs=4", ray_address=running
        )
    )
    ours = [line for line in err.splitlines() if "pid=" not in line]  # not Ray's log of its workers
    assert code == 2 and not any("Traceback" in line for line in ours), err[-3000:]
    assert re.search(
        rf"^clip2point pretrain: error: no checkpoint of {re.escape(str(run_dir))} reads back completely "
        r"\(.*epoch_0003/state.pt: .*; .*epoch_0002\.1/state.pt: .*\)",
        err,
        re.M,
    ), err[-3000:]
    assert client.get_run(run.info.run_id).info.status == "FAILED"
