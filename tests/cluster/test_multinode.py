"""Multi-node Ray on one machine, every process tracked by one MLflow server on loopback that the tests start,
with a bucket on a loopback S3 server (moto) as the cluster's shared storage.

The cluster (``ray.cluster_utils.Cluster``) has a head without CPUs and worker nodes with one CPU each, so
every 1-CPU Ray Train worker or Tune trial runs on a node of its own. It lives in its own temp dir
(``RAY_TMPDIR``: no ``ray.init()`` elsewhere on this machine finds it) and ``Cluster.shutdown`` ends only
its processes. Every node, and the MLflow server (which keeps its artefacts in the bucket, as on the head
of ``cluster/gpu.yaml``), reaches the bucket through the standard AWS environment only.

- DDP pre-training with 2 workers on 2 nodes (gloo), in micro batches, ends epoch 1 where 1 worker with the
  same global batch and seed does in one pass;
- a sweep's trials spread over the nodes, one parent run and a FINISHED child per trial in the server;
- a pack written to the bucket by Ray tasks: the two ranks' streams hold every object once per epoch, and 2
  workers on 2 nodes pre-train from it with no training file in the data folder;
- pre-training on 2 nodes with the storage in the bucket: checkpoints, run record and best encoder land
  there; removing the node of a worker after epoch 1 makes Ray Train restart from the bucket's epoch-1
  checkpoint on the nodes left, and MLflow holds every epoch exactly once; then, with every local trace of
  the run deleted, ``clip2point pretrain --name <run> --resume`` with one more epoch, started from another
  directory, continues from the bucket alone.

The driver-kill fault of a sweep, resumed from another checkout through the bucket, is in
``tests/sweep/test_runner.py``.
"""

from __future__ import annotations

import json
import os
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

from clip2point import storage
from clip2point.config import load_config, save_config
from clip2point.engine.pretrain import run_pretraining
from clip2point.engine.pretrain_state import read_state
from clip2point.sources import local_file
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
def shared_bucket(open_s3_server) -> str:
    """A bucket for the module, and the AWS environment that reaches it, set before any node starts (the
    server checks no credentials: the MLflow server downloads its artefacts through presigned URLs)."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in open_s3_server.env().items():
            env.setenv(name, value)
        yield open_s3_server.new_bucket("cluster")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory, shared_bucket) -> str:
    """``mlflow server`` on 127.0.0.1 with a sqlite store, artefacts proxied into the bucket; its URI."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"http://127.0.0.1:{free_port()}"
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
               "--port", uri.rsplit(":", 1)[1], "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'db'}",
               "--artifacts-destination", f"s3://{shared_bucket}/mlflow"]  # fmt: skip
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
def cluster(shared_bucket):
    """A head without CPUs and ``WORKER_NODES`` 1-CPU nodes; the test process is the driver."""
    import ray
    from ray.cluster_utils import Cluster

    temp = Path(tempfile.mkdtemp(prefix="c2p-mn-", dir="/tmp"))  # short: Ray's socket paths live under it
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", str(temp))  # Ray's session and address file go here, not /tmp/ray
        env.setenv("PYTHONPATH", str(ROOT))  # workers import this module and tests.engine
        ray.shutdown()  # the tests' local Ray (tests/conftest.py), if a test started it
        # A killed node is declared dead after 5 failed health checks: 1 s apart instead of 3 s.
        checks = {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}
        head = {"num_cpus": 0, "include_dashboard": False, "_system_config": checks}
        nodes = Cluster(initialize_head=True, head_node_args=head)
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


def test_the_progress_queue_lives_on_the_drivers_node_and_carries_notes(cluster, capsys):
    """The head has no CPUs, so a free actor lands on a worker node, which may be lost mid-run; the
    queue's actor is pinned to the driver's node (the head here) and survives that."""
    import ray
    from ray._private.state import actors  # the GCS's actor table (the State API needs a dashboard)

    from clip2point.engine.progress import EpochHooks, driver_progress

    seen = []
    with driver_progress(lambda epoch, metrics: seen.append((epoch, metrics)), poll_s=0.05) as queue:
        hooks = EpochHooks(queue)
        hooks.note("checkpoint epoch_0002 is damaged")
        hooks(1, {"loss_total": 0.5})
        placed_on = actors(queue.actor._actor_id.hex())["Address"]["NodeID"]  # alive: it took two puts
    assert placed_on == ray.get_runtime_context().get_node_id() == cluster.head_node.node_id
    assert seen == [(1, {"loss_total": 0.5})]
    assert "checkpoint epoch_0002 is damaged" in capsys.readouterr().err


