"""Run storage: a local or NFS folder, ``s3://bucket/prefix`` or ``gs://bucket/prefix``, through
``pyarrow.fs``, the filesystem layer Ray Train and Tune use themselves.

A storage location is a string (what :func:`clip2point.paths.storage_root` returns, or a path under it
made with :func:`join`); :func:`filesystem` turns it into a pyarrow filesystem and a path on it, which is
also what Ray's ``RunConfig(storage_path=..., storage_filesystem=...)`` takes, so Ray and this module
write to the same place with the same settings.

Credentials and endpoints come from the standard cloud environment, nothing is stored:

- S3: the AWS SDK's default chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
  ``AWS_PROFILE`` and ``~/.aws``, an EC2 instance profile). The endpoint of an S3-compatible server is
  ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``: ``pyarrow.fs.FileSystem.from_uri`` reads them but
  the ``S3FileSystem`` constructor does not, so :func:`filesystem` passes them on itself. The region is
  ``AWS_REGION``/``AWS_DEFAULT_REGION``, else the bucket's own (asked from AWS once).
- GCS: Google's default credentials (``GOOGLE_APPLICATION_CREDENTIALS``, or the VM's service account).

Writes are atomic for readers: in a folder a temp file is renamed into place; on an object store the whole
content goes up in one upload, which becomes visible only once complete (a writer killed half-way leaves
no object). Failures raise :class:`~clip2point.errors.StorageError` naming the location and what failed
(the bucket does not exist, the credentials were refused, the endpoint cannot be reached).
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pyarrow.fs as pafs

from clip2point.errors import StorageError
from clip2point.paths import atomic_write, is_uri

ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # the AWS SDKs' order: S3's own first
REGION_ENVS = ("AWS_REGION", "AWS_DEFAULT_REGION")
PROBE_PREFIX = ".clip2point-probe-"

# What the storage layer's error says -> what to tell the user: the AWS SDK's error names as pyarrow reports
# them ("AWS Error NO_SUCH_BUCKET ..."), then words of other stores' messages (GCS), in this order.
_BUCKET, _CREDENTIALS, _ENDPOINT = (
    "the bucket does not exist", "the credentials were refused", "the endpoint cannot be reached",
)  # fmt: skip
_AWS_CODES = {
    "NO_SUCH_BUCKET": _BUCKET,
    "ACCESS_DENIED": _CREDENTIALS,
    "INVALID_ACCESS_KEY_ID": _CREDENTIALS,
    "SIGNATURE_DOES_NOT_MATCH": _CREDENTIALS,
    "EXPIRED_TOKEN": _CREDENTIALS,
    "INVALID_CLIENT_TOKEN_ID": _CREDENTIALS,
    "UNRECOGNIZED_CLIENT": _CREDENTIALS,
    "MISSING_AUTHENTICATION_TOKEN": _CREDENTIALS,
    "NETWORK_CONNECTION": _ENDPOINT,
}
_WORDS = (
    (("permission", "forbidden", "unauthenticated", "credentials", "access denied"), _CREDENTIALS),
    (("no such bucket", "bucket does not exist", "bucket not found"), _BUCKET),
    (("could not connect", "timed out", "timeout", "unavailable", "resolve host"), _ENDPOINT),
)


def join(location: str, *parts: str) -> str:
    """``location`` with ``parts`` appended by ``/`` (a URI keeps its scheme)."""
    return "/".join([location.rstrip("/"), *(part.strip("/") for part in parts)])


def name(location: str) -> str:
    """The last part of ``location`` (a file or folder name)."""
    return posixpath.basename(location.rstrip("/"))


def endpoint() -> str | None:
    """The S3 endpoint the environment names (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``), if any."""
    return next((os.environ[var] for var in ENDPOINT_ENVS if os.environ.get(var, "").strip()), None)


def filesystem(location: str, *, fail_fast: bool = False) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``location`` and the path on it (``bucket/prefix`` for a bucket).

    ``fail_fast``: short timeouts and one retry on S3, a 10 s retry budget on GCS (the probe of
    :func:`check_storage`), so a bad endpoint fails within seconds instead of after the SDKs' patient retries.
    """
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(location)
    scheme, rest = location.split("://", 1)
    if scheme == "file":
        return pafs.LocalFileSystem(), os.path.abspath(rest)
    bucket, _, key = rest.partition("/")
    path = f"{bucket}/{key.strip('/')}".rstrip("/")
    if scheme == "s3":
        region = next((os.environ[v] for v in REGION_ENVS if os.environ.get(v, "").strip()), None)
        return _s3(location, bucket, endpoint(), region, fail_fast), path
    if scheme in ("gs", "gcs"):  # Google's default credentials: GOOGLE_APPLICATION_CREDENTIALS or the VM's
        options = {"retry_time_limit": timedelta(seconds=10)} if fail_fast else {}
        return pafs.GcsFileSystem(**options), path
    with reported(location, "open"):
        fs, _ = pafs.FileSystem.from_uri(location)  # whatever else pyarrow knows
    return fs, path


