"""The composition root: one service, one store and one authenticator per process, built on
first use (not at import, which keeps cold starts fast) from the validated settings."""

from __future__ import annotations

from dataclasses import dataclass

from shared.auth import Authenticator
from shared.config import Settings, get_settings, reset_settings
from shared.service import ConversationService


@dataclass
class Runtime:
    settings: Settings
    service: ConversationService
    authenticator: Authenticator


_runtime: Runtime | None = None


def build_runtime(settings: Settings) -> Runtime:
    from shared.archive import restore_session
    from shared.llm import make_model
    from shared.storage import make_store

    service = ConversationService(
        make_store(settings), make_model(settings), settings, restore=restore_session
    )
    return Runtime(settings, service, Authenticator(settings))


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = build_runtime(get_settings())
    return _runtime


async def reset_runtime() -> None:
    """Drop the process's runtime and settings (tests, and the local host between runs)."""
    global _runtime
    if _runtime is not None:
        await _runtime.service.store.close()
        await _runtime.service.model.close()
    _runtime = None
    reset_settings()
