"""Typed experiment configuration, loaded from YAML with ``yaml.safe_load``.

One :class:`ExperimentConfig` flows through everything: the CLI builds it, sweeps override fields of it
(dotted keys such as ``"render.dilation"``), MLflow logs it flattened. Every section is a frozen
dataclass; :func:`from_dict` checks each key and value against the field types and constraints, and
raises :class:`~clip2point.errors.ConfigError` naming the key, the bad value and what is allowed.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``,
``tuple[X, ...]``, and nested config dataclasses. Numeric ranges are declared with :func:`bounded`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from clip2point.errors import ConfigError


def bounded(default: Any, *, low: float | None = None, high: float | None = None, low_open=False):
    """A dataclass field whose numeric value must lie in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
    hi = "" if high is None else f"<= {high}"
    allowed = " and ".join(p for p in (lo, hi) if p)

    def check(value: float) -> bool:
        if low is not None and (value <= low if low_open else value < low):
            return False
        return high is None or value <= high

    return field(default=default, metadata={"check": check, "allowed": allowed})


@dataclass(frozen=True)
class RenderConfig:
    """Point cloud -> depth maps (SPEC.md section 1). ``radius`` is in NDC units, ``fov`` in degrees."""

    image_size: int = bounded(224, low=8, high=4096)
    views: Literal[6, 10] = 10
    footprint: Literal["disk", "square"] = "disk"
    radius: float = bounded(0.02, low=0.0, low_open=True, high=2.0)
    dilation: int = bounded(2, low=1, high=64)
    depth: Literal["minimum", "weighted"] = "minimum"
    projection: Literal["orthographic", "perspective"] = "orthographic"
    fov: float = bounded(60.0, low=1.0, high=179.0)


@dataclass(frozen=True)
class ModelConfig:
    """CLIP backbone: an open_clip model name and its weights (tag, local file, ``"toy"`` or None).

    The default is the bundled toy CLIP (a demo and test model); the ``paper`` preset selects ViT-B-32
    with OpenAI's weights.
    """

    name: str = "ToyCLIP"
    pretrained: str | None = "toy"


