"""Numbers over seeds: mean, sample standard deviation, count and a Student-t confidence interval, for one
setting's results and for the paired difference of two settings run on the same seeds; and how results
keep each seed's value (``metric/seed<s>`` beside ``metric``, their mean) for both.

Accuracies are in percent; an interval is two-sided at ``level`` (0.95 by default) with ``n - 1`` degrees
of freedom, so it is wide for few seeds, as it should be. One value has no spread: its std is 0 and its
interval is undefined (NaN bounds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from clip2point.errors import InputError


@dataclass(frozen=True)
class Estimate:
    """``mean`` and sample ``std`` (ddof 1) of ``n`` values, and the ``level`` confidence interval
    ``[low, high]`` of the mean (Student t, ``n - 1`` degrees of freedom; NaN for ``n = 1``)."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    level: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN for ``n = 1``)."""
        return (self.high - self.low) / 2

    def format(self, digits: int = 2, signed: bool = False) -> str:
        """``"89.21 +- 0.58 (n=3; 95% CI 87.77 to 90.65)"``; one value has neither spread nor interval:
        ``"70.00 (n=1)"``. ``signed`` writes the mean with its sign (differences: ``"+2.33 +- ..."``)."""
        sign = "+" if signed else ""
        mean = f"{self.mean:{sign}.{digits}f}"
        if self.n == 1:
            return f"{mean} (n=1)"
        text = f"{mean} +- {self.std:.{digits}f} (n={self.n}"
        return text + f"; {self.level:.0%} CI {self.low:.{digits}f} to {self.high:.{digits}f})"


def estimate(values: Sequence[float], level: float = 0.95) -> Estimate:
    """The :class:`Estimate` of ``values`` (at least one, all finite)."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise InputError("no values to summarise: need at least one result")
    if not np.isfinite(array).all():
        raise InputError(f"cannot summarise non-finite values {array.tolist()}")
    if not 0 < level < 1:
        raise InputError(f"confidence level {level!r} must lie in (0, 1)")
    n, mean = int(array.size), float(array.mean())
    if n == 1:
        return Estimate(mean, 0.0, 1, math.nan, math.nan, level)
    from scipy.special import stdtrit  # Student's t quantile; imported here: trials and workers need none

    std = float(array.std(ddof=1))
    half = float(stdtrit(n - 1, (1 + level) / 2)) * std / math.sqrt(n)
    return Estimate(mean, std, n, mean - half, mean + half, level)


def paired_difference(
    first: Mapping[int, float], second: Mapping[int, float], level: float = 0.95
) -> Estimate:
    """The :class:`Estimate` of ``first[seed] - second[seed]`` over the seeds both settings ran: the paired
    comparison of two settings (each seed shares its data split and initialisation across settings, so
    the difference is far less noisy than the two means apart)."""
    common = sorted(set(first) & set(second))
    if not common:
        raise InputError(
            f"no seed in common between the two settings (seeds {sorted(first)} and {sorted(second)}): "
            "a paired difference needs both run on the same seeds"
        )
    return estimate([first[s] - second[s] for s in common], level)


SEED_KEY = "{name}/seed{seed}"


def seed_metrics(name: str, values: Mapping[int, float]) -> dict[str, float]:
    """``{name: mean, "name/seed<s>": value, ...}``: a metric over seeds with each seed's value kept, so
    tables can give intervals and paired differences (:mod:`clip2point.stats`)."""
    mean = sum(values.values()) / len(values)
    return {name: mean, **{SEED_KEY.format(name=name, seed=seed): value for seed, value in values.items()}}


def seed_values(metrics: Mapping[str, float], name: str) -> dict[int, float]:
    """The per-seed values of metric ``name`` that :func:`seed_metrics` stored (empty if none)."""
    prefix = f"{name}/seed"
    return {int(key[len(prefix) :]): value for key, value in metrics.items() if key.startswith(prefix)}
