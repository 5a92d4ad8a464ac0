"""The people of a group test (two callers of the test's own and three more with the same tag)
and the group service on a store: echo model, a recording real-time port, a fixed clock."""

from __future__ import annotations

from typing import Any

from shared.clock import FixedClock
from shared.config import load_settings
from shared.groups.service import GroupService
from shared.llm.echo import EchoModel
from shared.realtime import Realtime
from tests.support.realtime import RecordingRealtime
from tests.support.scenarios import START, no_pause


class People:
    def __init__(self, alice: str, bob: str) -> None:
        self.alice = alice
        self.bob = bob
        tag = alice.split("-")[1].split("@")[0]
        self.carol = f"carol-{tag}@example.com"
        self.dave = f"dave-{tag}@example.com"
        self.eve = f"eve-{tag}@example.com"


def service(
    store: Any, realtime: Realtime | None = None, clock: FixedClock | None = None, **env: str
) -> GroupService:
    settings = load_settings({"AUTH_MODE": "dev", **env})
    return GroupService(
        store,
        EchoModel(),
        settings,
        realtime or RecordingRealtime(),
        clock=clock or FixedClock(START),
        sleep=no_pause,
    )
