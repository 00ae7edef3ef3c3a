"""Shared fixtures: ``device`` (the CPU, and CUDA where present), the tiny CLIP, a local Ray session, and a
loopback S3 server with a fresh bucket per test (``s3_server``, ``open_s3_server``, ``bucket``)."""

import pytest
import torch

from tests.s3_server import bucket, open_s3_server, s3_server  # noqa: F401  (fixtures for every test folder)
from tests.tiny_clip import tiny_bundle, tiny_name  # noqa: F401

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray instance with 2 CPUs for the tests of one module, shut down after them."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
