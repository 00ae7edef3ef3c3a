#!/usr/bin/env python3
"""Few-shot adapter hyper-parameter search (Optuna + ASHA).

A Ray Tune sweep tracked in MLflow; `python sweeps/hpo_fewshot.py --help` lists the options and examples."""

import sys

from clip2point.sweep.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
