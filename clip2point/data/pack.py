"""The packed pre-training set: objects with their frozen image features, in Parquet shards in a storage.

A pack is a folder in a storage location (:mod:`clip2point.storage`: a local or NFS folder, ``s3://``,
``gs://``)::

    manifest.json          written last: the pack exists once it is there
    shard-00000.parquet    one row per object (columns below), each shard written atomically
    ...
    pack.json              while packing: the settings of the unfinished pack (a resume must match them)

The shards hold the objects in a fixed mixed order (:func:`~clip2point.data.pack_order.stored_order`).
Row columns: ``index`` (int64, the object's place among the served samples, what the order permutes),
``record`` (int64, its place in the source list: the per-epoch random draws are seeded by it, as the raw
files' are), ``label`` (int64), ``source`` (the cloud's file), ``cloud`` (the whole stored cloud ``(P, 3)``
float32, little-endian bytes), ``features`` (the frozen image encoder's feature of each render ``(V, C)``
float32 bytes, computed in the manifest's precision) and ``cameras`` (each render's azimuth, elevation in
degrees and distance ``(V, 3)`` float32 bytes). The manifest (:class:`Manifest`) records the encoder the
features come from (:class:`Encoder`), the source data, the object count and each shard's file, objects
and bytes; :func:`read_manifest` refuses a pack it cannot serve, naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch import nn

from clip2point import storage
from clip2point.errors import ConfigError, InputError

FORMAT = 2  # 2: shards in the mixed order of pack_order.stored_order (1: in the source order)
MANIFEST = "manifest.json"
PENDING = "pack.json"
SCHEMA = pa.schema(
    [("index", pa.int64()), ("record", pa.int64()), ("label", pa.int64()), ("source", pa.string()),
     ("cloud", pa.binary()), ("features", pa.binary()), ("cameras", pa.binary())]
)  # fmt: skip


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def weights_sha256(module: nn.Module) -> str:
    """SHA-256 of ``module``'s state (every tensor's name, dtype, shape and bytes, in name order)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Encoder:
    """What a stored image feature depends on: the backbone (open_clip name, weights as configured and the
    SHA-256 of its visual encoder's weights), the render preprocessing (``image_size`` px, ``mean``/``std``)
    and the precision the encoder computed in (``float32`` or ``bf16``)."""

    backbone: str
    pretrained: str | None
    weights_sha256: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    precision: str

    @classmethod
    def of(cls, bundle, precision: str) -> Encoder:
        """The encoder settings of a :class:`~clip2point.models.ClipBundle` computing in ``precision``."""
        return cls(bundle.name, bundle.pretrained, weights_sha256(bundle.visual), bundle.image_size,
                   tuple(bundle.norm.mean), tuple(bundle.norm.std), precision)  # fmt: skip

    def describe(self) -> str:
        return (f"backbone {self.backbone} (weights {self.pretrained}, sha256 {self.weights_sha256[:12]}), "
                f"{self.image_size} px, mean {list(self.mean)}, std {list(self.std)}, {self.precision}")  # fmt: skip


def check_encoder(pack: Encoder, run: Encoder, where: str) -> None:
    """Refuse a pack whose features another backbone or preprocessing made (:class:`ConfigError` naming
    both); the weights' file name (``pretrained``) may differ when the weights are the same."""
    fields = ("backbone", "weights_sha256", "image_size", "mean", "std", "precision")
    differ = [f for f in fields if getattr(pack, f) != getattr(run, f)]
    if differ:
        raise ConfigError(
            f"pack {where} holds image features of {pack.describe()}; this run uses {run.describe()} "
            f"(differs in {', '.join(differ)}); allowed: a pack made with this run's backbone and "
            "preprocessing (`clip2point data pack` with the run's config)"
        )


