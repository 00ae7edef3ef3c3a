"""Convert the authors' released checkpoints (best_eval.pth, best_test.pth) to clip2point safetensors."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        help="official checkpoint: best_eval.pth (depth) or best_test.pth (dpa); a local file, a storage URI "
        "(s3://, gs://) or an MLflow artefact (runs:/<run id>/<path>)",
    )
    parser.add_argument("--out", required=True, help="where to write the converted .safetensors file")
    parser.add_argument(
        "--kind",
        choices=("depth", "dpa"),
        default="depth",
        help="depth: pre-trained depth encoder (best_eval.pth); dpa: few-shot adapter (best_test.pth)",
    )
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model the checkpoint was trained from")
    parser.add_argument("--views", type=int, default=10, help="number of views of a dpa checkpoint")


def run(args: argparse.Namespace) -> int:
    from clip2point.models.checkpoints import convert_official
    from clip2point.sources import local_file

    path = local_file(args.file)
    report, out = convert_official(path, args.out, args.kind, args.model, args.views)
    print(f"read {args.file}: {report.loaded} tensors loaded as {args.kind} ({args.model})")
    if report.balance is not None:
        print(f"balance s = {report.balance:.6g}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} keys not needed: {', '.join(report.skipped[:6])}")
    print(f"wrote {out}")
    return 0
