"""Build the synthetic toy world (ModelNet10, ShapeNet55 + renders, ScanObjectNN formats) for offline demos."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="write the toy world's datasets under --out")
    build.add_argument("--out", required=True, help="output folder, e.g. data/toy")
    build.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same bytes)")
    build.add_argument("--size", choices=("small", "default"), default="default", help="objects per class")


def run(args: argparse.Namespace) -> int:
    from clip2point.toy.world import build_toy_world

    manifest = build_toy_world(args.out, seed=args.seed, size=args.size)
    counts = ", ".join(f"{part} {tr}+{te}" for part, (tr, te) in manifest["per_class_train_test"].items())
    print(
        f"toy world (seed {args.seed}, size {args.size}) written to {args.out}; per class train+test: {counts}"
    )
    return 0
