"""Frozen-encoder view features, computed once and kept on disk, or computed live on every call.

With frozen encoders and fixed views, a sample's per-view features ``(V, C)`` depend only on the encoder's
weights and code, the render settings and views, the sample itself (dataset files, split, point count,
seed, alignment) and the arithmetic precision. :func:`feature_key` hashes exactly these; an entry
``<cache_dir>/<key>.safetensors`` holds ``features (M, V, C)`` float32 and ``labels (M,)`` int64 of a
whole split, so every epoch and every trial (seed, shots, adapter switch) that shares them reads it.

Clouds sampled anew every epoch (``dataset.per_epoch``, ``fewshot.resample``) have one entry per epoch: the
dataset fingerprint holds the epoch, whose draws are fixed by the seed, so the cells of a study that share
an encoder, renderer and split render and encode each epoch's test clouds once.

Cached and live features are bit-identical: encoders see one sample's V views per call
(:class:`SampleWiseEncoder`), so a sample's features never depend on which batch it came in (batched
float matmuls give results that do, in the last bits). Entries are written atomically under the lock
``<key>.lock`` (:mod:`clip2point.paths`), so concurrent trials build one entry once and nobody reads half
a file; an unreadable or mismatched entry is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import Timeout
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset, Subset

from clip2point.data.cache import fingerprint
from clip2point.data.datasets import PointCloudDataset
from clip2point.engine.features import compute_precision, extract_view_features
from clip2point.models.state import read_metadata, save_safetensors
from clip2point.paths import locked
from clip2point.render import DepthRenderer, Views

log = logging.getLogger(__name__)


def encoder_digest(encoder: nn.Module) -> str:
    """SHA-256 hex digest of an encoder: its architecture (``repr``, which names e.g. QuickGELU vs GELU)
    and every state-dict tensor (name, dtype, shape and bytes)."""
    digest = hashlib.sha256(repr(encoder).encode())
    for name, tensor in encoder.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def render_description(renderer: DepthRenderer) -> dict:
    """Everything about ``renderer`` that changes its images: size, settings and normalisation."""
    return {
        "image_size": renderer.image_size,
        **dataclasses.asdict(renderer.settings),
        **dataclasses.asdict(renderer.norm),
    }


def feature_key(
    encoder: nn.Module,
    renderer: DepthRenderer,
    views: Views,
    dataset: PointCloudDataset,
    device: torch.device | str,
    precision: str = "fp32",
) -> str:
    """The cache key of ``encoder``'s features of ``dataset`` rendered by ``renderer`` at ``views``
    (each ``(V,)``): a hash of the encoder digest, the renderer's size, settings and normalisation, the
    view angles, the dataset fingerprint (files, split, point count, seed, alignment) and the precision the
    encoder computes in on ``device`` (:func:`~clip2point.engine.features.compute_precision`: bf16 only
    for ``precision="bf16"`` on CUDA, else float32)."""
    settings = {
        "kind": "view-features",
        "encoder": encoder_digest(encoder),
        "render": render_description(renderer),
        "views": [v.tolist() for v in views],
        "dataset": dataset.fingerprint(),
        "precision": compute_precision(device, precision),
    }
    return fingerprint([], settings)


class SampleWiseEncoder(nn.Module):
    """Wraps an encoder so that images ``(B*V, 3, S, S)`` are encoded V at a time (one sample per call):
    ``(B*V, C)`` out, each sample's rows independent of the rest of the batch. Keeps the wrapped
    encoder's train/eval mode."""

    def __init__(self, encoder: nn.Module, views: int):
        super().__init__()
        self.encoder, self.views = encoder, views
        self.train(encoder.training)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encoder(chunk) for chunk in images.split(self.views)])