def test_two_workers_on_two_nodes_in_micro_batches_match_one_worker_in_one_pass(cluster, tracking, world):
    """The Ray Train loop end to end: an epoch of batch 4 on 2 workers on 2 nodes, in micro batches of 1
    sample, ends where an epoch on 1 worker in one pass does (every logged value, every weight)."""
    runs = {}
    for workers, micro in ((1, None), (2, 1)):
        settings = {"pretrain.num_workers": workers, "pretrain.micro_batch": micro, "pretrain.epochs": 1,
                    "tracking.uri": tracking}  # fmt: skip
        runs[workers] = run_pretraining(tiny_config_for(world, **settings), f"workers-{workers}", log=quiet)
    client = MlflowClient(tracking)
    assert client.get_run(runs[2].run_id).data.params["pretrain.micro_batch"] == "1"
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


def registered(run_dir: str) -> str | None:
    """The latest checkpoint Ray Train's controller has registered for ``run_dir`` (storage), if any."""
    try:
        snapshot = json.loads(storage.read_text(storage.join(run_dir, SNAPSHOT)))
        return snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_held_node(cluster, folder: Path, run_dir: str, removed: list[str]) -> None:
    """Once rank 0 holds after epoch 1 and the controller has epoch 1's checkpoint, kill rank 0's node."""
    deadline = time.monotonic() + 240
    while not ((folder / "hold").exists() and registered(run_dir) == "epoch_0001"):
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    node_id = (folder / "hold").read_text()
    cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node_id), allow_graceful=False)
    removed.append(node_id)


def local_traces(name: str, *roots: Path) -> list[Path]:
    """Folders named ``name`` (a run's) or holding its checkpoints under ``roots``: what a node kept."""
    found = set()
    for root in roots:
        if root.is_dir():
            found |= {p for p in root.rglob(name) if p.is_dir()}
            found |= {p.parent for p in root.rglob("epoch_000*") if p.is_dir()}
    return sorted(found)


def test_pretraining_in_the_bucket_survives_a_node_loss_and_resumes_from_it_alone(
    cluster, tracking, shared_bucket, open_s3_server, world, tmp_path
):
    import functools

    import ray

    cluster.add_node(num_cpus=1)  # the spare: two nodes remain for the restart
    bucket_root = f"s3://{shared_bucket}/clip2point"
    run_dir = f"{bucket_root}/pretrain/fault"
    settings = {"pretrain.num_workers": 2, "pretrain.epochs": 2, "pretrain.max_failures": 1,
                "storage": bucket_root, "tracking.uri": tracking}  # fmt: skip
    config = tiny_config_for(world, **settings)
    folder = tmp_path / "epochs"
    folder.mkdir()
    removed: list[str] = []
    killer = threading.Thread(target=remove_held_node, args=(cluster, folder, run_dir, removed), daemon=True)
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
    # Everything of the run is in the bucket: checkpoints, Ray Train's record, our record, the best encoder.
    keys = open_s3_server.keys(shared_bucket, "clip2point/pretrain/fault/")
    names = {key.removeprefix("clip2point/pretrain/fault/") for key in keys}
    assert {"mlflow_run.json", "config.yaml", "best_depth_encoder.safetensors", SNAPSHOT,
            "epoch_0001/state.pt", "epoch_0002/state.pt"} <= names  # fmt: skip
    assert result.best_file == f"{run_dir}/best_depth_encoder.safetensors"
    assert run.data.tags["best_checkpoint"] == result.best_file  # written there by rank 0, on its node
    logged = local_file(f"runs:/{result.run_id}/checkpoints/best_depth_encoder.safetensors", tracking)
    assert logged.read_bytes() == local_file(result.best_file).read_bytes()
    assert any(
        k.startswith("mlflow/") and k.endswith("/best_depth_encoder.safetensors")
        for k in open_s3_server.keys(shared_bucket, "mlflow/")
    )  # fmt: skip  (the server's artefacts)
    state = storage.download(f"{run_dir}/epoch_0002/state.pt", tmp_path / "state" / "state.pt")
    assert read_state(state.parent)["epoch"] == 2

    # Every local trace of the run goes; a resume from another directory reads the bucket alone.
    roots = (Path(os.environ["RAY_TMPDIR"]), world, tmp_path)  # the cluster's nodes keep theirs in RAY_TMPDIR
    for trace in local_traces("fault", *roots):
        shutil.rmtree(trace)
    assert local_traces("fault", *roots) == []
    save_config(tiny_config_for(world, **{**settings, "storage": None}), tmp_path / "config.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **os.environ,
        "RAY_ADDRESS": cluster.address,
        "CLIP2POINT_STORAGE": bucket_root,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "clip2point.cli", "pretrain", "--config", str(tmp_path / "config.yaml"),
               "--name", "fault", "--resume", "-o", "pretrain.epochs=3"]  # fmt: skip
    resumed = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"best depth encoder: {run_dir}/best_depth_encoder.safetensors" in resumed.stdout
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert [s for s, _ in history(client, result.run_id, "loss_total")] == [1, 2, 3]  # continued at epoch 3
    assert [s for s, _ in history(client, result.run_id, "val_acc")] == [0, 1, 2, 3]
    state = storage.download(f"{run_dir}/epoch_0003/state.pt", tmp_path / "state3" / "state.pt")
    assert read_state(state.parent)["epoch"] == 3
    assert not (elsewhere / "runs").exists()


