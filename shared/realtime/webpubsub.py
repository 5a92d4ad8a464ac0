"""The ``Realtime`` port on Azure Web PubSub, through ``azure-messaging-webpubsubservice``.

In Azure the app's managed identity signs in (``shared.azure_credential``; the identity holds
"Web PubSub Service Owner" on the resource, ``infra/realtime.py``): no access key exists in any
app setting. ``WEBPUBSUB_KEY`` is for the local stand-in only (``tools/webpubsub/``), which
checks the key-signed tokens the SDK makes exactly as the service does.

Every call is bounded (``CALL_TIMEOUT_S``, the SDK's own retries inside it) and every failure of
the service, the network or the credential becomes ``RealtimeUnavailable``: callers decide
whether it matters (a publish never fails a send).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import jwt
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError
from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient

from shared.realtime import RealtimeUnavailable, pubsub_group

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.config import Settings

T = TypeVar("T")

# The most one call may take, the SDK's retries included: a publish runs after a message is
# stored, in the sender's request, so a slow service must cost the sender little.
CALL_TIMEOUT_S = 5.0
# The SDK's retries within that bound (its default, 3 with back-off, could outlast it).
RETRY_TOTAL = 1
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 4.0


class WebPubSubRealtime:
    """Publishes group events, manages Web PubSub group membership, and makes client URLs.

    Client URLs carry a token with the user id only: no ``role`` claim, so a client can neither
    join nor publish to a group by itself; the server adds its connections to the groups of the
    caller's Parley groups (``add_user_to_group``) and removes them at once on removal.
    """

    def __init__(
        self,
        endpoint: str,
        hub: str,
        credential: AsyncTokenCredential | AzureKeyCredential,
        *,
        owned_credential: AsyncTokenCredential | None = None,
        **client_options: Any,
    ) -> None:
        """``client_options`` go to the SDK's client as they are (pipeline policies: tests)."""
        self._client = WebPubSubServiceClient(
            endpoint=endpoint,
            hub=hub,
            credential=credential,
            retry_total=RETRY_TOTAL,
            connection_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            **client_options,
        )
        self._owned_credential = owned_credential

    @classmethod
    def from_settings(cls, settings: Settings) -> WebPubSubRealtime:
        endpoint = settings.webpubsub_endpoint
        if not endpoint:
            raise ValueError("WEBPUBSUB_ENDPOINT is not set")
        if settings.webpubsub_key:
            return cls(endpoint, settings.webpubsub_hub, AzureKeyCredential(settings.webpubsub_key))
        # Loaded only when Web PubSub is configured (cold start).
        from shared.azure_credential import azure_credential

        credential = azure_credential(settings)
        return cls(endpoint, settings.webpubsub_hub, credential, owned_credential=credential)

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await call
        except (AzureError, OSError, TimeoutError, ValueError) as exc:
            # The SDK's messages name no user data; the operation says what failed.
            reason = type(exc).__name__
            raise RealtimeUnavailable(f"Web PubSub {operation} failed: {reason}") from exc

    async def publish(self, group_id: str, event: dict[str, Any]) -> None:
        await self._call(
            "send to group",
            self._client.send_to_group(
                # The SDK serialises a JSON message itself (a str would arrive as a JSON string).
                pubsub_group(group_id),
                event,
                content_type="application/json",
            ),
        )

    async def send_to_user(self, user_id: str, event: dict[str, Any]) -> None:
        await self._call(
            "send to user",
            self._client.send_to_user(user_id, event, content_type="application/json"),
        )

    async def add_user_to_group(self, user_id: str, group_id: str) -> None:
        await self._call(
            "add user to group",
            self._client.add_user_to_group(group=pubsub_group(group_id), user_id=user_id),
        )

    async def remove_user_from_group(self, user_id: str, group_id: str) -> None:
        await self._call(
            "remove user from group",
            self._client.remove_user_from_group(group=pubsub_group(group_id), user_id=user_id),
        )

    async def client_url(self, user_id: str, *, expires_in_s: int) -> tuple[str, datetime]:
        # Whole minutes (the service's unit), never less than asked for.
        minutes = max(1, math.ceil(expires_in_s / 60))
        token = await self._call(
            "client token",
            self._client.get_client_access_token(user_id=user_id, minutes_to_expire=minutes),
        )
        return str(token["url"]), token_expiry(str(token["token"]))

    async def close(self) -> None:
        await self._client.close()
        if self._owned_credential is not None:
            await self._owned_credential.close()


def token_expiry(token: str) -> datetime:
    """When a client token expires: its own ``exp`` claim (whoever signed it, the SDK with a
    key or the service), so ``expiresAt`` is never later than what the service enforces."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError) as exc:
        raise RealtimeUnavailable("Web PubSub returned a client token without an expiry") from exc
