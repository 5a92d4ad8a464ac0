"""Search rules: what a phrase may be, the words it is matched by, and the snippet shown around
its first match.

What matches (docs/http.md, "Search"): a message or title matches when it holds every word of
the phrase, in any order, anywhere. A word is a run of letters and digits (any script); case
and accents are folded (``cafe`` finds ``Café`` and ``café`` finds ``cafe``), words are
stemmed as English (``run`` finds ``running``; ``shared/stemming.py``), and a word matches
whole words only (``bi`` does not find ``bicycle``). Both stores match this way: SQLite's FTS5
``porter unicode61 remove_diacritics 2`` tokenizer, and Cosmos DB's full-text index, which is
given each text's accent-folded copy as well (``folded_copy``: Azure documents stemming, not
folding accents, so Parley does not rely on it).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from shared.errors import InvalidRequest
from shared.stemming import stem

PHRASE_MIN_CHARS, PHRASE_MAX_CHARS = 2, 200
# Matching messages one search's lookup reads at most (bounds a phrase found everywhere).
SEARCH_SCAN_LIMIT = 10_000
SEARCH_WORDS_MAX = 16  # words of a phrase matched (each is one more term of the index lookup)
# A word: a run of letters and digits (``_`` is punctuation, as it is to both stores' tokenizers;
# combining marks other than the accents below separate words there too).
_WORD = re.compile(r"[^\W_]+")
# The combining accents FTS5's unicode61 tokenizer takes as part of a word and drops with
# ``remove_diacritics`` (its sqlite3Fts5UnicodeIsdiacritic, U+0300 to U+0331): the same set
# here and in tools/cosmos/fulltext.mjs.
ACCENTS = frozenset(
    chr(c)
    for c in range(0x300, 0x332)
    if (0x08029FDF >> (c - 0x300) if c < 0x320 else 0x000361F8 >> (c - 0x320)) & 1
)
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


# Where Unicode case folding (FTS5's) differs from lower case for a letter of a word.
_CASE_FOLDS = {"ſ": "s", "ς": "σ"}  # noqa: RUF001 (long s, final sigma)


def _fold_char(char: str) -> str:
    """One character lower-cased and without its accents: a Latin letter with accents becomes
    its base letter (``é``, ``ệ``, ``İ``), a combining accent disappears, anything else (``ø``,
    ``ß``, Cyrillic ``й``, Greek ``ά``) stays, as FTS5's ``remove_diacritics 2`` folds."""
    out = []
    for low in char.lower():
        low = _CASE_FOLDS.get(low, low)
        parts = unicodedata.normalize("NFD", low)
        if (
            len(parts) > 1
            and all(part in ACCENTS for part in parts[1:])
            and unicodedata.name(low, "").startswith("LATIN")
        ):
            low = parts[0]
        if low not in ACCENTS:
            out.append(low)
    return "".join(out)


def fold(text: str) -> str:
    """Text lower-cased and without accents (``_fold_char``), as both stores index it."""
    return "".join(_fold_char(char) for char in text)


def folded_copy(text: str) -> str | None:
    """What a Cosmos DB item carries beside a text for the full-text index: its folded form,
    or None when folding changes nothing but case (the index folds case itself)."""
    folded = fold(text)
    return None if folded == text.lower() else folded


def words_of(phrase: str) -> list[str]:
    """The words a phrase is matched by: folded (``fold``), each once, in order, at most 16.
    Only letters and digits, so they can stand as literals in a Cosmos DB query (whose
    full-text functions take literal terms) without any escaping. Not stemmed: each store's
    index stems the words it is given."""
    words: list[str] = []
    for word in _WORD.findall(fold(phrase)):
        if word not in words:
            words.append(word)
    return words[:SEARCH_WORDS_MAX]


def terms_of(text: str) -> set[str]:
    """The index terms of a text: the stems of its folded words, as both stores index it."""
    return {stem(word) for word in _WORD.findall(fold(text))}


def holds_all(text: str, phrase: str) -> bool:
    """Whether ``text`` holds every word of ``phrase`` (for what a store does not index)."""
    return {stem(word) for word in words_of(phrase)} <= terms_of(text)


def _first_match(text: str, phrase: str) -> tuple[int, int] | None:
    """Where ``phrase`` first stands in ``text`` with case and accents folded, else the first
    word of the text whose stem is one of the phrase's (its words match in any order), as
    (start, end) in ``text``; None when neither is there."""
    # The folded text, and for each of its characters the index of the one it came from.
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        for out in _fold_char(char):
            folded.append(out)
            origin.append(index)
    flat = "".join(folded)

    def span(start: int, end: int) -> tuple[int, int]:
        return origin[start], origin[end - 1] + 1

    whole = fold(phrase).strip()
    at = flat.find(whole) if whole else -1
    if at >= 0:
        return span(at, at + len(whole))
    stems = {stem(word) for word in words_of(phrase)}
    for word in _WORD.finditer(flat):
        if stem(word.group()) in stems:
            return span(word.start(), word.end())
    return None


def snippet(text: str, phrase: str) -> str:
    """Up to 160 characters of ``text`` around the first match of ``phrase`` (case and
    accents folded), else of the first word that matched one of its words (by stem: they
    match in any order), else its start (a store's tokenizer found a match Parley's rules
    do not: a rare letter folded differently)."""
    match = _first_match(text, phrase)
    if match is None or len(text) <= SNIPPET_CHARS:
        return text[:SNIPPET_CHARS]
    match_start, match_end = match
    room = max(SNIPPET_CHARS - (match_end - match_start), 0)
    start = max(0, min(match_start - room // 2, len(text) - SNIPPET_CHARS))
    window = text[start : start + SNIPPET_CHARS]
    # Whole words at the edges where that costs little of the window.
    if start > 0 and " " in window[: room // 4]:
        window = window[window.index(" ") + 1 :]
    if start + SNIPPET_CHARS < len(text) and " " in window[-(room // 4) or len(window) :]:
        window = window[: window.rindex(" ")]
    return window