def test_two_nodes_stream_a_pack_from_the_bucket_each_object_once_per_epoch(
    cluster, tracking, shared_bucket, tmp_path
):
    """A pack written to the bucket by Ray tasks on the nodes; the two ranks' streams hold every object once
    per epoch, in a new order every epoch; 2 workers on 2 nodes pre-train from the bucket with no training
    file (cloud or render) left in the data folder."""
    from clip2point.data.pack import read_manifest
    from clip2point.data.pack_stream import PackStream
    from clip2point.engine.pack import pack_dataset
    from clip2point.schema import with_overrides

    settings = {"pretrain.num_workers": 2, "pretrain.epochs": 2, "pretrain.sampling": "random",
                "tracking.uri": tracking, "storage": f"s3://{shared_bucket}/streamed"}  # fmt: skip
    config = tiny_config_for(tmp_path, **settings)
    pack = f"s3://{shared_bucket}/packs/tiny"
    pack_dataset(config, pack, shard_size=4, log=quiet)
    manifest = read_manifest(pack)
    orders = []
    for epoch in (1, 2):
        per_rank = [
            [r for batch in PackStream(pack, manifest, seed=config.seed, rank=rank, world=2, batch_size=2,
                                       num_points=64, sampling="random").epoch(epoch)
             for r in batch["record"].tolist()]
            for rank in (0, 1)
        ]  # fmt: skip
        counts = Counter(per_rank[0] + per_rank[1])
        assert sorted(counts) == list(range(16)) and set(counts.values()) == {1}, counts
        assert len(per_rank[0]) == len(per_rank[1]) == 8
        orders.append(per_rank)
    assert orders[0] != orders[1]  # reshuffled every epoch

    root = Path(config.data.root)
    shutil.rmtree(root / "rendering")
    for cloud in (root / "ShapeNet55" / "shapenet_pc").glob("*-m*.npy"):  # the train split's clouds
        cloud.unlink()
    result = run_pretraining(with_overrides(config, {"pretrain.data": pack}), "streamed", log=quiet)
    client = MlflowClient(tracking)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and result.epochs == 2
    placed = run.data.tags["worker_nodes"].split(",")
    assert len(set(placed)) == 2 and set(placed) <= worker_node_ids(cluster)
    assert [s for s, _ in history(client, result.run_id, "loss_total")] == [1, 2]
    assert {s: v for s, v in history(client, result.run_id, "samples_per_second")}.keys() == {1, 2}
