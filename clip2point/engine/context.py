"""An experiment's parts, built once from its config: device, backbone, renderer, views, datasets, depth
encoder and prompt features. Zero-shot, few-shot, every study and the pre-training worker start here.

::

    experiment = Experiment.from_config(config)      # loads the backbone once
    test = experiment.dataset("test")                # config.data.dataset, built once, then reused
    features = experiment.features(experiment.depth_encoder, test)   # (M, V, C), feature cache
    text = experiment.text_features(test.class_names)                # (K, C), encoded once

The renderer draws at the backbone's input size and standardises with the backbone's own mean/std, so
depth maps and RGB renders reach the encoder the way its weights expect.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import cached_property
from pathlib import Path, PurePosixPath

import torch
from torch import nn

from clip2point.config import ExperimentConfig
from clip2point.data import DATASETS, build_dataset
from clip2point.data.datasets import PointCloudDataset
from clip2point.engine.feature_cache import ViewFeatures, load_or_extract
from clip2point.engine.features import resolve_device, set_matmul_precision
from clip2point.errors import ConfigError
from clip2point.models import ClipBundle, encode_prompts, load_clip, load_depth_encoder
from clip2point.paths import resolve_path, storage_root
from clip2point.render import DepthRenderer, Views, official_views
from clip2point.schema import with_overrides
from clip2point.sources import is_remote, local_file
from clip2point.tracking import resolve_tracking_uri

PRETRAIN_PAIRS = "shapenet55_pretrain"


def resolve_paths(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` as every process must see it (Ray workers run in other directories, on other machines):
    each path absolute (relative ones taken from the project root, :mod:`clip2point.paths`; a depth encoder
    given as a storage or MLflow URI stays as it is, :mod:`clip2point.sources`), ``storage``
    resolved (:func:`~clip2point.paths.storage_root`) and ``tracking.uri`` resolved
    (:func:`~clip2point.tracking.resolve_tracking_uri`). Idempotent."""

    def absolute(path: str | None) -> str | None:
        return None if path is None else str(resolve_path(path))

    encoder = config.model.depth_encoder

    return with_overrides(
        config,
        {
            "data.root": absolute(config.data.root),
            "data.cache_dir": absolute(config.data.cache_dir),
            "model.depth_encoder": encoder if encoder and is_remote(encoder) else absolute(encoder),
            "fewshot.feature_cache": absolute(config.fewshot.feature_cache),
            "sweep.results_dir": absolute(config.sweep.results_dir),
            "storage": storage_root(config.storage),
            "tracking.uri": resolve_tracking_uri(config.tracking.uri),
        },
    )


