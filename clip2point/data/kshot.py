"""K-shot selection: K samples per class, drawn reproducibly with a seed (few-shot adapter training)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clip2point.errors import InputError


def select_k_shot(
    labels: Sequence[int] | np.ndarray,
    k: int,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Indices ``(C * k,)`` int64 into ``labels (M,)``: ``k`` distinct samples of every class, class by class.

    The classes are ``0 .. C-1`` with ``C = len(class_names)`` when names are given (so a class with no
    sample at all is an error too), else the distinct labels present. Within a class the ``k`` indices
    are drawn without replacement by ``numpy.random.default_rng(seed)`` and returned in ascending order.
    A class with fewer than ``k`` samples raises :class:`InputError` naming it.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if k < 1:
        raise InputError(f"k-shot: k must be >= 1, got {k}")
    classes = np.arange(len(class_names)) if class_names is not None else np.unique(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        if len(members) < k:
            name = f"{class_names[c]!r} (label {c})" if class_names is not None else f"label {c}"
            raise InputError(f"k-shot: class {name} has {len(members)} samples, fewer than k={k}")
        chosen.append(np.sort(rng.choice(members, size=k, replace=False)))
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
