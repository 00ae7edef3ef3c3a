"""cluster/local.yaml really starts: the autoscaler brings up every fake worker node with its configured
resources, ``ray status`` lists them by node type, and work placed on each node sees the driver's storage (a
bucket), its S3 endpoint and tracking through :func:`clip2point.cluster.init_ray` (the cluster itself was
started without them)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.cluster.fake_cluster import fake_cluster, ray_cli

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "cluster" / "local.yaml"

# Runs as a Ray driver: ask for every worker node, wait for them, run one task pinned to each node.
CLIENT = """
import json, os, sys, time
import ray
from ray.autoscaler.sdk import request_resources
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from clip2point.cluster import init_ray

want_nodes, want_cpus = int(sys.argv[1]), int(sys.argv[2])
init_ray(address=os.environ["RAY_ADDRESS"], logging_level="ERROR")
request_resources(bundles=[{"CPU": 1}] * want_cpus)
deadline = time.monotonic() + 120
while len([n for n in ray.nodes() if n["Alive"]]) < want_nodes and time.monotonic() < deadline:
    time.sleep(0.5)

@ray.remote(num_cpus=1)
def report():
    keys = ("RAY_NODE_TYPE_NAME", "MLFLOW_TRACKING_URI", "CLIP2POINT_STORAGE", "AWS_ENDPOINT_URL")
    return {key: os.environ.get(key) for key in keys}

nodes = [n for n in ray.nodes() if n["Alive"]]
tasks = {
    n["NodeID"]: report.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
    for n in nodes
}
print(json.dumps([
    {"cpus": n["Resources"].get("CPU"), "gpus": n["Resources"].get("GPU", 0), **ray.get(tasks[n["NodeID"]])}
    for n in nodes
]))
"""


@pytest.mark.ray
@pytest.mark.slow
def test_local_yaml_starts_and_scales_to_every_worker_node(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIP2POINT_STORAGE", raising=False)  # the cluster starts without them ...
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    storage = "s3://rehearsal/clip2point"
    endpoint = "http://127.0.0.1:9000"  # only passed on: nothing here talks to it
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    with fake_cluster(LOCAL) as cluster:
        types = cluster.config["available_node_types"]
        workers = {name: spec for name, spec in types.items() if name != cluster.config["head_node_type"]}
        want_nodes = 1 + sum(spec["max_workers"] for spec in workers.values())
        want_cpus = types[cluster.config["head_node_type"]]["resources"]["CPU"] + sum(
            spec["resources"]["CPU"] * spec["max_workers"] for spec in workers.values()
        )
        env = {
            **cluster.env,
            "PYTHONPATH": str(ROOT),
            "CLIP2POINT_STORAGE": storage,  # ... and only the driver has them
            "MLFLOW_TRACKING_URI": tracking,
            "AWS_ENDPOINT_URL": endpoint,
        }
        client = subprocess.run(
            [sys.executable, "-c", CLIENT, str(want_nodes), str(want_cpus)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert client.returncode == 0, client.stderr[-3000:]
        nodes = json.loads(client.stdout.strip().splitlines()[-1])
        status = subprocess.run(
            [ray_cli(), "status", f"--address={cluster.address}"],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert len(nodes) == want_nodes
    # Every worker type came up max_workers times, each node with its type's CPUs and no GPU.
    assert Counter(n["RAY_NODE_TYPE_NAME"] for n in nodes if n["RAY_NODE_TYPE_NAME"]) == {
        name: spec["max_workers"] for name, spec in workers.items()
    }
    for node in nodes:
        spec = types[node["RAY_NODE_TYPE_NAME"] or cluster.config["head_node_type"]]
        assert node["cpus"] == spec["resources"]["CPU"]
        assert node["gpus"] == 0
    # The driver's storage, its endpoint and tracking reached a task on every node.
    seen = {(n["CLIP2POINT_STORAGE"], n["AWS_ENDPOINT_URL"], n["MLFLOW_TRACKING_URI"]) for n in nodes}
    assert seen == {(storage, endpoint, tracking)}
    # `ray status` names the node types with their counts.
    assert status.returncode == 0, status.stderr[-3000:]
    for name, spec in workers.items():
        assert f" {spec['max_workers']} {name}\n" in status.stdout


@pytest.mark.ray
@pytest.mark.slow
def test_pretraining_on_the_local_cluster_prints_a_header_one_line_per_epoch_and_the_result(tmp_path):
    """`clip2point pretrain -o pretrain.num_workers=2` as docs/cluster.md rehearses it: at default verbosity no Ray
    or worker chatter (1,788 lines for one epoch before: cleaner warnings, epoch lines four times, ...)."""
    from clip2point.config import dump_config
    from tests.engine.pretrain_fixtures import tiny_config_for

    config = tmp_path / "config.yaml"
    config.write_text(dump_config(tiny_config_for(tmp_path, **{"pretrain.epochs": 1})))
    command = [sys.executable, "-m", "clip2point.cli", "pretrain", "--config", str(config)]
    with fake_cluster(LOCAL) as cluster:
        run = subprocess.run(
            [*command, "-o", "pretrain.num_workers=2", "-o", "pretrain.cpus_per_worker=1", "--name", "quiet"],
            env={**cluster.env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout[-5000:]
    assert len(lines) <= 60, run.stdout
    assert lines[0].startswith("pre-training run 'quiet': "), run.stdout
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1/1"], run.stdout
    assert any(line.startswith("zero-shot modelnet10 test: ") for line in lines), run.stdout
    noise = ("PlacementGroupCleaner", "multiple active Ray instances", "Reporting training result", "Warning")
    assert not [line for line in lines if any(word in line for word in noise)], run.stdout
