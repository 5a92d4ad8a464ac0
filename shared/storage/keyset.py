"""Keyset positions: where the next page of a sorted listing starts, as an opaque string.

Both stores page by the sort key of the last item returned (``updatedAt``, ``id``), never by
offset or by a database cursor: a position stays valid across instances and restarts, costs the
same at page 1 and page 100, and a listing knows whether anything follows (it reads one item
more than it returns), so it never hands out a position that leads to an empty page.
"""

from __future__ import annotations

import base64
import binascii
import json

from shared.errors import InvalidRequest


def encode_position(*values: str) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_position(token: str, size: int) -> tuple[str, ...]:
    """The values of a position made by ``encode_position``; 400 for anything else."""
    try:
        padded = token + "=" * (-len(token) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        values = None
    if (
        not isinstance(values, list)
        or len(values) != size
        or not all(isinstance(v, str) for v in values)
    ):
        raise InvalidRequest("continuationToken is not valid.")
    return tuple(values)
