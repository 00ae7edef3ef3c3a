"""Prepare pre-training data: `data pack` stores clouds, frozen image features and cameras in shards.

Examples:
  clip2point data pack --out runs/packs/toy                            # the toy world, toy CLIP
  clip2point data pack --preset paper --root data --out s3://bucket/packs/shapenet55-vitb32
  clip2point data pack --layout generic --root my_renders --out gs://bucket/packs/mine
"""

from __future__ import annotations

import argparse

from clip2point.commands.common import add_config_arguments, config_from_args
from clip2point.registry import PACK_LAYOUTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    pack = actions.add_parser("pack", help="pack a pre-training data root (resumes an unfinished pack)")
    add_config_arguments(pack)
    pack.add_argument("--out", required=True, help="the pack's storage location: a folder, s3://, gs://")
    pack.add_argument("--root", help="data root (default: the config's data.root)")
    pack.add_argument(
        "--layout", choices=PACK_LAYOUTS, default="shapenet55", help="input layout (default %(default)s)"
    )
    pack.add_argument("--split", default="train", help="ShapeNet55 split list to pack (default %(default)s)")
    pack.add_argument("--shard-size", type=int, default=256, help="objects per shard (default %(default)s)")
    pack.add_argument("--gpu", action="store_true", help="one GPU per packing task")


def run(args: argparse.Namespace) -> int:
    import ray

    from clip2point.cluster import init_ray
    from clip2point.engine.pack import pack_dataset

    config = config_from_args(args)
    if not ray.is_initialized():
        init_ray(config.tracking.uri, include_dashboard=False)
    pack_dataset(config, args.out, layout=args.layout, root=args.root, split=args.split,
                 shard_size=args.shard_size, use_gpu=args.gpu)  # fmt: skip
    return 0
