"""clip2point.paths: the project root, one rule for relative paths, storage, atomic writes, locks."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from clip2point.errors import ConfigError
from clip2point.paths import (
    STORAGE_ENV,
    atomic_write,
    check_name,
    locked,
    project_root,
    resolve_path,
    storage_root,
    write_text_atomic,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)


def test_relative_paths_start_at_the_project_root_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (project_root() / "pyproject.toml").is_file()  # the checkout (editable install)
    assert resolve_path("data/toy") == project_root() / "data" / "toy"
    assert resolve_path(tmp_path / "x") == tmp_path / "x"
    assert resolve_path("~/y") == Path.home() / "y"


def test_storage_is_the_config_then_the_environment_then_the_project_runs(monkeypatch, tmp_path):
    assert storage_root() == str(project_root() / "runs")
    assert storage_root("elsewhere") == str(project_root() / "elsewhere")
    monkeypatch.setenv(STORAGE_ENV, f"{tmp_path}/nfs/")
    assert storage_root() == str(tmp_path / "nfs")
    assert storage_root(str(tmp_path / "mine")) == str(tmp_path / "mine")  # the config wins


def test_storage_takes_buckets_and_file_uris(monkeypatch, tmp_path):
    assert storage_root("s3://my-bucket/clip2point/") == "s3://my-bucket/clip2point"
    monkeypatch.setenv(STORAGE_ENV, "gs://my-bucket")
    assert storage_root() == "gs://my-bucket"
    assert storage_root(f"file://{tmp_path}/runs/") == str(tmp_path / "runs")


@pytest.mark.parametrize(
    "value, message",
    [
        ("s3://CHANGE-ME-clip2point-bucket/clip2point", r"placeholder bucket.*cluster/gpu.yaml"),
        (
            "ftp://host/runs",
            r"scheme ftp:// is not supported; allowed: a local or NFS folder, file:///path, "
            r"s3://bucket/prefix, gs://bucket/prefix",
        ),
        ("s3:///runs", r"names no bucket"),
    ],
)
def test_bad_storage_is_a_config_error_naming_where_it_came_from(monkeypatch, value, message):
    monkeypatch.setenv(STORAGE_ENV, value)
    with pytest.raises(ConfigError, match=rf"\$CLIP2POINT_STORAGE='{value}'.*{message}"):
        storage_root()
    with pytest.raises(ConfigError, match=rf"config key 'storage'='{value}'"):
        storage_root(value)


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "deep" / "state.json"
    write_text_atomic(target, "old")

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]  # no temp file left


def _hold(lock: str, log: str, name: str) -> None:
    with locked(lock):
        with open(log, "a") as handle:
            handle.write(f"{name} in\n")
        time.sleep(0.3)
        with open(log, "a") as handle:
            handle.write(f"{name} out\n")


def test_locked_lets_one_process_in_at_a_time(tmp_path):
    lock, log = tmp_path / "sub" / "entry.lock", tmp_path / "log.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hold, args=(str(lock), str(log), n)) for n in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    events = [line.split() for line in log.read_text().splitlines()]
    assert [e[1] for e in events] == ["in", "out", "in", "out"]  # never two inside at once
    assert events[0][0] == events[1][0] and events[2][0] == events[3][0] != events[0][0]
    assert os.path.exists(lock)


@pytest.mark.parametrize(
    "name", ["toy-default", "pretrain-20260101-120000", "grp/run_1.v2", "a/b/c", "x" * 128]
)
def test_names_of_the_documented_characters_are_kept(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["../../escape", "..", "a/../b", "/some/path", "a//b", "a/", "", ".hidden", "-flag", "a\\b", "s3://x",
     "C:/x", "a b", "~/x", "x" * 129],
)  # fmt: skip
def test_names_that_could_leave_the_storage_are_refused(name):
    with pytest.raises(ConfigError, match=r"^study name .* is not allowed; allowed: letters, digits"):
        check_name(name, "study name")
