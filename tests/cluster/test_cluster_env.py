"""clip2point.cluster: where results and tracking go, from the environment cluster/gpu.yaml sets up."""

from __future__ import annotations

import pytest

from clip2point.cluster import STORAGE_ENV, TRACKING_ENV, runtime_env, storage_path
from clip2point.errors import ConfigError
from clip2point.tracking import project_root


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.delenv(TRACKING_ENV, raising=False)


def test_local_default_is_absolute_under_the_project_root(tmp_path):
    assert storage_path() == str(project_root() / "runs")
    assert storage_path("results/ray") == str(project_root() / "results" / "ray")
    assert storage_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("s3://my-bucket/clip2point/", "s3://my-bucket/clip2point"),
        ("gs://my-bucket", "gs://my-bucket"),
        ("file:///mnt/shared/runs", "file:///mnt/shared/runs"),
        ("/mnt/nfs/runs", "/mnt/nfs/runs"),
    ],
)
def test_cluster_storage_wins_over_the_local_default(monkeypatch, value, expected):
    monkeypatch.setenv(STORAGE_ENV, value)
    assert storage_path("runs") == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ("runs/shared", r"must be an absolute path or a URI"),
        ("s3:/my-bucket", r"must be an absolute path or a URI"),
        ("s3://", r"must name a bucket or path after 's3://'"),
        ("s3://CHANGE-ME-clip2point-bucket/clip2point", r"placeholder bucket.*cluster/gpu.yaml"),
    ],
)
def test_bad_cluster_storage_is_a_config_error(monkeypatch, value, message):
    monkeypatch.setenv(STORAGE_ENV, value)
    with pytest.raises(ConfigError, match=message):
        storage_path()


def test_runtime_env_carries_the_drivers_tracking_and_storage(monkeypatch):
    assert runtime_env() == {"env_vars": {TRACKING_ENV: f"sqlite:///{project_root() / 'mlflow.db'}"}}
    monkeypatch.setenv(TRACKING_ENV, "http://10.0.1.7:5000")
    monkeypatch.setenv(STORAGE_ENV, "s3://my-bucket/clip2point/")
    assert runtime_env() == {
        "env_vars": {TRACKING_ENV: "http://10.0.1.7:5000", STORAGE_ENV: "s3://my-bucket/clip2point"}
    }
    assert runtime_env("http://127.0.0.1:5001")["env_vars"][TRACKING_ENV] == "http://127.0.0.1:5001"
