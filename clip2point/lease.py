"""One writer per run: a lease kept in the run's folder of the storage (:mod:`clip2point.storage`).

While a run's driver runs, it holds ``<run folder>/lease.json``: who holds it (``host:pid``), since when,
a random token and a heartbeat (Unix seconds) that a background thread renews every quarter of
``stale_after``. The lease is created only if absent and renewed only while it is still the holder's own,
so a second start of the same run is refused with a :class:`~clip2point.errors.LeaseError` naming the
holder. A lease whose heartbeat is older than ``stale_after`` seconds (its holder died: a killed driver, a
lost node) may be taken over, and only by ``--resume``. The holder deletes it when the run ends, however it
ends. The ages compare the holder's clock with the reader's: machines sharing a storage are assumed to keep
their clocks within seconds of each other (NTP).

How each storage creates "only if absent" and renews "only if still mine":

- a local or NFS folder: create by hard-linking a complete temp file to ``lease.json`` (refused if the name
  exists, atomic on NFS too); renew, take over and delete under an inter-process file lock
  (``.lease.json.lock``) after checking the content is the one last seen;
- ``s3://``: S3's conditional writes through boto3, atomic in the store: ``PutObject`` with
  ``If-None-Match: *`` (create) and ``If-Match: <ETag>`` (renew, take over);
- other stores (``gs://``): pyarrow has no conditional write, so the lease is read, written and read back;
  two starts within the same second or so could both pass. A weaker guarantee, said here plainly.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from clip2point import storage
from clip2point.errors import LeaseError, StorageError
from clip2point.paths import atomic_write, is_uri

LEASE_FILE = "lease.json"
LOCK_FILE = f".{LEASE_FILE}.lock"
FILES = (LEASE_FILE, LOCK_FILE)  # what a lease leaves in a run folder (the lock file: local folders only)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Folder:
    """Create-if-absent and compare-and-swap on a local or NFS folder; versions are content digests."""

    def __init__(self, location: str):
        self.location = location
        self.path = Path(storage.filesystem(location)[1]) / LEASE_FILE
        self.lock = FileLock(self.path.with_name(LOCK_FILE))

    def create(self, data: bytes) -> str | None:
        with storage.reported(self.location, f"create {LEASE_FILE}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{LEASE_FILE}.", dir=self.path.parent)
        try:
            os.write(fd, data)
            os.close(fd)
            os.link(tmp, self.path)  # fails if the name exists, whoever made it
        except FileExistsError:
            return None
        finally:
            Path(tmp).unlink(missing_ok=True)
        return _digest(data)

    def read(self) -> tuple[bytes, str] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, _digest(data)

    def replace(self, data: bytes, version: str) -> str | None:
        with self.lock:
            found = self.read()
            if found is None or found[1] != version:
                return None
            atomic_write(self.path, lambda tmp: Path(tmp).write_bytes(data))
        return _digest(data)

    def delete(self, version: str) -> None:
        with self.lock:
            found = self.read()
            if found is not None and found[1] == version:
                self.path.unlink()


class _Bucket:
    """Create-if-absent and compare-and-swap on S3 (conditional ``PutObject``); versions are ETags."""

    def __init__(self, location: str):
        import boto3

        self.location = storage.join(location, LEASE_FILE)
        _, path = storage.filesystem(location)
        self.bucket, _, prefix = path.partition("/")
        self.key = f"{prefix}/{LEASE_FILE}".lstrip("/")
        region = storage.s3_region(location, self.bucket)
        session = boto3.session.Session()  # its own: boto3's default session keeps the first credentials
        self.client = session.client("s3", region_name=region, endpoint_url=storage.endpoint())

    @contextmanager
    def _reported(self, action: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as error:
            detail = error.response.get("Error", {})
            raise StorageError(
                f"storage {self.location}: cannot {action} the lease: {detail.get('Code')} "
                f"({' '.join(str(detail.get('Message', '')).split())[:200]})"
            ) from error
        except BotoCoreError as error:
            raise StorageError(f"storage {self.location}: cannot {action} the lease: {error}") from error

    def _put(self, data: bytes, **condition: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            with self._reported("write"):
                return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)[
                    "ETag"
                ]
        except StorageError as error:
            code = (
                error.__cause__.response["Error"]["Code"] if isinstance(error.__cause__, ClientError) else ""
            )
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                return None  # someone else's lease is there (or it is gone): not ours to write
            raise

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str] | None:
        try:
            with self._reported("read"):
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
                return answer["Body"].read(), answer["ETag"]
        except StorageError as error:
            if getattr(error.__cause__, "response", {}).get("Error", {}).get("Code") == "NoSuchKey":
                return None
            raise

    def replace(self, data: bytes, version: str) -> str | None:
        return self._put(data, IfMatch=version)

    def delete(self, version: str) -> None:
        found = self.read()
        if found is not None and found[1] == version:
            with self._reported("delete"):
                self.client.delete_object(Bucket=self.bucket, Key=self.key)


class _Other:
    """Other stores through pyarrow (no conditional write): read, write, read back (see the module doc)."""

    def __init__(self, location: str):
        self.location = storage.join(location, LEASE_FILE)

    def read(self) -> tuple[bytes, str] | None:
        try:
            data = storage.read_bytes(self.location)
        except FileNotFoundError:
            return None
        return data, _digest(data)

    def _write(self, data: bytes) -> str | None:
        storage.write_bytes(self.location, data)
        found = self.read()
        return found[1] if found is not None and found[0] == data else None

    def create(self, data: bytes) -> str | None:
        return None if self.read() is not None else self._write(data)

    def replace(self, data: bytes, version: str) -> str | None:
        found = self.read()
        return self._write(data) if found is not None and found[1] == version else None

    def delete(self, version: str) -> None:
        found = self.read()
        if found is not None and found[1] == version:
            storage.remove(self.location)


def _store(location: str):
    if not is_uri(location) or location.startswith("file://"):
        return _Folder(location)
    return _Bucket(location) if location.startswith("s3://") else _Other(location)


class Lease:
    """The lease of the run folder ``location``, held by this process (see the module docstring)."""

    def __init__(self, location: str, stale_after: float, what: str):
        self.location, self.stale_after, self.what = location, stale_after, what
        self.store = _store(location)
        self.record = {
            "holder": f"{socket.gethostname()}:{os.getpid()}",
            "token": uuid.uuid4().hex,
            "started": time.time(),
            "heartbeat": time.time(),
        }
        self.version: str | None = None
        self.lost: str | None = None  # why the lease stopped being ours, if it did
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _data(self) -> bytes:
        return json.dumps(self.record | {"heartbeat": time.time()}).encode()

    def acquire(self, take_over: bool) -> None:
        """Create the lease, or with ``take_over`` replace one whose heartbeat is older than ``stale_after``;
        else raise :class:`LeaseError` naming the holder."""
        for _ in range(3):  # a lease deleted or taken between our read and our write: look again
            self.version = self.store.create(self._data())
            if self.version is not None:
                return
            found = self.store.read()
            if found is None:
                continue
            holder = _parse(found[0])
            age = time.time() - holder.get("heartbeat", 0.0)
            who = (
                f"{self.what} is held by {holder.get('holder', 'an unreadable lease')} (started "
                f"{_when(holder.get('started'))}, last heartbeat {age:.0f} s ago; lease "
                f"{storage.join(self.location, LEASE_FILE)})"
            )
            if age <= self.stale_after:
                raise LeaseError(
                    f"{who}; a lease is stale {self.stale_after:g} s after its last heartbeat; "
                    "allowed: wait for that run to end, or another --name"
                )
            if not take_over:
                raise LeaseError(f"{who}: its holder stopped; allowed: --resume to take the run over")
            self.version = self.store.replace(self._data(), found[1])
            if self.version is not None:
                print(f"warning: took over the stale lease of {who}", file=sys.stderr, flush=True)
                return
        raise LeaseError(f"{self.what}: another process is taking the lease at the same time; try again")

    def _beat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            try:
                version = self.store.replace(self._data(), self.version)
            except StorageError as error:  # a passing outage: try again at the next beat
                print(f"warning: cannot renew the lease of {self.what}: {error}", file=sys.stderr)
                continue
            if version is None:
                self.lost = f"the lease of {self.what} was taken over by another process"
                print(f"warning: {self.lost}", file=sys.stderr, flush=True)
                return
            self.version = version

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="clip2point-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the lease, if it is still this process's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost is None and self.version is not None:
            self.store.delete(self.version)


def _parse(data: bytes) -> dict:
    try:
        record = json.loads(data)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "at an unknown time"


@contextmanager
def held(location: str, *, take_over: bool, stale_after: float, what: str = "the run") -> Iterator[Lease]:
    """Hold the lease of the run folder ``location`` (heartbeat renewed in a background thread) for the
    ``with`` block; ``take_over``: a stale lease may be replaced (``--resume``). ``what`` names the run in
    errors. Raises :class:`LeaseError` naming the holder when the run is someone else's."""
    lease = Lease(location, stale_after, what)
    lease.acquire(take_over)
    lease.start()
    try:
        yield lease
    finally:
        lease.release()
