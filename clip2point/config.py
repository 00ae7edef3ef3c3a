"""The experiment config: one typed, validated object that flows through everything.

The CLI builds it (defaults, ``--preset``, ``--config FILE``, ``-o key=value``), sweeps override fields of
it with dotted keys (``"render.dilation"``), MLflow logs it flattened. Every section is a frozen
:class:`~clip2point.schema.Settings` dataclass, so a bad key or value raises
:class:`~clip2point.errors.ConfigError` naming the key, the value and what is allowed. The rendering and
adapter sections (:class:`~clip2point.settings.RenderSettings`, :class:`~clip2point.settings.AdapterSettings`)
are embedded here; the allowed dataset names come from the dataset registry (:mod:`clip2point.registry`).
Nothing here imports torch, so a config error is quick. Relative paths are taken from the project root
(:mod:`clip2point.paths`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from clip2point.errors import ConfigError, excerpt
from clip2point.registry import DATASET_NAMES
from clip2point.schema import Settings, bounded, described, from_dict, to_dict, with_overrides
from clip2point.settings import AdapterSettings, RenderSettings

DatasetName = Literal[DATASET_NAMES]  # type: ignore[valid-type]  (the registry's names)


@dataclass(frozen=True)
class ModelConfig(Settings):
    """CLIP backbone: an open_clip model name and its weights (tag, local file, ``"toy"`` or None), and the
    depth encoder: a pre-trained depth encoder file (our safetensors or the authors' ``best_eval.pth``), or
    None for CLIP's visual encoder itself (no pre-training).

    The default is the bundled toy CLIP (a demo and test model); the ``paper`` preset selects ViT-B-32
    with OpenAI's weights.
    """

    SECTION = "model"

    name: str = "ToyCLIP"
    pretrained: str | None = "toy"
    depth_encoder: str | None = None


@dataclass(frozen=True)
class DataConfig(Settings):
    """Where the data lives and how clouds are sampled (layouts: docs/method.md section 5 and docs/usage.md).

    ``cache_dir``: preprocess each dataset once into memory-mapped arrays there (None: parse files every
    epoch). ``on_error``: ``raise`` on a malformed file, or ``skip`` it with a warning and a count.
    ``align``: the ModelNet "rot" alignment (datasets in ModelNet's frame only). ``num_points``: points per
    cloud; null keeps every point of each file (``modelnet40_ply`` only, as the authors' evaluation).
    ``prompts``: class names in the prompts with underscores read as spaces, or spelled as the authors'
    scripts do (``official``: ModelNet10's ``night_stand`` keeps its underscore), see
    :mod:`clip2point.models.prompts`.
    """

    SECTION = "data"

    root: str = "data/toy"
    dataset: DatasetName = "modelnet10"
    num_points: int | None = bounded(1024, low=1)
    cache_dir: str | None = None
    on_error: Literal["raise", "skip"] = "raise"
    align: bool = True
    prompts: Literal["spaces", "official"] = "spaces"


@dataclass(frozen=True)
class PretrainConfig(Settings):
    """Image-depth contrastive pre-training (docs/method.md section 2) on Ray Train.

    The defaults are the toy setting (a few minutes on 2 CPU cores); the ``paper`` preset holds the paper's.
    ``batch_size`` is the global batch over all workers; ``restart_epochs`` is the cosine warm-restart
    period T_0 in epochs (the schedule steps every iteration); ``negatives``: ``global`` gathers features
    from every worker (N workers == 1 worker with the same global batch), ``per_worker`` keeps each
    worker's own batch as negatives (what the official DataParallel code effectively had).
    ``optimizer``: ``lamb`` (torch-optimizer's, as the authors built it) or ``timm_lamb`` (timm's defaults:
    Adam bias correction, gradient-norm clipping at 1.0, no cap on the weight norm), see
    :mod:`clip2point.engine.optim`. ``sampling``: how the ShapeNet55 clouds (8,192 points) become
    ``data.num_points``, for the training pairs and the validation split alike: ``fps`` (deterministic
    farthest point sampling, the paper's wording) or ``random`` (a fresh random subset every epoch, seeded
    per (seed, epoch, record), the authors' code). ``cpus_per_worker``: the CPUs Ray reserves for each worker,
    and its torch threads (the whole part, at least 1; a fraction such as 0.99 lets two single-threaded runs
    share a 2-CPU machine beside their Tune trials). ``loader_workers``: data-loading processes per worker.
    ``data``: the storage location of a pack (:mod:`clip2point.data.pack`: a folder, ``s3://``, ``gs://``) whose
    clouds, stored image features and cameras are streamed to the workers through Ray Data instead of
    reading ``data.root``'s files (the validation and zero-shot probes still read ``data.root``), in a
    pack's streamed order (:mod:`clip2point.data.pack_order`); ``shuffle_shard_size``: the raw files in that
    order too, as a pack with shards of this many objects streams them (null: ``DistributedSampler``'s).
    ``keep_checkpoints``: how many epoch checkpoints Ray Train keeps. Runs are stored under
    ``<storage>/pretrain/<name>``. ``lease_timeout``: seconds after its last heartbeat that a run's lease
    (:mod:`clip2point.lease`) counts as its holder's death, so that ``--resume`` may take the run over.
    ``micro_batch``: how many samples a worker pushes through the depth encoder at once (null: its whole
    ``batch_size / num_workers``); smaller, the step caches gradients (:mod:`clip2point.engine.grad_cache`):
    the same gradients, the contrastive batch still ``batch_size``, the memory of a micro batch, one more
    depth-encoder forward. It must divide the per-worker batch.
    """

    SECTION = "pretrain"

    epochs: int = bounded(5, low=1)
    batch_size: int = bounded(50, low=2)
    lr: float = bounded(2e-3, low=0.0, low_open=True)
    weight_decay: float = bounded(1e-4, low=0.0)
    restart_epochs: int = bounded(5, low=1)
    eta_min: float = bounded(1e-5, low=0.0)
    temperature: float = bounded(0.07, low=0.0, low_open=True)
    intra: bool = True
    negatives: Literal["global", "per_worker"] = "global"
    num_workers: int = bounded(1, low=1)
    use_gpu: bool = False
    cpus_per_worker: float = bounded(2.0, low=0.0, low_open=True)
    loader_workers: int = bounded(0, low=0)
    sampling: Literal["fps", "random"] = described(
        "fps", "ShapeNet points: farthest point sampling, or a fresh random subset per epoch (the authors')"
    )
    data: str | None = described(
        None, "a pack (`clip2point data pack`) to stream the training pairs from; null: the raw files"
    )
    shuffle_shard_size: int | None = bounded(
        None,
        low=1,
        help="raw files: shuffle as a pack with shards of this many objects streams (null: globally)",
    )
    optimizer: Literal["lamb", "timm_lamb"] = described(
        "lamb", "LAMB as the authors built it (torch-optimizer) or timm's (bias correction, clipping)"
    )
    max_failures: int = bounded(2, low=-1)
    eval_dataset: DatasetName = "modelnet10"
    eval_batch_size: int = bounded(64, low=1)
    export_official: bool = False
    keep_checkpoints: int = bounded(2, low=1)
    lease_timeout: float = bounded(120.0, low=0.0, low_open=True)
    micro_batch: int | None = bounded(
        None, low=1, help="samples per depth-encoder pass on a worker (null: its whole batch)"
    )

    def check(self) -> None:
        per_worker, rest = divmod(self.batch_size, self.num_workers)
        if self.micro_batch is not None and not rest and per_worker % self.micro_batch:
            raise ConfigError(
                f"config key 'pretrain.micro_batch': {self.micro_batch} does not divide the per-worker batch "
                f"pretrain.batch_size / pretrain.num_workers = {self.batch_size} / {self.num_workers} = "
                f"{per_worker}; allowed: a divisor of {per_worker}, or null (the whole per-worker batch)"
            )


@dataclass(frozen=True)
class FewShotConfig(Settings):
    """Adapter training on frozen encoders: K-shot (``shots``) or the full train split (``shots: null``).

    The depth path is ``model.depth_encoder`` (CLIP's visual encoder when that is None, so the dual path
    has both encoders CLIP-initialised). ``dropout``: the dropout rate of the ``official`` aggregator (the
    paper form has none). ``batch_size`` is at least 2 (BatchNorm in the official aggregator needs two
    samples). Results are reported as mean and std over ``seeds``. ``feature_cache``: folder of the
    frozen-encoder feature cache; None computes features every epoch.

    ``selection``: which epoch's adapter is reported. ``test``: the epoch with the best test top-1, test
    evaluated after every epoch (the paper's and the authors' protocol, which selects on the test set).
    ``val``: a validation split is held out of the train split (K-shot: ``val_shots`` more samples per class,
    disjoint from the K shots; full: ``val_fraction`` of each class, taken out of training), seeded per seed;
    the epoch with the best validation top-1 is selected and test is evaluated once, with that epoch's
    adapter. The HPO study searches on the same selection metric.

    ``resample``: the training and test clouds are sampled anew from their meshes for every epoch, seeded
    per ``(seed, epoch, record)`` (the authors' script samples on every load); mesh datasets only. Their
    features change every epoch: each epoch the test split's, and the train split's samples that some seed
    draws, go into feature-cache entries of that epoch, shared by the cells that render and encode alike
    (without ``feature_cache`` they are computed live).
    :meth:`authors` is the authors' whole reporting protocol.
    """

    SECTION = "fewshot"

    shots: int | None = bounded(16, low=1)
    epochs: int = bounded(50, low=1)
    batch_size: int = bounded(32, low=2)
    lr: float = bounded(1e-3, low=0.0, low_open=True)
    weight_decay: float = bounded(1e-4, low=0.0)
    dropout: float = bounded(0.075, low=0.0, high=1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    feature_cache: str | None = "cache/features"
    selection: Literal["val", "test"] = described(
        "val", "epoch reported: best on a held-out validation split, or best test epoch (the paper's)"
    )
    val_shots: int = bounded(4, low=1, help="K-shot: validation samples per class, beside the K shots")
    val_fraction: float = bounded(0.1, low=0.0, high=0.5, low_open=True, help="full: share held out")
    resample: bool = described(False, "sample the train and test clouds anew every epoch (the authors')")
    adapter: AdapterSettings = field(default_factory=AdapterSettings)

    def authors(self) -> FewShotConfig:
        """The authors' reporting protocol on this setting: one run (the first seed), the best test epoch,
        training and test clouds sampled anew every epoch."""
        return dataclasses.replace(self, seeds=self.seeds[:1], selection="test", resample=True)

    def protocol(self, detail: bool = False, shots: str | None = None) -> str:
        """How the reported epoch is chosen, as tables say it: ``"best test epoch, as the paper"`` or
        ``"selected on validation"``, with ``"; clouds re-sampled every epoch"`` under ``resample`` and
        ``"; one run (seed s)"`` for a single seed under ``selection: test``; with ``detail`` also what the
        validation split is (``shots``: how to name the training shots, e.g. ``"K"`` for a table over
        several; default ``fewshot.shots``)."""
        resampled = "; clouds re-sampled every epoch" if self.resample else ""
        if self.selection == "test":
            single = f"; one run (seed {self.seeds[0]})" if len(self.seeds) == 1 else ""
            return (
                "best test epoch, as the paper"
                + single
                + resampled
                + (" (test top-1 after every epoch, the maximum reported)" if detail else "")
            )
        if not detail:
            return "selected on validation" + resampled
        held = (
            f"up to {self.val_shots} samples per class from the train split, beside the "
            f"{shots or self.shots} shots"
            if self.shots is not None
            else f"{self.val_fraction:.0%} of each class of the train split, held out"
        )
        return f"selected on validation ({held}); test evaluated once, at the selected epoch{resampled}"


@dataclass(frozen=True)
class SweepConfig(Settings):
    """How a study runs as a Ray Tune sweep.

    Each trial reserves ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (fractions share a GPU);
    ``max_concurrent`` caps parallel trials (None: as many as the cluster's resources fit); ``num_samples``
    is the number of trials of a search study (hpo_fewshot); ``datasets``: the datasets of the studies that
    evaluate on several (Tables 1 and 2: one row per dataset); ``authors_protocol``: every few-shot cell
    of Tables 2 to 5 also runs the authors' reporting protocol (:meth:`FewShotConfig.authors`: one run, best
    test epoch, clouds re-sampled every epoch) and the tables show it beside the configured protocol, both
    labelled; ``zeroshot_views``: the views of Table 1's
    zero-shot cells (None: ``render.views``; the paper gives no count, the authors' zero-shot script
    defaults to 6). The sweep's state is kept under
    ``<storage>/sweeps/<study>``; ``results_dir`` is where the study's table and plot go.
    """

    SECTION = "sweep"

    cpus_per_trial: float = bounded(1.0, low=0.0, low_open=True)
    gpus_per_trial: float = bounded(0.0, low=0.0)
    max_concurrent: int | None = bounded(None, low=1)
    num_samples: int = bounded(8, low=1)
    datasets: tuple[DatasetName, ...] = ("modelnet10",)
    authors_protocol: bool = described(
        False,
        "few-shot studies also report the authors' protocol (fewshot.authors) beside the configured one",
    )
    zeroshot_views: Literal[6, 10] | None = described(
        None, "Table 1's zero-shot views; null: render.views (the paper preset: 6, the authors' script)"
    )
    results_dir: str = "results"


@dataclass(frozen=True)
class TrackingConfig(Settings):
    """MLflow: ``uri`` None means ``MLFLOW_TRACKING_URI`` or ``sqlite:///<project>/mlflow.db``."""

    SECTION = "tracking"

    uri: str | None = None
    experiment: str = "clip2point"


@dataclass(frozen=True)
class ExperimentConfig(Settings):
    """The whole configuration of one run. ``storage``: where runs and sweeps keep what must survive
    (checkpoints, best encoders, sweep state); None: ``$CLIP2POINT_STORAGE`` or ``<project>/runs``.
    ``precision``: what every encoder pass computes in (pre-training steps, zero-shot and few-shot
    features): ``bf16`` autocast on CUDA, ``fp32`` (full float32), or ``tf32`` (float32 with TF32 matmuls on
    CUDA: the authors' fp32 code on their PyTorch 1.11, whose default that was); on the CPU always float32."""

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    storage: str | None = None
    render: RenderSettings = field(default_factory=RenderSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    precision: Literal["fp32", "tf32", "bf16"] = "bf16"


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    """The presets shipped with the package (``clip2point/presets/<name>.yaml``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_config(
    path: str | Path | Sequence[str | Path] | None = None,
    overrides: Mapping[str, Any] | None = None,
    preset: str | None = None,
) -> ExperimentConfig:
    """Load an :class:`ExperimentConfig`: defaults, then a shipped ``preset`` (e.g. ``"paper"``), then the
    YAML file at ``path`` (or several, in order), then dotted-key ``overrides``; each layer changes only the
    keys it names.

    A file may name its preset itself with a top-level ``preset: <name>`` (the sweeps' paper YAMLs build on
    ``preset: paper``); a different ``preset`` argument, or another file naming another one, is an error.
    """
    layers: list[tuple[Path, Mapping[str, Any]]] = []
    named_by = ""  # the file that named the preset, for errors
    for layer in [] if path is None else [path] if isinstance(path, str | Path) else list(path):
        data = _read_yaml(Path(layer))
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{layer}: the top level must be a mapping of config sections, got {excerpt(data)}"
            )
        named = data.get("preset")
        if named is not None:
            if preset is not None and preset != named:
                raise ConfigError(
                    f"{layer} builds on preset {excerpt(named)}, but --preset {preset!r} was given"
                )
            preset, data, named_by = named, {k: v for k, v in data.items() if k != "preset"}, f"{layer}: "
        layers.append((Path(layer), data))
    config = ExperimentConfig()
    if preset is not None:
        if preset not in preset_names():
            raise ConfigError(
                f"{named_by}unknown preset {excerpt(preset)}; allowed: {', '.join(preset_names())}"
            )
        config = _merge(config, _read_yaml(PRESETS_DIR / f"{preset}.yaml"), PRESETS_DIR / f"{preset}.yaml")
    for layer, data in layers:
        config = _merge(config, data, layer)
    return with_overrides(config, overrides or {})


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); allowed: a YAML text file"
        ) from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc)[:400]}") from None


def _merge(config: ExperimentConfig, data: Any, path: Path) -> ExperimentConfig:
    """``config`` with the keys of ``data`` (read from the YAML file ``path``) applied on top."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of config sections, got {excerpt(data)}")

    def merge(into: dict, new: Mapping) -> None:
        for key, value in new.items():
            if isinstance(value, Mapping) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    tree = to_dict(config)
    merge(tree, data)
    try:
        return from_dict(ExperimentConfig, tree)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_config(config: Any) -> str:
    """``config`` as YAML that :func:`load_config` reads back to an equal object."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` to ``path`` as :func:`dump_config`'s YAML."""
    Path(path).write_text(dump_config(config))
