"""Identifiers: the server makes session ids (random, or derived from what a retry repeats);
message item ids derive from them."""

from __future__ import annotations

import hashlib
import re
import secrets

# The session id's shape, defined here only: 's_' + 32 lowercase hex characters (128 random
# bits): unguessable, URL-safe, fixed shape (openapi.yaml's SessionId pattern says the same).
SESSION_ID_PREFIX, SESSION_ID_HEX_CHARS = "s_", 32
_SESSION_ID = f"{SESSION_ID_PREFIX}[0-9a-f]{{{SESSION_ID_HEX_CHARS}}}"
SESSION_ID_RE = re.compile(f"^{_SESSION_ID}$")
MESSAGE_ID_RE = re.compile(f"^({_SESSION_ID}):([0-9]{{8,}})$")
SEQ_WIDTH = 8  # zero-padded so ids sort in sequence order as strings


def new_session_id() -> str:
    return SESSION_ID_PREFIX + secrets.token_hex(SESSION_ID_HEX_CHARS // 2)


def hashed_session_id(*parts: str) -> str:
    """A session id that is the same for the same ``parts`` every time (retries and re-imports
    find their session by it), unguessable like a random one (a digest of the user's email)."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return SESSION_ID_PREFIX + digest[:SESSION_ID_HEX_CHARS]


def derived_session_id(email: str, client_message_id: str) -> str:
    """A new session's id when the client gave a clientMessageId: a retry of the first message
    of a conversation, whose answer the client never saw, lands in the same session."""
    return hashed_session_id(email, client_message_id)


def is_session_id(value: str) -> bool:
    """True for ids of our shape; anything else cannot exist, so it is 404 without a read."""
    return bool(SESSION_ID_RE.match(value))


def message_item_id(session_id: str, seq: int) -> str:
    return f"{session_id}:{seq:0{SEQ_WIDTH}d}"


def parse_message_id(value: str) -> tuple[str, int] | None:
    """(session id, seq) of a message id of our shape, else None."""
    match = MESSAGE_ID_RE.match(value)
    return (match.group(1), int(match.group(2))) if match else None
