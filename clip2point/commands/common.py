"""Arguments every experiment verb shares: ``--config``, ``--preset``, ``-o key=value`` overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from clip2point.config import ExperimentConfig, load_config, parse_override, preset_names


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


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """Defaults, then ``--preset``, then ``--config``, then each ``-o`` override."""
    overrides = dict(parse_override(text) for text in args.overrides)
    return load_config(args.config, overrides, preset=args.preset)
