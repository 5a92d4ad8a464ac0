"""Server-sent events as the API sends them (``docs/http.md``, "Streaming"): blocks split by a
blank line, each an ``event:`` line and a ``data:`` line of JSON; a block that is only a comment
(``: keep-alive``) is no event."""

from __future__ import annotations

import json
from typing import Any


def sse_events(text: str) -> list[tuple[str, Any]]:
    """The (name, data) of each event in a stream's text, keep-alive comments left out."""
    found: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def strict_sse_events(text: str) -> list[tuple[str, Any]]:
    """``sse_events`` for a stream that must hold events only, each exactly one ``event:`` line
    then one ``data:`` line: anything else fails the caller's test."""
    found: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: "), block
        found.append(
            (event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: ")))
        )
    return found
