"""The identity rule (shared/auth/claims.py): printable ASCII addresses, ASCII-lower-cased; every
other value refused with a reason. The property tests state what the rule is for: no two
different addresses (other than by ASCII case) ever become one identity."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.auth.claims import (
    InvalidEmail,
    identity_from_claims,
    normalise_email,
    parse_email,
)
from shared.storage.cosmos.items import OPS_PARTITION

# A 64-character local part and 63-character labels: the longest each may be.
LONGEST_PARTS = "X" * 64 + "@" + "D" * 63 + "." + "d" * 63 + ".com"


@pytest.mark.parametrize(
    ("value", "identity"),
    [
        ("kate@example.com", "kate@example.com"),
        ("Kate@Example.COM", "kate@example.com"),
        ("o'brien+tag@sub.example.co.uk", "o'brien+tag@sub.example.co.uk"),
        ("first.last@xn--bcher-kva.example", "first.last@xn--bcher-kva.example"),
        ("a!#$%&*/=?^_`{|}~-@localhost", "a!#$%&*/=?^_`{|}~-@localhost"),
        (LONGEST_PARTS, LONGEST_PARTS.lower()),
    ],
)
def test_accepted_addresses_are_ascii_lower_cased(value: str, identity: str) -> None:
    assert parse_email(value) == identity


REFUSED = {
    "kelvin_sign": ("\u212aate@example.com", "U+212A at position 0"),
    "fullwidth": ("\uff4bate@example.com", "U+FF4B"),
    "cyrillic": ("k\u0430te@example.com", "U+0430"),
    "zero_width_space": ("ka\u200bte@example.com", "U+200B"),
    "dotted_capital_i": ("\u0130nga@example.com", "U+0130"),  # lower() gives i + U+0307
    "long_s": ("\u017fam@example.com", "U+017F"),  # casefold() gives s
    "non_ascii_letter": ("jos\u00e9@example.com", "U+00E9"),
    "leading_space": (" kate@example.com", "U+0020"),
    "inner_tab": ("kate@exa\tmple.com", "U+0009"),
    "nul": ("kate@example.com\x00", "U+0000"),
    "no_at": ("kate.example.com", "exactly one '@'"),
    "two_ats": ("kate@home@example.com", "exactly one '@'"),
    "empty_local": ("@example.com", "before '@'"),
    "dot_before_at": ("kate.@example.com", "before '@'"),
    "double_dot": ("ka..te@example.com", "before '@'"),
    "quoted_local": ('"kate"@example.com', "before '@'"),
    "local_too_long": ("k" * 65 + "@example.com", "before '@'"),
    "empty_domain": ("kate@", "domain"),
    "domain_trailing_dot": ("kate@example.com.", "domain"),
    "domain_hyphen_edge": ("kate@-example.com", "domain"),
    "domain_underscore": ("kate@ex_ample.com", "domain"),
    "label_too_long": ("kate@" + "d" * 64 + ".com", "domain"),
    "too_long": ("k@" + "d." * 127 + "com", "longer than 254"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_values_say_why_without_quoting_the_value(case: str) -> None:
    value, reason = REFUSED[case]
    with pytest.raises(InvalidEmail) as caught:
        parse_email(value)
    assert reason in str(caught.value)
    local = value.partition("@")[0]
    if len(local) > 2:
        assert local not in str(caught.value)  # names the problem, never echoes the address
    assert normalise_email(value) is None


@pytest.mark.parametrize("value", [None, 42, b"kate@example.com", ["kate@example.com"]])
def test_values_that_are_not_text_are_refused(value: Any) -> None:
    with pytest.raises(InvalidEmail, match="not text"):
        parse_email(value)


# ---- the property the rule exists for ---------------------------------------------------------

# Text biased towards what attacks use: ASCII letters and the characters that Unicode maps onto
# them (case mapping, compatibility forms), invisible characters and a few look-alikes.
_TRICKY = (
    "\u212a\u212b\u017f\u0130\u0131\uff4b\uff41\uff20\u1d4f\U0001d424\u0430\u0435"
    "\u200b\u200d\ufeff\u00ad\u00a0\u3002\u2024"
)
_ALPHABET = st.sampled_from("abcdeKATE.@-_+" + _TRICKY) | st.characters()
_ADDRESSES = st.text(_ALPHABET, min_size=1, max_size=24)


@settings(max_examples=2000, deadline=None)
@given(_ADDRESSES)
def test_an_identity_is_the_ascii_lower_case_of_an_ascii_address(value: str) -> None:
    identity = normalise_email(value)
    if identity is not None:
        assert value.isascii() and value.isprintable() and " " not in value
        assert identity == value.lower()


@settings(max_examples=2000, deadline=None)
@given(_ADDRESSES, _ADDRESSES)
def test_two_addresses_are_one_identity_only_if_equal_ignoring_ascii_case(a: str, b: str) -> None:
    ia, ib = normalise_email(a), normalise_email(b)
    if ia is not None and ia == ib:
        assert a.lower() == b.lower()
        # Nothing the Unicode mappings would merge, and we did not, slips through either.
        assert unicodedata.normalize("NFKC", a).casefold() == a.lower()


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(_TRICKY), st.integers(min_value=0, max_value=16))
def test_any_tricky_character_anywhere_is_refused(char: str, position: int) -> None:
    real = "kate@example.com"
    at = min(position, len(real))
    assert normalise_email(real[:at] + char + real[at:]) is None
    assert normalise_email(real.replace("k", char, 1)) is None


# ---- which claim names the caller ---------------------------------------------------------------


def email_from_claims(claims: dict[str, Any]) -> str | None:
    try:
        return identity_from_claims(claims)
    except InvalidEmail:
        return None


def test_the_first_present_claim_decides_and_a_refused_one_is_not_replaced() -> None:
    assert email_from_claims({"email": "Kate@Example.com"}) == "kate@example.com"
    assert email_from_claims({"preferred_username": "", "upn": "kate@example.com"}) == (
        "kate@example.com"
    )
    # A look-alike sign-in name does not fall back to an (attacker-chosen) email claim.
    claims = {"preferred_username": "\u212aate@example.com", "email": "kate@example.com"}
    assert email_from_claims(claims) is None
    assert email_from_claims({}) is None


def test_a_refused_claim_is_named_in_the_reason() -> None:
    claims = {"preferred_username": "\u212aate@example.com", "email": "kate@example.com"}
    with pytest.raises(InvalidEmail, match=r"^preferred_username: .*U\+212A at position 0"):
        identity_from_claims(claims)
    with pytest.raises(InvalidEmail, match="none of preferred_username, email, upn is present"):
        identity_from_claims({"name": "Kate"})


def test_the_operators_partition_is_never_an_identity() -> None:
    """The archival passes' records live under ``OPS_PARTITION`` (shared/storage/cosmos/items.py)
    because no address can be it: no user's list, export or erasure reads that partition."""
    with pytest.raises(InvalidEmail):
        parse_email(OPS_PARTITION)
    assert normalise_email(OPS_PARTITION) is None
