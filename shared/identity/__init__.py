"""Which account an address belongs to: each address is bound to the account that first used it.

The partition of a user's data is their address (``/EmailID``), taken from
``preferred_username`` (``shared.auth.claims``), which Microsoft documents as mutable and not to
be used for authorisation: a renamed user would lose their history, and an address given to a
new person would open the previous person's conversations. So the first call of an account
(Entra ID's tenant and object ids, ``Caller.account``) binds the address to it, and any other
account presenting that address is refused with 403 ``forbidden`` before anything is read or
written (``docs/security.md``, "Accounts"). Operators release a binding or move a user's data to
their new address with ``python -m shared.identity`` (``docs/operations.md``).

A caller without an account (dev mode, or a token without ``oid``/``tid``) binds nothing and is
never refused.

Cost: a binding once confirmed is remembered by this process (``BindingCache``: at most
``CACHE_ENTRIES`` addresses, each for ``CACHE_TTL_S``), so a steady conversation costs no
request for it. The price: a binding released (or moved) by an operator may still be honoured
by an instance that confirmed it, for at most ``CACHE_TTL_S``. Refusals are never cached, so a
rightful owner is let in as soon as the binding says so.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timedelta

from shared.auth.claims import Account, Caller
from shared.clock import Clock, SystemClock
from shared.errors import Forbidden
from shared.storage.base import Binding, IdentityStore

log = logging.getLogger("parley.identity")

CACHE_TTL_S = 300.0  # how long a confirmed binding is trusted without reading it again
CACHE_ENTRIES = 10_000  # addresses remembered per process (least recently confirmed go first)


class BindingCache:
    """Addresses confirmed as bound to an account, each for at most ``ttl_s`` by ``clock``."""

    def __init__(
        self, clock: Clock, *, ttl_s: float = CACHE_TTL_S, max_entries: int = CACHE_ENTRIES
    ) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError("BindingCache needs ttl_s >= 0 and max_entries >= 1")
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_s)
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Account, datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def confirmed(self, email: str, account: Account) -> bool:
        """Whether ``email`` was confirmed bound to ``account`` less than ``ttl_s`` ago."""
        entry = self._entries.get(email)
        if entry is None:
            return False
        held, at = entry
        age = self._clock.now() - at
        # A clock that went backwards makes the entry suspect too: read the binding again.
        if held != account or not timedelta(0) <= age < self._ttl:
            del self._entries[email]
            return False
        return True

    def remember(self, email: str, account: Account) -> None:
        self._entries[email] = (account, self._clock.now())
        self._entries.move_to_end(email)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, email: str) -> None:
        self._entries.pop(email, None)


class IdentityGuard:
    """Admits a caller to their address's data, binding a fresh address to their account."""

    def __init__(
        self, store: IdentityStore, *, clock: Clock | None = None, cache: BindingCache | None = None
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._cache = cache or BindingCache(self._clock)

    async def admit(self, caller: Caller) -> str:
        """The caller's address, once it is bound to their account (binding it if it was
        free); ``Forbidden`` when it is bound to another account."""
        account = caller.account
        if account is None:
            return caller.email  # nothing to bind: dev mode, or a sign-in without ids
        if self._cache.confirmed(caller.email, account):
            return caller.email
        binding = await self._store.read_binding(caller.email)
        if binding is None:
            binding = await self._store.bind(Binding(caller.email, account, self._clock.now()))
        if binding.account != account:
            self._cache.forget(caller.email)
            # Neither address nor ids in the log: the request line carries the hashed user.
            log.warning("refused a call: the address is bound to another account")
            raise Forbidden()
        self._cache.remember(caller.email, account)
        return caller.email


__all__ = ["CACHE_ENTRIES", "CACHE_TTL_S", "BindingCache", "IdentityGuard"]
