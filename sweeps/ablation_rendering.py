#!/usr/bin/env python3
"""Depth rendering ablation (Table 5): zero-shot and K-shot top-1 (the paper: 16 shots; the toy setting: 2), CLIP
without pre-training.

A Ray Tune sweep tracked in MLflow; `python sweeps/ablation_rendering.py --help` lists the options and examples."""

import sys

from clip2point.sweep.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
