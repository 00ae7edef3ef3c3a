#!/usr/bin/env python3
"""Fully supervised top-1 (Table 3): the GDPA trained on the whole train split.

A Ray Tune sweep tracked in MLflow; `python sweeps/table3_supervised.py --help` lists the options and examples."""

import sys

from clip2point.sweep.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
