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
