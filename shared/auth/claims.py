"""Which claim carries the caller's email, shared by Easy Auth and JWT identities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# In this order: Entra ID puts the sign-in name in preferred_username; others use email/upn.
EMAIL_CLAIMS: tuple[str, ...] = ("preferred_username", "email", "upn")
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path


def normalise_email(value: object) -> str | None:
    """The lower-cased email, or None when the value cannot be one."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    local, sep, domain = email.partition("@")
    if not sep or not local or not domain or len(email) > MAX_EMAIL_LENGTH:
        return None
    if any(ch.isspace() or ord(ch) < 32 for ch in email):
        return None
    return email


def email_from_claims(claims: Mapping[str, Any]) -> str | None:
    """The first usable email among the known claims, lower-cased; None if there is none."""
    for name in EMAIL_CLAIMS:
        email = normalise_email(claims.get(name))
        if email:
            return email
    return None
