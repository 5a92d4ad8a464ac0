"""Tokens the server made, and nothing else: payloads sealed with a server-side key.

Continuation tokens and consistency tokens travel through the client and come back. Each is a
payload (base64url JSON) and an HMAC-SHA256 over its purpose, its caller and that payload, keyed
by ``TOKEN_SIGNING_KEY``. A token made for another purpose or another caller, altered, cut, or
made by anyone without the key fails the MAC and is refused before its payload is decoded, so
nothing a client invents ever reaches a store (docs/security.md, "Tokens the server made").

The key is a deployment's secret (``pulumi up`` generates one). Unset, a fixed development key is
used, which protects nothing: the local host warns about it, as it does about dev sign-in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

# Unset TOKEN_SIGNING_KEY: tokens still work locally, and are forgeable by anyone who reads this.
DEVELOPMENT_KEY = "parley-development-token-key"

# A token's MAC: 128 bits of HMAC-SHA256 (NIST SP 800-107 allows truncation to this length).
_MAC_BYTES = 16
_SEPARATOR = "."


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_json(payload: Any) -> str:
    """``payload`` (JSON-able) as base64url JSON without padding: the one text form of a token's
    payload, and of a store's position (``shared/storage/keyset.py``)."""
    return _b64encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode())


def decode_json(text: str) -> Any:
    """What ``encode_json`` made ``text`` from; ``ValueError`` for anything else."""
    try:
        return json.loads(_b64decode(text))
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise ValueError("not base64url JSON") from exc


def _mac(key: str, purpose: str, owner: str, body: str) -> bytes:
    message = "\n".join((purpose, owner, body)).encode("utf-8")
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()[:_MAC_BYTES]


def seal(key: str, purpose: str, owner: str, payload: Any) -> str:
    """``payload`` (JSON-able) as a token only this key could make, for this purpose and owner."""
    body = encode_json(payload)
    return f"{body}{_SEPARATOR}{_b64encode(_mac(key, purpose, owner, body))}"


def unseal(key: str, purpose: str, owner: str, token: str, *, max_chars: int) -> Any | None:
    """The payload of a token ``seal`` made with these arguments; None for anything else.

    The MAC is checked, in constant time, before the payload is decoded: a forged or altered
    token never reaches the JSON parser, let alone a store."""
    if not token or len(token) > max_chars or not token.isascii():
        return None
    body, separator, mac_text = token.rpartition(_SEPARATOR)
    if not separator:
        return None
    try:
        mac = _b64decode(mac_text)
    except (ValueError, binascii.Error):
        return None
    if not hmac.compare_digest(mac, _mac(key, purpose, owner, body)):
        return None
    try:
        return decode_json(body)
    except ValueError:  # pragma: no cover - only a key holder could get here
        return None
