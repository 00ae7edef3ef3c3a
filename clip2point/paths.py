"""Where things live, and how files are written: the project root, the one rule for relative paths,
the storage every run and sweep writes to, atomic writes and the inter-process lock.

- **Relative paths** in a config (``data.root``, ``data.cache_dir``, ``fewshot.feature_cache``,
  ``model.depth_encoder``, ``storage``, ``sweep.results_dir``) are taken from the project root
  (:func:`project_root`), never from a process's working directory: Ray workers run in other
  directories, and the defaults (``data/``, ``cache/``, ``runs/``, ``mlflow.db``) stay in one place
  whichever directory a command is started from.
- **Storage** (:func:`storage_root`): the config's ``storage``, else ``$CLIP2POINT_STORAGE`` (set on every
  node of a cluster), else ``<project>/runs``: a local or NFS folder, ``s3://bucket/prefix`` or
  ``gs://bucket/prefix`` (read and written through :mod:`clip2point.storage`). Pre-training runs go to
  ``<storage>/pretrain/<name>``, sweeps to ``<storage>/sweeps/<study>``.
- **Names** that become a path or key under the storage (run names, study names) are checked by
  :func:`check_name` where they are read, so nothing is ever written outside the storage.
- **Atomic writes** (:func:`atomic_write`): a reader sees the old file or the new one, never half of one.
- **Locks** (:func:`locked`): one process at a time builds a cache entry; the others wait, then read it.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from clip2point.errors import ConfigError, excerpt

PROJECT_FILE = "pyproject.toml"
STORAGE_ENV = "CLIP2POINT_STORAGE"
STORAGE_PLACEHOLDER = "CHANGE-ME"  # the bucket name cluster/gpu.yaml ships with
RUNS = "runs"  # <project>/runs: the default storage, and where the commands' pictures go


def project_root() -> Path:
    """The clip2point checkout (editable install) or, for an installed package, the current directory."""
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / PROJECT_FILE).is_file() else Path.cwd().resolve()


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` absolute: ``~`` expanded, a relative path taken from :func:`project_root`."""
    path = Path(path).expanduser()
    return (path if path.is_absolute() else project_root() / path).resolve()


BUCKET_SCHEMES = ("s3", "gs")  # object stores a storage URI may name (file:// is a local folder)
STORAGE_PREFIXES = tuple(f"{scheme}://" for scheme in (*BUCKET_SCHEMES, "file"))  # s3://bucket/key ...
MLFLOW_PREFIXES = ("runs:/", "models:/", "mlflow-artifacts:/")  # MLflow artefacts: runs:/<run id>/<path>


def is_uri(location: str) -> bool:
    """Whether ``location`` is a URI such as ``s3://bucket/prefix`` (not a local path)."""
    return "://" in location


def is_remote(source: str | os.PathLike) -> bool:
    """Whether ``source`` (a weights file) is a storage or MLflow URI rather than a local path."""
    return str(source).startswith(STORAGE_PREFIXES + MLFLOW_PREFIXES)


def storage_root(configured: str | None = None) -> str:
    """Where runs and sweeps are stored: ``configured`` (the config's ``storage``), else
    ``$CLIP2POINT_STORAGE``, else ``<project>/runs``. A local folder (also ``file:///path``) comes back
    absolute, a bucket URI (``s3://bucket/prefix``, ``gs://bucket/prefix``) without a trailing slash.

    Raises :class:`ConfigError` for the placeholder bucket of ``cluster/gpu.yaml``, a URI without a
    bucket, or a URI of another scheme.
    """
    source = "config key 'storage'" if configured else f"${STORAGE_ENV}"
    value = (configured or os.environ.get(STORAGE_ENV, "")).strip()
    if not value:
        return str(resolve_path(RUNS))
    if STORAGE_PLACEHOLDER in value:
        raise ConfigError(
            f"{source}={value!r} still names the placeholder bucket: set your bucket in the "
            f"{STORAGE_ENV}= line of cluster/gpu.yaml's setup_commands and run `ray up` again"
        )
    if not is_uri(value):
        return str(resolve_path(value))
    scheme, rest = value.split("://", 1)
    if scheme == "file" and rest.startswith("/"):
        return str(resolve_path(rest))
    allowed = "a local or NFS folder, file:///path, " + ", ".join(
        f"{s}://bucket/prefix" for s in BUCKET_SCHEMES
    )
    if scheme not in BUCKET_SCHEMES:
        raise ConfigError(f"{source}={value!r}: scheme {scheme}:// is not supported; allowed: {allowed}")
    if not rest.split("/", 1)[0]:
        raise ConfigError(f"{source}={value!r} names no bucket; allowed: {allowed}")
    return f"{scheme}://{rest.rstrip('/')}"


NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_RULE = (
    "letters, digits, '.', '_' and '-', not starting with '.' or '-', at most 128 characters; "
    "'/' may group names (group/run), with no empty part"
)
NAME_LIMIT = 128


def check_name(name: str, what: str = "run name") -> str:
    """``name`` if it may become a path or key under the storage: parts of :data:`NAME_PART` joined by
    ``/`` (no ``..``, no absolute path, no empty part, no ``\\`` or ``:``). Else :class:`ConfigError`
    naming ``what`` and the rule (:data:`NAME_RULE`)."""
    parts = name.split("/") if isinstance(name, str) else [None]
    if len(name or "") > NAME_LIMIT or not all(part and NAME_PART.fullmatch(part) for part in parts):
        raise ConfigError(f"{what} {excerpt(name)} is not allowed; allowed: {NAME_RULE}")
    return name


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temp file in the same folder, then ``os.replace``
    moves it into place (the temp file is removed if ``write`` fails). Parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a text file."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


@contextmanager
def locked(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive inter-process lock on the lock file ``path`` (created with its folder if missing);
    ``wait`` False: raise ``filelock.Timeout`` at once if another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, timeout=-1 if wait else 0):
        yield
