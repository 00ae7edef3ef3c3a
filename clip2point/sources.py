"""Where a weights file (a depth encoder, an official checkpoint) may come from, turned into a local file.

A source is one of:

- a local path (returned as it is);
- a storage URI, ``s3://bucket/key``, ``gs://bucket/key`` or ``file:///path`` (read through
  :mod:`clip2point.storage`, with the same credentials and endpoint as the run storage);
- an MLflow artefact URI, ``runs:/<run id>/<artefact path>`` (or ``models:/...``,
  ``mlflow-artifacts:/...``), fetched with ``mlflow.artifacts.download_artifacts`` from the given
  tracking server.

Remote files are fetched once into ``<project>/cache/checkpoints/`` (one folder per source; a storage
object also by its size and modification time, so a rewritten object is fetched again) and read from there;
processes that ask at the same time wait for the first one's download. Errors name the source.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from clip2point import storage
from clip2point.errors import InputError, StorageError
from clip2point.paths import STORAGE_PREFIXES, is_remote, locked, resolve_path

CACHE = "cache/checkpoints"


def local_file(
    source: str | os.PathLike, tracking_uri: str | None = None, cache: str | os.PathLike = CACHE
) -> Path:
    """A local file with the content of ``source`` (see the module docstring). ``tracking_uri``: the MLflow
    server of a ``runs:/`` source (default: :func:`clip2point.tracking.resolve_tracking_uri`'s).
    ``cache``: the download folder (relative to the project root)."""
    text = str(source)
    if not is_remote(text):
        return Path(source)
    if text.startswith(STORAGE_PREFIXES):
        try:
            found = storage.info(text)
        except StorageError as error:
            raise InputError(f"cannot fetch {text}: {error}") from error
        if found.type != pafs.FileType.File:
            raise InputError(f"cannot fetch {text}: no such file in storage")
        version = f"{found.size}-{found.mtime_ns}"
    else:
        version = "artefact"  # MLflow artefacts of a run do not change
    digest = hashlib.sha256(f"{text}\n{version}".encode()).hexdigest()[:24]
    folder = resolve_path(cache) / digest
    target = folder / storage.name(text)
    with locked(folder.with_suffix(".lock")):
        if not target.is_file():
            _fetch(text, target, tracking_uri)
    return target


def _fetch(source: str, target: Path, tracking_uri: str | None) -> None:
    if source.startswith(STORAGE_PREFIXES):
        storage.download(source, target)
        return
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from clip2point.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as staging:
        try:
            fetched = Path(mlflow.artifacts.download_artifacts(source, dst_path=staging, tracking_uri=uri))
        except (MlflowException, OSError) as error:
            reason = " ".join(str(error).split())[:300]
            raise InputError(f"cannot fetch {source} from MLflow at {uri}: {reason}") from error
        if not fetched.is_file():
            raise InputError(f"cannot fetch {source}: it names a folder of artefacts, not a file")
        os.replace(fetched, target)  # same folder tree: an atomic rename
