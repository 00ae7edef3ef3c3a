"""Ray on a cluster as ``cluster/gpu.yaml`` sets it up: every worker sees the driver's storage and tracking.

``cluster/gpu.yaml`` exports two variables on every node, so every process there (job drivers, Ray Train
workers, Tune trials) sees them:

- ``CLIP2POINT_STORAGE``: the shared storage where runs, checkpoints and sweep state go
  (:func:`clip2point.paths.storage_root`); off a cluster it is unset and they go to ``<project>/runs``.
- ``MLFLOW_TRACKING_URI``: the MLflow server on the head; off a cluster, the project's sqlite file
  (:func:`clip2point.tracking.resolve_tracking_uri`).

:func:`init_ray` hands the driver's values to every worker through Ray's ``runtime_env``, whichever
environment their node was started with, together with where an S3 storage is (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, when the driver has them), so every process
reads and writes the same bucket. Credentials are never forwarded (Ray keeps a runtime_env in its GCS):
each node has its own (an instance profile, a service account, or its environment).
"""

from __future__ import annotations

import os
from typing import Any

from clip2point.paths import STORAGE_ENV, storage_root
from clip2point.storage import ENDPOINT_ENVS, REGION_ENVS
from clip2point.tracking import TRACKING_ENV, resolve_tracking_uri

STORAGE_LOCATION_ENVS = (*ENDPOINT_ENVS, *REGION_ENVS)  # where the bucket is; never credentials


def runtime_env(tracking_uri: str | None = None) -> dict[str, dict[str, str]]:
    """A Ray ``runtime_env`` giving every worker the driver's tracking URI and storage.

    ``{"env_vars": {"MLFLOW_TRACKING_URI": ..., "CLIP2POINT_STORAGE": ..., "AWS_ENDPOINT_URL": ...}}``; the
    tracking URI is ``tracking_uri`` or :func:`~clip2point.tracking.resolve_tracking_uri`'s choice (an
    absolute sqlite path locally), the storage entry only when ``$CLIP2POINT_STORAGE`` is set (validated by
    :func:`~clip2point.paths.storage_root`), the S3 endpoint and region entries when set.
    """
    env_vars = {TRACKING_ENV: resolve_tracking_uri(tracking_uri)}
    if os.environ.get(STORAGE_ENV, "").strip():
        env_vars[STORAGE_ENV] = storage_root()
    for name in STORAGE_LOCATION_ENVS:
        if os.environ.get(name, "").strip():
            env_vars[name] = os.environ[name]
    return {"env_vars": env_vars}


def init_ray(tracking_uri: str | None = None, **kwargs: Any) -> Any:
    """``ray.init`` with :func:`runtime_env`: joins the running cluster (``$RAY_ADDRESS``, or the one
    ``ray start`` started on this machine) or starts a local one. ``kwargs`` go to ``ray.init``."""
    import ray

    return ray.init(runtime_env=runtime_env(tracking_uri), **kwargs)
