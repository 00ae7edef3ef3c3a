"""benchmarks/gpu_check.py: its CPU fallback end to end (the GPU run's code paths with a tiny ViT: the
step in micro batches and fed stored features equal to one pass), failing steps and parts recorded while the
others report, and the boundary margin of its device comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clip2point.paths import project_root
from clip2point.render import DepthRenderer
from tests.tiny_clip import write_tiny_clip

BENCHMARKS = project_root() / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the script's own imports (_timing, render, pretrain_throughput)
import gpu_check  # noqa: E402

FRONT = [torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0])]  # azim, elev, dist: camera on +z


def run_check(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(project_root())}
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--out", str(out), *args]
    return subprocess.run(command, cwd=project_root(), env=env, capture_output=True, text=True, timeout=800)


def step_losses(report: str) -> dict[str, float]:
    """Part 2's rows: setting -> the loss after the steps (the last column)."""
    part = report.split("## 2. The pre-training step")[1].split("## ")[0]
    rows = [r.split(" | ") for r in part.splitlines() if r.startswith("| ") and not r.startswith("| setting")]
    return {r[0][2:]: float(r[-1].rstrip(" |")) for r in rows if not r[1].startswith("---")}


@pytest.mark.slow
@pytest.mark.ray
def test_cpu_fallback_runs_every_part_and_writes_the_report(tmp_path, toy_world):
    gpu_md = project_root() / "results" / "gpu.md"
    before = gpu_md.read_bytes() if gpu_md.exists() else None
    out = tmp_path / "report" / "gpu.md"
    result = run_check(out, "--model", write_tiny_clip(tmp_path / "clip"), "--toy-root", str(toy_world))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for step in ("1. Rendering", "2. The pre-training step", "3. Ray Train", "report written to"):
        assert step in result.stdout  # progress, as it happens
    report = out.read_text()
    assert report.startswith("# GPU check (CPU fallback)") and "outcome: every check passed" in report
    assert f"--device cpu --out {out}" in report and "torch 2." in report
    rows = report.splitlines()
    for settings in gpu_check.SETTINGS:  # CPU against CPU: identical
        row = next(r for r in rows if r.startswith(f"| {settings.label()} | "))
        assert "| 0 | 0.00e+00 | 0.00e+00 |" in row and row.endswith("| ok |")
    # the same step computed three ways from the same weights: in one pass, in micro batches with cached
    # gradients, fed the image encoder's stored output; bf16 autocast moves the loss
    losses = step_losses(report)
    assert list(losses) == ["fp32", "bf16", "fp32, micro batch 2", "fp32, stored image features"]
    assert losses["fp32, micro batch 2"] == pytest.approx(losses["fp32"], rel=1e-5)
    assert losses["fp32, stored image features"] == pytest.approx(losses["fp32"], rel=1e-5)
    assert losses["bf16"] != pytest.approx(losses["fp32"], rel=1e-5)
    assert "Micro batch 2 against one pass of 4 (fp32): peak " in report
    # the same seeds on the same device twice: Ray Train pre-training and few-shot exactly equal
    assert "relative difference 0.00e+00" in report and "0 test sample(s) apart" in report
    assert report.count("| pre-training, Ray Train | cpu | loss after the epoch ") == 2
    assert report.count("feature cache entries") == 2
    assert (gpu_md.read_bytes() if gpu_md.exists() else None) == before  # never written by the fallback


@pytest.mark.slow
def test_failing_steps_are_recorded_and_the_other_parts_still_report(tmp_path):
    out = tmp_path / "gpu.md"
    result = run_check(out, "--parts", "step,render", "--model", "NoSuchModel")
    assert result.returncode == 1
    report = out.read_text()
    assert "outcome: 4 FAILED: pre-training step fp32: runs; pre-training step bf16: runs" in report
    failed = report.split("## 2. The pre-training step")[1].split("## ")[0]
    assert failed.count("failed: ") == 4 and "NoSuchModel" in failed
    rendering = report.split("## 1. Rendering")[1]
    assert rendering.count("| ok |") == len(gpu_check.SETTINGS)


