"""Shared fixtures: ``device`` runs a test on the CPU and, where one is present, on CUDA too."""

import pytest
import torch

from tests.tiny_clip import tiny_bundle, tiny_name  # noqa: F401  (fixtures for every test folder)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)
