"""A search across pages: its matches, looked up once and carried in the page token.

A search's expensive part is the index lookup of its words (``Store.search_matches``): it reads
every matching message. Page 1 does it, orders every match (``order_key``), shows the first
``limit``, and the page token carries the rest in order, so page 2 and after read only their own
sessions and messages, by id (``Store.search_page``), and never look the words up again.

A token travels in a URL, so it carries at most what fits there (``carry_room``: some 35 to 70
matches, compressed, as ``q`` leaves room). A search with more matches carries the first of
them and the sort key of the last one carried: the page that runs out of carried matches
looks the words up again and continues after that key (once per carried batch, not once per
page). Pages follow the order
of page 1's lookup (a snapshot): a session that changes meanwhile keeps its place, one deleted
or moved out of the searched containers is left out, so pages never repeat or skip a result.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.errors import InvalidRequest
from shared.search import SearchOrder
from shared.storage.base import WHERES, MatchedSession, Where

# The page token comes back in the next request's URL, which Azure Functions' HTTP trigger
# takes up to 4 KB long ("Limits" of its documentation): the carried state gets what the URL
# has left once the path, the other parameters (a margin for them) and the encoded ``q`` are
# counted, less the token's own wrapping (base64 once more, 4/3 of it, and a MAC).
URL_CHARS = 4096
URL_RESERVED = 256
TOKEN_WRAPPING = 48


def carry_room(phrase: str) -> int:
    """How many characters of carried state the page token of a search for ``phrase`` holds."""
    room = URL_CHARS - URL_RESERVED - len(quote(phrase, safe=""))
    return max(0, room * 3 // 4 - TOKEN_WRAPPING)


# An order key: (score, updated_at, session id), compared descending.
OrderKey = tuple[int, str, str]


@dataclass(frozen=True)
class Found:
    """One match and the container it was found in."""

    match: MatchedSession
    where: Where


def order_key(found: Found, order: SearchOrder) -> OrderKey:
    """Newest first, or by score then newest; ties by id. Descending."""
    score = found.match.score if order == "relevance" else 0
    return (score, found.match.updated_at, found.match.session_id)


def ordered(found: list[Found], order: SearchOrder, after: OrderKey | None = None) -> list[Found]:
    """Matches in order, each session once (one found in both containers moved between the
    lookups, which go active then archive: the later one is where it is now), and only those
    after ``after`` when given."""
    latest: dict[str, Found] = {}
    for entry in found:
        latest[entry.match.session_id] = entry
    entries = sorted(latest.values(), key=lambda e: order_key(e, order), reverse=True)
    if after is not None:
        entries = [e for e in entries if order_key(e, order) < after]
    return entries


@dataclass(frozen=True)
class SearchState:
    """What a page token carries: the next matches in order, and the key to look up after
    once they run out (None: nothing beyond them)."""

    pending: list[Found]
    resume: OrderKey | None


def _pack(state: SearchState) -> str:
    entries = [
        [f.match.session_id, WHERES.index(f.where), f.match.score, f.match.updated_at, f.match.seqs]
        for f in state.pending
    ]
    raw = json.dumps({"p": entries, "r": state.resume}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def encode_state(
    rest: list[Found], order: SearchOrder, beyond: OrderKey | None, room: int
) -> str | None:
    """The position after a page: the rest of the matches in order, as many as fit in
    ``room`` characters (one at least), and where to look up once they run out (``beyond``:
    matches after ``rest`` not looked up yet, from an earlier page's token). None when
    nothing follows."""
    if not rest:
        return None if beyond is None else _pack(SearchState([], beyond))
    count = len(rest)
    while True:
        carried = rest[:count]
        resume = order_key(carried[-1], order) if count < len(rest) else beyond
        packed = _pack(SearchState(carried, resume))
        if len(packed) <= room or count == 1:
            return packed
        count = max(1, count * room // len(packed) * 9 // 10)


def decode_state(position: str) -> SearchState:
    """A position ``encode_state`` made (the page token's MAC vouches for it); 400 otherwise."""
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(position + "=" * (-len(position) % 4)))
        data: Any = json.loads(raw)
        pending = [
            Found(MatchedSession(sid, updated_at, int(score), [int(s) for s in seqs]), WHERES[w])
            for sid, w, score, updated_at, seqs in data["p"]
        ]
        resume = data["r"]
        key = None if resume is None else (int(resume[0]), str(resume[1]), str(resume[2]))
    except (ValueError, TypeError, KeyError, IndexError, zlib.error, binascii.Error) as exc:
        raise InvalidRequest("continuationToken is not valid.") from exc
    return SearchState(pending, key)
