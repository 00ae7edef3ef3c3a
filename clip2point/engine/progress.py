"""Pre-training progress on the driver: rank 0 hands each finished epoch, and each note for the user (a
damaged checkpoint skipped), over a Ray queue, so the driver can print one line per epoch and the notes
without forwarding the workers' own output (Ray's ``log_to_driver``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class EpochHooks:
    """What rank 0 calls after each epoch: put ``(epoch, metrics)`` on the driver's ``queue`` (the
    ``ray.util.queue.Queue`` of :func:`driver_progress`), then the run's own ``on_epoch_end`` (None or
    picklable); :meth:`note` puts a message for the user on the same queue."""

    queue: Any
    on_epoch_end: EpochCallback | None = None

    def note(self, text: str) -> None:
        """A message for the user, printed by the driver."""
        self.queue.put(text)

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        self.queue.put((epoch, dict(metrics)))
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch, metrics)


@contextmanager
def driver_progress(progress: EpochCallback | None, poll_s: float = 0.5) -> Iterator[Any]:
    """Yield a Ray queue whose items a driver thread hands on as they arrive: ``(epoch, metrics)`` to
    ``progress`` (if any), a note (a string) to this process's stderr; when the block ends, the rest are
    handed over and the queue is gone. The queue's actor lives on this process's node."""
    import ray
    from ray.util.queue import Empty, Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # On the driver's own node: a queue placed on a worker node would die with it, and a node loss is
    # what pre-training must survive.
    on_this_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": on_this_node})
    done = threading.Event()

    def drain() -> None:
        while True:
            try:
                item = queue.get(timeout=poll_s)
            except Empty:
                if done.is_set():
                    return
                continue
            if isinstance(item, str):
                print(item, file=sys.stderr, flush=True)
            elif progress is not None:
                progress(*item)

    thread = threading.Thread(target=drain, name="clip2point-progress", daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        done.set()
        thread.join()
        queue.shutdown()
