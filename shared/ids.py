"""Identifiers: the server makes session ids; message item ids derive from them."""

from __future__ import annotations

import re
import secrets

# 's_' + 32 lowercase hex characters (128 random bits): unguessable, URL-safe, fixed shape.
SESSION_ID_RE = re.compile(r"^s_[0-9a-f]{32}$")
MESSAGE_ID_RE = re.compile(r"^(s_[0-9a-f]{32}):([0-9]{8,})$")
SEQ_WIDTH = 8  # zero-padded so ids sort in sequence order as strings


def new_session_id() -> str:
    return "s_" + secrets.token_hex(16)


def is_session_id(value: str) -> bool:
    """True for ids of our shape; anything else cannot exist, so it is 404 without a read."""
    return bool(SESSION_ID_RE.match(value))


def message_item_id(session_id: str, seq: int) -> str:
    return f"{session_id}:{seq:0{SEQ_WIDTH}d}"


def parse_message_id(value: str) -> tuple[str, int] | None:
    """(session id, seq) of a message id of our shape, else None."""
    match = MESSAGE_ID_RE.match(value)
    return (match.group(1), int(match.group(2))) if match else None
