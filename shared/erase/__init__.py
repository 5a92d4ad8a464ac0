"""Erasing a user: every session and message, active and archived, in both containers, and
their token usage records.

Used by ``DELETE /api/sessions`` (in time-bounded steps: 204 when nothing is left, 202 to be
asked again) and by the operators' command for requests that come by support:

    python -m shared.erase --email alice@example.com [--dry-run]

which prints one JSON line ``{"sessions", "messages", "dryRun"}`` and writes an audit line
(hashed email, counts, who, whether it completed; never the data), also when it fails
part-way. Each session goes whole or not at all (the store's delete), so an erasure is safe to
repeat and to interrupt; a session started while it runs is found by the next look and erased
too (``docs/privacy.md``, "Erasure").
"""

from __future__ import annotations

from datetime import datetime

from shared.audit import audit
from shared.clock import Clock
from shared.consistency import catch_up
from shared.storage.base import ConversationStore

ERASE_PAGE = 50  # session ids an erasure reads at a time


async def erase_sessions(
    store: ConversationStore, email: str, *, clock: Clock, budget_s: float
) -> bool:
    """Delete the user's sessions until none is left (True) or the next one might not finish
    within ``budget_s`` (False: call again). Each call deletes at least one session, however
    long listing them took, so that calling again always ends.

    "None is left" is never the word of a read that may lag: an empty listing is checked again
    after a catch-up (``shared/consistency.py``), whose reads see every write acknowledged
    before it, whichever instance made it; a store that cannot catch up answers "call again"."""
    started: datetime = clock.now()
    slowest = 0.0
    deleted = 0
    caught_up = False
    while True:
        ids = await store.session_ids(email, limit=ERASE_PAGE)
        if not ids:
            if not caught_up:
                if not await catch_up(store, email):
                    return False
                caught_up = True
                continue
            # The last of the user's data: what their model calls cost (shared/usage/).
            await store.clear_usage(email)
            return True
        for session_id in ids:
            elapsed = (clock.now() - started).total_seconds()
            if deleted and elapsed + slowest >= budget_s:
                return False
            step = clock.now()
            await store.delete_session(email, session_id)
            deleted += 1
            slowest = max(slowest, (clock.now() - step).total_seconds())


def audit_erase(user: str, by: str, *, complete: bool, **counts: int | bool | None) -> None:
    """The audit line of one erasure, by the API or an operator: whose (hashed), what the run
    counted, and whether it completed; never the data. Written also when it stopped part-way:
    sessions may have gone before the failure."""
    audit("erase", user=user, by=by, **counts, complete=complete)
