"""The local Cosmos server's modes (tools/cosmos/README.md): replica lag, throttling, and the
switches that relax Azure's strict behaviours. Each mode runs in a server of its own; the tests
use the real azure-cosmos SDK and are skipped when COSMOS_ENDPOINT names another account.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.cosmos import PartitionKey, exceptions
from azure.cosmos.aio import ContainerProxy as AsyncContainerProxy
from azure.cosmos.aio import CosmosClient as AsyncCosmosClient
from azure.cosmos.documents import ConnectionPolicy, RetryOptions

from tests.tools.cosmos.fidelity_support import (
    ALICE,
    BOB,
    CONTAINER,
    LIST_QUERY,
    Store,
    exists,
    exists_sync,
    fresh_store,
    lsn_of,
    message,
    page_of_sync,
    session,
    sync_client,
)
from tools.local.cosmos import CosmosAccount, CosmosMode, local_cosmos

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("COSMOS_ENDPOINT", "").strip()),
        reason="these tests check the local Cosmos server (tools/cosmos), and COSMOS_ENDPOINT "
        "names another account",
    ),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]

LAG = 3


@pytest.fixture(scope="module")
def lagging_account() -> Iterator[CosmosAccount]:
    with local_cosmos(replica_lag_writes=LAG) as account:
        yield account


@pytest.fixture
def lagging(lagging_account: CosmosAccount) -> Iterator[Store]:
    with fresh_store(lagging_account) as store:
        yield store


def ids(items: Any) -> list[str]:
    return sorted(item["id"] for item in items)


# --- replica lag -------------------------------------------------------------------------------


def test_fresh_client_misses_the_last_writes_of_another(lagging: Store) -> None:
    """A client with no session token reads from a replica LAG writes behind: point reads,
    queries (same engine, over the snapshot) and feed reads all see the same older state."""
    writer = lagging.sync
    for sid in ("s0", "s1", "s2"):
        writer.create_item(session(ALICE, sid, title="old"))
    writer.replace_item("s0", session(ALICE, "s0", title="new"))
    writer.delete_item("s1", partition_key=ALICE)
    writer.create_item(session(ALICE, "s3"))

    reader = lagging.fresh_sync()
    assert reader.read_item("s0", partition_key=ALICE)["title"] == "old"
    assert exists_sync(reader, "s1", ALICE)
    assert not exists_sync(reader, "s3", ALICE)
    ordered = [i["id"] for i in reader.query_items(LIST_QUERY, partition_key=ALICE)]
    assert sorted(ordered) == ["s0", "s1", "s2"]
    count = "SELECT VALUE COUNT(1) FROM c"
    assert list(reader.query_items(count, enable_cross_partition_query=True)) == [3]
    assert ids(reader.read_all_items()) == ["s0", "s1", "s2"]
    titles = "SELECT VALUE c.title FROM c WHERE c.id = 's0'"
    assert list(reader.query_items(titles, partition_key=ALICE)) == ["old"]

    # LAG more writes elsewhere push those three out of the window.
    for sid in ("b0", "b1", "b2"):
        writer.create_item(session(BOB, sid))
    later = lagging.fresh_sync()
    assert ids(later.query_items("SELECT c.id FROM c", partition_key=ALICE)) == ["s0", "s2", "s3"]
    assert later.read_item("s0", partition_key=ALICE)["title"] == "new"


def test_client_sees_its_own_writes_at_once(lagging: Store) -> None:
    """The aio client, entered with `async with`, sends its session token: its reads and queries
    see what it wrote, however far the replica lags."""
    for i in range(LAG + 2):
        lagging.sync.create_item(message(BOB, "other", i))

    async def scenario(container: AsyncContainerProxy) -> None:
        await container.create_item(session(ALICE, "s1", title="one"))
        assert (await container.read_item("s1", partition_key=ALICE))["title"] == "one"
        await container.replace_item("s1", session(ALICE, "s1", title="two"))
        assert (await container.read_item("s1", partition_key=ALICE))["title"] == "two"
        await container.create_item(message(ALICE, "s1", 1))
        query = "SELECT VALUE c.id FROM c WHERE c.EmailID = @e"
        found = container.query_items(query, parameters=[{"name": "@e", "value": ALICE}])
        assert sorted([i async for i in found]) == ["s1", "s1:000001"]
        await container.delete_item("s1:000001", partition_key=ALICE)
        assert not await exists(container, "s1:000001", ALICE)

    lagging.run(scenario)


def test_an_aio_client_not_entered_misses_its_own_writes(lagging: Store) -> None:
    """The aio client reads the account, and starts keeping session tokens, in `__aenter__`:
    used without `async with` it sends none, so a lagging replica hides its own writes."""

    async def main() -> bool:
        account = lagging.account
        client = AsyncCosmosClient(account.endpoint, account.key, **account.client_kwargs())
        try:
            container = client.get_database_client(lagging.database).get_container_client(CONTAINER)
            await container.create_item(session(ALICE, "s1"))
            return await exists(container, "s1", ALICE)
        finally:
            await client.close()

    assert asyncio.run(main()) is False


def test_a_write_session_token_makes_the_write_visible(lagging: Store) -> None:
    created = lagging.sync.create_item(session(ALICE, "s1"))
    token = created.get_response_headers()["x-ms-session-token"]
    lsn_of(token)
    reader = lagging.fresh_sync()
    assert not exists_sync(reader, "s1", ALICE)
    assert exists_sync(reader, "s1", ALICE, session_token=token)
    query = reader.query_items("SELECT VALUE c.id FROM c", partition_key=ALICE, session_token=token)
    assert list(query) == ["s1"]

    async def scenario(container: AsyncContainerProxy) -> list[str]:
        # a fresh aio client given the token explicitly
        found = container.query_items(
            "SELECT VALUE c.id FROM c", partition_key=ALICE, session_token=token
        )
        return [i async for i in found]

    assert lagging.run(scenario) == ["s1"]


def test_conditional_writes_check_the_latest_state(lagging: Store) -> None:
    """Writes and their preconditions apply to the latest state, whatever a lagging read saw."""
    writer = lagging.sync
    first = writer.create_item(session(ALICE, "s1", title="one"))
    for i in range(LAG):
        writer.create_item(message(BOB, "other", i))
    latest = writer.replace_item("s1", session(ALICE, "s1", title="two"))
    writer.create_item(session(ALICE, "s2"))

    reader = lagging.fresh_sync()
    seen = reader.read_item("s1", partition_key=ALICE)
    assert seen["_etag"] == first["_etag"]  # the replica is behind
    assert not exists_sync(reader, "s2", ALICE)
    with pytest.raises(exceptions.CosmosResourceExistsError):
        reader.create_item(session(ALICE, "s2"))
    # (The 409 carried the latest session token: from here on this client reads the latest.)
    with pytest.raises(exceptions.CosmosAccessConditionFailedError):
        reader.replace_item(
            "s1",
            session(ALICE, "s1", title="stale"),
            etag=seen["_etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    reader.replace_item(
        "s1",
        session(ALICE, "s1", title="three"),
        etag=latest["_etag"],
        match_condition=MatchConditions.IfNotModified,
    )
    assert reader.read_item("s1", partition_key=ALICE)["title"] == "three"
    # The first client has no token of that write: its replica has not caught up with it.
    assert writer.read_item("s1", partition_key=ALICE)["title"] == "two"


def test_replica_lag_in_milliseconds() -> None:
    """--replica-lag-ms: writes younger than the lag are not seen without their token."""
    with local_cosmos(replica_lag_ms=600_000) as account, fresh_store(account) as store:
        created = store.sync.create_item(session(ALICE, "s1"))
        reader = store.fresh_sync()
        assert not exists_sync(reader, "s1", ALICE)
        token = created.get_response_headers()["x-ms-session-token"]
        assert exists_sync(reader, "s1", ALICE, session_token=token)
        assert exists_sync(store.sync, "s1", ALICE)  # the writer's own session


# --- throttling ----------------------------------------------------------------------------------

RU_PER_SECOND = 50


@pytest.fixture(scope="module")
def throttled_account() -> Iterator[CosmosAccount]:
    with local_cosmos(ru_per_second=RU_PER_SECOND) as account:
        yield account


@pytest.fixture
def throttled(throttled_account: CosmosAccount) -> Iterator[Store]:
    with fresh_store(throttled_account) as store:
        yield store


def test_throttled_burst_succeeds_through_the_sdk_retries(throttled: Store) -> None:
    """20 writes of ~1 KB (5 RU each) at 50 RU/s: the first ones pass, the others get 429 with
    x-ms-retry-after-ms, and the SDK waits and retries until each one is applied."""
    statuses: list[int] = []

    def hook(response: Any) -> None:
        statuses.append(response.http_response.status_code)

    async def scenario(container: AsyncContainerProxy) -> list[int]:
        for seq in range(20):
            await container.create_item(
                message(ALICE, "s1", seq, content="x" * 700), raw_response_hook=hook
            )
        query = container.query_items("SELECT VALUE COUNT(1) FROM c", partition_key=ALICE)
        return [n async for n in query]

    assert throttled.run(scenario) == [20]
    assert statuses.count(201) == 20
    assert statuses.count(429) >= 5  # 20 x 5 RU is two seconds of throughput
    assert set(statuses) == {201, 429}


def test_throttling_surfaces_as_429_when_sdk_retries_are_off(throttled: Store) -> None:
    """With the SDK's throttle retries off the 429 reaches the caller, with its retry delay and
    substatus 3200, and nothing was applied. (`retry_throttle_total=0` does not turn them off:
    the SDK reads 0 as "unset" and keeps 9.)"""
    no_retries = ConnectionPolicy()
    no_retries.RetryOptions = RetryOptions(max_retry_attempt_count=0)
    impatient = throttled.fresh_sync(connection_policy=no_retries)
    # ~140 RU, more than a full bucket: let through once the bucket is full, leaving a debt.
    throttled.sync.create_item(session(ALICE, "big", blob="x" * 200_000))
    with pytest.raises(exceptions.CosmosHttpResponseError) as caught:
        impatient.create_item(session(ALICE, "s1"))
    error = caught.value
    assert error.status_code == 429
    assert error.sub_status == 3200
    assert int(error.headers["x-ms-retry-after-ms"]) > 0
    assert "TooManyRequests" in str(error)
    assert not exists_sync(throttled.sync, "s1", ALICE)  # the patient client retries its read


# --- switches ------------------------------------------------------------------------------------


def test_strict_behaviours_can_be_switched_off() -> None:
    """Each of Azure's strict behaviours that the server applies by default has a switch."""
    lenient = CosmosMode(
        strict_continuations=False,
        payload_as_sent=False,
        request_charges=False,
        owner_substatus=False,
    )
    with local_cosmos(mode=lenient) as account, fresh_store(account) as store:
        c = store.sync
        for i in range(3):
            c.create_item(session(ALICE, f"s{i}"))
        pager = c.query_items("SELECT c.id FROM c", partition_key=ALICE, max_item_count=3)
        page, token = page_of_sync(pager.by_page())
        assert len(page) == 3 and token is None
        c.create_item(session(ALICE, "accents", blob="é" * 400_000))  # 0.8 MB as UTF-8
        assert c.client_connection.last_response_headers["x-ms-request-charge"] == "1"
        database = sync_client(account).get_database_client(store.database)
        database.create_container("Gone", partition_key=PartitionKey("/EmailID"))
        gone = database.get_container_client("Gone")
        gone.read()
        database.delete_container("Gone")
        with pytest.raises(exceptions.CosmosResourceNotFoundError) as caught:
            gone.read_item("s1", partition_key=ALICE)
        assert caught.value.sub_status == 0


