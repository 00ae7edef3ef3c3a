"""Zero-shot classification of a dataset's depth maps with CLIP or a pre-trained depth encoder.

Examples:
  clip2point zeroshot                                        # toy ModelNet10, toy CLIP, official rendering
  clip2point zeroshot --encoder runs/pretrain/<run>/best_depth_encoder.safetensors
  clip2point zeroshot --encoder s3://<bucket>/clip2point/pretrain/<run>/best_depth_encoder.safetensors
  clip2point zeroshot --encoder runs:/<MLflow run id>/checkpoints/best_depth_encoder.safetensors
  clip2point zeroshot --preset paper -o data.dataset=scanobjectnn_obj_bg -o render.views=6
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clip2point.commands.common import add_config_arguments, config_from_args, format_accuracy
from clip2point.paths import is_remote


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_arguments(parser)
    parser.add_argument(
        "--encoder",
        help="pre-trained depth encoder (our .safetensors or the authors' best_eval.pth): a local file, a "
        "storage URI (s3://, gs://) or an MLflow artefact (runs:/<run id>/<path>); sets model.depth_encoder; "
        "default: CLIP's visual encoder",
    )
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--out", type=Path, help="folder for confusion.png and views.png")
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def run(args: argparse.Namespace) -> int:
    encoder = {}
    if args.encoder:
        remote = is_remote(args.encoder)
        encoder["model.depth_encoder"] = args.encoder if remote else str(Path(args.encoder).resolve())
    config = config_from_args(args, **encoder)  # a bad key fails here, before torch is imported
    from clip2point.engine.context import Experiment
    from clip2point.engine.zeroshot import run_zero_shot
    from clip2point.prepare import prepare

    config = prepare(config)
    result = run_zero_shot(
        Experiment.from_config(config), split=args.split, out_dir=args.out, track=not args.no_track
    )
    print(
        f"zero-shot on {config.data.dataset} ({args.split}, {result.num_samples} samples, {config.render.views} views)"
    )
    print(format_accuracy(result))
    return 0
