"""An address is bound to the account that first used it (shared.identity), on every store:
the binding is one record with the user's data, created so that the first account wins; a
different account (or the same object id in another tenant) is refused; a release frees the
address; a caller without an account binds nothing. The binding is invisible to everything
that reads sessions (lists, counts, erasure, exports)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth.claims import Account, Caller
from shared.clock import FixedClock
from shared.errors import Forbidden, StorageUnavailable
from shared.identity import CACHE_TTL_S, BindingCache, IdentityGuard
from shared.storage.base import Binding, IdentityStore, Store
from tests.support.stores import Runner

T0 = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
KATE = Account(tenant_id="72f988bf-0000-4000-8000-000000000001", object_id="0a0a-kate")
MALLORY = Account(tenant_id="72f988bf-0000-4000-8000-000000000001", object_id="0b0b-mallory")
# Kate's object id, but in another tenant: another account (ids are unique per tenant only).
KATE_ELSEWHERE = Account(tenant_id="9188040d-6c67-4c5b-b112-36a304b66dad", object_id="0a0a-kate")


def guard(store: IdentityStore, clock: FixedClock | None = None) -> IdentityGuard:
    clock = clock or FixedClock(T0)
    return IdentityGuard(store, clock=clock, cache=BindingCache(clock))


def test_the_first_account_binds_the_address_and_comes_back(
    run: Runner[Any], emails: tuple[str, str]
) -> None:
    email, _ = emails

    async def scenario(store: Store) -> None:
        assert await store.read_binding(email) is None
        assert await guard(store).admit(Caller(email, KATE)) == email
        held = await store.read_binding(email)
        assert held is not None and held.account == KATE and held.email == email
        # Again, through a guard that remembers nothing: the same account is let in.
        assert await guard(store).admit(Caller(email, KATE)) == email
        assert await store.bind(Binding(email, KATE, T0)) == held

    run(scenario)


@pytest.mark.parametrize("stranger", [MALLORY, KATE_ELSEWHERE], ids=["other-oid", "other-tenant"])
def test_another_account_with_a_bound_address_is_refused(
    run: Runner[Any], emails: tuple[str, str], stranger: Account
) -> None:
    email, _ = emails

    async def scenario(store: Store) -> None:
        await guard(store).admit(Caller(email, KATE))
        for attempt in (guard(store), guard(store)):  # fresh guards: nothing remembered
            with pytest.raises(Forbidden) as refused:
                await attempt.admit(Caller(email, stranger))
            assert refused.value.status == 403 and refused.value.code == "forbidden"
            assert "another account" in refused.value.message
        # The refusal changed nothing: the address is still Kate's.
        held = await store.read_binding(email)
        assert held is not None and held.account == KATE
        assert await store.bind(Binding(email, stranger, T0)) == held

    run(scenario)


def test_two_accounts_racing_for_a_fresh_address_one_wins(
    store_factory: Callable[[], Store], emails: tuple[str, str]
) -> None:
    """Two instances (two clients on one database), each first to see the address free."""
    email, _ = emails

    async def scenario() -> None:
        stores = [store_factory(), store_factory()]
        try:
            for store in stores:  # both see the address free before either writes
                assert await store.read_binding(email) is None
            held = await asyncio.gather(
                stores[0].bind(Binding(email, KATE, T0)),
                stores[1].bind(Binding(email, MALLORY, T0)),
            )
            assert held[0] == held[1], "both instances must report the same winner"
            assert held[0].account in (KATE, MALLORY)
            results = await asyncio.gather(
                guard(stores[0]).admit(Caller(email, KATE)),
                guard(stores[1]).admit(Caller(email, MALLORY)),
                return_exceptions=True,
            )
            admitted = [r for r in results if r == email]
            refused = [r for r in results if isinstance(r, Forbidden)]
            assert len(admitted) == 1 and len(refused) == 1, results
        finally:
            for store in stores:
                await store.close()

    asyncio.run(scenario())


def test_guards_racing_through_admit_exactly_one_wins(
    store_factory: Callable[[], Store], emails: tuple[str, str]
) -> None:
    email, _ = emails

    async def scenario() -> None:
        stores = [store_factory() for _ in range(4)]
        accounts = [Account(tenant_id=KATE.tenant_id, object_id=f"racer-{i}") for i in range(4)]
        try:
            results = await asyncio.gather(
                *(
                    guard(store).admit(Caller(email, account))
                    for store, account in zip(stores, accounts, strict=True)
                ),
                return_exceptions=True,
            )
            winners = [i for i, r in enumerate(results) if r == email]
            assert len(winners) == 1, results
            assert all(isinstance(r, Forbidden) for i, r in enumerate(results) if i != winners[0])
            held = await stores[0].read_binding(email)
            assert held is not None and held.account == accounts[winners[0]]
        finally:
            for store in stores:
                await store.close()

    asyncio.run(scenario())


def test_a_released_address_binds_to_the_next_account(
    run: Runner[Any], emails: tuple[str, str]
) -> None:
    email, _ = emails

    async def scenario(store: Store) -> None:
        await guard(store).admit(Caller(email, KATE))
        assert await store.release_binding(email) is True
        assert await store.read_binding(email) is None
        assert await store.release_binding(email) is False  # nothing left to release
        assert await guard(store).admit(Caller(email, MALLORY)) == email
        with pytest.raises(Forbidden):
            await guard(store).admit(Caller(email, KATE))

    run(scenario)


def test_a_caller_without_an_account_binds_nothing_and_is_never_refused(
    run: Runner[Any], emails: tuple[str, str]
) -> None:
    free, bound = emails

    async def scenario(store: Store) -> None:
        assert await guard(store).admit(Caller(free)) == free
        assert await store.read_binding(free) is None  # dev mode bound nothing
        await guard(store).admit(Caller(bound, KATE))
        assert await guard(store).admit(Caller(bound)) == bound  # not refused either

    run(scenario)


def test_a_confirmed_binding_costs_no_read_until_its_age_runs_out(
    run: Runner[Any], emails: tuple[str, str]
) -> None:
    """The steady state reads nothing; a release elsewhere is honoured by this instance for at
    most CACHE_TTL_S (docs/security.md, "Accounts")."""
    email, _ = emails

    async def scenario(store: Store) -> None:
        clock = FixedClock(T0)
        counted = CountingStore(store)
        instance_a = guard(counted, clock)
        await instance_a.admit(Caller(email, KATE))
        reads = counted.calls
        for _ in range(20):
            clock.advance(seconds=CACHE_TTL_S / 40)
            await instance_a.admit(Caller(email, KATE))
        assert counted.calls == reads, "a confirmed binding must not be read again in its age"
        # An operator releases the address and Mallory binds it through another instance.
        assert await store.release_binding(email)
        await guard(store).admit(Caller(email, MALLORY))
        # Instance A still honours Kate's confirmation until it is CACHE_TTL_S old ...
        assert await instance_a.admit(Caller(email, KATE)) == email
        clock.set(T0 + timedelta(seconds=CACHE_TTL_S))
        # ... and not a moment longer.
        with pytest.raises(Forbidden):
            await instance_a.admit(Caller(email, KATE))
        assert await instance_a.admit(Caller(email, MALLORY)) == email

    run(scenario)


def test_the_binding_is_invisible_to_sessions_counts_erasure_and_exports(
    run: Runner[Any], emails: tuple[str, str]
) -> None:
    email, _ = emails

    async def scenario(store: Store) -> None:
        await store.bind(Binding(email, KATE, T0))
        assert await store.session_ids(email, limit=50) == []
        assert await store.usage(email) == (0, 0)
        for where in ("active", "archive"):
            assert await store.list_sessions(email, where=where, limit=10, after=None) == (
                [],
                None,
            )
        assert await store.all_sessions(email, limit=10, after=None) == ([], None)

    run(scenario)


class CountingStore:
    """A store that counts the identity calls it passes on."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls = 0

    async def read_binding(self, email: str) -> Binding | None:
        self.calls += 1
        return await self._store.read_binding(email)

    async def bind(self, binding: Binding) -> Binding:
        self.calls += 1
        return await self._store.bind(binding)

    async def release_binding(self, email: str) -> bool:
        self.calls += 1
        return await self._store.release_binding(email)


def test_an_instance_that_never_saw_the_binding_never_admits_another_account(
    store_factory: Callable[[], Store], emails: tuple[str, str]
) -> None:
    """Instance B did not write the binding, so on a lagging replica its read may miss it: its
    create then meets the binding, and B refuses or asks to retry; it never lets Mallory in."""
    email, _ = emails

    async def scenario() -> None:
        a, b = store_factory(), store_factory()
        try:
            await guard(a).admit(Caller(email, KATE))
            outcome = await asyncio.gather(
                guard(b).admit(Caller(email, MALLORY)), return_exceptions=True
            )
            assert isinstance(outcome[0], Forbidden | StorageUnavailable), outcome
            kate = await asyncio.gather(guard(b).admit(Caller(email, KATE)), return_exceptions=True)
            assert kate[0] == email or isinstance(kate[0], StorageUnavailable), kate
            held = await a.read_binding(email)
            assert held is not None and held.account == KATE
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())
