#!/usr/bin/env python3
"""Run the ablation_adapter study as a Ray Tune sweep tracked in MLflow (see clip2point/sweep/studies/adapter.py).

    python sweeps/ablation_adapter.py                                   # toy world, this laptop
    python sweeps/ablation_adapter.py --config sweeps/ablation_adapter.paper.yaml     # the paper's setting (real data, GPUs)
    python sweeps/ablation_adapter.py --resume                          # continue an interrupted sweep

Writes results/ablation_adapter.md and results/ablation_adapter.png; `mlflow ui` in the project root shows the runs.
"""

import sys
from pathlib import Path

from clip2point.sweep.cli import main
from clip2point.sweep.studies.adapter import STUDY

if __name__ == "__main__":
    sys.exit(main(STUDY, Path(__file__).with_suffix(".yaml")))
