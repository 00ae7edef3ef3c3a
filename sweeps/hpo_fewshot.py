#!/usr/bin/env python3
"""Run the hpo_fewshot study as a Ray Tune sweep tracked in MLflow (see clip2point/sweep/studies/hpo.py).

    python sweeps/hpo_fewshot.py                                   # toy world, this laptop
    python sweeps/hpo_fewshot.py --config sweeps/hpo_fewshot.paper.yaml     # the paper's setting (real data, GPUs)
    python sweeps/hpo_fewshot.py --resume                          # continue an interrupted sweep

Writes results/hpo_fewshot.md and results/hpo_fewshot.png; `mlflow ui` in the project root shows the runs.
"""

import sys
from pathlib import Path

from clip2point.sweep.cli import main
from clip2point.sweep.studies.hpo import STUDY

if __name__ == "__main__":
    sys.exit(main(STUDY, Path(__file__).with_suffix(".yaml")))
