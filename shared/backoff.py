"""How a writer that lost a race waits before trying again (turns, answers, group writes)."""

from __future__ import annotations

import random

# Randomised exponential pauses between attempts: first ~10 ms, at most this long.
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.01, 0.5


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with jitter ("equal jitter": between half and all of the step), so
    writers that lost the same race try again at different moments."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (spreading retries, not secrets)
