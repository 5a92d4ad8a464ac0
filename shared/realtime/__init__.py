"""Real-time delivery of group events (``docs/http.md`` describes the events).

The rule every caller keeps: an event is published only after what it announces is stored, and
a publish that fails never fails or undoes the write (clients catch up with
``GET /api/groups/{groupId}/messages?after=<seq>``). This package holds the port the group
service publishes through (``Realtime``) and the naming rules shared by the service and the
adapters; the Azure Web PubSub adapter and its local stand-in live beside it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.config import Settings

# A Web PubSub group name per Parley group: the service decides membership, never the client.
GROUP_PREFIX = "g."
# How long a client URL from ``GET /api/realtime/negotiate`` admits a new connection (an open
# connection outlives it; a client negotiates again only to reconnect).
CLIENT_URL_TTL_S = 60 * 60


def pubsub_group(group_id: str) -> str:
    """The Web PubSub group that carries the events of one Parley group."""
    return f"{GROUP_PREFIX}{group_id}"


def realtime_user_id(email: str, key: str) -> str:
    """The caller's Web PubSub user id: opaque and stable, never the address (it travels in
    client URLs and the service's logs). ``email`` is the normalised address."""
    digest = hmac.new(key.encode(), b"realtime-user\x00" + email.encode(), hashlib.sha256)
    return "u." + digest.hexdigest()[:40]


def user_id_for(settings: Settings, email: str) -> str:
    """The caller's Web PubSub user id in this deployment: keyed with the deployment's token
    signing key, the same on every instance (``docs/security.md``)."""
    return realtime_user_id(email, settings.resolved_token_signing_key)


class Realtime(Protocol):
    """What the group service and the realtime endpoints need from a publish/subscribe service.

    User ids are always ``realtime_user_id`` values; group ids are Parley group ids (the adapter
    maps them with ``pubsub_group``). Events are JSON objects exactly as ``docs/http.md`` lists
    them. Every method may raise ``RealtimeUnavailable``; callers that must not fail catch it.
    """

    async def publish(self, group_id: str, event: dict[str, Any]) -> None:
        """Send ``event`` to every connection in the group's Web PubSub group."""

    async def send_to_user(self, user_id: str, event: dict[str, Any]) -> None:
        """Send ``event`` to every open connection of one user (e.g. ``group.removed``)."""

    async def add_user_to_group(self, user_id: str, group_id: str) -> None:
        """Add the user's open connections to the group's Web PubSub group."""

    async def remove_user_from_group(self, user_id: str, group_id: str) -> None:
        """Remove every connection of the user from the group's Web PubSub group, at once."""

    async def client_url(self, user_id: str, *, expires_in_s: int) -> tuple[str, datetime]:
        """A WebSocket URL (with its access token) for this user, and when it expires."""

    async def close(self) -> None: ...


class RealtimeUnavailable(Exception):
    """The publish/subscribe service could not be reached or refused the call."""


class NoRealtime:
    """Real-time delivery switched off (no Web PubSub configured): publishing does nothing, so
    clients learn of new messages by polling ``?after=<seq>``, and negotiating is refused."""

    async def publish(self, group_id: str, event: dict[str, Any]) -> None:
        return None

    async def send_to_user(self, user_id: str, event: dict[str, Any]) -> None:
        return None

    async def add_user_to_group(self, user_id: str, group_id: str) -> None:
        return None

    async def remove_user_from_group(self, user_id: str, group_id: str) -> None:
        return None

    async def client_url(self, user_id: str, *, expires_in_s: int) -> tuple[str, datetime]:
        raise RealtimeUnavailable("real-time delivery is not configured")

    async def close(self) -> None:
        return None


def make_realtime(settings: Settings) -> Realtime:
    """The process's real-time adapter, chosen from the settings: Azure Web PubSub when
    ``WEBPUBSUB_ENDPOINT`` is set (the SDK loads only then), else none."""
    if not settings.webpubsub_endpoint:
        return NoRealtime()
    from shared.realtime.webpubsub import WebPubSubRealtime

    return WebPubSubRealtime.from_settings(settings)
