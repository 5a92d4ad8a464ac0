"""The account behind an address (shared.auth.claims.account_from_claims) and the per-process
cache of confirmed bindings (shared.identity.BindingCache)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.auth.claims import Account, InvalidEmail, account_from_claims, caller_from_claims
from shared.clock import FixedClock
from shared.identity import BindingCache

T0 = datetime(2026, 12, 5, tzinfo=UTC)
OID_URI = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TID_URI = "http://schemas.microsoft.com/identity/claims/tenantid"
KATE = Account(tenant_id="t-1", object_id="o-1")


def test_short_claim_names_and_uris_name_the_same_account() -> None:
    short = account_from_claims({"oid": "ABC-1", "tid": "T-9"})
    long = account_from_claims({OID_URI: "abc-1", TID_URI: "t-9"})
    assert short == long == Account(tenant_id="t-9", object_id="abc-1")  # GUIDs: any case


@pytest.mark.parametrize(
    "claims", [{}, {"oid": "o-1"}, {"tid": "t-1"}, {"oid": "", "tid": "t-1"}], ids=repr
)
def test_without_both_ids_there_is_no_account(claims: dict[str, str]) -> None:
    assert account_from_claims(claims) is None


@pytest.mark.parametrize(
    "bad",
    [42, ["o-1"], "o 1", "o-\u00e9", "x" * 129],
    ids=["number", "list", "space", "nonascii", "long"],
)
def test_a_present_but_unusable_id_is_refused_not_ignored(bad: object) -> None:
    # Ignoring it would turn a malformed claim into "no account", which is never refused.
    with pytest.raises(InvalidEmail):
        account_from_claims({"oid": bad, "tid": "t-1"})
    with pytest.raises(InvalidEmail):
        account_from_claims({"oid": "o-1", "tid": bad})


def test_a_caller_has_the_address_and_the_account() -> None:
    caller = caller_from_claims({"preferred_username": "Kate@Example.com", "oid": "o", "tid": "t"})
    assert caller.email == "kate@example.com"
    assert caller.account == Account(tenant_id="t", object_id="o")


def test_a_caller_carries_the_sign_ins_display_name_when_it_has_one() -> None:
    # Shown beside a group member's messages (shared/groups); never an identity.
    named = caller_from_claims({"preferred_username": "Kate@Example.com", "name": "Kate K."})
    assert (named.email, named.name) == ("kate@example.com", "Kate K.")
    for missing in ({}, {"name": "  "}, {"name": 7}):
        claims = {"preferred_username": "kate@example.com", **missing}
        assert caller_from_claims(claims).name is None


def test_the_cache_forgets_after_its_age_and_for_another_account() -> None:
    clock = FixedClock(T0)
    cache = BindingCache(clock, ttl_s=60)
    cache.remember("kate@example.com", KATE)
    assert cache.confirmed("kate@example.com", KATE)
    assert not cache.confirmed("kate@example.com", Account(tenant_id="t-1", object_id="o-2"))
    cache.remember("kate@example.com", KATE)
    clock.advance(seconds=59.9)
    assert cache.confirmed("kate@example.com", KATE)
    clock.advance(seconds=0.1)
    assert not cache.confirmed("kate@example.com", KATE)
    assert len(cache) == 0


def test_the_cache_distrusts_a_clock_that_went_backwards() -> None:
    clock = FixedClock(T0)
    cache = BindingCache(clock, ttl_s=60)
    cache.remember("kate@example.com", KATE)
    clock.advance(seconds=-1)
    assert not cache.confirmed("kate@example.com", KATE)


def test_the_cache_is_bounded_and_drops_the_least_recently_confirmed() -> None:
    cache = BindingCache(FixedClock(T0), ttl_s=60, max_entries=3)
    for i in range(5):
        cache.remember(f"u{i}@example.com", KATE)
    assert len(cache) == 3
    assert not cache.confirmed("u0@example.com", KATE)
    assert not cache.confirmed("u1@example.com", KATE)
    assert all(cache.confirmed(f"u{i}@example.com", KATE) for i in (2, 3, 4))


def test_cosmos_never_admits_on_a_guess_when_its_create_met_a_binding_it_cannot_read() -> None:
    """The create (on the primary) says the address is bound; a read served by a replica that
    has not seen that binding yet says nothing. The caller is asked to retry (503), never let
    in, never refused on a guess."""
    import asyncio
    from typing import Any

    from shared.errors import StorageUnavailable
    from shared.storage.base import Binding
    from shared.storage.cosmos import CosmosStore

    store = CosmosStore(
        "https://127.0.0.1:9", "key", database="d", container="a", archive_container="b"
    )

    async def create(where: str, body: dict[str, Any]) -> bool:
        return False  # 409: an item with this id exists

    async def read(where: str, item_id: str, email: str) -> dict[str, Any] | None:
        return None  # a lagging replica

    store.conn.create = create  # type: ignore[method-assign]
    store.conn.read = read  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailable) as refused:
        asyncio.run(store.bind(Binding("kate@example.com", KATE, T0)))
    assert refused.value.retry_after_s == 1
