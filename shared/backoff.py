"""How a writer that lost a race waits before trying again (turns, answers, group writes), and
the one retry rule every ETag-conditional write goes through."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Randomised exponential pauses between attempts: first ~10 ms, at most this long.
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.01, 0.5


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with jitter ("equal jitter": between half and all of the step), so
    writers that lost the same race try again at different moments."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (spreading retries, not secrets)


class LostRace(Exception):
    """Raised by one attempt of :func:`retry_on_conflict` when what it read changed before its
    write (an ETag conflict, or a move seen midway): try again, after a backoff pause
    (``pause``) or at once (the state is known to have settled, e.g. a restore just ran).
    Only the attempt knows which of its failures are races, so it says so explicitly: any
    other exception, a store's ``ConcurrencyConflict`` included, is the caller's error."""

    def __init__(self, *, pause: bool = True) -> None:
        super().__init__("lost a race")
        self.pause = pause


class RetriesExhausted(Exception):
    """Every attempt lost its race; the caller says what that means (503, None, ...)."""


async def retry_on_conflict(
    attempt: Callable[[int], Awaitable[T]],
    *,
    attempts: int,
    sleep: Callable[[float], Awaitable[None]],
) -> T:
    """Run ``attempt(n)`` for n = 0, 1, ... until it returns, at most ``attempts`` times
    (each caller names its own limit); between attempts that raised :class:`LostRace`, a
    jittered backoff pause through the injected ``sleep``. Raises :class:`RetriesExhausted`."""
    for n in range(attempts):
        try:
            return await attempt(n)
        except LostRace as lost:
            if lost.pause:
                await sleep(backoff_delay(n))
    raise RetriesExhausted()