def ensure_toy_world(config: ExperimentConfig, size: str = "default", progress: bool = True) -> None:
    """Build the toy world under ``data.root`` if that is a toy root (its folder is named ``toy``) without
    a finished world of this version of the code (``toy_world.json``; an older world is rebuilt). Built in a
    sibling folder and renamed into place, so an interrupted build never leaves half a world. Call it in
    the driver, before any worker reads data."""
    from clip2point.toy.world import WORLD_VERSION, build_toy_world

    root = resolve_path(config.data.root)
    manifest = root / "toy_world.json"
    if root.name != "toy" or (manifest.exists() and _world_version(manifest) == WORLD_VERSION):
        return
    print(f"building the toy world (version {WORLD_VERSION}) in {root}")
    staging = root.with_name(f".toy-building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    build_toy_world(staging, seed=0, size=size, progress=progress)
    if root.exists():  # an empty or unfinished folder from before
        shutil.rmtree(root)
    os.replace(staging, root)


def _world_version(manifest: Path) -> int | None:
    """The version a toy world's manifest records (None: unreadable, or written before versions)."""
    try:
        return json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None


class Experiment:
    """The parts of one experiment (see the module docstring); cheap to ask for twice.

    ``config`` is kept with its paths resolved (:func:`resolve_paths`). ``device`` None follows
    ``config.device`` (``auto``: CUDA when available).
    """

    def __init__(self, config: ExperimentConfig, device: torch.device | str | None = None):
        self.config = resolve_paths(config)
        self.device = torch.device(device) if device is not None else resolve_device(config.device)
        set_matmul_precision(self.device, config.precision)
        self.bundle: ClipBundle = load_clip(config.model.name, config.model.pretrained, self.device)
        self.views: Views = official_views(config.render.views)
        self.renderer = DepthRenderer(self.bundle.image_size, config.render, norm=self.bundle.norm)
        self._datasets: dict[tuple[str, str], PointCloudDataset] = {}
        self._prompts: dict[tuple[str, ...], torch.Tensor] = {}

    @classmethod
    def from_config(cls, config: ExperimentConfig, device: torch.device | str | None = None) -> Experiment:
        return cls(config, device)

    def dataset(
        self, split: str = "test", name: str | None = None, resample: bool = False
    ) -> PointCloudDataset:
        """Dataset ``name`` (default ``data.dataset``) of ``split`` under ``data.root``, with the config's
        point count, seed, sample cache, bad-file policy and, where the registry says so, the "rot"
        alignment or the ShapeNet point sampling (``pretrain.sampling``); the pre-training pairs read their RGB renders at the backbone's size and mean/std.
        ``resample``: clouds sampled anew from the meshes every epoch (``fewshot.resample``; mesh datasets
        only, else :class:`ConfigError`). Built once per (name, split, resample)."""
        name = name or self.config.data.dataset
        key = (name, split, resample)
        if resample and not DATASETS[name].meshes:
            meshed = ", ".join(n for n, spec in DATASETS.items() if spec.meshes)
            raise ConfigError(
                f"fewshot.resample: dataset {name!r} has fixed clouds, no meshes to sample anew every epoch; "
                f"use one of {meshed} or fewshot.resample: false"
            )
        if key not in self._datasets:
            data = self.config.data
            options: dict = {"seed": self.config.seed, "on_error": data.on_error, "cache_dir": data.cache_dir}
            if resample:
                options["resample"] = True
            if DATASETS[name].aligned:
                options["align"] = data.align
            if DATASETS[name].pretraining:
                options["sampling"] = self.config.pretrain.sampling
            if name == PRETRAIN_PAIRS:
                options |= {"image_size": self.bundle.image_size, "norm": self.bundle.norm}
            self._datasets[key] = build_dataset(name, data.root, split, data.num_points, **options)
        return self._datasets[key]

    @cached_property
    def depth_encoder(self) -> nn.Module:
        """``model.depth_encoder`` loaded (in eval mode, on the device), or CLIP's visual encoder itself
        when that is None (no pre-training). A storage or MLflow URI is fetched first
        (:func:`~clip2point.sources.local_file`, from the config's tracking server)."""
        source = self.config.model.depth_encoder
        if source is None:
            return self.bundle.visual
        path = local_file(source, self.config.tracking.uri)
        return load_depth_encoder(self.bundle, path).to(self.device)

    @property
    def depth_encoder_label(self) -> str:
        """``"CLIP visual encoder"`` or the depth encoder's file name, for run tags and titles."""
        path = self.config.model.depth_encoder
        return "CLIP visual encoder" if path is None else f"depth encoder {PurePosixPath(path).name}"

    def text_features(self, class_names: tuple[str, ...] | list[str]) -> torch.Tensor:
        """Normalised prompt features ``(K, C)`` on the device, prompts in the ``data.prompts`` style;
        encoded once per class list (the text encoder is frozen)."""
        names = tuple(class_names)
        if names not in self._prompts:
            prompts = encode_prompts(self.bundle.text, names, self.config.data.prompts)
            self._prompts[names] = prompts.to(self.device)
        return self._prompts[names]

    def features(
        self, encoder: nn.Module, dataset: PointCloudDataset, *, progress: bool = True
    ) -> ViewFeatures:
        """``encoder``'s per-view features ``(M, V, C)`` of every sample of ``dataset`` at the experiment's
        views in its ``precision``, from the feature cache (``fewshot.feature_cache``; computed and stored when missing)."""
        return load_or_extract(
            encoder, self.renderer, dataset, self.views, cache_dir=self.config.fewshot.feature_cache,
            batch_size=self.config.fewshot.batch_size, device=self.device, progress=progress,
            precision=self.config.precision,
        )  # fmt: skip

    def output_dir(self, kind: str, out_dir: str | Path | None = None) -> Path:
        """``out_dir`` (created), or ``<project>/runs/<kind>/<dataset>`` for a command's pictures."""
        folder = Path(out_dir) if out_dir else resolve_path("runs") / kind / self.config.data.dataset
        folder.mkdir(parents=True, exist_ok=True)
        return folder
