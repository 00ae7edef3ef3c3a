"""One-time preprocessing of a dataset into a compact on-disk cache of sampled clouds.

A cache entry is a folder ``<cache_dir>/<name>/`` holding

- ``points.npy``: ``(M, N, 3)`` float32, opened memory-mapped (``np.load(..., mmap_mode="r")``);
- ``labels.npy``: ``(M,)`` int64; ``records.npy``: ``(M,)`` int64, each sample's index in the dataset's
  full record list (differs from ``arange(M)`` only when bad files were skipped);
- ``manifest.json``: the fingerprint of (source paths, sizes, mtimes, sampling settings, code version),
  the shapes, and the skipped records with their error messages.

The entry is rebuilt when the fingerprint changes. Writes are atomic: the old manifest is removed first,
every file is written to a temporary name and moved into place with ``os.replace``, and the manifest
comes last, so an interrupted build leaves no entry that looks valid. Builders of one entry take turns
on the lock ``<entry>/.lock`` (:func:`clip2point.paths.locked`), so parallel workers build it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import clip2point
from clip2point.errors import InputError
from clip2point.paths import atomic_write, locked, write_text_atomic

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the sampling code changes what a cache entry holds
ON_ERROR = ("raise", "skip")


@dataclass
class Samples:
    """Preprocessed samples: ``points (M, N, 3)`` float32, ``labels (M,)`` and ``records (M,)`` int64.

    ``skipped`` lists ``(record index, error message)`` for every record left out under ``on_error="skip"``.
    ``points`` is None when the samples were only checked, not kept (they change every epoch).
    """

    points: np.ndarray | None
    labels: np.ndarray
    records: np.ndarray
    skipped: list[tuple[int, str]] = field(default_factory=list)


def check_on_error(on_error: str) -> None:
    """Raise :class:`InputError` unless ``on_error`` is ``"raise"`` or ``"skip"``."""
    if on_error not in ON_ERROR:
        raise InputError(f"on_error={on_error!r} is not allowed; use one of {', '.join(ON_ERROR)}")


def fingerprint(sources: Sequence[str | Path], settings: dict[str, Any]) -> str:
    """SHA-256 hex digest of the source files (path, size, mtime), ``settings`` and the code version.

    A missing source counts as size and mtime -1, so its later appearance changes the fingerprint.
    """

    def stat(p: Path) -> list:
        try:
            s = p.stat()
            return [str(p.resolve()), s.st_size, s.st_mtime_ns]
        except OSError:
            return [str(p.absolute()), -1, -1]

    payload = {
        "format": CACHE_FORMAT,
        "version": clip2point.__version__,
        "settings": settings,
        "sources": [stat(Path(p)) for p in sources],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def compute_samples(
    labels: np.ndarray,
    compute: Callable[[int], np.ndarray],
    on_error: str = "raise",
    desc: str = "sampling",
    allocate: Callable[[tuple[int, ...]], np.ndarray] | None = None,
    keep_points: bool = True,
) -> Samples:
    """Run ``compute(r) -> (N, 3) float32`` for every record ``r < len(labels)`` with a tqdm progress bar.

    ``on_error="raise"`` lets an :class:`InputError` propagate; ``"skip"`` logs a warning per bad record,
    leaves it out and lists it in ``Samples.skipped``. ``allocate(shape)`` gives the array to fill
    (default: in memory); kept samples are packed at its front and ``points`` is that front slice.
    ``keep_points=False`` only checks the records (``points`` None).
    """
    check_on_error(on_error)
    out: np.ndarray | None = None
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    for r in tqdm(range(len(labels)), desc=desc, unit="file", leave=False):
        try:
            sample = compute(r)
        except InputError as exc:
            if on_error == "raise":
                raise
            log.warning("skipping bad input: %s", exc)
            skipped.append((r, str(exc)))
            continue
        if keep_points:
            if out is None:
                shape = (len(labels), *sample.shape)
                out = allocate(shape) if allocate else np.empty(shape, np.float32)
            elif sample.shape != out.shape[1:]:
                raise InputError(
                    f"{desc}: input {r} gives {sample.shape[0]} points, the first gave {out.shape[1]}; "
                    "the samples of a dataset must have one size (set a number of points)"
                )
            out[len(kept)] = sample
        kept.append(r)
    if not kept:
        first = skipped[0][1] if skipped else "none given"
        raise InputError(f"{desc}: no usable samples; all {len(labels)} inputs failed (first: {first})")
    if skipped:
        log.warning("%s: skipped %d of %d inputs (on_error='skip')", desc, len(skipped), len(labels))
    records = np.asarray(kept, dtype=np.int64)
    points = out[: len(kept)] if out is not None else None
    return Samples(points, np.asarray(labels, np.int64)[records], records, skipped)


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (through a file handle: ``np.save`` would append ``.npy`` to the
    temp file's name)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    atomic_write(path, write)


def _load(entry: Path, digest: str) -> Samples | None:
    """The cache entry if its manifest matches ``digest`` and its arrays have the recorded shapes."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        if manifest.get("fingerprint") != digest:
            return None
        points = np.load(entry / "points.npy", mmap_mode="r")
        labels = np.load(entry / "labels.npy")
        records = np.load(entry / "records.npy")
    except (OSError, ValueError):
        return None
    if list(points.shape) != manifest["shape"] or len(labels) != len(points) or len(records) != len(points):
        return None
    return Samples(points, labels, records, [(int(r), m) for r, m in manifest["skipped"]])


