#!/usr/bin/env python3
"""Adapter ablation (Table 4): K-shot top-1 of each part of the Gated Dual-Path Adapter.

A Ray Tune sweep tracked in MLflow; `python sweeps/ablation_adapter.py --help` lists the options and examples."""

import sys

from clip2point.sweep.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
