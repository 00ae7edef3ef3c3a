"""Estimates over seeds: mean, std, n, the Student-t interval and paired differences, against hand values."""

from __future__ import annotations

import math

import pytest

from clip2point.errors import InputError
from clip2point.stats import estimate, paired_difference

T_975_DF2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables: 4.303)
T_975_DF4 = 2.7764451051977987  # ... with 4 degrees of freedom (tables: 2.776)


def test_estimate_of_three_seeds_by_hand():
    # mean 83; squared deviations 9, 1, 16 -> variance 26 / 2 = 13; std sqrt(13)
    e = estimate([80.0, 82.0, 87.0])
    half = T_975_DF2 * math.sqrt(13) / math.sqrt(3)  # = 8.95669...
    assert (e.mean, e.n) == (83.0, 3)
    assert e.std == pytest.approx(math.sqrt(13), rel=1e-9)
    assert (e.low, e.high) == (pytest.approx(83 - half, rel=1e-9), pytest.approx(83 + half, rel=1e-9))
    assert e.half_width == pytest.approx(8.95669, abs=1e-5)
    assert e.format() == "83.00 +- 3.61 (n=3; 95% CI 74.04 to 91.96)"


def test_estimate_of_five_seeds_and_other_levels():
    values = [89.0, 90.0, 91.0, 90.0, 90.0]  # mean 90, variance (1 + 0 + 1 + 0 + 0) / 4 = 0.5
    e = estimate(values)
    assert e.mean == 90.0 and e.std == pytest.approx(math.sqrt(0.5))
    assert e.half_width == pytest.approx(T_975_DF4 * math.sqrt(0.5) / math.sqrt(5), rel=1e-9)
    wider = estimate(values, level=0.99)
    assert wider.half_width > e.half_width and wider.format().count("99% CI") == 1


def test_one_value_has_no_interval_and_bad_input_is_refused():
    single = estimate([70.0])
    assert (single.mean, single.std, single.n) == (70.0, 0.0, 1)
    assert math.isnan(single.low) and math.isnan(single.high)
    assert single.format() == "70.00 (n=1)" and single.format(signed=True) == "+70.00 (n=1)"
    with pytest.raises(InputError, match="at least one result"):
        estimate([])
    with pytest.raises(InputError, match="non-finite"):
        estimate([1.0, math.nan])
    with pytest.raises(InputError, match="confidence level 1.5"):
        estimate([1.0, 2.0], level=1.5)


def test_paired_difference_over_common_seeds_by_hand():
    with_gate = {0: 90.0, 1: 92.0, 2: 91.0, 7: 50.0}
    without = {0: 88.0, 1: 91.0, 2: 87.0}
    # differences 2, 1, 4 (seed 7 has no partner): mean 7/3, variance ((-1/3)^2 + (-4/3)^2 + (5/3)^2) / 2 = 7/3
    d = paired_difference(with_gate, without)
    assert d.n == 3 and d.mean == pytest.approx(7 / 3)
    assert d.std == pytest.approx(math.sqrt(7 / 3))
    half = T_975_DF2 * math.sqrt(7 / 3) / math.sqrt(3)
    assert (d.low, d.high) == (pytest.approx(7 / 3 - half), pytest.approx(7 / 3 + half))
    # Paired is tighter than comparing the two means: the seeds' shared noise cancels.
    apart = estimate([90.0, 92.0, 91.0]).half_width + estimate([88.0, 91.0, 87.0]).half_width
    assert d.half_width < apart
    with pytest.raises(InputError, match=r"no seed in common .* \[0\] and \[1\]"):
        paired_difference({0: 1.0}, {1: 2.0})
