"""The Cosmos connection: an entered client (Session consistency tracked), our timeouts, and a
local stack that survives races and restarts.

- The SDK sets up session-token tracking only when its client is entered (``async with``):
  without it, reads carry no session token and a replica may not have this instance's writes.
- The SDK's read timeout is 65 s by default; ours keeps a turn well inside the Functions timeout.
- Two hosts starting against a fresh local server both create the database and containers: the
  loser of that race must carry on, not fail its first request.
- A local server that restarts empty: the next request creates everything again (only locally,
  with the emulator key; in Azure a missing container is a 503).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from azure.cosmos import CosmosClient

from shared import consistency
from shared.clock import SystemClock
from shared.config import PROXY_VARIABLES
from shared.erase import erase_sessions
from shared.errors import StorageUnavailable
from shared.ids import new_session_id
from shared.models import MessageRecord, SessionRecord
from shared.storage.cosmos import CosmosStore
from shared.storage.cosmos.client import READ_TIMEOUT_S, transport_options
from tools.local.cosmos import CosmosAccount

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

# Microseconds included: what a store must give back exactly.
T0 = datetime(2031, 5, 4, 10, 0, 0, 123456, tzinfo=UTC)


def store_on(account: CosmosAccount, database: str, *, bootstrap: bool = True) -> CosmosStore:
    return CosmosStore(
        account.endpoint,
        account.key,
        database=database,
        container="Conversations",
        archive_container="ConversationsArchive",
        verify_tls=account.verify_tls,
        bootstrap=bootstrap,
        timeout_s=10,
    )


def a_session(email: str) -> tuple[SessionRecord, list[MessageRecord]]:
    sid = new_session_id()
    message = MessageRecord(session_id=sid, seq=1, role="user", content="hi", timestamp=T0)
    session = SessionRecord(
        id=sid,
        email=email,
        title="t",
        preview="hi",
        created_at=T0,
        updated_at=T0,
        message_count=1,
        last_seq=1,
    )
    return session, [message]


def drop_database(account: CosmosAccount, name: str) -> None:
    client = CosmosClient(account.endpoint, account.key, **account.client_kwargs())
    client.delete_database(name)


def test_the_client_is_entered_and_reads_with_our_timeout(cosmos_account: CosmosAccount) -> None:
    async def main() -> None:
        store = store_on(cosmos_account, f"conn-{uuid.uuid4().hex[:8]}")
        try:
            await store.get_session("a@example.com", new_session_id(), where="active")
            connection = store.conn._client.client_connection  # type: ignore[union-attr]
            # Entered: the account was read and, it being Session consistency, a session
            # container tracks this instance's tokens.
            assert connection.session is not None
            assert connection.connection_policy.ReadTimeout == READ_TIMEOUT_S
        finally:
            await store.close()
        drop_database(cosmos_account, store.conn._database)

    asyncio.run(main())


def test_the_transport_reads_no_proxy_settings_unless_a_proxy_is_configured(
    cosmos_account: CosmosAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp reading the environment costs two thread hops per request (netrc and proxy
    lookups): only worth it when there is a proxy to find."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    async def transport_reads_env() -> bool:
        store = store_on(cosmos_account, f"conn-{uuid.uuid4().hex[:8]}")
        try:
            await store.get_session("a@example.com", new_session_id(), where="active")
            connection = store.conn._client.client_connection  # type: ignore[union-attr]
            transport = connection.pipeline_client._pipeline._transport
            return bool(transport._use_env_settings)
        finally:
            await store.close()
            drop_database(cosmos_account, store.conn._database)

    assert asyncio.run(transport_reads_env()) is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert transport_options() == {"use_env_settings": True}


def test_two_hosts_starting_together_both_carry_on(cosmos_account: CosmosAccount) -> None:
    if not cosmos_account.is_local:
        pytest.skip("creating databases is the local bootstrap's; COSMOS_ENDPOINT names another")
    name = f"race-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        stores = [store_on(cosmos_account, name) for _ in range(4)]  # four clients: four hosts
        try:
            results = await asyncio.gather(
                *(
                    store.get_session("a@example.com", new_session_id(), where="active")
                    for store in stores
                    for _ in range(3)
                ),
                return_exceptions=True,
            )
            assert results == [None] * 12, results
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())
    drop_database(cosmos_account, name)


def test_a_server_that_restarted_empty_is_set_up_again(cosmos_account: CosmosAccount) -> None:
    if not cosmos_account.is_local:
        pytest.skip("only the local bootstrap may create databases")
    name = f"gone-{uuid.uuid4().hex[:8]}"
    email = "a@example.com"

    async def main() -> None:
        store = store_on(cosmos_account, name)
        try:
            session, messages = a_session(email)
            await store.append(session, messages, expected_etag=None)
            drop_database(cosmos_account, name)  # what a restarted, empty local server holds
            # Reads and writes work again: the store notices and creates everything anew.
            assert await store.get_session(email, session.id, where="active") is None
            listed, _ = await store.list_sessions(email, where="active", limit=5, after=None)
            assert listed == []
            again, more = a_session(email)
            await store.append(again, more, expected_etag=None)
            assert await store.get_session(email, again.id, where="active") is not None
        finally:
            await store.close()

    asyncio.run(main())
    drop_database(cosmos_account, name)


def test_a_missing_container_in_azure_is_a_503(cosmos_account: CosmosAccount) -> None:
    """Without the local bootstrap (as in Azure, where Pulumi owns the containers), a missing
    database is not created: it is storage being unavailable, never a 500."""
    name = f"none-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        store = store_on(cosmos_account, name, bootstrap=False)
        try:
            with pytest.raises(StorageUnavailable):
                await store.list_sessions("a@example.com", where="active", limit=5, after=None)
            session, messages = a_session("a@example.com")
            with pytest.raises(StorageUnavailable):
                await store.append(session, messages, expected_etag=None)
        finally:
            await store.close()

    asyncio.run(main())


def test_an_instance_reads_its_own_batch_writes_on_lagging_replicas(
    cosmos_account_lagging: CosmosAccount,
) -> None:
    """Every turn writes by transactional batch; the SDK does not record a batch's session
    token itself, so without the store doing it the next read carries an older token and a
    lagging replica answers from before the write (the session seems not to exist)."""
    name = f"lag-{uuid.uuid4().hex[:8]}"
    email = "a@example.com"

    async def main() -> None:
        store = store_on(cosmos_account_lagging, name)
        try:
            for _ in range(3):
                session, messages = a_session(email)
                await store.append(session, messages, expected_etag=None)
                view = await store.read_turn(email, session.id, history=5)
                assert view.session is not None, "an instance must read its own batch writes"
                assert [m.content for m in view.window] == ["hi"]
        finally:
            await store.close()

    asyncio.run(main())
    drop_database(cosmos_account_lagging, name)


def test_tokens_carried_from_one_instance_make_another_read_its_writes(
    cosmos_account_lagging: CosmosAccount,
) -> None:
    """Two stores (two instances) on one lagging account. B misses what A just wrote, unless
    it reads with the tokens of A's request (sealed and handed over as Parley-Consistency), or
    catches up first (a write that cannot apply, whose token covers every earlier write)."""
    name = f"lag-{uuid.uuid4().hex[:8]}"
    email = "a@example.com"
    key = "k" * 32

    async def on_a(
        store: CosmosStore, session: SessionRecord, messages: list[MessageRecord]
    ) -> str:
        """A's request, in a context of its own (as each request has): its sealed tokens."""

        async def request() -> str | None:
            consistency.begin()
            await store.append(session, messages, expected_etag=None)
            return consistency.seal_for(key, email)

        sealed = await asyncio.create_task(request())
        assert sealed is not None and len(sealed) <= consistency.MAX_TOKEN_CHARS
        return sealed

    async def main() -> None:
        a, b = store_on(cosmos_account_lagging, name), store_on(cosmos_account_lagging, name)
        try:
            await b.session_ids(email, limit=1)  # B is connected (and its containers exist)
            session, messages = a_session(email)
            handed_over = await on_a(a, session, messages)

            consistency.begin()  # B's request, without the header: a lagging replica answers
            assert (await b.read_turn(email, session.id, history=5)).session is None
            consistency.begin()  # ... with another user's token: the same
            assert not consistency.adopt(key, "b@example.com", handed_over)
            assert (await b.read_turn(email, session.id, history=5)).session is None

            consistency.begin()  # ... with the caller's own token: A's write is there
            assert consistency.adopt(key, email, handed_over)
            view = await b.read_turn(email, session.id, history=5)
            assert view.session is not None and [m.content for m in view.window] == ["hi"]
            assert await b.session_ids(email, limit=5) == [session.id]

            consistency.begin()  # ... without it, after a catch-up: there too
            second, messages = a_session(email)
            await on_a(a, second, messages)
            assert (await b.read_turn(email, second.id, history=5)).session is None
            assert await b.catch_up(email)
            assert (await b.read_turn(email, second.id, history=5)).session is not None
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
    drop_database(cosmos_account_lagging, name)


