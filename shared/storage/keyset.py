"""Keyset positions: where the next page of a sorted listing starts, as an opaque string.

Both stores page by the sort key of the last item returned (``updatedAt``, ``id``), never by
offset or by a database cursor: a position stays valid across instances and restarts, costs the
same at page 1 and page 100, and a listing knows whether anything follows (it reads one item
more than it returns), so it never hands out a position that leads to an empty page.
"""

from __future__ import annotations

from shared.errors import InvalidRequest
from shared.signing import decode_json, encode_json


def encode_position(*values: str) -> str:
    return encode_json(list(values))


def position_values(position: str) -> list[str] | None:
    """The values of a position made by ``encode_position``, whatever their number; None for
    anything else."""
    try:
        values = decode_json(position)
    except ValueError:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return None
    return values


def decode_position(token: str, size: int) -> tuple[str, ...]:
    """The ``size`` values of a position made by ``encode_position``; 400 for anything else."""
    values = position_values(token)
    if values is None or len(values) != size:
        raise InvalidRequest("continuationToken is not valid.")
    return tuple(values)


def search_position(updated_at: str, session_id: str, score: int | None) -> str:
    """The position after one search result: its sort key (``score`` first when ranked by
    relevance). The same in both containers, so one position continues a search of both."""
    if score is None:
        return encode_position(updated_at, session_id)
    return encode_position(f"{score:010d}", updated_at, session_id)


def ranked_page(
    entries: list[tuple[str, str, int]], after: str | None, limit: int
) -> tuple[list[tuple[str, str, int]], str | None]:
    """A page of (updatedAt, id, score) by score, then newest, then id, all descending, after
    ``after``; and the position after it when anything follows."""
    ordered = sorted(entries, key=lambda e: (e[2], e[0], e[1]), reverse=True)
    if after is not None:
        score, updated_at, session_id = decode_position(after, 3)
        if not score.isdigit():
            raise InvalidRequest("continuationToken is not valid.")
        key = (int(score), updated_at, session_id)
        ordered = [e for e in ordered if (e[2], e[0], e[1]) < key]
    page = ordered[:limit]
    more = len(ordered) > limit
    return page, search_position(page[-1][0], page[-1][1], page[-1][2]) if more else None
