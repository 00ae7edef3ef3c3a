"""Multi-node Ray on one machine, every process tracked by one MLflow server on loopback that the tests start.

The cluster (``ray.cluster_utils.Cluster``) has a head without CPUs and worker nodes with one CPU each, so
every 1-CPU Ray Train worker or Tune trial runs on a node of its own. It lives in its own temp dir
(``RAY_TMPDIR``: no ``ray.init()`` elsewhere on this machine finds it) and ``Cluster.shutdown`` ends only
its processes.

- DDP pre-training with 2 workers on 2 nodes (gloo) ends epoch 1 where 1 worker with the same global batch
  and seed does;
- a sweep's trials spread over the nodes, one parent run and a FINISHED child per trial in the server;
- removing the node of a pre-training worker after epoch 1: Ray Train restarts from epoch 1's checkpoint on
  the nodes left, and MLflow holds every epoch exactly once.

The driver-kill fault of a sweep is ``tests/sweep/test_runner.py::test_killed_sweep_resumes_and_runs_every_
trial_once`` (one node; a sweep's state lives with its driver, whatever the number of nodes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from clip2point.config import load_config
from clip2point.engine.pretrain import run_pretraining
from clip2point.engine.pretrain_state import read_state
from clip2point.sweep.cli import run_and_report
from clip2point.sweep.study import Cell, Column, Study
from tests.cluster.fake_cluster import end_session, free_port
from tests.engine.pretrain_fixtures import tiny_config_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WORKER_NODES = 3  # 1 CPU each
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints it registered


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    """``mlflow server`` on 127.0.0.1 with a sqlite store and proxied artefacts; its URI once it answers."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"http://127.0.0.1:{free_port()}"
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
               "--port", uri.rsplit(":", 1)[1], "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'db'}",
               "--artifacts-destination", str(folder / "artifacts")]  # fmt: skip
    with (folder / "server.log").open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer:\n{(folder / 'server.log').read_text()}")
            time.sleep(0.5)
        yield uri
    finally:
        end_session(server.pid)  # the server and the workers it started, nothing else


@pytest.fixture(scope="module")
def cluster():
    """A head without CPUs and ``WORKER_NODES`` 1-CPU nodes; the test process is the driver."""
    import ray
    from ray.cluster_utils import Cluster

    temp = Path(tempfile.mkdtemp(prefix="c2p-mn-", dir="/tmp"))  # short: Ray's socket paths live under it
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", str(temp))  # Ray's session and address file go here, not /tmp/ray
        env.setenv("PYTHONPATH", str(ROOT))  # workers import this module and tests.engine
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        try:
            for _ in range(WORKER_NODES):
                nodes.add_node(num_cpus=1)
            ray.init(address=nodes.address, log_to_driver=False)
            yield nodes
        finally:
            ray.shutdown()
            nodes.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The folder of the tiny pre-training world and tiny CLIP (built on the first ``tiny_config_for``)."""
    return tmp_path_factory.mktemp("tiny")


def worker_node_ids(cluster) -> set[str]:
    return {node.node_id for node in cluster.worker_nodes}


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_two_workers_on_two_nodes_match_one_worker(cluster, tracking, world):
    runs = {}
    for workers in (1, 2):
        config = tiny_config_for(
            world, **{"pretrain.num_workers": workers, "pretrain.epochs": 1, "tracking.uri": tracking}
        )
        runs[workers] = run_pretraining(config, f"workers-{workers}", log=quiet)
    client = MlflowClient(tracking)
    placed = client.get_run(runs[2].run_id).data.tags["worker_nodes"].split(",")
    assert len(set(placed)) == 2 and set(placed) <= worker_node_ids(cluster)  # rank 0 and 1: two nodes
    for key in ("loss_total", "loss_cross", "loss_intra", "s", "lr"):
        one, two = (history(client, runs[w].run_id, key) for w in (1, 2))
        assert [s for s, _ in one] == [s for s, _ in two] == [1], key
        assert two[0][1] == pytest.approx(one[0][1], rel=1e-5), key
    one, two = (read_state(world / "runs" / "pretrain" / f"workers-{w}" / "epoch_0001") for w in (1, 2))
    assert one["model"].keys() == two["model"].keys()
    for key, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][key], tensor, rtol=1e-4, atol=1e-6, msg=key)


def node_trial(config, tracker, report):
    """Tags the trial's MLflow run with its Ray node; holds its CPU a moment so the trials run side by side."""
    import ray

    tracker.set_tags({"node_id": ray.get_runtime_context().get_node_id()})
    report({"progress": 0.0})
    time.sleep(2.0)
    return {"score": float(config.render.dilation)}


