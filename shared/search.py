"""Search rules: what a phrase may be, the words it is matched by, and the snippet shown around
its first match.

What matches (docs/design.md, "Search, export, erasure"): a message or title matches when it
holds every word of the phrase, in any order, anywhere. A word is a run of letters and digits
(any script); case is folded, accents are not (``cafe`` does not find ``café``), and a word
matches whole words only (``bi`` does not find ``bicycle``). Both stores tokenize text this
way: Cosmos DB's full-text index (tools/cosmos/fulltext.mjs models it) and SQLite's FTS5
``unicode61`` tokenizer.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from shared.errors import InvalidRequest

PHRASE_MIN_CHARS, PHRASE_MAX_CHARS = 2, 200
SEARCH_WORDS_MAX = 16  # words of a phrase matched (each is one more term of the index lookup)
# A word: a run of letters and digits (``_`` is punctuation, as it is to both stores' tokenizers;
# combining marks separate words there too).
_WORD = re.compile(r"[^\W_]+")
SNIPPET_CHARS = 160
HITS_PER_SESSION = 3
SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX = 20, 50
SearchOrder = Literal["recent", "relevance"]
SEARCH_ORDERS: tuple[SearchOrder, ...] = ("recent", "relevance")
# A title names the whole conversation: a match there counts as this many matching messages.
TITLE_WEIGHT = 3


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
    if not words_of(phrase):
        raise InvalidRequest("q must contain a letter or a digit to search for.")
    return phrase


def scope_of(raw: str | None) -> bool | Literal["all"]:
    """``archived``: ``false`` (the default: active sessions), ``true`` (archived ones) or
    ``all`` (both, in one list)."""
    value = (raw or "false").lower()
    if value in ("true", "false"):
        return value == "true"
    if value == "all":
        return "all"
    raise InvalidRequest("archived must be true, false or all.")


def order_of(raw: str | None) -> SearchOrder:
    """``order``: ``recent`` (the default) or ``relevance``."""
    for order in SEARCH_ORDERS:
        if (raw or "recent") == order:
            return order
    raise InvalidRequest("order must be recent or relevance.")


def relevance(messages: int, title: bool) -> int:
    """A session's ``score`` for ``order=relevance``: how many of its messages hold every word
    of the phrase, plus ``TITLE_WEIGHT`` when its title does. The same on both stores (each
    counts the same matches), unlike a text-ranking function's score, which depends on the
    store's index statistics; ties go newest first."""
    return messages + (TITLE_WEIGHT if title else 0)


def words_of(phrase: str) -> list[str]:
    """The words a phrase is matched by: lower-case, each once, in order, at most 16. Only
    letters and digits, so they can stand as literals in a Cosmos DB query (whose full-text
    functions take literal terms) without any escaping."""
    words: list[str] = []
    for word in _WORD.findall(phrase.lower()):
        if word not in words:
            words.append(word)
    return words[:SEARCH_WORDS_MAX]


def snippet(text: str, phrase: str) -> str:
    """Up to 160 characters of ``text`` around the first case-insensitive match of ``phrase``,
    else of its first word standing whole in the text (its words match in any order), else its
    start (when the stores' case folding found a match Python's does not)."""
    match = re.search(re.escape(phrase), text, re.IGNORECASE)
    for word in words_of(phrase) if match is None else ():
        match = re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text, re.IGNORECASE)
        if match is not None:
            break
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
