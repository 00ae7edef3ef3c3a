#!/usr/bin/env python3
"""K-shot top-1 (Table 2 and the K-shot curve): without and with pre-training.

A Ray Tune sweep tracked in MLflow; `python sweeps/table2_kshot.py --help` lists the options and examples."""

import sys

from clip2point.sweep.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