NODE_STUDY = Study(
    name="node_study",
    title="Where the trials run",
    trial=node_trial,
    columns=(Column("score", "score"),),
    cells=tuple(Cell(f"R={d}", {"render.dilation": d}) for d in range(1, WORKER_NODES + 1)),
    paper_reference="none",
)


def test_sweep_trials_spread_over_nodes_and_log_to_one_server(cluster, tracking, tmp_path):
    config = load_config(
        overrides={
            "tracking.uri": tracking,
            "data.root": str(tmp_path / "data"),  # no data is read; not a toy root, so nothing is built
            "storage": str(tmp_path / "storage"),
            "sweep.results_dir": str(tmp_path / "results"),
        }
    )
    outcome = run_and_report(NODE_STUDY, config, resume=False, command="pytest", verbose=0)
    assert not outcome.failed
    client = MlflowClient(tracking)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["study"] == "node_study"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'"
    )
    assert sorted(c.data.tags["cell"] for c in children) == [c.name for c in NODE_STUDY.cells]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["cell"]: c.data.metrics["score"] for c in children} == {
        cell.name: float(cell.overrides["render.dilation"]) for cell in NODE_STUDY.cells
    }
    nodes = {c.data.tags["node_id"] for c in children}
    assert len(nodes) >= 2 and nodes <= worker_node_ids(cluster)


def hold_after_first_epoch(folder: str, epoch: int, metrics: dict) -> None:
    """``on_epoch_end`` of the fault test (rank 0): records each epoch it ends and where; after the first
    epoch (once), writes its node id to ``hold`` and waits there for the test to remove that node."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    (Path(folder) / f"epoch{epoch}-{node}-{time.time_ns()}").touch()
    hold = Path(folder) / "hold"
    if epoch == 1 and not hold.exists():
        hold.write_text(node)
        time.sleep(120)  # the node is removed long before this ends


def registered(run_dir: Path) -> str | None:
    """The latest checkpoint Ray Train's controller has registered for ``run_dir``, if any."""
    try:
        return json.loads((run_dir / SNAPSHOT).read_text())["latest_checkpoint_result"]["checkpoint_dir_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_held_node(cluster, folder: Path, run_dir: Path, removed: list[str]) -> None:
    """Once rank 0 holds after epoch 1 and the controller has epoch 1's checkpoint, kill rank 0's node."""
    deadline = time.monotonic() + 240
    while not ((folder / "hold").exists() and registered(run_dir) == "epoch_0001"):
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    node_id = (folder / "hold").read_text()
    cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node_id), allow_graceful=False)
    removed.append(node_id)


def test_removing_a_worker_node_restarts_from_the_latest_checkpoint(cluster, tracking, world, tmp_path):
    import functools

    import ray

    cluster.add_node(num_cpus=1)  # the spare: two nodes remain for the restart
    config = tiny_config_for(
        world,
        **{"pretrain.num_workers": 2, "pretrain.epochs": 2, "pretrain.max_failures": 1,
           "storage": str(tmp_path / "runs"), "tracking.uri": tracking},
    )  # fmt: skip
    folder = tmp_path / "epochs"
    folder.mkdir()
    removed: list[str] = []
    killer = threading.Thread(
        target=remove_held_node,
        args=(cluster, folder, tmp_path / "runs" / "pretrain" / "fault", removed),
        daemon=True,
    )
    killer.start()
    result = run_pretraining(
        config, "fault", on_epoch_end=functools.partial(hold_after_first_epoch, str(folder)), log=quiet
    )
    killer.join(timeout=10)
    assert len(removed) == 1, "rank 0 never held after epoch 1"
    deadline = time.monotonic() + 60  # the GCS marks a killed raylet dead after missed health checks
    while removed[0] in {n["NodeID"] for n in ray.nodes() if n["Alive"]} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert removed[0] not in {n["NodeID"] for n in ray.nodes() if n["Alive"]}

    client = MlflowClient(tracking)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and result.epochs == 2
    assert [s for s, _ in history(client, result.run_id, "loss_total")] == [1, 2]  # each epoch exactly once
    assert [s for s, _ in history(client, result.run_id, "val_acc")] == [0, 1, 2]
    ended = Counter(marker.name.split("-")[0] for marker in folder.glob("epoch*"))
    assert ended == {"epoch1": 1, "epoch2": 1}  # epoch 1 was not trained again after the restart
    restarted_on = run.data.tags["worker_nodes"].split(",")  # the restart's placement
    assert len(set(restarted_on)) == 2 and removed[0] not in restarted_on
    assert set(restarted_on) <= worker_node_ids(cluster)
    assert read_state(tmp_path / "runs" / "pretrain" / "fault" / "epoch_0002")["epoch"] == 2
