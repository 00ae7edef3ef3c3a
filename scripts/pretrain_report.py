#!/usr/bin/env python3
"""A pre-training run, epoch by epoch, as a Markdown table read back from its MLflow run.

    clip2point pretrain --name toy-default
    python scripts/pretrain_report.py --name toy-default --out results/pretrain_toy.md

The table: the loss and the zero-shot top-1 on the pre-training validation split and on the downstream
test set after every epoch (epoch 0: CLIP's image encoder before pre-training), the run's settings and wall
time, and the best-validation epoch that the saved depth encoder comes from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlflow import MlflowClient

from clip2point.tracking import resolve_tracking_uri

SETTINGS = (
    ("pretrain.num_workers", "Ray Train workers"),
    ("pretrain.use_gpu", "GPU"),
    ("pretrain.epochs", "epochs"),
    ("pretrain.batch_size", "global batch"),
    ("pretrain.optimizer", "optimiser"),
    ("pretrain.lr", "lr"),
    ("pretrain.restart_epochs", "cosine restart period (epochs)"),
    ("pretrain.intra", "intra-modality loss"),
    ("pretrain.sampling", "point sampling"),
    ("render.footprint", "footprint"),
    ("render.depth", "depth"),
    ("render.views", "views"),
    ("data.root", "data root"),
)


def find_run(client: MlflowClient, experiment: str, name: str):
    """The newest pre-training run called ``name`` in ``experiment``; exits with a message if there is none."""
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs(
            [found.experiment_id],
            f"tags.stage = 'pretrain' and attributes.run_name = '{name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found
        else []
    )
    if not runs:
        sys.exit(
            f"no pre-training run named {name!r} in MLflow experiment {experiment!r} at {client.tracking_uri}"
        )
    return runs[0]


def history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """``{epoch: value}`` of one metric."""
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def report(client: MlflowClient, run) -> str:
    """The Markdown text for ``run`` (an MLflow ``Run`` of ``clip2point pretrain``)."""
    params, metrics, run_id = run.data.params, run.data.metrics, run.info.run_id
    loss, val, test = (history(client, run_id, key) for key in ("loss_total", "val_acc", "test_acc"))
    eval_dataset = params.get("pretrain.eval_dataset", "test")
    minutes = ((run.info.end_time or run.info.start_time) - run.info.start_time) / 60_000
    best = int(metrics["best_epoch"])
    lines = [
        f"# Pre-training run `{run.info.run_name}`",
        "",
        f"- command: `clip2point pretrain --name {run.info.run_name}`; this file: "
        f"`python scripts/pretrain_report.py --name {run.info.run_name}`",
        "- settings: " + ", ".join(f"{label} `{params[key]}`" for key, label in SETTINGS if key in params),
        f"- MLflow run `{run_id}` ({run.info.status}), revision `{run.data.tags.get('git_revision', '?')[:12]}`, "
        f"host `{run.data.tags.get('host', '?')}`, wall time {minutes:.1f} min",
        "",
        f"| epoch | loss | zero-shot val (pre-training split, %) | zero-shot test ({eval_dataset}, %) |",
        "| --- | --- | --- | --- |",
    ]
    for epoch in sorted(set(val) | set(loss)):
        label = "0 (CLIP, before pre-training)" if epoch == 0 else str(epoch)
        cells = [f"{loss[epoch]:.4f}" if epoch in loss else "-"]
        cells += [f"{table[epoch]:.2f}" if epoch in table else "-" for table in (val, test)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Best validation epoch {best}: zero-shot on {eval_dataset} {test[0]:.2f}% before pre-training, "
        f"{metrics['best_test_acc']:.2f}% with the depth encoder of that epoch "
        f"({metrics['best_test_acc'] - test[0]:+.2f} points).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the run's name (clip2point pretrain --name)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    parser.add_argument("--experiment", default="clip2point", help="MLflow experiment (default: clip2point)")
    parser.add_argument("--out", type=Path, help="write the table here (default: print it)")
    args = parser.parse_args(argv)
    client = MlflowClient(resolve_tracking_uri(args.tracking_uri))
    text = report(client, find_run(client, args.experiment, args.name))
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
