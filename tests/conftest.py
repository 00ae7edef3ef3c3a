"""Shared fixtures: ``device`` (the CPU, and CUDA where present), the tiny CLIP, the small toy world, the
tests' local Ray (``ray_session``, ``no_ray``), and a loopback S3 server with a fresh bucket per test
(``s3_server``, ``open_s3_server``, ``bucket``); for every test, a check that it did not build the default
toy world in the checkout (``no_default_toy_world_built``)."""

import os
import sys
from pathlib import Path

import pytest
import torch

from tests.s3_server import bucket, open_s3_server, s3_server  # noqa: F401  (fixtures for every test folder)
from tests.tiny_clip import tiny_bundle, tiny_clip_dir, tiny_name  # noqa: F401
from tests.toy_setup import toy_world  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Ray Train's controller steps its state machine once per health-check interval (2 s by default), so each
# run waits between the steps of its start-up and at its end. Every Ray process the suite starts (local,
# multi-node, the CLI's) inherits this; set the variable to compare, e.g. the tie test's one 2-epoch run:
# RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=2 pytest tests/engine/test_pretrain_ray.py --durations=1 (18 s vs 15 s).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


@pytest.fixture(autouse=True)
def no_default_toy_world_built():
    """Every test runs on worlds of its own: none may build the default toy world (``data/toy``) in this
    checkout, as a run with the default ``data.root`` does (half a minute, and a clean clone has none)."""
    default = ROOT / "data" / "toy"
    existed = default.exists()
    yield
    if not existed and default.exists():
        pytest.fail(f"the default toy world appeared in {default} during this test: it, or a test running "
                    "beside it in the other pytest process, needs a data.root of its own")  # fmt: skip


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def ray_session():
    """The tests' local Ray instance (2 CPUs, no dashboard), shared: started by the first test that asks for
    it and kept for the session. Its workers import ``tests.*`` (this checkout on their ``PYTHONPATH``) and
    see the environment of the moment it started, not a test's later ``monkeypatch.setenv``. A test that
    needs another cluster shuts it down (``no_ray``, the multi-node cluster); the next one starts it again."""
    import ray

    if not ray.is_initialized():
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield


@pytest.fixture
def no_ray():
    """No Ray in this process when the test starts (the shared instance, if any, is shut down)."""
    import ray

    ray.shutdown()


def pytest_sessionfinish(session, exitstatus):
    """Shut the shared Ray down at the end, if a test started it."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