def test_a_failed_part_is_reported_with_its_traceback():
    report = gpu_check.Report("python gpu_check.py", ["- device: none"], torch.device("cpu"))
    report.parts["render"] = gpu_check.Part("rendered\n", [("rendering: agrees", True)])
    report.failures["step"] = "Traceback (most recent call last):\nRuntimeError: out of memory"
    report.seconds |= {"render": 1.0, "step": 2.0}
    text = report.markdown(3.0)
    assert report.failed() == ["part step"] and "- wall time 3 s; outcome: 1 FAILED: part step" in text
    step = text.split("## 2. The pre-training step")[1]
    assert step.startswith(": fp32, bf16, micro batches, stored image features (2 s)")
    assert (
        "This part failed:\n\n```\nTraceback (most recent call last):\nRuntimeError: out of memory\n```"
        in step
    )
    assert "## 3." not in text  # a part that did not run has no section


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.md", "--parts", "render,warp"], "--parts: unknown warp; allowed: render, step, train"),
        ([], "--out is required without CUDA (results/gpu.md holds GPU figures only)"),
        (
            ["--out", "x.md", "--toy-root", "data"],
            "--toy-root data: not a toy world of this version of the code",
        ),
        (  # named toy, but no manifest of this version there
            ["--out", "x.md", "--toy-root", "nowhere/toy"],
            "--toy-root nowhere/toy: not a toy world of this version of the code",
        ),
    ],
)
def test_bad_arguments_are_refused(args, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", *args])
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main()
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_boundary_distance_by_hand():
    """Front view at S=64: a point at (x, y, z) lands at column u = 32 (1 + x) - 0.5, row
    v = 32 (1 - y) - 0.5, depth 1 - z."""
    points = torch.tensor([[[-0.359375, 0.1, 0.0], [-0.35, 0.1, 0.0], [-0.339375, 0.109375, 0.0]]])
    square = DepthRenderer(64, footprint="square", dilation=2)
    # u = 20 (on a boundary) | u = 20.3, v = 28.3 | u = 20.64, v = 28
    torch.testing.assert_close(gpu_check.boundary_distance(square, points, FRONT), torch.tensor([[0.0, 0.3, 0.0]]),
                               atol=1e-5, rtol=0)  # fmt: skip
    disk = DepthRenderer(64, footprint="disk", radius=0.02)  # 0.64 px: pixel centres 0.64 px away are on it
    # nearest pixel centres to the circle: (20, 29) 0.7 px away | (21, 28) sqrt(0.58) px | (20, 28) 0.64 px
    expected = [[0.7 - 0.64, 0.58**0.5 - 0.64, 0.0]]
    torch.testing.assert_close(gpu_check.boundary_distance(disk, points, FRONT), torch.tensor(expected),
                               atol=1e-5, rtol=0)  # fmt: skip
    moved, count = gpu_check.off_boundaries(square, points, FRONT)
    assert count == 2 and torch.equal(moved, points[:, [1, 1, 1]])  # both replaced by the safe point


def test_compare_devices_counts_what_differs():
    renderer = DepthRenderer(64, footprint="square", dilation=2)
    points = torch.tensor([[[-0.35, 0.1, 0.0], [0.2, -0.3, 0.4]]])
    same = gpu_check.compare_devices(renderer, points, FRONT, torch.device("cpu"))
    assert same == {"coverage": 0, "covered": 8, "depth": 0.0, "image": 0.0}  # 2 points x 2 x 2 pixels
    # a device render that differs: one pixel covered on the CPU only, one on the device only, one depth
    # 0.25 apart (the background's 0.0 difference at the first two does not count), one image value 0.5
    cpu_raw = renderer.raw_depth(points, *FRONT)
    dev_raw = cpu_raw.clone()
    covered = (cpu_raw != gpu_check.BACKGROUND_RAW).nonzero().tolist()
    dev_raw[tuple(covered[0])] = gpu_check.BACKGROUND_RAW
    dev_raw[0, 0, 0, 0] = 0.5
    dev_raw[tuple(covered[1])] += 0.25
    images = renderer(points, *FRONT)
    moved = images.clone()
    moved[0, 0, 1, 5, 7] -= 0.5
    found = gpu_check.differences(cpu_raw, dev_raw, images, moved)
    assert found == {"coverage": 2, "covered": 8, "depth": pytest.approx(0.25), "image": pytest.approx(0.5)}
