"""Time, injectable: every rule that depends on 'now' asks a Clock, so tests can set it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """The system's time moved forward on demand: the local host's, so that an end-to-end test
    can let time pass (``POST /admin/clock``) without waiting for it. Never used in Azure."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)


class FixedClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)

    def set(self, when: datetime) -> None:
        self._now = when


def iso(when: datetime) -> str:
    """The API's time format: ISO 8601 UTC with milliseconds and a Z suffix."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def stored_time(when: datetime) -> str:
    """How stores keep times: fixed width, microseconds and Z, so text order is time order
    (the stores sort and compare these strings)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Either format above, back to an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
