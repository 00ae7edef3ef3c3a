#!/usr/bin/env python3
"""Every table of the paper in one resumable workflow: pre-training with and without the intra-modality
loss, then every study on the right encoder; writes results/paper.md. Run it again to continue.

    python sweeps/reproduce.py                  # the toy world, this laptop
    python sweeps/reproduce.py --preset paper   # the paper's setting (real data, a GPU cluster)
"""

import sys

from clip2point.sweep.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
