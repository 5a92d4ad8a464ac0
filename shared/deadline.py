"""How long the current request may still wait on storage.

Every HTTP request gets ``STORE_TIMEOUT_S`` to spend on storage in all (SDK retries included);
the stores bound each call by what is left and answer 503 with Retry-After when it runs out, so
a hung or throttled store never holds a request near the Functions timeout. The bound travels
in a context variable: tasks started by the request (the answer's write) inherit it, and code
that starts a new phase of work (writing an answer after a long model call) opens a fresh one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("parley_store_deadline", default=None)


@contextmanager
def storage_budget(seconds: float) -> Iterator[None]:
    """Within this block, storage calls share ``seconds`` (monotonic time)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining(default: float) -> float:
    """Seconds left for storage in this context (``default`` when no budget is open), never
    more than ``default``; zero or less means the budget is spent."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return min(default, deadline - time.monotonic())
