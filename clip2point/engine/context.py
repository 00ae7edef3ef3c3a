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
from clip2point.paths import RUNS, resolve_path
from clip2point.registry import PRETRAIN_PAIRS
from clip2point.render import DepthRenderer, Views, official_views
from clip2point.sources import local_file


class Experiment:
    """The parts of one experiment (see the module docstring); cheap to ask for twice.

    ``config``: ready to run, as :func:`~clip2point.prepare.prepare` returns it in the driver (every verb,
    sweep and the reproduction prepare theirs once and pass it on to workers and trials). ``device`` None
    follows ``config.device`` (``auto``: CUDA when available).
    """

    def __init__(self, config: ExperimentConfig, device: torch.device | str | None = None):
        self.config = config
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
        folder = Path(out_dir) if out_dir else resolve_path(RUNS) / kind / self.config.data.dataset
        folder.mkdir(parents=True, exist_ok=True)
        return folder
