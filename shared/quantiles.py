"""Median and p95 in bounded memory: a fixed histogram of log-spaced buckets.

The operators' report (shared/report/) reads every stored answer's latency one page at a
time; keeping all the values to sort them would grow with the data. Instead each value falls in
one of a fixed number of buckets whose bounds grow by ``GROWTH`` (bucket ``i >= 1`` holds
``[GROWTH**(i-1), GROWTH**i)`` milliseconds; bucket 0 holds what is under 1 ms), and a quantile
is the geometric middle of the bucket holding the nearest-rank value (the ``ceil(q * n)``-th
smallest). Within a bucket every value is at most ``sqrt(GROWTH)`` times off that middle, so the
estimate is within ``RELATIVE_ERROR`` (2.5 %) of the true nearest-rank value, and within 1 ms
more for the rounding to whole milliseconds. Estimates are clamped to the smallest and largest
value seen (kept exactly), and values beyond ``MAX_MS`` (an hour: no answer takes that long)
share the last bucket: memory is ``BUCKETS`` counts whatever the number of answers.
"""

from __future__ import annotations

import math

GROWTH = 1.05
RELATIVE_ERROR = math.sqrt(GROWTH) - 1  # ~0.0247
MAX_MS = 3_600_000
BUCKETS = math.ceil(math.log(MAX_MS) / math.log(GROWTH)) + 1


def _bucket(ms: float) -> int:
    if ms < 1:
        return 0
    return min(1 + math.floor(math.log(ms) / math.log(GROWTH)), BUCKETS - 1)


class Histogram:
    """Counts of values (milliseconds) per log-spaced bucket; quantiles within RELATIVE_ERROR."""

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.count = 0
        self.low: int | None = None
        self.high: int | None = None

    def add(self, ms: int) -> None:
        self.counts[_bucket(ms)] += 1
        self.count += 1
        self.low = ms if self.low is None else min(self.low, ms)
        self.high = ms if self.high is None else max(self.high, ms)

    def quantile(self, q: float) -> int | None:
        """The nearest-rank ``q`` quantile (0 < q <= 1), estimated; None with no values."""
        if not self.count or self.low is None or self.high is None:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                middle = 0.0 if index == 0 else GROWTH ** (index - 0.5)
                return min(max(round(middle), self.low), self.high)
        return self.high  # not reached: the counts add up to ``count``
