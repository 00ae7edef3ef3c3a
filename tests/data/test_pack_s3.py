"""A pack written to a bucket of the loopback S3 server by Ray tasks, killed mid-way (the driver and the Ray
instance it started, SIGKILL) and resumed by the same command: finished shards are kept, not redone.

One object's cloud is a named pipe while the first command runs: the task packing it waits on the pipe, so
the kill always finds the pack unfinished, however fast the other tasks write their shards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from clip2point.data.pack import MANIFEST, PENDING, read_manifest
from clip2point.data.pack_sources import plan_pack
from tests.engine.pretrain_fixtures import tiny_config_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def pack_command(config, out: str) -> list[str]:
    return [sys.executable, "-m", "clip2point.cli", "data", "pack", "--out", out, "--shard-size", "1",
            "-o", f"model.name={config.model.name}", "-o", "model.pretrained=null",
            "-o", f"data.root={config.data.root}", "-o", f"tracking.uri={config.tracking.uri}"]  # fmt: skip


def objects(s3_server, bucket: str) -> list[str]:
    """The pack's objects (not the empty folder marker pyarrow may leave)."""
    return [k for k in s3_server.keys(bucket, "packs/tiny/") if not k.endswith("/")]


def block_first_cloud(root: str) -> tuple[Path, Path]:
    """Put a named pipe in place of the cloud of the first object to pack under ``root``: reading it waits for
    a writer that never comes. Returns (the cloud's path, where its file was moved)."""
    cloud = Path(plan_pack("shapenet55", root).objects[0].cloud)
    kept = cloud.with_name(cloud.name + ".kept")
    cloud.rename(kept)
    os.mkfifo(cloud)
    return cloud, kept


def test_pack_to_a_bucket_killed_and_resumed(bucket, s3_server, tmp_path):
    config = tiny_config_for(tmp_path)
    cloud, kept = block_first_cloud(config.data.root)
    out = f"s3://{bucket}/packs/tiny"
    ray_dir = tempfile.mkdtemp(prefix="c2p-pack-", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": ray_dir}
    driver = subprocess.Popen(pack_command(config, out), env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline and not any("shard-" in k for k in s3_server.keys(bucket)):
        time.sleep(0.2)
    subprocess.run(["pkill", "-KILL", "-s", str(driver.pid)], check=False)
    driver.wait()
    keys = objects(s3_server, bucket)
    shards = [k for k in keys if "shard-" in k]
    assert 1 <= len(shards) < 16 and set(keys) == {*shards, f"packs/tiny/{PENDING}"}  # nothing half-written
    client = s3_server.client()
    tags = {k: client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in shards}
    cloud.unlink()
    kept.rename(cloud)

    resumed = subprocess.run(pack_command(config, out), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"16 shards, {len(shards)} already packed" in resumed.stdout
    assert {k: client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in shards} == tags  # kept
    keys = objects(s3_server, bucket)
    assert len(keys) == 17 and f"packs/tiny/{MANIFEST}" in keys and f"packs/tiny/{PENDING}" not in keys
    assert read_manifest(out).num_objects == 16
    shutil.rmtree(ray_dir, ignore_errors=True)
