#!/usr/bin/env python3
"""Zero-shot top-1 (Table 1): CLIP vs the pre-trained depth encoder, and the pre-training data check.

A Ray Tune sweep tracked in MLflow; `python sweeps/table1_zeroshot.py --help` lists the options and examples."""

import sys

from clip2point.sweep.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script(__file__))
