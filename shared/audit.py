"""Lines the operators and the platform team read: one structured JSON object after a fixed
prefix, with hashed users, ids and counts only (never message text, comments or emails)."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

log = logging.getLogger("parley.audit")


def user_hash(email: str, salt: str) -> str:
    """A salted hash that lets logs follow one user without ever holding the address."""
    return hashlib.sha256(f"{salt}:{email}".encode()).hexdigest()[:16]


def structured(prefix: str, fields: dict[str, Any]) -> str:
    """``prefix`` then the fields as compact JSON: what the alert and chart queries parse."""
    return prefix + json.dumps(fields, separators=(",", ":"))


def audit(event: str, **fields: Any) -> None:
    """A data-rights event (export, erase) for the audit trail."""
    log.info("%s", structured(f"{event} ", fields))