def load_or_build(
    cache_dir: str | Path,
    name: str,
    sources: Sequence[str | Path],
    settings: dict[str, Any],
    labels: np.ndarray,
    compute: Callable[[int], np.ndarray],
    on_error: str = "raise",
) -> Samples:
    """The cached samples of entry ``name``, built first if missing or stale (see the module docstring).

    ``sources`` are the files the samples derive from, ``settings`` a JSON-serialisable dict of every
    option that changes them, ``labels (R,)`` one per record and ``compute(r)`` one record's cloud.
    The returned ``points`` is memory-mapped read-only.
    """
    entry = Path(cache_dir) / name
    digest = fingerprint(sources, settings)
    cached = _load(entry, digest)
    if cached is not None:
        return cached
    with locked(entry / ".lock"):  # one builder at a time; the others then find its entry
        return _load(entry, digest) or _build(
            entry, name, digest, sources, settings, labels, compute, on_error
        )


def _build(entry, name, digest, sources, settings, labels, compute, on_error) -> Samples:
    """Write a fresh cache entry (caller holds the entry's lock) and return it loaded back."""
    (entry / "manifest.json").unlink(missing_ok=True)
    for stale in entry.glob(".*.tmp"):
        stale.unlink()
    points_path, tmp = entry / "points.npy", entry / ".points-all.npy.tmp"  # one row per record

    def allocate(shape: tuple[int, ...]) -> np.ndarray:
        return np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)

    samples = compute_samples(labels, compute, on_error, f"caching {name}", allocate)
    if samples.skipped:  # pack the kept rows into a file of the right length
        _save_npy(points_path, np.asarray(samples.points))
        tmp.unlink()
    else:
        samples.points.flush()
        os.replace(tmp, points_path)
    _save_npy(entry / "labels.npy", samples.labels)
    _save_npy(entry / "records.npy", samples.records)
    manifest = {
        "fingerprint": digest,
        "name": name,
        "settings": settings,
        "num_sources": len(sources),
        "shape": list(samples.points.shape),
        "skipped": samples.skipped,
    }
    write_text_atomic(entry / "manifest.json", json.dumps(manifest, indent=1))
    loaded = _load(entry, digest)
    if loaded is None:
        raise OSError(f"cache entry {entry} is unreadable right after writing it")
    return loaded
