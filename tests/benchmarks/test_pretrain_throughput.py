"""benchmarks/pretrain_throughput.py: micro batches compared side by side (the toy CLIP, on the CPU)."""

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
    assert [line.split()[:4] for line in lines if line.startswith("stage")] == [
        ["stage", "(micro", "batch", "4)"], ["stage", "(micro", "batch", "1)"]
    ]  # fmt: skip
    table = lines[lines.index(next(line for line in lines if line.strip().startswith("micro batch"))) + 1 :]
    rows = [line.split() for line in table]
    assert [row[0] for row in rows] == ["4", "1"]
    assert rows[0][4:] == ["1.00", "1.00x", "1.00x"]  # the first row is the reference
    for row in rows:  # samples/s, peak and step memory (MiB) are measured, positive numbers
        assert float(row[1]) > 0 and float(row[2].replace(",", "")) > float(row[3].replace(",", "")) > 0
