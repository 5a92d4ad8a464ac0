"""The caller's email: which claim carries it, and the one rule that turns it into an identity.

The normalised email is the partition key of all of a user's data, so the rule must never let
two different addresses become one key. Unicode case mapping and compatibility forms do exactly
that (U+212A KELVIN SIGN lower-cases to ASCII ``k``, so ``"\\u212aate".lower() == "kate"``;
fullwidth letters become ASCII under NFKC), and look-alike letters (Cyrillic U+0430 for ``a``)
or invisible characters (U+200B) make addresses that read the same but are not. So the rule
is ASCII only:

- the address is a dot-atom local part (RFC 5322 ``atext``, at most 64 characters), one ``@``,
  and a domain of LDH labels (letters, digits, ``-``; IDNs in their ``xn--`` form); at most 254
  characters in all; nothing else, not even surrounding spaces;
- it is lower-cased with ASCII case mapping only, so ``Kate@Example.COM`` and
  ``kate@example.com`` are one user (as in Entra ID, whose sign-in names are ASCII and
  case-insensitive) and no other two addresses are;
- anything else, any non-ASCII character above all, is refused: the caller gets 401.

docs/security.md ("Identities") explains the choice; every auth mode and the operator commands
use ``parse_email`` (or ``normalise_email``) from here, so there is one rule.

The address is mutable and may be given to somebody else later, so it is not trusted alone: the
account behind it (``account_from_claims``: the tenant and object ids, ``tid``/``oid``) is what
an address is bound to (``shared.identity``, docs/security.md, "Accounts").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# In this order: Entra ID puts the sign-in name in preferred_username; others use email/upn.
EMAIL_CLAIMS: tuple[str, ...] = ("preferred_username", "email", "upn")
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
MAX_LOCAL_PART_LENGTH = 64  # RFC 5321's limit on a local part
MAX_LABEL_LENGTH = 63  # RFC 1035's limit on a domain label

# RFC 5322 dot-atom: atext runs separated by single dots (no leading, trailing or double dot).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
# One LDH label: letters, digits and hyphens, not starting or ending with a hyphen.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x21, 0x7F))

# The account's immutable ids, by their short names (tokens) and by the URIs Easy Auth's
# principal may report them under (its default claim mapping, as .NET's).
OBJECT_ID_CLAIMS: tuple[str, ...] = (
    "oid",
    "http://schemas.microsoft.com/identity/claims/objectidentifier",
)
TENANT_ID_CLAIMS: tuple[str, ...] = ("tid", "http://schemas.microsoft.com/identity/claims/tenantid")
MAX_ACCOUNT_ID_LENGTH = 128  # Entra ids are 36-character GUIDs; anything far longer is not one


@dataclass(frozen=True)
class Account:
    """Who the sign-in is, whatever their address: Entra ID's tenant and object ids. Microsoft
    advises identifying a user by the pair (an object id is unique within its tenant)."""

    tenant_id: str
    object_id: str


@dataclass(frozen=True)
class Caller:
    """A verified caller: the address (the partition) and the account behind it, when the
    sign-in names one (dev mode and tokens without ``oid``/``tid`` do not)."""

    email: str
    account: Account | None = None
    # The sign-in's display name (the ``name`` claim), when it carries one: shown beside a
    # group member's messages (``shared/groups``); never an identity.
    name: str | None = None


class InvalidEmail(ValueError):
    """A value that is not an acceptable identity. The message says why, in words safe to show
    an operator; it names a refused character by code point, never quotes the value."""


def parse_email(value: object) -> str:
    """The identity for ``value``: the address lower-cased, or ``InvalidEmail`` saying why not.

    The one function every auth mode and every operator command uses (see the module's rule).
    """
    if not isinstance(value, str):
        raise InvalidEmail("the email address is not text")
    if not value:
        raise InvalidEmail("the email address is empty")
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"the email address is longer than {MAX_EMAIL_LENGTH} characters")
    for position, char in enumerate(value):
        if char not in _PRINTABLE_ASCII:
            raise InvalidEmail(
                f"the email address contains U+{ord(char):04X} at position {position}: only "
                "printable ASCII is accepted, so that no two addresses can become one identity "
                "(spaces, invisible and non-ASCII characters are refused)"
            )
    local, at, domain = value.rpartition("@")
    if not at or "@" in local:
        raise InvalidEmail("the email address must contain exactly one '@'")
    if len(local) > MAX_LOCAL_PART_LENGTH or not _LOCAL_PART.fullmatch(local):
        raise InvalidEmail(
            "the part before '@' must be 1-64 letters, digits or !#$%&'*+/=?^_`{|}~- "
            "in dot-separated runs"
        )
    labels = domain.split(".")
    if any(len(label) > MAX_LABEL_LENGTH or not _LABEL.fullmatch(label) for label in labels):
        raise InvalidEmail(
            "the domain must be dot-separated labels of letters, digits and '-' "
            "(an internationalised domain in its xn-- form)"
        )
    # Every character is ASCII here, so this is ASCII lower-casing and nothing more.
    return value.lower()


def normalise_email(value: object) -> str | None:
    """The identity for ``value`` (``parse_email``), or None when it is refused."""
    try:
        return parse_email(value)
    except InvalidEmail:
        return None


def identity_from_claims(claims: Mapping[str, Any]) -> str:
    """The identity named by a verified set of claims, or ``InvalidEmail`` saying why not.

    The first of ``EMAIL_CLAIMS`` that is present decides. When it is refused (a look-alike, say)
    the caller is refused: a later claim never stands in for it, because an identity provider
    may let its users choose the value of a secondary claim such as ``email``.
    """
    for name in EMAIL_CLAIMS:
        value = claims.get(name)
        if value is None or value == "":
            continue  # absent: the next claim may carry the address
        try:
            return parse_email(value)
        except InvalidEmail as exc:
            raise InvalidEmail(f"{name}: {exc}") from None
    raise InvalidEmail(f"none of {', '.join(EMAIL_CLAIMS)} is present")


def _account_id(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The first present of ``names``, lower-cased (GUIDs compare case-insensitively)."""
    for name in names:
        value = claims.get(name)
        if value is None or value == "":
            continue
        if (
            not isinstance(value, str)
            or len(value) > MAX_ACCOUNT_ID_LENGTH
            or any(char not in _PRINTABLE_ASCII for char in value)
        ):
            raise InvalidEmail(f"{name} is not a usable account id")
        return value.lower()
    return None


def account_from_claims(claims: Mapping[str, Any]) -> Account | None:
    """The account a verified set of claims names: both a tenant and an object id, or None
    (such a caller binds nothing). A present but unusable id is ``InvalidEmail`` (refused),
    so that a malformed claim can never pass as one that is absent."""
    object_id = _account_id(claims, OBJECT_ID_CLAIMS)
    tenant_id = _account_id(claims, TENANT_ID_CLAIMS)
    if object_id is None or tenant_id is None:
        return None
    return Account(tenant_id=tenant_id, object_id=object_id)


def caller_from_claims(claims: Mapping[str, Any]) -> Caller:
    """``identity_from_claims`` and ``account_from_claims`` together."""
    name = claims.get("name")
    return Caller(
        identity_from_claims(claims),
        account_from_claims(claims),
        name if isinstance(name, str) and name.strip() else None,
    )


def email_from_claims(claims: Mapping[str, Any]) -> str | None:
    """``identity_from_claims``, or None when the claims name no identity we accept."""
    try:
        return identity_from_claims(claims)
    except InvalidEmail:
        return None
