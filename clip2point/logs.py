"""Readable output: other libraries' log chatter held back where clip2point says what matters itself."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_logger(name: str | None = None, level: int = logging.ERROR) -> Iterator[None]:
    """Raise logger ``name`` (None: the root logger) to ``level`` for the duration of the block."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
