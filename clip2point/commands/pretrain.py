"""Pre-train a depth encoder (image-depth contrastive learning on Ray Train).

Prints a header, one line per epoch and the result; ``--verbose`` adds Ray's logs and the workers' output.
"""

from __future__ import annotations

import argparse
import os

from clip2point.commands.common import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--name", help="run name: folder under <storage>/pretrain and MLflow run name")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run --name from its last checkpoint"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also show Ray's logs and every worker's output"
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # a bad key fails here, before torch is imported
    from clip2point.engine.pretrain import run_pretraining  # makes the config ready to run (prepare)

    def progress(epoch: int, metrics: dict[str, float]) -> None:
        print(
            f"epoch {epoch}/{config.pretrain.epochs}: loss {metrics['loss_total']:.4f}, "
            f"val {metrics['val_acc']:.2f}%, test ({config.pretrain.eval_dataset}) {metrics['test_acc']:.2f}%, "
            f"{metrics['epoch_seconds']:.1f} s",
            flush=True,
        )

    if (
        not args.verbose
    ):  # MLflow's INFO notes (database tables created ...); read whenever it sets its loggers
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    result = run_pretraining(config, args.name, resume=args.resume, progress=progress, verbose=args.verbose)
    print(
        f"zero-shot {config.pretrain.eval_dataset} test: {result.baseline_test_acc:.2f}% before pre-training, "
        f"{result.best_test_acc:.2f}% at the best val epoch {result.best_epoch} "
        f"(val {result.baseline_val_acc:.2f}% -> {result.best_val_acc:.2f}%)\n"
        f"best depth encoder: {result.best_file}\nMLflow run {result.run_id} at {result.tracking_uri}"
    )
    return 0
