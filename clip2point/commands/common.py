"""Arguments the verbs share: ``--config``, ``--preset``, ``-o key=value``, and flags made from settings."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

from clip2point.config import ExperimentConfig, load_config, preset_names
from clip2point.schema import from_dict, parse_override


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config file (keys of clip2point.config)")
    parser.add_argument("--preset", choices=preset_names(), help="a shipped preset, applied before --config")
    parser.add_argument(
        "-o",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. -o render.dilation=4 (repeatable; values read as YAML)",
    )


def config_from_args(args: argparse.Namespace, **extra: Any) -> ExperimentConfig:
    """Defaults, then ``--preset``, then ``--config``, then each ``-o`` override, then ``extra`` (dotted
    keys set by a verb's own flags)."""
    overrides = dict(parse_override(text) for text in args.overrides) | extra
    return load_config(args.config, overrides, preset=args.preset)


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--<field>`` flag per field of settings dataclass ``cls``: its type, choices (``Literal``),
    default and help come from the dataclass, so the flags cannot drift from the settings."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        options: dict[str, Any] = {"default": getattr(defaults, f.name), "dest": f.name}
        if typing.get_origin(tp) is Literal:
            choices = typing.get_args(tp)
            options |= {"choices": choices, "type": type(choices[0])}
        else:
            options["type"] = tp
        help_text = f.metadata.get("help", "")
        options["help"] = f"{help_text} (default: %(default)s)".strip()
        parser.add_argument(f"--{f.name.replace('_', '-')}", **options)


def settings_from_args(args: argparse.Namespace, cls: type) -> Any:
    """The ``cls`` settings the flags of :func:`add_settings_arguments` chose (validated)."""
    return from_dict(cls, {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def format_accuracy(result: Any) -> str:
    """An :class:`~clip2point.engine.metrics.Accuracy` as text: one line per class, then overall and mean
    class accuracy (%)."""
    width = max(len(name) for name in result.per_class)
    lines = [f"  {name:<{width}}  {value:6.2f}%" for name, value in result.per_class.items()]
    lines.append(f"overall top-1: {result.overall:.2f}%   mean class accuracy: {result.mean_per_class:.2f}%")
    return "\n".join(lines)
