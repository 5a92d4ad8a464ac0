"""The whole-document design of the reference systems, for comparison only (never used by Parley).

One document per session holds a ``messages`` array; every message is stored by reading the
document and upserting all of it again. It runs on the same Cosmos client and counting
transport as Parley, with the same messages and the same echo reply, so the two designs differ
only in their data model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, DatabaseProxy
from azure.cosmos.exceptions import CosmosResourceNotFoundError

from shared.llm.echo import echo_reply

BASELINE_CONTAINER = "BaselineConversations"


async def baseline_container(database: DatabaseProxy) -> ContainerProxy:
    # The reference designs partition on /EmailID too and keep the default indexing policy.
    return await database.create_container_if_not_exists(
        BASELINE_CONTAINER, partition_key=PartitionKey("/EmailID")
    )


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class WholeDocumentChat:
    """A chat turn as the reference designs do it: read + upsert the whole session per message."""

    def __init__(self, container: ContainerProxy) -> None:
        self.container = container

    async def _read(self, email: str, session_id: str) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = await self.container.read_item(session_id, partition_key=email)
        except CosmosResourceNotFoundError:
            doc = {"id": session_id, "sessionId": session_id, "EmailID": email, "messages": []}
            doc["sessionTitle"] = ""
        return doc

    async def _append(self, email: str, session_id: str, role: str, text: str) -> list[Any]:
        doc = await self._read(email, session_id)
        if not doc["messages"]:
            doc["sessionTitle"] = text[:50]
        doc["messages"].append({"sender": role, "text": text, "time": _now()})
        doc["timestamp"] = _now()
        await self.container.upsert_item(doc)
        messages: list[Any] = doc["messages"]
        return messages

    async def turn(self, email: str, session_id: str, text: str) -> str:
        history = await self._append(email, session_id, "user", text)
        # The same reply as Parley's echo model: N = earlier messages it was given.
        reply = echo_reply(len(history) - 1, text)
        await self._append(email, session_id, "assistant", reply)
        return reply
