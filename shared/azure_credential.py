"""The one way Parley gets Entra tokens for Azure services (Cosmos DB, Azure OpenAI): no keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.config import Settings


def azure_credential(settings: Settings) -> AsyncTokenCredential:
    """The app's identity.

    With ``AZURE_CLIENT_ID`` (what the infrastructure sets for the app's user-assigned
    identity) the managed identity endpoint is asked directly: no credential chain to walk on a
    cold start (environment, workload identity, ...), and no chance of picking up another
    identity on the way. Without it, DefaultAzureCredential finds a system-assigned identity in
    Azure, or a developer's ``az login`` locally.
    """
    # azure.identity loads only when a service that needs it is configured (cold start).
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if settings.azure_client_id:
        return ManagedIdentityCredential(client_id=settings.azure_client_id)
    return DefaultAzureCredential()
