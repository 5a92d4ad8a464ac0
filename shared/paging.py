"""Continuation tokens as callers see them: a store's position, bound to its user and listing.

A store's position (``shared/storage/keyset.py``) says where the next page starts. The token
handed to a caller wraps it with the listing it belongs to and a digest of its user, so a token
passed to someone else, or to another listing, is refused up front (400) instead of being
handed to a store's paging with another partition or query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from shared.errors import InvalidRequest


def _owner(email: str) -> str:
    return hashlib.sha256(f"page-token\n{email}".encode()).hexdigest()[:16]


def listing_scope(kind: str, *parts: str) -> str:
    """A short, stable name for one listing (e.g. the archived sessions, or one search)."""
    if not parts:
        return kind
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return f"{kind}:{digest}"


def encode_page_token(scope: str, position: str, email: str) -> str:
    body = {"w": scope, "u": _owner(email), "t": position}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, scope: str, email: str) -> str:
    """The store position inside ``token``; 400 unless it was made for this user and scope."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if (
            not isinstance(data, dict)
            or data.get("w") != scope
            or data.get("u") != _owner(email)
            or not isinstance(data["t"], str)
        ):
            raise ValueError("token shape")
        return str(data["t"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
        raise InvalidRequest("continuationToken is not valid for this listing.") from None
