"""Search rules: what a phrase may be, and the snippet shown around its first match."""

from __future__ import annotations

import re
import unicodedata

from shared.errors import InvalidRequest

PHRASE_MIN_CHARS, PHRASE_MAX_CHARS = 2, 200
SNIPPET_CHARS = 160
HITS_PER_SESSION = 3
SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX = 20, 50


def phrase_of(raw: str | None) -> str:
    """``q``: trimmed, 2 to 200 characters of text (no control characters: a search box has
    none, and no store can match them), matched as one phrase, never as syntax."""
    phrase = (raw or "").strip()
    if not PHRASE_MIN_CHARS <= len(phrase) <= PHRASE_MAX_CHARS:
        raise InvalidRequest(
            f"q must be {PHRASE_MIN_CHARS} to {PHRASE_MAX_CHARS} characters to search for."
        )
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in phrase):
        raise InvalidRequest("q must not contain control characters.")
    return phrase


def snippet(text: str, phrase: str) -> str:
    """Up to 160 characters of ``text`` around the first case-insensitive match of ``phrase``
    (its start when the stores' case folding found a match Python's does not)."""
    match = re.search(re.escape(phrase), text, re.IGNORECASE)
    if match is None or len(text) <= SNIPPET_CHARS:
        return text[:SNIPPET_CHARS]
    room = max(SNIPPET_CHARS - (match.end() - match.start()), 0)
    start = max(0, min(match.start() - room // 2, len(text) - SNIPPET_CHARS))
    window = text[start : start + SNIPPET_CHARS]
    # Whole words at the edges where that costs little of the window.
    if start > 0 and " " in window[: room // 4]:
        window = window[window.index(" ") + 1 :]
    if start + SNIPPET_CHARS < len(text) and " " in window[-(room // 4) or len(window) :]:
        window = window[: window.rindex(" ")]
    return window
