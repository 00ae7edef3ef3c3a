#!/usr/bin/env python3
"""Run the ablation_rendering study as a Ray Tune sweep tracked in MLflow (see clip2point/sweep/studies/rendering.py).

    python sweeps/ablation_rendering.py                                   # toy world, this laptop
    python sweeps/ablation_rendering.py --config sweeps/ablation_rendering.paper.yaml     # the paper's setting (real data, GPUs)
    python sweeps/ablation_rendering.py --resume                          # continue an interrupted sweep

Writes results/ablation_rendering.md and results/ablation_rendering.png; `mlflow ui` in the project root shows the runs.
"""

import sys
from pathlib import Path

from clip2point.sweep.cli import main
from clip2point.sweep.studies.rendering import STUDY

if __name__ == "__main__":
    sys.exit(main(STUDY, Path(__file__).with_suffix(".yaml")))
