"""shared/quantiles.py: the histogram's median and p95 are within the documented error of the
exact nearest-rank values, in fixed memory."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from shared.quantiles import BUCKETS, MAX_MS, RELATIVE_ERROR, Histogram


def exact(values: list[int], q: float) -> int:
    return sorted(values)[max(1, math.ceil(q * len(values))) - 1]


@given(st.lists(st.integers(min_value=0, max_value=MAX_MS), min_size=1, max_size=300))
def test_quantiles_are_within_the_documented_error(values: list[int]) -> None:
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    for q in (0.5, 0.95):
        want, got = exact(values, q), histogram.quantile(q)
        assert got is not None
        assert abs(got - want) <= want * RELATIVE_ERROR + 1, (q, want, got)


def test_memory_does_not_grow_with_the_values() -> None:
    histogram, rng = Histogram(), random.Random(7)
    values = [int(rng.lognormvariate(7, 1)) for _ in range(20_000)]
    for value in values:
        histogram.add(value)
    assert len(histogram.counts) == BUCKETS < 400
    median = histogram.quantile(0.5)
    assert median is not None and abs(median - exact(values, 0.5)) <= exact(values, 0.5) * 0.025


def test_no_values_no_quantile() -> None:
    assert Histogram().quantile(0.5) is None
