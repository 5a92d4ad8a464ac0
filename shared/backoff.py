"""How a writer that lost a race waits before trying again (turns, answers, group writes), and
the one retry rule every ETag-conditional write goes through."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from itertools import count
from typing import TypeVar

from shared.clock import Clock

T = TypeVar("T")

# The pause between attempts, injected (tests never sleep).
Sleep = Callable[[float], Awaitable[None]]

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
    sleep: Sleep,
    attempts: int | None = None,
    within_s: float | None = None,
    clock: Clock | None = None,
) -> T:
    """Run ``attempt(n)`` for n = 0, 1, ... until it returns; between attempts that raised
    :class:`LostRace`, a jittered backoff pause through the injected ``sleep``. Each caller
    names its own limit, one of:

    - ``attempts``: at most that many attempts (a request a user waits for: a 503 soon);
    - ``within_s`` (with ``clock``): no new attempt once an attempt lost its race more than
      ``within_s`` after the first began (what must not be given up for contention, such as
      storing an answer the model has produced, bounded only for a pathological case).

    Raises :class:`RetriesExhausted` past the limit; any other exception ends the loop as is."""
    if (attempts is None) == (within_s is None) or (within_s is not None and clock is None):
        raise ValueError("Name one limit: attempts, or within_s with a clock.")
    started = clock.now() if clock is not None else None

    def out_of_time() -> bool:
        if clock is None or started is None or within_s is None:
            return False
        return (clock.now() - started).total_seconds() > within_s

    for n in count():
        if attempts is not None and n >= attempts:
            break
        try:
            return await attempt(n)
        except LostRace as lost:
            if out_of_time():
                break
            if lost.pause:
                await sleep(backoff_delay(n))
    raise RetriesExhausted()
