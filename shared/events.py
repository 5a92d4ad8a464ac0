"""Analytics events: the one schema the emitter, the report and the workbook's queries share
(``docs/operations.md``, "Analytics").

Each model call made for a user (a turn's answer, a model-written title), each refused turn
(quota), each feedback change, each share view and each archival pass emits exactly one event.
An event holds only what a dashboard counts: a pseudonymous user id (``shared.audit.user_hash``),
a model name, token counts, latencies, an outcome, a rating. Never message text, a title, a
comment or an address: every string field is checked against a closed set of values or a narrow
pattern before anything is logged, so free text cannot get through by mistake.

An event is one log line ``parley_event {"event": name, ...}`` on the ``parley.events`` logger.
In Azure that logger alone is exported to Application Insights (``shared.telemetry``) with the
attribute ``microsoft.custom_event.name`` set, which makes it a row of ``customEvents`` named
``parley.<event>`` whose ``customDimensions`` are the fields: what the workbook's queries
(``infra/workbook/*.kql``) chart.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

log = logging.getLogger("parley.events")

EVENT_PREFIX: Final = "parley_event "
CUSTOM_EVENT_ATTRIBUTE: Final = "microsoft.custom_event.name"
CUSTOM_EVENT_NAMESPACE: Final = "parley."

USER_HASH = re.compile(r"^[0-9a-f]{16}$")
# Model and deployment names come from configuration or the provider, never from a user.
MODEL_NAME = re.compile(r"^[A-Za-z0-9._:/@+-]{1,128}$")


@dataclass(frozen=True)
class FieldSpec:
    """One field: its JSON type, and for strings what values it may take."""

    kind: type  # int, str or bool
    values: frozenset[str] | None = None  # a closed set of string values
    pattern: re.Pattern[str] | None = None  # or a narrow pattern
    nullable: bool = False

    def admits(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if self.kind is int:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if self.kind is bool:
            return isinstance(value, bool)
        if not isinstance(value, str):
            return False
        if self.values is not None:
            return value in self.values
        return self.pattern is not None and self.pattern.fullmatch(value) is not None


def _enum(*values: str, nullable: bool = False) -> FieldSpec:
    return FieldSpec(str, values=frozenset(values), nullable=nullable)


COUNT = FieldSpec(int)
USER = FieldSpec(str, pattern=USER_HASH)
MODEL = FieldSpec(str, pattern=MODEL_NAME)

TurnKind = Literal["answer", "title"]
Outcome = Literal["complete", "stopped", "failed", "quota"]
TURN_KINDS: Final = ("answer", "title")
OUTCOMES: Final = ("complete", "stopped", "failed", "quota")
RATINGS: Final = ("up", "down")

# The schema: every event's fields, all of them always present (None where nullable).
SCHEMA: Final[Mapping[str, Mapping[str, FieldSpec]]] = {
    # One model call for a user, or a turn refused before any (outcome "quota", zero tokens).
    "turn": {
        "user": USER,
        "kind": _enum(*TURN_KINDS),
        "model": MODEL,
        "promptTokens": COUNT,
        "cachedTokens": COUNT,
        "completionTokens": COUNT,
        "firstTokenMs": FieldSpec(int, nullable=True),  # None: no token came (or a title)
        "totalMs": COUNT,
        "outcome": _enum(*OUTCOMES),
    },
    # A rating set or cleared on an assistant message (rating None: cleared).
    "feedback": {
        "user": USER,
        "model": FieldSpec(str, pattern=MODEL_NAME, nullable=True),
        "rating": _enum(*RATINGS, nullable=True),
    },
    # A shared conversation opened by someone other than its owner (the owner's hash).
    "share_view": {"owner": USER},
    # One archival pass (shared/archive/sweep.py's summary, its counts only).
    "archive_run": {
        "moved": COUNT,
        "failed": COUNT,
        "skipped": COUNT,
        "resumed": COUNT,
        "retentionDeleted": COUNT,
        "durationMs": COUNT,
        "more": FieldSpec(bool),
        "dryRun": FieldSpec(bool),
    },
}


class LatencyTimer:
    """A model call's latencies in whole milliseconds, on a monotonic clock (wall-clock
    corrections must not make an answer look faster or slower)."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self._start = now()
        self.first_token_ms: int | None = None

    def _elapsed_ms(self) -> int:
        return max(0, round((self._now() - self._start) * 1000))

    def first_token(self) -> None:
        if self.first_token_ms is None:
            self.first_token_ms = self._elapsed_ms()

    def total_ms(self) -> int:
        return self._elapsed_ms()


class EventError(ValueError):
    """An event that does not fit the schema: a bug in the caller, never logged as sent."""


def check(event: str, fields: Mapping[str, Any]) -> None:
    """Raise ``EventError`` unless ``fields`` are exactly the event's fields, each admitted."""
    spec = SCHEMA.get(event)
    if spec is None:
        raise EventError(f"unknown event {event!r}")
    if set(fields) != set(spec):
        raise EventError(f"{event}: fields {sorted(fields)} are not {sorted(spec)}")
    for name, value in fields.items():
        if not spec[name].admits(value):
            # The field's name only: the value may be exactly what must not be logged.
            raise EventError(f"{event}: {name} is not admitted")


def line(event: str, fields: Mapping[str, Any]) -> str:
    """The event's log line (checked)."""
    check(event, fields)
    return EVENT_PREFIX + json.dumps({"event": event, **fields}, separators=(",", ":"))


def parse_line(text: str) -> tuple[str, dict[str, Any]] | None:
    """An event line back into (event, fields); None for any other line."""
    if not text.startswith(EVENT_PREFIX):
        return None
    data = json.loads(text[len(EVENT_PREFIX) :])
    event = data.pop("event")
    return event, data


def emit(event: str, **fields: Any) -> None:
    """Log one event. A schema violation is a bug: logged by name (never the values) and
    dropped, never the caller's error (an event must not fail a turn)."""
    try:
        text = line(event, fields)
    except EventError as exc:
        log.error("event_rejected %s", exc)
        return
    from shared.telemetry import ensure_configured

    ensure_configured()
    # The fields as record attributes too: the Azure exporter turns them into the custom
    # event's customDimensions (the JSON line is what local logs and tests read).
    extra: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    extra[CUSTOM_EVENT_ATTRIBUTE] = CUSTOM_EVENT_NAMESPACE + event
    log.info("%s", text, extra=extra)
