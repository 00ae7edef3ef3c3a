"""The small toy world, built once per test session (``toy_world``), and :func:`toy_overrides`: the one set of
smallest run settings on it (a tiny CLIP, 64 points, 6 views, 2 shots over 2 seeds, 1 pre-training epoch)
that the end-to-end tests of studies, sweeps and the reproduction start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clip2point.toy import build_toy_world


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory) -> Path:
    """The small toy world, seed 0, shared by the session: read only (a test that changes it copies it)."""
    root = tmp_path_factory.mktemp("toy_world") / "toy"
    build_toy_world(root, seed=0, size="small", progress=False)
    return root


def toy_overrides(world: Path, clip: str, work: Path) -> dict[str, Any]:
    """Config overrides for a run on ``world`` with the tiny CLIP ``clip`` (a ``model.name``), everything the
    run writes (feature cache, storage, results, the MLflow sqlite store) under ``work``."""
    return {
        "model.name": clip, "model.pretrained": None, "data.root": str(world), "data.num_points": 64,
        "render.views": 6, "fewshot.shots": 2, "fewshot.seeds": [0, 1], "fewshot.epochs": 2,
        "fewshot.batch_size": 8, "fewshot.feature_cache": str(work / "features"),
        "pretrain.epochs": 1, "pretrain.batch_size": 4, "pretrain.cpus_per_worker": 1,
        "pretrain.max_failures": 0, "storage": str(work / "storage"), "sweep.results_dir": str(work / "results"),
        "tracking.uri": f"sqlite:///{work / 'mlflow.db'}",
    }  # fmt: skip
