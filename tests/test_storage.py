"""clip2point.storage on a local folder and on a real S3 server (moto on loopback, reached only through the
standard AWS environment): round trips, atomic writes, and the fail-fast probe's errors."""

from __future__ import annotations

import os
import time

import pyarrow.fs as pafs
import pytest

from clip2point import storage
from clip2point.errors import StorageError
from tests.cluster.fake_cluster import free_port


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    return f"s3://{request.getfixturevalue('bucket')}/clip2point"


def test_join_and_name_keep_the_scheme():
    assert storage.join("s3://b/p/", "pretrain", "/run/") == "s3://b/p/pretrain/run"
    assert storage.join("/x/y", "z") == "/x/y/z"
    assert storage.name("s3://b/p/best.safetensors") == "best.safetensors"


def test_filesystem_resolves_buckets_and_folders(bucket, s3_server, tmp_path, monkeypatch):
    fs, path = storage.filesystem(f"s3://{bucket}/a/b/")
    assert isinstance(fs, pafs.S3FileSystem) and path == f"{bucket}/a/b"
    assert fs.get_file_info(bucket).type == pafs.FileType.Directory  # reached through AWS_ENDPOINT_URL
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    fs, _ = storage.filesystem(f"s3://{bucket}")
    assert fs.get_file_info(bucket).type == pafs.FileType.Directory  # ... or AWS_ENDPOINT_URL_S3
    fs, path = storage.filesystem(f"file://{tmp_path}/x")
    assert isinstance(fs, pafs.LocalFileSystem) and path == f"{tmp_path}/x"
    fs, path = storage.filesystem("gs://my-bucket/runs/", fail_fast=True)  # made offline; used on GCP
    assert isinstance(fs, pafs.GcsFileSystem) and path == "my-bucket/runs"


def test_files_round_trip_and_folders_delete(root, tmp_path):
    run = storage.join(root, "pretrain", "run")
    assert not storage.exists(run)
    storage.write_text(storage.join(run, "record.json"), '{"a": 1}')
    storage.write_text(storage.join(run, "record.json"), '{"a": 2}')  # replaced whole
    assert storage.read_text(storage.join(run, "record.json")) == '{"a": 2}'
    local = tmp_path / "weights.bin"
    local.write_bytes(bytes(range(256)) * 1000)
    storage.upload(local, storage.join(run, "sub", "weights.bin"))
    back = storage.download(storage.join(run, "sub", "weights.bin"), tmp_path / "copy" / "w.bin")
    assert back.read_bytes() == local.read_bytes()
    assert storage.exists(run) and storage.exists(storage.join(run, "sub", "weights.bin"))
    with pytest.raises(FileNotFoundError, match="no file at"):
        storage.read_bytes(storage.join(run, "missing.json"))
    fs, path = storage.filesystem(run)
    listed = sorted(
        i.path[len(path) + 1 :] for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
    )
    assert [p for p in listed if not p.endswith("sub")] == ["record.json", "sub/weights.bin"]  # no temp files
    storage.remove(run)
    assert not storage.exists(storage.join(run, "record.json"))
    storage.remove(run)  # nothing there: fine


def test_check_storage_passes_and_leaves_nothing(root, s3_server):
    storage.check_storage(root)
    fs, path = storage.filesystem(root)
    left = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    assert left == []


def refused(location: str, reason: str) -> None:
    start = time.monotonic()
    with pytest.raises(StorageError) as caught:
        storage.check_storage(location)
    assert time.monotonic() - start < 15
    message = str(caught.value)
    assert message.startswith(f"storage {location}") and reason in message, message


def test_bad_storage_fails_fast_naming_the_uri_and_the_cause(bucket, s3_server, monkeypatch, tmp_path):
    refused("s3://no-such-bucket-c2p/runs", "the bucket does not exist")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    refused(f"s3://{bucket}/runs", "the credentials were refused")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN00")
    refused(f"s3://{bucket}/runs", "the credentials were refused")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key_id)
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    refused(
        f"s3://{bucket}/runs",
        f"(endpoint {closed}): cannot write a probe file: the endpoint cannot be reached",
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    assert s3_server.keys(bucket) == []  # nothing half-written by any of them
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root may write anywhere
        refused(str(locked / "runs"), "permission denied")
