"""A user's token usage on Cosmos DB (``shared/usage/``): one small item per user and period.

- usage item: ``id`` = ``usage-<period>`` (``usage-day-2026-12-05``, ``usage-month-2026-12``),
  ``type: "usage"``, ``period``, ``promptTokens``, ``completionTokens``, ``cachedTokens``,
  ``turns``; in the active container, in the user's own partition. It has no ``sessionId``:
  no session query, move or delete ever meets it, and every listing filters on ``type``.

Counting is a patch of ``incr`` operations (Azure: "Increment ... If the path doesn't exist,
it's created"), applied by the service to the item as it is, so concurrent increments are all
counted without a read or an ETag. A period's first count finds no item (404): the item is
created with zeros (a create, which never overwrites: 409 when another writer created it
first) and the patch is sent again. Nothing is ever written by replace or upsert, so no count
can be overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.storage.base import Spent
from shared.storage.cosmos.client import BatchOp, BatchRefused, CosmosConnection

USAGE = "usage"
USAGE_ID_PREFIX = "usage-"
# A user's usage items, all or some (by id): served by the type index, in one partition.
USAGE_QUERY = "SELECT * FROM c WHERE c.type = 'usage'"
USAGE_PERIODS_QUERY = "SELECT * FROM c WHERE c.type = 'usage' AND ARRAY_CONTAINS(@ids, c.id)"
USAGE_IDS_QUERY = "SELECT VALUE c.id FROM c WHERE c.type = 'usage'"
FIELDS = (
    ("promptTokens", "prompt_tokens"),
    ("completionTokens", "completion_tokens"),
    ("cachedTokens", "cached_tokens"),
    ("turns", "turns"),
)
# Creating missing items and patching again: two rounds always suffice (an item, once
# created, only goes away by an erasure or a reset); more means something else is wrong.
MAX_ROUNDS = 4


def usage_item_id(period: str) -> str:
    return USAGE_ID_PREFIX + period


def _empty_item(email: str, period: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": usage_item_id(period),
        "EmailID": email,
        "type": USAGE,
        "period": period,
    }
    return body | {field: 0 for field, _ in FIELDS}


def _spent_of(item: dict[str, Any]) -> Spent:
    return Spent(**{name: int(item.get(field) or 0) for field, name in FIELDS})


async def add_usage(
    conn: CosmosConnection, email: str, periods: Sequence[str], spent: Spent
) -> None:
    increments = [
        {"op": "incr", "path": f"/{field}", "value": getattr(spent, name)}
        for field, name in FIELDS
        if getattr(spent, name)
    ]
    if not increments or not periods:
        return
    # Every period of the call in one transactional batch: one request, all or nothing.
    ops: list[BatchOp] = [("patch", (usage_item_id(p), increments)) for p in periods]
    for _ in range(MAX_ROUNDS):
        try:
            await conn.batch("active", email, ops)
            return
        except BatchRefused as refused:
            if refused.status != 404:
                raise
            # The period at ``index`` has no item yet: create it empty, then count again.
            await _create_empty(conn, email, periods[refused.index])
    raise RuntimeError("usage items kept disappearing while being counted")


async def _create_empty(conn: CosmosConnection, email: str, period: str) -> None:
    try:
        await conn.batch("active", email, [("create", (_empty_item(email, period),))])
    except BatchRefused as refused:
        if refused.status != 409:  # 409: created meanwhile by a concurrent count
            raise


async def read_usage(
    conn: CosmosConnection, email: str, periods: Sequence[str] | None
) -> dict[str, Spent]:
    if periods is None:
        items = await conn.query("active", USAGE_QUERY, [], email=email)
    elif not periods:
        return {}
    else:
        ids = [usage_item_id(p) for p in periods]
        items = await conn.query(
            "active", USAGE_PERIODS_QUERY, [{"name": "@ids", "value": ids}], email=email
        )
    found = {str(item["period"]): _spent_of(item) for item in items}
    return dict(sorted(found.items()))


async def clear_usage(conn: CosmosConnection, email: str) -> int:
    ids: list[Any] = await conn.query("active", USAGE_IDS_QUERY, [], email=email)
    deleted = 0
    for item_id in ids:
        try:
            await conn.batch("active", email, [("delete", (str(item_id),))])
            deleted += 1
        except BatchRefused as refused:
            if refused.status != 404:  # 404: deleted meanwhile
                raise
    return deleted
