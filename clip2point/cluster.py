"""Shared storage and tracking on a Ray cluster, as ``cluster/gpu.yaml`` sets them up.

``cluster/gpu.yaml`` exports two variables on every node, so every process there (job drivers, Ray Train
workers, Tune trials) sees them:

- ``CLIP2POINT_STORAGE``: the shared bucket (``s3://bucket/clip2point``) where Ray Train/Tune write results
  and checkpoints; off a cluster it is unset and they go to a local directory.
- ``MLFLOW_TRACKING_URI``: the MLflow server on the head; off a cluster, the project's sqlite file
  (:func:`clip2point.tracking.resolve_tracking_uri`).

Resolve both once in the driver and hand them to Ray: :func:`storage_path` for ``RunConfig(storage_path=)``,
:func:`runtime_env` (or :func:`init_ray`) so workers on every node use the driver's values, whichever
environment their node was started with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clip2point.errors import ConfigError
from clip2point.tracking import project_root, resolve_tracking_uri

STORAGE_ENV = "CLIP2POINT_STORAGE"
TRACKING_ENV = "MLFLOW_TRACKING_URI"  # read by MLflow itself and by clip2point.tracking
STORAGE_PLACEHOLDER = "CHANGE-ME"  # the bucket name cluster/gpu.yaml ships with
DEFAULT_LOCAL_STORAGE = "runs"


def storage_path(default_local: str | Path = DEFAULT_LOCAL_STORAGE) -> str:
    """Where Ray Train/Tune keep results: ``$CLIP2POINT_STORAGE`` if set, else ``default_local``.

    A URI (``s3://...``, ``gs://...``, ``file://...``) is returned without its trailing ``/``; a path must be
    absolute. ``default_local``, if relative, is taken under the project root (not the working directory,
    which differs between Ray workers), and returned absolute. Raises :class:`ConfigError` for a relative
    ``$CLIP2POINT_STORAGE``, a URI without a bucket, or the placeholder bucket of ``cluster/gpu.yaml``.
    """
    value = os.environ.get(STORAGE_ENV, "").strip()
    if not value:
        local = Path(default_local).expanduser()
        return str(local if local.is_absolute() else project_root() / local)
    if STORAGE_PLACEHOLDER in value:
        raise ConfigError(
            f"${STORAGE_ENV}={value!r} still names the placeholder bucket: set your bucket in the "
            f"{STORAGE_ENV}= line of cluster/gpu.yaml's setup_commands and run `ray up` again"
        )
    scheme, separator, rest = value.partition("://")
    if separator:
        if not scheme or not rest.strip("/"):
            raise ConfigError(f"${STORAGE_ENV}={value!r} must name a bucket or path after '{scheme}://'")
        return value.rstrip("/")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(
            f"${STORAGE_ENV}={value!r} must be an absolute path or a URI such as s3://bucket/clip2point "
            "(Ray workers resolve relative paths in their own working directories)"
        )
    return str(path)


def runtime_env(tracking_uri: str | None = None) -> dict[str, dict[str, str]]:
    """A Ray ``runtime_env`` giving every worker the driver's tracking URI and storage.

    ``{"env_vars": {"MLFLOW_TRACKING_URI": ..., "CLIP2POINT_STORAGE": ...}}``; the tracking URI is
    ``tracking_uri`` or :func:`~clip2point.tracking.resolve_tracking_uri`'s choice (an absolute sqlite path
    locally), the storage entry only when ``$CLIP2POINT_STORAGE`` is set (validated by :func:`storage_path`).
    """
    env_vars = {TRACKING_ENV: resolve_tracking_uri(tracking_uri)}
    if os.environ.get(STORAGE_ENV, "").strip():
        env_vars[STORAGE_ENV] = storage_path()
    return {"env_vars": env_vars}


def init_ray(tracking_uri: str | None = None, **kwargs: Any) -> Any:
    """``ray.init`` with :func:`runtime_env`: joins the running cluster (``$RAY_ADDRESS``, or the one
    ``ray start`` started on this machine) or starts a local one. ``kwargs`` go to ``ray.init``."""
    import ray

    return ray.init(runtime_env=runtime_env(tracking_uri), **kwargs)