def _s3(location: str, bucket: str, endpoint: str | None, region: str | None, fail_fast: bool):
    """An ``S3FileSystem`` for ``bucket`` with the environment's endpoint and region. Made afresh each time:
    the SDK reads the credentials when it is made, and they may change (e.g. refreshed keys)."""
    options: dict = {}
    if endpoint:
        options["endpoint_override"] = endpoint  # with its scheme: http:// for a local server
    if region is None and endpoint is None:
        with reported(location, "find the region of the bucket"):
            region = _bucket_region(bucket)
    if fail_fast:
        options |= {"connect_timeout": 3.0, "request_timeout": 10.0,
                    "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2)}  # fmt: skip
    return pafs.S3FileSystem(region=region or "us-east-1", allow_delayed_open=True, **options)


@functools.lru_cache(maxsize=64)
def _bucket_region(bucket: str) -> str:
    """The AWS region of ``bucket`` (one request, remembered)."""
    return pafs.resolve_s3_region(bucket)


def _reason(error: BaseException) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    text = str(error)
    code = re.search(r"AWS Error ([A-Z_]+)", text)
    if code and code.group(1) in _AWS_CODES:
        return _AWS_CODES[code.group(1)]
    for words, reason in _WORDS:
        if any(word in text.lower() for word in words):
            return reason
    return "the storage answered with an error"


@contextmanager
def reported(location: str, action: str) -> Iterator[None]:
    """Turn an ``OSError`` of the storage layer into a :class:`StorageError` naming ``location``."""
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError:
        raise
    except OSError as error:
        where = f" (endpoint {endpoint()})" if location.startswith("s3://") and endpoint() else ""
        detail = " ".join(str(error).split())[:400]
        raise StorageError(
            f"storage {location}{where}: cannot {action}: {_reason(error)} ({detail})"
        ) from error


def info(location: str) -> pafs.FileInfo:
    fs, path = filesystem(location)
    with reported(location, "look up"):
        return fs.get_file_info(path)


def exists(location: str) -> bool:
    """Whether a file or folder is at ``location``."""
    return info(location).type != pafs.FileType.NotFound


def read_bytes(location: str) -> bytes:
    """The content of the file at ``location``; :class:`FileNotFoundError` if there is none."""
    fs, path = filesystem(location)
    with reported(location, "read"):
        if fs.get_file_info(path).type != pafs.FileType.File:
            raise FileNotFoundError(f"no file at {location}")
        with fs.open_input_stream(path) as stream:
            return stream.read()


def read_text(location: str) -> str:
    return read_bytes(location).decode()


def write_bytes(location: str, data: bytes) -> str:
    """Write ``data`` to the file at ``location`` atomically (see the module docstring); return ``location``."""
    fs, path = filesystem(location)
    with reported(location, "write"):
        if isinstance(fs, pafs.LocalFileSystem):
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        else:
            with fs.open_output_stream(path) as stream:  # one upload, visible once complete
                stream.write(data)
    return location


def write_text(location: str, text: str) -> str:
    return write_bytes(location, text.encode())


def upload(local: str | os.PathLike, location: str) -> str:
    """Copy the local file ``local`` to ``location`` atomically; return ``location``."""
    return write_bytes(location, Path(local).read_bytes())


def download(location: str, local: str | os.PathLike) -> Path:
    """Copy the file at ``location`` to the local path ``local`` (atomically, parents created)."""
    data = read_bytes(location)
    return atomic_write(local, lambda tmp: Path(tmp).write_bytes(data))


def remove(location: str) -> None:
    """Delete the file or folder (recursively) at ``location``; nothing there is fine."""
    fs, path = filesystem(location)
    with reported(location, "delete"):
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            fs.delete_file(path)


def check_storage(location: str) -> None:
    """Fail fast, before any work starts, if ``location`` cannot be written: write a small probe file
    under it, read it back and delete it (short timeouts, one retry). Raises :class:`StorageError`
    naming ``location`` and what failed; on success nothing is left behind (a local folder is created)."""
    fs, path = filesystem(location, fail_fast=True)
    probe = f"{path}/{PROBE_PREFIX}{uuid.uuid4().hex}"
    token = uuid.uuid4().bytes
    with reported(location, "write a probe file"):
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(path)
        with fs.open_output_stream(probe) as stream:
            stream.write(token)
    try:
        with reported(location, "read the probe file back"), fs.open_input_stream(probe) as stream:
            if stream.read() != token:
                raise StorageError(
                    f"storage {location}: the probe file read back differs from what was written"
                )
    finally:
        with reported(location, "delete the probe file"):
            fs.delete_file(probe)