@dataclass(frozen=True)
class Shard:
    file: str
    objects: int
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """A pack's record (``manifest.json``); see the module docstring."""

    encoder: Encoder
    layout: str
    source: str
    split: str
    num_objects: int
    embed_dim: int
    class_names: tuple[str, ...]
    shards: tuple[Shard, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            raw = json.loads(text)
            version = raw["format"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{where} is not a pack manifest: {exc}") from exc
        if version != FORMAT:
            fix = "upgrade clip2point" if isinstance(version, int) and version > FORMAT else "repack"
            raise InputError(f"{where} has pack format {version!r}; this clip2point reads format {FORMAT}: "
                             f"{fix} (`clip2point data pack` with this version)")  # fmt: skip
        try:
            return cls(
                encoder=Encoder(**{**raw["encoder"], "mean": tuple(raw["encoder"]["mean"]),
                                   "std": tuple(raw["encoder"]["std"])}),
                layout=raw["layout"], source=raw["source"], split=raw["split"],
                num_objects=int(raw["num_objects"]), embed_dim=int(raw["embed_dim"]),
                class_names=tuple(raw["class_names"]), shards=tuple(Shard(**s) for s in raw["shards"]),
                skipped=tuple(tuple(s) for s in raw.get("skipped", ())), format=version,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed pack manifest ({type(exc).__name__}: {exc})") from exc


def read_manifest(location: str) -> Manifest:
    """The manifest of the pack at ``location``, checked: a known format, at least one object, every shard
    there with the size the manifest records (a truncated or replaced shard is named)."""
    where = storage.join(location, MANIFEST)
    try:
        manifest = Manifest.from_json(storage.read_text(where), where)
    except FileNotFoundError:
        pending = storage.exists(storage.join(location, PENDING))
        state = "its packing has not finished (run `clip2point data pack` again to resume it)" if pending else (
            "not a pack")  # fmt: skip
        raise InputError(f"no pack at {location}: {where} not found, {state}") from None
    if manifest.num_objects < 1 or sum(s.objects for s in manifest.shards) != manifest.num_objects:
        raise InputError(f"{where}: the pack holds {manifest.num_objects} objects in its shards' "
                         f"{sum(s.objects for s in manifest.shards)}; a pack needs at least one")  # fmt: skip
    sizes = shard_sizes(location)
    for shard in manifest.shards:
        size = sizes.get(shard.file)
        if size != shard.bytes:
            found = "is missing" if size is None else f"has {size} bytes"
            raise InputError(f"pack shard {storage.join(location, shard.file)} {found}, {where} records "
                             f"{shard.bytes} bytes (truncated or replaced): repack")  # fmt: skip
    return manifest


def shard_sizes(location: str) -> dict[str, int]:
    """``{file name: bytes}`` of the shards in the pack folder ``location`` (one listing)."""
    fs, path = storage.filesystem(location)
    with storage.reported(location, "list the pack"):
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            return {}
        infos = fs.get_file_info(pafs.FileSelector(path))
    return {storage.name(i.path): i.size for i in infos if i.base_name.startswith("shard-")}


def shard_bytes(rows: list[dict[str, Any]]) -> bytes:
    """A shard's Parquet bytes; ``rows``: dicts of ``index``, ``record``, ``label``, ``source`` and the
    float32 arrays ``cloud (P, 3)``, ``features (V, C)``, ``cameras (V, 3)``."""
    columns = {name: [] for name in SCHEMA.names}
    for row in rows:
        for name in ("index", "record", "label", "source"):
            columns[name].append(row[name])
        for name in ("cloud", "features", "cameras"):
            columns[name].append(np.ascontiguousarray(row[name], dtype="<f4").tobytes())
    buffer = io.BytesIO()
    # Uncompressed: Snappy saves nothing on float32 blobs (116.0 KiB per object either way for a cloud of
    # 8,192 points and 10 features of 512) and costs about 30% more read time (0.111 vs 0.084 ms per object).
    pq.write_table(pa.table(columns, schema=SCHEMA), buffer, compression="none")
    return buffer.getvalue()


def decode(blob: bytes, width: int) -> np.ndarray:
    """A stored float32 array ``(rows, width)`` from its bytes."""
    return np.frombuffer(blob, dtype="<f4").reshape(-1, width)
