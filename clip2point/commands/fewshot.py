"""Few-shot (or full) adapter training on frozen encoders, several seeds -> mean and std accuracy.

Examples:
  clip2point fewshot                                         # toy ModelNet10, toy CLIP, 16 shots, 3 seeds
  clip2point fewshot -o model.depth_encoder=runs/pretrain/<run>/best_depth_encoder.safetensors
  clip2point fewshot -o fewshot.adapter.path=single -o fewshot.adapter.fusion=none
  clip2point fewshot -o fewshot.shots=null                   # full training split
  clip2point fewshot --preset paper -o fewshot.seeds=[0,1,2,3,4]   # best test epoch, as the paper
  clip2point fewshot -o fewshot.selection=test                # the paper's protocol on the defaults

The reported epoch: by default the one with the best top-1 on a validation split held out of the train
split, with test evaluated once there (fewshot.selection=val); the paper's protocol, the best test epoch,
is fewshot.selection=test.

Per-view features of the frozen encoders are cached under fewshot.feature_cache (default
<project>/cache/features; -o fewshot.feature_cache=null recomputes them every epoch, same results).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clip2point.commands.common import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, help="folder for the confusion matrices (confusion_seed<s>.png)")
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # a bad key fails here, before torch is imported
    from clip2point.engine.context import Experiment
    from clip2point.engine.fewshot import format_table, run_few_shot
    from clip2point.prepare import prepare

    experiment = Experiment.from_config(prepare(config))
    fs = experiment.config.fewshot
    result = run_few_shot(experiment, out_dir=args.out, track=not args.no_track)
    shots = "all training samples" if fs.shots is None else f"{fs.shots} shots per class"
    print(
        f"few-shot on {experiment.config.data.dataset}: {shots}, {fs.epochs} epochs, adapter {fs.adapter.label()}"
    )
    print(f"depth path: {experiment.depth_encoder_label}; epoch {fs.protocol(detail=True)}")
    print(format_table(result))
    return 0
