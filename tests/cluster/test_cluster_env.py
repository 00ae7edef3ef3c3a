"""clip2point.cluster: every Ray worker gets the driver's tracking URI, storage and S3 endpoint, never its
credentials."""

from __future__ import annotations

import pytest

from clip2point.cluster import STORAGE_LOCATION_ENVS, TRACKING_ENV, runtime_env
from clip2point.paths import STORAGE_ENV, project_root


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.delenv(TRACKING_ENV, raising=False)
    for name in STORAGE_LOCATION_ENVS:
        monkeypatch.delenv(name, raising=False)


def test_runtime_env_carries_the_drivers_tracking_and_storage(monkeypatch, tmp_path):
    assert runtime_env() == {"env_vars": {TRACKING_ENV: f"sqlite:///{project_root() / 'mlflow.db'}"}}
    monkeypatch.setenv(TRACKING_ENV, "http://10.0.1.7:5000")
    monkeypatch.setenv(STORAGE_ENV, f"{tmp_path}/shared/")
    assert runtime_env() == {
        "env_vars": {TRACKING_ENV: "http://10.0.1.7:5000", STORAGE_ENV: f"{tmp_path}/shared"}
    }
    assert runtime_env("http://127.0.0.1:5001")["env_vars"][TRACKING_ENV] == "http://127.0.0.1:5001"


def test_runtime_env_carries_where_the_bucket_is_but_no_credentials(monkeypatch):
    monkeypatch.setenv(TRACKING_ENV, "http://10.0.1.7:5000")
    monkeypatch.setenv(STORAGE_ENV, "s3://bucket/clip2point/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert runtime_env() == {
        "env_vars": {
            TRACKING_ENV: "http://10.0.1.7:5000",
            STORAGE_ENV: "s3://bucket/clip2point",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    }
