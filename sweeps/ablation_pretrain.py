#!/usr/bin/env python3
"""Run the ablation_pretrain study as a Ray Tune sweep tracked in MLflow (see clip2point/sweep/studies/pretrain.py).

    python sweeps/ablation_pretrain.py                                   # toy world, this laptop
    python sweeps/ablation_pretrain.py --config sweeps/ablation_pretrain.paper.yaml     # the paper's setting (real data, GPUs)
    python sweeps/ablation_pretrain.py --resume                          # continue an interrupted sweep

Writes results/ablation_pretrain.md and results/ablation_pretrain.png; `mlflow ui` in the project root shows the runs.
"""

import sys
from pathlib import Path

from clip2point.sweep.cli import main
from clip2point.sweep.studies.pretrain import STUDY

if __name__ == "__main__":
    sys.exit(main(STUDY, Path(__file__).with_suffix(".yaml")))
