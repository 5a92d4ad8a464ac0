"""``python -m shared.erase --email ADDRESS [--dry-run]``: erase one user for a request that
came by support (``shared/erase/`` is the rule). Prints one JSON line ``{"sessions",
"messages", "dryRun"}``; its audit line is written also when it fails part-way."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import SystemClock
from shared.commands import run_for_user
from shared.config import Settings
from shared.consistency import catch_up
from shared.erase import audit_erase, erase_sessions
from shared.groups.service import erase_groups
from shared.sharing import erase_shares
from shared.storage import make_store

# The operator's command works to the end, in steps this long (its own time is not bounded).
CLI_STEP_S = 60.0


class EraseSummary(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sessions: int
    messages: int
    dry_run: bool = Field(alias="dryRun")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
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
        audit_erase(
            user,
            "operator",
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
