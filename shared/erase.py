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

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from shared.audit import audit
from shared.cli import run_for_user
from shared.clock import Clock, SystemClock
from shared.config import Settings
from shared.consistency import catch_up
from shared.groups.service import erase_groups
from shared.sharing import erase_shares
from shared.storage import make_store
from shared.storage.base import ConversationStore

if TYPE_CHECKING:
    import argparse

ERASE_PAGE = 50  # session ids an erasure reads at a time
# The operator's command works to the end, in steps this long (its own time is not bounded).
CLI_STEP_S = 60.0


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
            # The last of the user's data: what their model calls cost (shared/usage.py).
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


class EraseSummary(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sessions: int
    messages: int
    dry_run: bool = Field(alias="dryRun")


# ---- python -m shared.erase -----------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    import argparse  # the command's only: the function app imports this module too

    parser = argparse.ArgumentParser(
        prog="python -m shared.erase",
        description="Delete everything of one user in both containers; print a JSON summary.",
    )
    parser.add_argument("--email", required=True, help="the user's email address")
    parser.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
    return parser.parse_args(argv)


@dataclass
class EraseRun:
    """What the operator's run got to, for its audit line: the counts stay None until read."""

    sessions: int | None = None
    messages: int | None = None
    complete: bool = False


async def _erase(email: str, user: str, settings: Settings, *, dry_run: bool) -> int:
    store = make_store(settings)
    run = EraseRun()
    try:
        # The counts too come from reads that see the latest writes, not a lagging replica's.
        await catch_up(store, email)
        sessions, messages = await store.usage(email)
        run.sessions, run.messages = sessions, messages
        if not dry_run:
            while not await erase_sessions(store, email, clock=SystemClock(), budget_s=CLI_STEP_S):
                pass
            await erase_shares(store, email)
            await erase_groups(store, email, settings=settings, clock=SystemClock())
        run.complete = True
    finally:
        # Written whatever happened, and before closing (which may fail too): an erasure that
        # stopped part-way has deleted some sessions, and the audit trail must say so.
        audit(
            "erase",
            user=user,
            by="operator",
            sessions=run.sessions,
            messages=run.messages,
            dryRun=dry_run,
            complete=run.complete,
        )
        await store.close()
    summary = EraseSummary(sessions=sessions, messages=messages, dry_run=dry_run)
    print(summary.model_dump_json(by_alias=True), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_for_user(
        "erase",
        args.email,
        lambda email, user, settings: _erase(email, user, settings, dry_run=args.dry_run),
    )


if __name__ == "__main__":
    sys.exit(main())
