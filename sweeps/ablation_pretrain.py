#!/usr/bin/env python3
"""Pre-training ablation: zero-shot top-1 with and without the intra-modality loss.

A Ray Tune sweep tracked in MLflow; `python sweeps/ablation_pretrain.py --help` lists the options and examples."""

import sys

from clip2point.sweep.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