def extract_features(
    encoder: nn.Module,
    renderer: DepthRenderer,
    dataset: PointCloudDataset | Subset,
    views: Views,
    *,
    batch_size: int,
    device: torch.device | str,
    progress: bool = False,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-invariant :func:`~clip2point.engine.features.extract_view_features`: features ``(M, V, C)``
    float32 and labels ``(M,)`` on the CPU. The global RNG state is left as it was (the data loader draws
    a seed from it), so live extraction inside a training loop does not shift dropout masks."""
    wrapped = SampleWiseEncoder(encoder, views.num_views)
    with torch.random.fork_rng(devices=[]):
        return extract_view_features(
            wrapped, renderer, dataset, views, batch_size=batch_size, device=device, progress=progress,
            precision=precision,
        )  # fmt: skip


@dataclass(frozen=True)
class ViewFeatures:
    """A split's features ``(M, V, C)`` float32 and labels ``(M,)`` int64; ``hit`` says whether they came
    from the cache, ``path`` is the entry (None with the cache off)."""

    features: torch.Tensor
    labels: torch.Tensor
    hit: bool
    path: Path | None


def _read_entry(path: Path, key: str, dataset: PointCloudDataset, views: int) -> ViewFeatures | None:
    """The entry at ``path`` if it is complete and belongs to ``key`` and ``dataset``; else None."""
    if not path.is_file():
        return None
    try:
        tensors = load_file(path)
        metadata = read_metadata(path)
    except (SafetensorError, OSError) as exc:
        log.warning("feature cache entry %s is unreadable (%s); rebuilding it", path, exc)
        return None
    features, labels = tensors.get("features"), tensors.get("labels")
    expected = torch.as_tensor(dataset.labels, dtype=torch.int64)
    if (
        metadata.get("key") != key
        or features is None
        or labels is None
        or features.ndim != 3
        or features.shape[:2] != (len(dataset), views)
        or not torch.equal(labels, expected)
    ):
        log.warning("feature cache entry %s does not match its key or dataset; rebuilding it", path)
        return None
    return ViewFeatures(features, labels, hit=True, path=path)


def load_or_extract(
    encoder: nn.Module,
    renderer: DepthRenderer,
    dataset: PointCloudDataset,
    views: Views,
    *,
    cache_dir: str | Path | None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = True,
    precision: str = "fp32",
    wait: bool = True,
) -> ViewFeatures | None:
    """``encoder``'s per-view features of every sample of ``dataset``, rendered by ``renderer`` at
    ``views`` and encoded in ``precision``: read from ``<cache_dir>/<feature_key>.safetensors`` if present
    and valid, else computed with :func:`extract_features` and stored there. ``cache_dir`` None computes
    without storing. A dataset whose clouds change every epoch (``dataset.per_epoch``) has one entry per
    epoch (its fingerprint holds the epoch). ``wait`` False: None at once, nothing done, when another
    process is building the entry."""
    options = dict(batch_size=batch_size, device=device, progress=progress, precision=precision)
    v = views.num_views
    if cache_dir is None:
        features, labels = extract_features(encoder, renderer, dataset, views, **options)
        return ViewFeatures(features, labels, hit=False, path=None)
    key = feature_key(encoder, renderer, views, dataset, device, precision)
    path = Path(cache_dir) / f"{key}.safetensors"
    found = _read_entry(path, key, dataset, v)
    if found is not None:
        return found
    try:
        with locked(path.with_suffix(".lock"), wait=wait):
            found = _read_entry(path, key, dataset, v)  # another trial may have built it meanwhile
            if found is not None:
                return found
            features, labels = extract_features(encoder, renderer, dataset, views, **options)
            metadata = {
                "key": key,
                "dataset": dataset.name,
                "render": json.dumps(render_description(renderer), sort_keys=True),
                "shape": json.dumps(list(features.shape)),
            }
            save_safetensors({"features": features, "labels": labels}, path, metadata)
    except Timeout:  # only with wait=False: another process holds the lock
        return None
    return ViewFeatures(features, labels, hit=False, path=path)


class ChosenSamples(Dataset):
    """The samples ``indices (M,)`` of ``dataset``, in that order, as a dataset of their own (e.g. the K shots
    of a re-sampled train split): the items, labels and epoch are the parent's; the fingerprint is the
    parent's with the indices, so their features have cache entries of their own, shared by every run that
    draws the same samples (a K-shot draw depends on the seed and K only)."""

    def __init__(self, dataset: PointCloudDataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)
        self.name, self.per_epoch = dataset.name, dataset.per_epoch
        self.labels = dataset.labels[self.indices]

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def fingerprint(self) -> str:
        return fingerprint([], {"dataset": self.dataset.fingerprint(), "indices": self.indices.tolist()})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[int(self.indices[index])]


class SplitFeatures:
    """Per-view features of one dataset split for a list of frozen encoders, by sample index.

    ``cache_dir`` set: each distinct encoder's features of the whole split come from
    :func:`load_or_extract` once and are indexed per call; for a dataset whose clouds change every epoch
    (``dataset.per_epoch``, ``fewshot.resample``) once per epoch, at the first call in it (the whole split,
    e.g. the test split evaluated after every epoch). ``cache_dir`` None: every call renders and encodes the
    asked samples anew, from the dataset's current epoch. Both give bit-identical tensors for the same clouds.
    An encoder listed twice (the dual path with both encoders CLIP's) is computed once.
    """

    def __init__(
        self,
        dataset: PointCloudDataset | ChosenSamples,
        encoders: Sequence[nn.Module],
        renderer: DepthRenderer,
        views: Views,
        *,
        cache_dir: str | Path | None,
        progress: bool = True,
        **extract: Any,
    ):
        """``extract``: how features are computed, :func:`extract_features`'s keywords (``batch_size``, and
        ``device`` and ``precision`` if not the CPU's fp32); ``progress``: a bar while a whole split is computed
        for the cache."""
        self.dataset, self.renderer, self.views = dataset, renderer, views
        self.extract = extract | {"device": torch.device(extract.get("device", "cpu"))}
        self.device = self.extract["device"]
        self.labels = torch.as_tensor(dataset.labels, dtype=torch.int64)
        self._unique: list[nn.Module] = []
        self._slot: list[int] = []
        for encoder in encoders:
            known = [i for i, e in enumerate(self._unique) if e is encoder]
            self._slot.append(known[0] if known else len(self._unique))
            if not known:
                self._unique.append(encoder)
        self.entries: list[ViewFeatures] | None = None
        self.cache_dir, self.progress = cache_dir, progress
        self._epoch = None  # the dataset epoch of ``entries``
        if cache_dir is not None and not dataset.per_epoch:
            self._load()

    def _load(self) -> None:
        """``entries`` (and their tensors on the device) for the dataset's current epoch. Re-sampled: while
        another process (a cell sharing them) builds this epoch's entry, the next epoch's is built meanwhile
        unless someone builds it too, so cells that share entries build them in turn, not one at a time."""
        entries = []
        for encoder in self._unique:
            entry = self._entry(encoder, wait=not self.dataset.per_epoch)
            if entry is None:
                epoch = self.dataset.epoch
                self.dataset.set_epoch(epoch + 1)
                try:
                    self._entry(encoder, wait=False)
                finally:
                    self.dataset.set_epoch(epoch)
                entry = self._entry(encoder, wait=True)
            entries.append(entry)
        self.entries = entries
        self._stored = [entry.features.to(self.device) for entry in self.entries]
        self._epoch = self.dataset.epoch

    def _entry(self, encoder: nn.Module, wait: bool) -> ViewFeatures | None:
        return load_or_extract(encoder, self.renderer, self.dataset, self.views, cache_dir=self.cache_dir,
                               progress=self.progress, wait=wait, **self.extract)  # fmt: skip

    def __len__(self) -> int:
        return len(self.labels)

    def __call__(self, indices: torch.Tensor) -> list[torch.Tensor]:
        """Features ``(B, V, C)`` on the device, one per encoder given, of samples ``indices (B,)``."""
        moved = self.dataset.per_epoch and self._epoch != self.dataset.epoch
        if moved and self.cache_dir is not None:
            self._load()  # a re-sampled split's first call in this epoch (fixed clouds load in __init__)
        if self.entries is not None:
            computed = [stored[indices.to(self.device, non_blocking=True)] for stored in self._stored]
        else:
            subset = Subset(self.dataset, indices.tolist())
            computed = [
                extract_features(encoder, self.renderer, subset, self.views, **self.extract)[0].to(
                    self.device
                )
                for encoder in self._unique
            ]
        return [computed[slot] for slot in self._slot]
