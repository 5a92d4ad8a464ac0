"""Fakes of the real-time port (``shared.realtime.Realtime``) for the group tests: one that
records every call in order, and one whose every call fails as an unreachable service does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.realtime import RealtimeUnavailable


class RecordingRealtime:
    """Every call, in order: ``("publish", group_id, event)``, ``("send", user_id, event)``,
    ``("add", user_id, group_id)``, ``("remove", user_id, group_id)``. ``on_publish`` runs
    at each publish (a test reads the store there: was the message stored before?)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.on_publish: Any = None

    async def publish(self, group_id: str, event: dict[str, Any]) -> None:
        if self.on_publish is not None:
            await self.on_publish(group_id, event)
        self.calls.append(("publish", group_id, event))

    async def send_to_user(self, user_id: str, event: dict[str, Any]) -> None:
        self.calls.append(("send", user_id, event))

    async def add_user_to_group(self, user_id: str, group_id: str) -> None:
        self.calls.append(("add", user_id, group_id))

    async def remove_user_from_group(self, user_id: str, group_id: str) -> None:
        self.calls.append(("remove", user_id, group_id))

    async def client_url(self, user_id: str, *, expires_in_s: int) -> tuple[str, datetime]:
        return f"wss://realtime.test/client?user={user_id}", datetime(2031, 1, 1, tzinfo=UTC)

    async def close(self) -> None:
        return None

    def events(self, kind: str = "publish") -> list[dict[str, Any]]:
        return [call[2] for call in self.calls if call[0] == kind]


class FailingRealtime(RecordingRealtime):
    """A service that cannot be reached: every call is recorded, then raises."""

    def __init__(self, error: type[Exception] = RealtimeUnavailable) -> None:
        super().__init__()
        self.error = error

    async def publish(self, group_id: str, event: dict[str, Any]) -> None:
        await super().publish(group_id, event)
        raise self.error("down")

    async def send_to_user(self, user_id: str, event: dict[str, Any]) -> None:
        await super().send_to_user(user_id, event)
        raise self.error("down")

    async def add_user_to_group(self, user_id: str, group_id: str) -> None:
        await super().add_user_to_group(user_id, group_id)
        raise self.error("down")

    async def remove_user_from_group(self, user_id: str, group_id: str) -> None:
        await super().remove_user_from_group(user_id, group_id)
        raise self.error("down")
