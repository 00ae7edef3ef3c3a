"""``clip2point <verb>``: thin command-line front end; each verb lives in ``clip2point.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

from clip2point import __version__
from clip2point.errors import Clip2PointError

# verb -> module in clip2point.commands providing ``add_arguments(parser)`` and ``run(args) -> int``,
# plus a one-line module docstring used as the verb's help.
VERBS = {
    "render": "render",
    "import-official": "import_official",
    "zeroshot": "zeroshot",
    "toy": "toy",
    "data": "data",
    "pretrain": "pretrain",
    "fewshot": "fewshot",
    "evaluate-dpa": "evaluate_dpa",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clip2point", description=__doc__)
    parser.add_argument("--version", action="version", version=f"clip2point {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, module_name in VERBS.items():
        module = importlib.import_module(f"clip2point.commands.{module_name}")
        doc = (module.__doc__ or "").strip().splitlines()[0]
        verb_parser = sub.add_parser(verb, help=doc, description=module.__doc__)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except Clip2PointError as exc:
        print(f"clip2point {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
