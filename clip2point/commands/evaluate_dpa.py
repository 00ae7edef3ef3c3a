"""Evaluate a Dual-Path Adapter checkpoint (the authors' best_test.pth or its conversion) on a test split.

Examples:
  clip2point evaluate-dpa best_test.pth --preset official-eval     # as the authors' `fewshot.py --eval`
  clip2point evaluate-dpa dpa.safetensors --preset official-eval -o data.dataset=modelnet40 \\
      -o data.num_points=1024                                        # on points sampled from the meshes

The checkpoint fixes the view count (10 for the authors' file); the config gives the backbone (its text
encoder scores the prompts), the dataset, the rendering and the precision. The official-eval preset is the
authors' setting: ViT-B-32 with OpenAI's weights, ModelNet40_Ply with every point, fp32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clip2point.commands.common import add_config_arguments, config_from_args, format_accuracy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "checkpoint", type=Path, help="best_test.pth (the authors') or import-official --kind dpa output"
    )
    add_config_arguments(parser)
    parser.add_argument("--split", default="test", choices=("train", "test"))


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # a bad key fails here, before torch is imported
    from clip2point.engine.context import Experiment
    from clip2point.engine.dpa import evaluate_dpa
    from clip2point.models import load_dpa
    from clip2point.prepare import prepare

    experiment = Experiment.from_config(prepare(config))
    classifier = load_dpa(experiment.bundle, args.checkpoint)
    result = evaluate_dpa(experiment, classifier, split=args.split)
    views = classifier.adapter.depth_adapter.views
    print(f"DPA {args.checkpoint.name} on {experiment.config.data.dataset} ({args.split}, {views} views)")
    print(format_accuracy(result))
    return 0
