"""Pre-training progress on the driver: rank 0 hands each finished epoch over a Ray queue, so the driver can
print one line per epoch without forwarding the workers' own output (Ray's ``log_to_driver``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class EpochHooks:
    """What rank 0 calls after each epoch: put ``(epoch, metrics)`` on the driver's ``queue`` (a
    ``ray.util.queue.Queue`` or None), then the run's own ``on_epoch_end`` (None or picklable)."""

    queue: Any = None
    on_epoch_end: EpochCallback | None = None

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.queue is not None:
            self.queue.put((epoch, dict(metrics)))
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch, metrics)


@contextmanager
def driver_progress(progress: EpochCallback | None, poll_s: float = 0.5) -> Iterator[Any]:
    """Yield a Ray queue (None without ``progress``) whose items ``(epoch, metrics)`` a driver thread hands
    to ``progress`` as they arrive; when the block ends, the rest are handed over and the queue is gone."""
    if progress is None:
        yield None
        return
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})
    done = threading.Event()

    def drain() -> None:
        while True:
            try:
                item = queue.get(timeout=poll_s)
            except Empty:
                if done.is_set():
                    return
                continue
            progress(*item)

    thread = threading.Thread(target=drain, name="clip2point-progress", daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        done.set()
        thread.join()
        queue.shutdown()
