"""A real S3-compatible server for the tests: moto's standalone server (``moto_server``) on 127.0.0.1.

``s3_server`` checks credentials like S3 does: the first IAM calls (a user, its access key, an allow-all
policy) are the only unauthenticated ones (``INITIAL_NO_AUTH_ACTION_COUNT``); from then on every request
must be signed with that user's key, so a wrong key is refused with S3's errors. moto cannot check a
presigned URL's query-string signature while it checks credentials, so ``open_s3_server`` (no checks) serves
the tests whose MLflow server hands out presigned download URLs. The project reaches either only through
the standard environment (:meth:`S3Server.env`): ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_DEFAULT_REGION``. Fixtures (re-exported by ``tests/conftest.py``):
``s3_server`` and ``open_s3_server`` (one each per session) and ``bucket`` (a fresh bucket on
``s3_server`` per test, the environment set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.fake_cluster import end_session, free_port

REGION = "us-east-1"
UNAUTHENTICATED_SETUP_CALLS = 3  # CreateUser, CreateAccessKey, PutUserPolicy


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key_id: str
    secret: str

    def env(self) -> dict[str, str]:
        """The environment that points the project (and boto3) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )

    def new_bucket(self, prefix: str = "c2p") -> str:
        bucket = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@contextmanager
def serve_s3(folder: Path, check_credentials: bool) -> Iterator[S3Server]:
    """``moto_server`` on a free loopback port (logging to ``folder``), ended with its session."""
    import boto3

    log = folder / "moto.log"
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    if check_credentials:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(UNAUTHENTICATED_SETUP_CALLS)
    command = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    with log.open("w") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        if not check_credentials:
            yield S3Server(endpoint, "open", "open")
            return
        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )  # fmt: skip
        iam.create_user(UserName="clip2point")
        key = iam.create_access_key(UserName="clip2point")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="clip2point", PolicyName="all", PolicyDocument=json.dumps(policy))
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        end_session(server.pid)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """The S3 server that checks credentials."""
    with serve_s3(tmp_path_factory.mktemp("s3"), check_credentials=True) as server:
        yield server


@pytest.fixture(scope="session")
def open_s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """An S3 server that checks no credentials (so presigned URLs work)."""
    with serve_s3(tmp_path_factory.mktemp("s3open"), check_credentials=False) as server:
        yield server


@pytest.fixture
def bucket(s3_server, monkeypatch) -> str:
    """A fresh bucket; the test's environment points at the server (and at nothing else of AWS)."""
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    for var, value in s3_server.env().items():
        monkeypatch.setenv(var, value)
    return s3_server.new_bucket()
