"""Continuation tokens as callers see them: a store's position, bound to its user and listing.

A store's position (``shared/storage/keyset.py``) says where the next page starts. The token
handed to a caller seals it (``shared/signing.py``) for the listing it belongs to and for its
user, so a token passed to someone else, made for another listing, altered or invented is
refused up front (400), before anything of it is decoded, let alone handed to a store.
"""

from __future__ import annotations

import hashlib

from shared.errors import InvalidRequest
from shared.signing import seal, unseal
from shared.storage.keyset import encode_position, position_values

# Far above any position a store makes (an SDK continuation is a few hundred characters).
MAX_PAGE_TOKEN_CHARS = 8192


def listing_scope(kind: str, *parts: str) -> str:
    """A short, stable name for one listing (e.g. the archived sessions, or one search)."""
    if not parts:
        return kind
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return f"{kind}:{digest}"


def _purpose(scope: str) -> str:
    return f"page:{scope}"


def encode_page_token(key: str, scope: str, position: str, email: str) -> str:
    """``position`` sealed for this user and listing: its values are the token's payload, so
    the token is one base64url JSON text and its MAC, not a token inside a token."""
    values = position_values(position)
    assert values is not None, "a store's position is made by shared/storage/keyset.py"
    return seal(key, _purpose(scope), email, values)


def decode_page_token(key: str, token: str, scope: str, email: str) -> str:
    """The store position inside ``token``; 400 unless this server made it for this user and
    listing."""
    values = unseal(key, _purpose(scope), email, token, max_chars=MAX_PAGE_TOKEN_CHARS)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidRequest("continuationToken is not valid for this listing.")
    return encode_position(*values)
