"""K-shot selection: K samples per class, drawn reproducibly with a seed (few-shot adapter training), and
the validation split held out beside them for leak-free epoch selection."""

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


VAL_STREAM = 1  # seed-sequence word that sets the validation draw apart from the K-shot draw


def select_validation(
    labels: Sequence[int] | np.ndarray,
    train: Sequence[int] | np.ndarray,
    seed: int,
    *,
    per_class: int | None = None,
    fraction: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a validation split from a training pool: ``(train indices, validation indices)``, each
    int64 into ``labels (M,)``, ascending per class, class by class.

    Exactly one of ``per_class`` and ``fraction``: with ``per_class`` (K-shot training) the ``train``
    indices stay as they are and up to ``per_class`` samples of each class are drawn from the samples of
    ``labels`` not in ``train`` (all of them when fewer remain); with ``fraction`` (full supervision, ``train``
    the whole split) ``round(fraction * n_c)`` of each class's ``n_c`` training samples, at least 1 and at
    most ``n_c - 1``, move from ``train`` to validation (classes with one sample give none). Draws come from
    ``numpy.random.default_rng((seed, VAL_STREAM))``, apart from the K-shot draw of the same seed. No
    validation sample at all raises :class:`InputError`.
    """
    if (per_class is None) == (fraction is None):
        raise ValueError("select_validation takes exactly one of per_class and fraction")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    train = np.asarray(train, dtype=np.int64).reshape(-1)
    rng = np.random.default_rng((seed, VAL_STREAM))
    in_train = np.zeros(len(labels), dtype=bool)
    in_train[train] = True
    kept, held = [], []
    for c in np.unique(labels):
        if per_class is not None:
            pool = np.flatnonzero((labels == c) & ~in_train)
            held.append(np.sort(rng.choice(pool, size=min(per_class, len(pool)), replace=False)))
            continue
        members = np.flatnonzero((labels == c) & in_train)
        count = min(max(1, round(fraction * len(members))), len(members) - 1)
        chosen = np.sort(rng.choice(members, size=count, replace=False))
        held.append(chosen)
        kept.append(np.setdiff1d(members, chosen))
    val = np.concatenate(held) if held else np.zeros(0, np.int64)
    if len(val) == 0:
        how = (
            "no sample of the train split is left beside the K shots"
            if per_class
            else "every class has one sample"
        )
        raise InputError(f"validation split: {how}; nothing to select epochs on")
    return (train if per_class is not None else np.concatenate(kept)), val
