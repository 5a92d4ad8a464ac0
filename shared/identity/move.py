"""Moving a user's data to their new address, with their binding (``python -m shared.identity
move``): every session, active and archived, with its messages, request items and feedback,
the token usage counted for the address, and its group memberships (``shared/groups``).

Each session moves by the store's ``rehome_session`` (one transaction on SQLite; on Cosmos DB a
copy under the new address that nobody sees, verified, committed only if the source did not
change since it was copied, then made visible: ``shared/storage/cosmos/rehome.py``). A session
that changes while it is copied is copied again; one in the middle of another move is taken up
in the next round. Interrupted, the command is run again and finishes what was committed.

The binding: the new address is bound to the old address's account before any session moves
(refused if it is bound to another account), and the old address is released only when
nothing of it is left, so the user is never locked out of either half on the way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from shared.backoff import Sleep
from shared.clock import Clock
from shared.groups.service import move_member
from shared.storage.base import Binding, RehomeOutcome, Store

MOVE_PAGE = 50  # session ids read at a time
MAX_ROUNDS = 20  # rounds over what is left before the command gives up (run it again)
ROUND_PAUSE_S = 1.0  # between rounds that left a session busy (another move under way)


class AddressTaken(Exception):
    """The new address is bound to an account other than the old address's."""


@dataclass
class MoveReport:
    """What a move did: counted as it goes, so a run that fails part-way can say so."""

    sessions: int = 0  # sessions moved by this run
    taken: list[str] = field(default_factory=list)  # ids the new address already had
    binding: str = "none"  # "moved" (the account now owns the new address), or "none"
    complete: bool = False  # nothing of the old address is left (and its binding is released)
    # Sessions whose last attempt did not settle (changed or busy): tried again even when the
    # old address no longer lists them (deleted meanwhile: their copies must go too).
    unsettled: set[str] = field(default_factory=set)


async def move_user(
    store: Store,
    old: str,
    new: str,
    *,
    clock: Clock,
    report: MoveReport | None = None,
    sleep: Sleep = asyncio.sleep,
) -> MoveReport:
    """Move everything of ``old`` to ``new``. ``report`` (filled in as the move goes) lets the
    caller audit a run that raised."""
    report = report if report is not None else MoveReport()
    if old == new:
        raise ValueError("the old and the new address are the same")
    held = await store.read_binding(old)
    if held is not None:
        bound = await store.bind(Binding(new, held.account, clock.now()))
        if bound.account != held.account:
            raise AddressTaken("the new address is bound to another account")
        report.binding = "moved"
    for _ in range(MAX_ROUNDS):
        left = await _one_round(store, old, new, report)
        if not left:
            break
        if set(left) <= set(report.taken):
            return report  # only collisions are left: an operator decides (docs/operations.md)
        await sleep(ROUND_PAUSE_S)
    else:
        return report
    await _move_usage(store, old, new)
    await move_member(store, old, new, sleep=sleep)  # their group memberships
    if held is not None:
        await store.release_binding(old)
    report.complete = True
    return report


async def _move_usage(store: Store, old: str, new: str) -> None:
    """The old address's token usage (shared/usage/) goes with the person: added to the new
    address's, then cleared. A run stopped between the two counts it twice on the next run (a
    budget reached early), never loses it."""
    spent = await store.read_usage(old)
    for period, amount in spent.items():
        await store.add_usage(new, [period], amount)
    if spent:
        await store.clear_usage(old)


async def _one_round(store: Store, old: str, new: str, report: MoveReport) -> list[str]:
    """Try every session of ``old`` once; the ids still there (or taken) afterwards."""
    ids = [
        *await store.rehome_pending(old),
        *sorted(report.unsettled),
        *await store.session_ids(old, limit=MOVE_PAGE),
    ]
    left: list[str] = []
    for session_id in dict.fromkeys(ids):  # pending first, each once
        outcome = await store.rehome_session(old, new, session_id)
        report.unsettled.discard(session_id)
        if outcome in (RehomeOutcome.CHANGED, RehomeOutcome.BUSY):
            report.unsettled.add(session_id)
        if outcome is RehomeOutcome.MOVED:
            report.sessions += 1
        elif outcome is RehomeOutcome.TAKEN:
            if session_id not in report.taken:
                report.taken.append(session_id)
            left.append(session_id)
        elif outcome is not RehomeOutcome.GONE:
            left.append(session_id)
    if not left:
        # Everything tried has moved; look once more (a session started meanwhile, a page
        # beyond the first).
        more = [*await store.rehome_pending(old), *await store.session_ids(old, limit=1)]
        left = more
    return left
