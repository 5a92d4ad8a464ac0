"""The soak's judgements (bench/soak.py): when memory counts as flat once warm, and what fails a
run. The run itself is `make soak` (and one minute of it in `make test`)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bench.soak import (
    FLAT_TOLERANCE_FRACTION,
    FLAT_TOLERANCE_MIB,
    MIN_MINUTES_FOR_MEMORY_VERDICT,
    WARM_FRACTION,
    Group,
    Soak,
    Turn,
    memory_verdict,
    verdict,
)

LONG_S = MIN_MINUTES_FOR_MEMORY_VERDICT * 60


def _series(duration_s: float, level: float, grow_by: float, n: int = 120) -> list[Any]:
    """RSS samples every duration/n seconds: 60 MiB during warm-up, then ``level`` rising
    linearly by ``grow_by`` over the warm part."""
    warm_from = duration_s * WARM_FRACTION
    out = []
    for i in range(n):
        t = i * duration_s / n
        share = max(0.0, (t - warm_from) / (duration_s - warm_from))
        out.append((t, 60.0 if t < warm_from else level + grow_by * share))
    return out


def test_warm_up_growth_is_not_growth() -> None:
    # 60 -> 200 MiB during warm-up, then flat: flat.
    result = memory_verdict(_series(LONG_S, 200.0, 0.0), LONG_S, 10_000)
    assert result["judged"] and result["flat"]
    assert result["growth_mib"] == 0.0 and result["warm_slope_mib_per_min"] == 0.0


def test_growth_once_warm_beyond_the_tolerance_fails() -> None:
    level = 200.0
    tolerance = max(FLAT_TOLERANCE_MIB, FLAT_TOLERANCE_FRACTION * level)
    # The thirds' medians sit a third of the warm span apart, 2/3 of the rise: over the
    # tolerance with 1.8x of it, under it with 1.2x.
    growing = memory_verdict(_series(LONG_S, level, 1.8 * tolerance * 1.5), LONG_S, 10_000)
    assert growing["judged"] and growing["flat"] is False
    within = memory_verdict(_series(LONG_S, level, 1.2 * tolerance), LONG_S, 10_000)
    assert within["flat"] is True
    # Reported all the same: the rise per minute over the warm part.
    warm_minutes = LONG_S * (1 - WARM_FRACTION) / 60
    assert within["warm_slope_mib_per_min"] == pytest.approx(
        1.2 * tolerance / warm_minutes, rel=0.05
    )
    # What the tolerance lets through, per request of the warm part.
    per_request = within["tolerance_mib"] * 2**20 / 10_000
    assert within["detects_leak_per_request_bytes"] == pytest.approx(per_request, rel=0.01)


def test_short_runs_are_reported_not_judged() -> None:
    short = 60.0
    result = memory_verdict(_series(short, 100.0, 50.0), short, 500)
    assert result["judged"] is False and "not judged" in result["why"]
    assert verdict(_report(memory=result)) == []


def _report(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "errors_by_status": {},
        "ledger_check": {"acknowledged_messages": 10, "missing_count": 0, "duplicated_count": 0},
        "memory": {"judged": True, "flat": True},
    }
    return {**base, **overrides}


def test_what_fails_a_run() -> None:
    assert verdict(_report()) == []
    assert verdict(_report(errors_by_status={"turn 500": 1}))
    lost = {"acknowledged_messages": 10, "missing_count": 1, "duplicated_count": 0}
    assert "missing" in verdict(_report(ledger_check=lost))[0]
    doubled = {"acknowledged_messages": 10, "missing_count": 0, "duplicated_count": 2}
    assert "more than once" in verdict(_report(ledger_check=doubled))[0]
    idle = {"acknowledged_messages": 0, "missing_count": 0, "duplicated_count": 0}
    assert verdict(_report(ledger_check=idle))
    assert verdict(_report(memory={"judged": True, "flat": False}))


def _ledger(stored: list[dict[str, str]]) -> dict[str, Any]:
    """The soak's final check against a host that holds ``stored`` in its one session."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/sessions/s_1"
        return httpx.Response(200, json={"messages": stored, "hasMoreMessages": False})

    async def check() -> dict[str, Any]:
        transport = httpx.MockTransport(answer)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as http:
            soak = Soak(http, users=1, seed=1, deadline=0.0)
            user = soak.users[0]
            user.sessions = ["s_1"]
            user.acked = {"s_1": [Turn("question", "answer", ("m1", "m2"))]}
            return await soak.verify()

    return asyncio.run(check())


def test_every_acknowledged_message_is_found_exactly_once() -> None:
    question = {"id": "m1", "content": "question"}
    answer = {"id": "m2", "content": "answer"}
    whole = _ledger([question, answer])
    assert whole["stored_exactly_once"] == 2 and whole["acknowledged_messages"] == 2
    assert whole["missing_count"] == 0 and whole["duplicated_count"] == 0
    lost = _ledger([question])
    assert lost["missing"] == ["m2"] and lost["missing_count"] == 1
    # The same text stored a second time under another id is a second copy.
    doubled = _ledger([question, answer, {"id": "m3", "content": "question"}])
    assert doubled["duplicated"] == ["m1"] and doubled["stored_exactly_once"] == 1


def _group_ledger(stored: list[dict[str, Any]]) -> dict[str, Any]:
    """The group check against a host holding ``stored`` in its one group; Bob was erased."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/groups/g_1/messages"
        return httpx.Response(200, json={"messages": stored, "hasMore": False})

    async def check() -> dict[str, Any]:
        transport = httpx.MockTransport(answer)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as http:
            soak = Soak(http, users=1, seed=1, deadline=0.0)
            alice = soak.users[0].email
            group = Group("g_1", {alice}, erased_senders={"bob@soak.local"})
            group.acked = [("g_1:1", "hello", alice), ("g_1:2", "from bob", "bob@soak.local")]
            soak.groups["g_1"] = group
            return await soak.verify_groups()

    return asyncio.run(check())


def test_group_messages_once_and_an_erased_senders_removed() -> None:
    alice = {"id": "g_1:1", "seq": 1, "content": "hello"}
    removed = {"id": "g_1:2", "seq": 2, "content": "", "removed": True}
    good = _group_ledger([alice, removed])
    assert good["group_messages_stored_exactly_once"] == 1
    assert good["group_messages_removed_with_their_sender"] == 1
    assert good["group_messages_missing_count"] == good["group_messages_wrong_count"] == 0
    kept = _group_ledger([alice, {"id": "g_1:2", "seq": 2, "content": "from bob"}])
    assert kept["group_messages_wrong"] == ["g_1:2"]
    assert _group_ledger([removed])["group_messages_missing"] == ["g_1:1"]