DatasetName = Literal[
    "modelnet10",
    "modelnet40",
    "modelnet40_ply",
    "scanobjectnn_obj_only",
    "scanobjectnn_obj_bg",
    "scanobjectnn_pb_t50_rs",
    "shapenet55",
    "shapenet55_pretrain",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the data lives and how clouds are sampled (layouts: SPEC.md section 5, README "Data").

    ``cache_dir``: preprocess each dataset once into memory-mapped arrays there (None: parse files every
    epoch). ``on_error``: ``raise`` on a malformed file, or ``skip`` it with a warning and a count.
    ``align``: the ModelNet "rot" alignment (ModelNet datasets only).
    """

    root: str = "data/toy"
    dataset: DatasetName = "modelnet10"
    num_points: int = bounded(1024, low=1)
    cache_dir: str | None = None
    on_error: Literal["raise", "skip"] = "raise"
    align: bool = True


@dataclass(frozen=True)
class PretrainConfig:
    """Image-depth contrastive pre-training (SPEC.md section 2) on Ray Train.

    The defaults are the toy setting (a few minutes on 2 CPU cores); the ``paper`` preset holds the paper's.
    ``batch_size`` is the global batch over all workers; ``restart_epochs`` is the cosine warm-restart
    period T_0 in epochs (the schedule steps every iteration); ``negatives``: ``global`` gathers features
    from every worker (N workers == 1 worker with the same global batch), ``per_worker`` keeps each
    worker's own batch as negatives (what the official DataParallel code effectively had).
    ``loader_workers``: data-loading processes per worker. ``storage``: the folder holding one sub-folder per
    run (checkpoints, best encoder); None means ``<project root>/runs/pretrain``; it must be shared by all
    nodes of a cluster. ``keep_checkpoints``: how many epoch checkpoints Ray Train keeps.
    """

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
    cpus_per_worker: int = bounded(2, low=1)
    loader_workers: int = bounded(0, low=0)
    max_failures: int = bounded(2, low=-1)
    eval_dataset: DatasetName = "modelnet10"
    eval_batch_size: int = bounded(64, low=1)
    export_official: bool = False
    storage: str | None = None
    keep_checkpoints: int = bounded(2, low=1)


@dataclass(frozen=True)
class AdapterConfig:
    """The Gated Dual-Path Adapter's switches (SPEC.md section 4).

    ``path``: ``single`` (depth-encoder features only) or ``dual`` (plus CLIP's visual features);
    ``aggregator``: ``global`` (GDPA) or ``inter_view`` (PointCLIP's adapter, ``variant: paper`` only);
    ``fusion`` (dual path): ``gate`` (paper), ``average`` (official code) or ``none``; a single path
    takes ``none``. ``variant``: the ``paper`` or ``official`` form of the global aggregator.
    """

    path: Literal["single", "dual"] = "dual"
    aggregator: Literal["global", "inter_view"] = "global"
    fusion: Literal["gate", "average", "none"] = "gate"
    variant: Literal["paper", "official"] = "official"


@dataclass(frozen=True)
class FewShotConfig:
    """Adapter training on frozen encoders: K-shot (``shots``) or the full train split (``shots: null``).

    ``depth_encoder``: a pre-trained depth encoder file (safetensors or an official ``best_eval.pth``);
    None uses CLIP's visual encoder (so the dual path has both encoders CLIP-initialised). ``dropout``:
    the dropout rate of the ``official`` aggregator (the paper form has none). ``batch_size`` is at least 2
    (BatchNorm in the official aggregator needs two samples). Results are reported as
    mean and std over ``seeds``. ``feature_cache``: folder of the frozen-encoder feature cache (relative
    paths are taken from the project root); None computes features every epoch.
    """

    shots: int | None = bounded(16, low=1)
    epochs: int = bounded(50, low=1)
    batch_size: int = bounded(32, low=2)
    lr: float = bounded(1e-3, low=0.0, low_open=True)
    weight_decay: float = bounded(1e-4, low=0.0)
    dropout: float = bounded(0.075, low=0.0, high=1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    depth_encoder: str | None = None
    feature_cache: str | None = "cache/features"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)


@dataclass(frozen=True)
class SweepConfig:
    """How a study runs as a Ray Tune sweep.

    Each trial reserves ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (fractions share a GPU);
    ``max_concurrent`` caps parallel trials (None: as many as the cluster's resources fit); ``num_samples``
    is the number of trials of a search study (hpo_fewshot). ``storage``:
    where Tune keeps the sweep's state (None: ``$CLIP2POINT_STORAGE`` or ``<project>/runs/sweeps``);
    ``results_dir``: where the study's table and plot go (relative: to the project root).
    """

    cpus_per_trial: float = bounded(1.0, low=0.0, low_open=True)
    gpus_per_trial: float = bounded(0.0, low=0.0)
    max_concurrent: int | None = bounded(None, low=1)
    num_samples: int = bounded(8, low=1)
    storage: str | None = None
    results_dir: str = "results"


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: ``uri`` None means ``MLFLOW_TRACKING_URI`` or ``sqlite:///<project>/mlflow.db``."""

    uri: str | None = None
    experiment: str = "clip2point"


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole configuration of one run."""

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    render: RenderConfig = field(default_factory=RenderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


C = typing.TypeVar("C")


def _describe(tp: Any) -> str:
    """Human-readable name of an allowed type, e.g. ``one of 'disk', 'square'``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (int -> float, list -> tuple)."""

    def bad() -> ConfigError:
        return ConfigError(f"config key {key!r}: {value!r} is not allowed; expected {_describe(tp)}")

    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise bad()
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise bad()
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise bad()
        return tuple(_convert(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise bad()
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    raise TypeError(f"unsupported config annotation {tp!r} for {key!r}")


def from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Build config dataclass ``cls`` from a mapping, validating every key and value.

    Missing keys take their defaults. Raises :class:`ConfigError` for an unknown key (listing the
    known ones), a value of the wrong type, or one outside its declared range.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {data!r}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + str(unknown[0])!r}; allowed keys in "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}"
        )
    values = {}
    for name, value in data.items():
        key = prefix + name
        converted = _convert(value, hints[name], key)
        check: Callable[[Any], bool] | None = fields[name].metadata.get("check")
        if check is not None and converted is not None and not check(converted):
            raise ConfigError(
                f"config key {key!r}: {value!r} is out of range; allowed: {fields[name].metadata['allowed']}"
            )
        values[name] = converted
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts and lists (YAML-ready); inverse of :func:`from_dict`."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(config)


def flatten(config: Any) -> dict[str, Any]:
    """Dotted-key view of a config, e.g. ``{"render.dilation": 2, ...}`` (MLflow params, sweep axes)."""
    out: dict[str, Any] = {}

    def walk(v: Any, prefix: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{prefix}{k}.")
        else:
            out[prefix.rstrip(".")] = v

    walk(to_dict(config), "")
    return out


def with_overrides(config: C, overrides: Mapping[str, Any]) -> C:
    """A copy of ``config`` with dotted-key overrides applied and validated.

    >>> with_overrides(ExperimentConfig(), {"render.dilation": 4}).render.dilation
    4
    """
    tree = to_dict(config)
    for dotted, value in overrides.items():
        node = tree
        parts = dotted.split(".")
        for i, part in enumerate(parts[:-1]):
            if part not in node:
                raise ConfigError(f"unknown config key {dotted!r}: no section {'.'.join(parts[: i + 1])!r}")
            if not isinstance(node[part], dict):
                raise ConfigError(
                    f"unknown config key {dotted!r}: {'.'.join(parts[: i + 1])!r} is not a section"
                )
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"unknown config key {dotted!r}; allowed keys here: {', '.join(node)}")
        node[parts[-1]] = value
    return from_dict(type(config), tree)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a command-line override ``key=value``; the value is read as YAML (``4``, ``true``, ``null``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    return key.strip(), yaml.safe_load(raw)


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    """The presets shipped with the package (``clip2point/presets/<name>.yaml``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    preset: str | None = None,
) -> ExperimentConfig:
    """Load an :class:`ExperimentConfig`: defaults, then a shipped ``preset`` (e.g. ``"paper"``), then the
    YAML file at ``path``, then dotted-key ``overrides``; each layer changes only the keys it names."""
    config = ExperimentConfig()
    if preset is not None:
        if preset not in preset_names():
            raise ConfigError(f"unknown preset {preset!r}; allowed: {', '.join(preset_names())}")
        config = _merge_yaml(config, PRESETS_DIR / f"{preset}.yaml")
    if path is not None:
        config = _merge_yaml(config, Path(path))
    return with_overrides(config, overrides or {})


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc


def _merge_yaml(config: ExperimentConfig, path: Path) -> ExperimentConfig:
    """``config`` with the keys of the YAML file at ``path`` applied on top."""
    data = _read_yaml(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of config sections, got {data!r}")

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


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` as YAML that :func:`load_config` reads back to an equal object."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
