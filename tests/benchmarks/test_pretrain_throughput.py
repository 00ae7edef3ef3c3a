"""benchmarks/pretrain_throughput.py: micro batches compared side by side, each in its own process (the toy
CLIP, on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clip2point.paths import project_root


@pytest.mark.slow
def test_micro_batches_are_measured_side_by_side_with_ratios():
    env = os.environ | {"PYTHONPATH": str(project_root())}
    command = [sys.executable, str(project_root() / "benchmarks" / "pretrain_throughput.py"), "--model", "ToyCLIP",
               "--pretrained", "toy", "--batch", "4", "--micro-batch", "4", "1", "--points", "64", "--steps", "1",
               "--warmup", "0", "--device", "cpu"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert sum(line.startswith("ToyCLIP (toy) S=112 batch=4") for line in lines) == 2  # one process each
    assert [line.split()[:4] for line in lines if line.startswith("stage")] == [
        ["stage", "(micro", "batch", "4)"], ["stage", "(micro", "batch", "1)"]
    ]  # fmt: skip
    table = lines[lines.index(next(line for line in lines if line.strip().startswith("micro batch"))) + 1 :]
    rows = [line.split() for line in table]
    assert [row[0] for row in rows] == ["4", "1"]
    assert rows[0][2] == "1.00" and rows[0][6:] == ["1.00x", "1.00x"]  # the first row is the reference
    for row in rows:  # samples/s; fixed, peak and step memory (MiB): measured, peak = fixed + step
        fixed, peak, step = (float(v.replace(",", "")) for v in row[3:6])
        assert float(row[1]) > 0 and fixed > 500 and step >= 0 and abs(peak - fixed - step) <= 1