def test_an_erasure_finds_what_another_instance_wrote_before_it_says_done(
    cosmos_account_lagging: CosmosAccount,
) -> None:
    """Interleaving: instance B's erasure lists nothing (its replica lags), and before it could
    answer, instance A stores a turn. The erasure catches up and looks again: it says done only
    when the latest state holds nothing of the user."""
    name = f"lag-{uuid.uuid4().hex[:8]}"
    email = "erase@example.com"

    class PausedAfterEmptyListing:
        """B's store, with the pause injected after its first listing that found nothing."""

        def __init__(self, inner: CosmosStore, pause: Callable[[], Awaitable[None]]) -> None:
            self.inner, self.pause, self.paused = inner, pause, False

        async def session_ids(self, email: str, *, limit: int) -> list[str]:
            found = await self.inner.session_ids(email, limit=limit)
            if not found and not self.paused:
                self.paused = True
                await self.pause()
            return found

        async def delete_session(self, email: str, session_id: str) -> bool:
            return await self.inner.delete_session(email, session_id)

        async def catch_up(self, email: str) -> bool:
            return await self.inner.catch_up(email)

        async def clear_usage(self, email: str) -> int:
            return await self.inner.clear_usage(email)

    async def main() -> None:
        a, b = store_on(cosmos_account_lagging, name), store_on(cosmos_account_lagging, name)
        try:
            await b.session_ids(email, limit=1)  # B is connected

            async def a_turn() -> None:
                async def request() -> None:
                    consistency.begin()  # A's request, in a context of its own
                    session, messages = a_session(email)
                    await a.append(session, messages, expected_etag=None)

                await asyncio.create_task(request())

            await a_turn()  # stored before the erasure starts: B's replica has not seen it
            paused = PausedAfterEmptyListing(b, a_turn)  # and one more while it runs
            consistency.begin()  # B's request, without the caller's token
            done = await erase_sessions(
                paused,  # type: ignore[arg-type]
                email,
                clock=SystemClock(),
                budget_s=60,
            )
            assert done and paused.paused
            consistency.begin()  # what the latest state holds
            assert await b.catch_up(email)
            assert await b.session_ids(email, limit=5) == []
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
    drop_database(cosmos_account_lagging, name)