@pytest.mark.parametrize("exists_already", [False, True], ids=["404", "412"])
def test_a_write_that_cannot_apply_brings_the_latest_token(
    lagging: Store, exists_already: bool
) -> None:
    """A write is served by the primary: its answer, 404 or 412 too, carries a session token
    that covers every earlier write of the partition, so a client that never saw those writes
    reads them with it (what shared/storage/cosmos/client.py's catch_up relies on)."""
    writer = lagging.sync
    writer.create_item(session(ALICE, "s1"))
    for i in range(LAG - 1):  # the session and its messages: the last LAG writes
        writer.create_item(message(ALICE, "s1", i))
    reader = lagging.fresh_sync()
    assert not exists_sync(reader, "s1", ALICE)  # a lagging replica
    target = "s1" if exists_already else "never-made"
    with pytest.raises(exceptions.CosmosHttpResponseError) as refused:
        reader.replace_item(
            target,
            session(ALICE, target),
            etag='"no-item-has-this-etag"',
            match_condition=MatchConditions.IfNotModified,
        )
    assert refused.value.status_code == (412 if exists_already else 404)
    token = (refused.value.headers or {})["x-ms-session-token"]
    other = lagging.fresh_sync()
    assert exists_sync(other, "s1", ALICE, session_token=token)
    query = other.query_items(
        "SELECT VALUE c.id FROM c WHERE c.type = 'message'",
        partition_key=ALICE,
        session_token=token,
    )
    assert len(list(query)) == LAG - 1
    # Nothing was written: the item that did not exist still does not.
    assert not exists_sync(other, "never-made", ALICE, session_token=token)
