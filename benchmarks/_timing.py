"""What the benchmarks share: timing that waits for the device, synthetic clouds, peak memory."""

from __future__ import annotations

import ctypes
import gc
import resource
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued so far (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once ``device`` has caught up: a stage boundary."""
    synchronize(device)
    return time.perf_counter()


def best_seconds(call: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``call()``, each timed until the device has finished it."""
    best = float("inf")
    for _ in range(repeats):
        start = clock(device)
        call()
        best = min(best, clock(device) - start)
    return best


def unit_ball_clouds(batch: int, points: int, seed: int = 0) -> torch.Tensor:
    """``(batch, points, 3)`` float32 points uniform in the unit ball, on the CPU, seeded."""
    gen = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(batch, points, 3, generator=gen), dim=-1)
    return directions * torch.rand(batch, points, 1, generator=gen) ** (1 / 3)


def peak_rss_mib() -> float:
    """The process's peak resident set so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resident_mib(field: str = "VmRSS") -> float:
    """A line of ``/proc/self/status`` in MiB: ``VmRSS`` (resident now) or ``VmHWM`` (its peak). Linux."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def reset_peak_resident() -> float:
    """Free what Python and the C allocator hold without using it (``gc``, ``malloc_trim``), then restart
    the peak resident set (``VmHWM``) from the current one; returns that, MiB. Linux (glibc)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return resident_mib()
