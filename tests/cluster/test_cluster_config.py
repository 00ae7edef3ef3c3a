"""cluster/gpu.yaml and cluster/local.yaml pass Ray's own cluster-config validation (the JSON schema
ray/autoscaler/ray-schema.json, and for gpu.yaml the defaults `ray up` merges in), broken copies fail it with
Ray's message, and the files keep the invariants the project relies on."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from clip2point.paths import STORAGE_ENV, STORAGE_PLACEHOLDER
from tests.cluster.fake_cluster import end_session, free_port, node_ip, session_pids

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "cluster" / "gpu.yaml"
LOCAL = ROOT / "cluster" / "local.yaml"
HEAD = "ray.head.default"
SECRET_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",  # an AWS access key id
    r"aws_access_key_id",
    r"aws_secret_access_key",
    r"AWS_SECRET_ACCESS_KEY",
    r"AWS_SESSION_TOKEN",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"gcp_credentials",
]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def as_ray_up(config: dict) -> dict:
    """What `ray up` does before it launches anything: merge the provider's defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def as_monitor(config: dict) -> dict:
    """What the fake cluster's autoscaler does with cluster/local.yaml: validate it as it is."""
    validate_config(config)
    return config


def code_lines(path: Path) -> list[str]:
    """The file's lines without YAML comments (every '#' in these files starts a comment)."""
    return [line.split("#", 1)[0] for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


def find_secrets(text: str) -> list[str]:
    return [pattern for pattern in SECRET_PATTERNS if re.search(pattern, text, re.IGNORECASE)]


def test_gpu_yaml_passes_ray_up_validation_with_defaults():
    config = as_ray_up(load(GPU))
    assert config["provider"] == {"type": "aws", "region": "us-west-2", "cache_stopped_nodes": True}
    assert set(config["available_node_types"]) == {HEAD, "gpu_1x", "gpu_4x", "gpu_8x"}
    # Ray's defaults at work: the head type gets max_workers 0, and the common setup commands are merged
    # in front of the head's own.
    assert config["available_node_types"][HEAD]["max_workers"] == 0
    assert config["head_setup_commands"] == config["setup_commands"] + ["pip install 'boto3>=1.4.8'"]
    for name in ("gpu_1x", "gpu_4x", "gpu_8x"):
        node = config["available_node_types"][name]
        assert node["min_workers"] == 0  # GPU nodes cost nothing until work asks for them
        assert 1 <= node["max_workers"] <= config["max_workers"]


def test_local_yaml_passes_ray_validation_and_mirrors_gpu_yaml():
    local = as_monitor(load(LOCAL))
    gpu = load(GPU)
    assert local["provider"]["type"] == "fake_multinode"
    assert local["head_node_type"] == gpu["head_node_type"] == HEAD  # the name the fake provider requires
    assert set(local["available_node_types"]) <= set(gpu["available_node_types"])
    assert {"gpu_1x", "gpu_4x"} <= set(local["available_node_types"])
    for name, node in local["available_node_types"].items():
        assert set(node["resources"]) == {"CPU"}, name  # laptop-sized: CPUs only
        assert 1 <= node["resources"]["CPU"] <= 2, name
        assert node.get("min_workers", 0) == 0, name
    assert local["available_node_types"]["gpu_1x"]["max_workers"] >= 2  # two workers on two nodes
    assert (
        sum(n.get("max_workers", 0) for n in local["available_node_types"].values()) <= local["max_workers"]
    )


BROKEN = [
    # (what is wrong, change to the config, exception type, Ray's message)
    (
        "misspelled top-level key",
        lambda c: c.update(setup_comands=c.pop("setup_commands")),
        jsonschema.ValidationError,
        r"Additional properties are not allowed \('setup_comands' was unexpected\)",
    ),
    (
        "misspelled node-type key",
        lambda c: c["available_node_types"]["gpu_1x"].update(max_worker=2),
        jsonschema.ValidationError,
        r"Additional properties are not allowed \('max_worker' was unexpected\)",
    ),
    (
        "wrong type",
        lambda c: c.update(max_workers="eight"),
        jsonschema.ValidationError,
        r"'eight' is not of type 'integer'",
    ),
    (
        "fractional resource",
        lambda c: c["available_node_types"]["gpu_1x"].update(resources={"CPU": 1.5}),
        jsonschema.ValidationError,
        r"1.5 is not of type 'integer'",
    ),
    (
        "head type not among the node types",
        lambda c: c.update(head_node_type="ray.head.gpu"),
        ValueError,
        r"`head_node_type` must be one of `available_node_types`",
    ),
]


@pytest.mark.parametrize("what, breaks, error, message", BROKEN, ids=[case[0] for case in BROKEN])
@pytest.mark.parametrize("path, check", [(GPU, as_ray_up), (LOCAL, as_monitor)], ids=["gpu", "local"])
def test_broken_copy_fails_ray_validation(path, check, what, breaks, error, message):
    config = load(path)
    breaks(config)
    with pytest.raises(error, match=message):
        check(config)


def test_every_gpu_node_type_installs_the_users_working_tree():
    config = as_ray_up(load(GPU))
    # The project root (where `ray up` runs) goes to one place on every node, without what git ignores ...
    (checkout,) = [remote for remote, local in config["file_mounts"].items() if local == "."]
    assert ".gitignore" in config["rsync_filter"]
    install = f"pip install -e {checkout}"
    # ... and every node type's effective setup (a type's own worker_setup_commands replace the common ones)
    # installs it from there.
    assert install in config["head_setup_commands"]
    for name, node in config["available_node_types"].items():
        if name != HEAD:
            assert install in node.get("worker_setup_commands", config["worker_setup_commands"]), name


def test_storage_is_set_once_and_everything_else_reads_it():
    lines = code_lines(GPU)
    assignments = [line for line in lines if f"{STORAGE_ENV}=" in line]
    buckets = [line for line in lines if re.search(r"\b(s3|gs)://", line)]
    assert len(assignments) == 1
    assert len(buckets) == 1  # the one bucket literal, on the line after the assignment's format
    assert STORAGE_PLACEHOLDER in buckets[0]  # clip2point.paths.storage_root refuses it with a hint
    mlflow_lines = [line for line in lines if "--artifacts-destination" in line]
    assert mlflow_lines == [f'    --artifacts-destination "${STORAGE_ENV}/mlflow"']


def test_every_node_type_can_write_the_bucket():
    """Workers write checkpoints and encoders to the bucket themselves: every worker type has the instance
    profile that grants S3 access (the head gets it when `ray up` bootstraps the cluster)."""
    config = as_ray_up(load(GPU))
    profiles = {
        name: node["node_config"].get("IamInstanceProfile", {}).get("Name")
        for name, node in config["available_node_types"].items()
        if name != HEAD
    }
    assert set(profiles.values()) == {"ray-autoscaler-v1"}, profiles


def test_no_credentials_in_the_configs():
    for path in (GPU, LOCAL):
        assert find_secrets(path.read_text()) == [], path
    # The check itself finds a planted key.
    planted = GPU.read_text() + "\n# aws_secret_access_key: wJalrXUtnFEMI/K7MDENG\n# AKIAIOSFODNN7EXAMPLE\n"
    assert find_secrets(planted) == [SECRET_PATTERNS[0], SECRET_PATTERNS[2], SECRET_PATTERNS[3]]


def setup_command(config: dict, marker: str, section: str) -> str:
    (command,) = [c for c in config[section] if marker in c]
    return command


@pytest.mark.slow
def test_head_commands_start_mlflow_on_the_private_ip_with_artefacts_in_the_bucket(tmp_path):
    """Run gpu.yaml's own environment and MLflow commands here, as the head would (bucket and port swapped
    for a local directory and a free port): the server listens on Ray's node IP and not on loopback, keeps
    runs in sqlite under ~/mlflow, and stores artefacts under $CLIP2POINT_STORAGE/mlflow."""
    config = load(GPU)
    port = free_port()
    bucket = tmp_path / "bucket"
    home = tmp_path / "home"
    home.mkdir()
    write_env = (
        setup_command(config, "printf", "setup_commands")
        .replace("s3://CHANGE-ME-clip2point-bucket/clip2point", f"file://{bucket}")
        .replace(":5000", f":{port}")
    )
    start_mlflow = setup_command(config, "mlflow server", "head_start_ray_commands")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home)}  # no RAY_HEAD_IP: head
    subprocess.run(["bash", "-c", write_env], env=env, check=True, timeout=60)
    ip = node_ip()
    assert (home / ".clip2point_env").read_text() == (
        f"export {STORAGE_ENV}=file://{bucket}\nexport MLFLOW_TRACKING_URI=http://{ip}:{port}\n"
    )
    starter = subprocess.Popen(["bash", "-c", start_mlflow], env=env, start_new_session=True)
    try:
        starter.wait(timeout=30)
        uri = f"http://{ip}:{port}"
        deadline = time.monotonic() + 90
        while not (up := healthy(uri)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert up, (home / "mlflow" / "server.log").read_text()[-3000:]
        assert not healthy(f"http://127.0.0.1:{port}")  # bound to the private IP only
        # Host check: the workers' address and a browser through the tunnel pass, other names do not.
        assert api_status(uri, f"{ip}:{port}") == 200
        assert api_status(uri, "localhost:5000") == 200
        assert api_status(uri, "mlflow.attacker.example") == 403

        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        run = client.create_run(client.create_experiment("cluster-check"))
        client.log_metric(run.info.run_id, "loss", 0.5, step=1)
        client.log_text(run.info.run_id, "hello", "note.txt")
        (stored,) = bucket.joinpath("mlflow").rglob("note.txt")
        assert stored.read_text() == "hello"
        assert (home / "mlflow" / "mlflow.db").is_file()
        assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.5]
        assert int((home / "mlflow" / "server.pid").read_text()) in session_pids(starter.pid)
    finally:
        end_session(starter.pid)


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


def api_status(uri: str, host: str) -> int:
    """HTTP status of an MLflow API read sent to ``uri`` with the Host header ``host``."""
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
