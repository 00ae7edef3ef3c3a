"""A real multi-node Ray cluster on this machine, from ``cluster/local.yaml`` with Ray's fake provider.

``ray start --head --autoscaling-config=<config>`` with ``RAY_FAKE_CLUSTER=1`` starts the head; the
autoscaler then starts every worker node (a raylet of its own, with the node type's resources) when work
asks for it. The harness keeps the cluster private to the test and cleans it up without touching anyone
else's Ray: its own temp dir (so ``ray.init()`` elsewhere does not find it), its own GCS port (the one
change to the config, via the fake provider's ``gcs_address``), its own auth token, and, at the end, it
ends exactly the processes of the session it started (never ``ray stop``, which stops every Ray here).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class FakeCluster:
    """A running fake cluster: connect with ``ray.init(address=address)`` from a process with ``env``."""

    address: str
    env: dict[str, str]
    config: dict
    session: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def node_ip() -> str:
    """The IP Ray gives nodes on this machine (the fake provider's workers join the head there)."""
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def session_pids(session: int) -> list[int]:
    """Processes in session ``session`` (what the ``ray start`` we launched and its daemons run in)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ...
        if int(fields[3]) == session:
            pids.append(int(entry.name))
    return pids


def end_session(session: int, grace_s: float = 2.0) -> None:
    """SIGTERM every process of ``session``, then SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_pids(session):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while session_pids(session) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not session_pids(session):
            return


@contextmanager
def fake_cluster(config_path: Path, timeout_s: float = 60.0) -> Iterator[FakeCluster]:
    """Start the head of the fake cluster described by ``config_path``; yield it; end all its processes."""
    config = yaml.safe_load(config_path.read_text())
    address = f"{node_ip()}:{free_port()}"
    config["provider"]["gcs_address"] = address
    head = config["available_node_types"][config["head_node_type"]]["resources"]
    with tempfile.TemporaryDirectory(prefix="c2p-ray-", dir="/tmp") as temp_dir:
        config_file = Path(temp_dir) / "cluster.yaml"
        config_file.write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_ADDRESS": address,
        }
        cluster_env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        command = [
            ray_cli(),
            "start",
            "--head",
            f"--port={address.rsplit(':', 1)[1]}",
            f"--autoscaling-config={config_file}",
            f"--temp-dir={temp_dir}",
            f"--num-cpus={head.get('CPU', 0)}",
            f"--num-gpus={head.get('GPU', 0)}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        starter = subprocess.Popen(
            command,
            env=cluster_env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output, _ = starter.communicate(timeout=timeout_s)
            if starter.returncode != 0:
                raise RuntimeError(f"`{' '.join(command)}` failed:\n{output}")
            yield FakeCluster(address=address, env=env, config=config, session=starter.pid)
        finally:
            end_session(starter.pid)
