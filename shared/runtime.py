"""The composition root: one store, model, clock, service, turns and authenticator per process,
built on first use from the validated settings (the SDKs a store or model needs load only then:
see ``shared.storage.make_store`` and ``shared.llm.make_model``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.auth import Authenticator
from shared.clock import Clock, SystemClock
from shared.config import Settings, get_settings, reset_settings
from shared.groups.service import GroupService
from shared.identity import IdentityGuard
from shared.llm import make_model
from shared.llm.base import ChatModel
from shared.realtime import Realtime, make_realtime
from shared.service import ConversationService
from shared.sharing import ShareService
from shared.storage import make_store
from shared.storage.base import Store
from shared.turns import Turns


@dataclass
class Runtime:
    settings: Settings
    store: Store
    model: ChatModel
    clock: Clock
    service: ConversationService
    turns: Turns
    authenticator: Authenticator
    identities: IdentityGuard
    shares: ShareService
    realtime: Realtime
    groups: GroupService


_runtime: Runtime | None = None
# The clock a runtime built on first use gets (the system's unless the local host gives its
# own: devhost/app.py).
_clock: Clock | None = None

log = logging.getLogger(__name__)


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    clock = clock or SystemClock()
    if settings.token_signing_key is None:
        log.warning(
            "TOKEN_SIGNING_KEY is not set: the tokens handed to clients are sealed with the "
            "development key, which anyone can forge; set a secret one in any shared deployment"
        )
    store = make_store(settings)
    model = make_model(settings)
    service = ConversationService(store, settings, clock=clock)
    turns = Turns.build(store, model, settings, clock=clock)
    identities = IdentityGuard(store, clock=clock)
    shares = ShareService(
        store,
        clock,
        token_key=settings.resolved_token_signing_key,
        hash_salt=settings.log_hash_salt,
    )
    realtime = make_realtime(settings)
    groups = GroupService(store, model, settings, realtime, clock=clock)
    return Runtime(
        settings,
        store,
        model,
        clock,
        service,
        turns,
        Authenticator(settings),
        identities,
        shares,
        realtime,
        groups,
    )


def use_clock(clock: Clock) -> None:
    """The clock of the runtimes this process builds from now on (the local host's)."""
    global _clock
    _clock = clock


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = build_runtime(get_settings(), clock=_clock)
    return _runtime


async def reset_runtime() -> None:
    """Drop the process's runtime and settings (tests, and the local host between runs)."""
    global _runtime
    if _runtime is not None:
        await _runtime.store.close()
        await _runtime.model.close()
        await _runtime.realtime.close()
    _runtime = None
    reset_settings()
