"""The operators' commands for addresses and the accounts they are bound to
(``docs/operations.md``, "Accounts and address changes"):

    python -m shared.identity show --email kate@example.com
    python -m shared.identity release --email old@example.com
    python -m shared.identity move --from old@example.com --to new@example.com

Each prints one JSON summary line on stdout and writes an audit line (hashed addresses, counts,
whether it completed; never an address or an account id) on stderr, also when it fails
part-way. Exit codes as the other commands (``shared/commands``): 0 done, 1 storage failed or
the move is not complete (run it again), 2 a malformed address or bad settings (nothing
touched).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from shared.audit import audit, user_hash
from shared.auth.claims import InvalidEmail, normalise_email, parse_email
from shared.clock import SystemClock, iso
from shared.commands import run_for_user
from shared.config import Settings
from shared.identity.move import AddressTaken, MoveReport, move_user
from shared.storage import make_store


class ReleaseSummary(BaseModel):
    released: bool


class ShowSummary(BaseModel):
    """Whether the address is bound, and since when: never the account's ids."""

    model_config = ConfigDict(populate_by_name=True)

    bound: bool
    bound_at: str | None = Field(default=None, alias="boundAt")


class MoveSummary(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sessions: int
    taken: list[str]
    binding: str
    complete: bool
    refused: str | None = Field(default=None)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.identity",
        description="Release an address's binding, or move a user's data to a new address.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="whether the address is bound to an account")
    show.add_argument("--email", required=True, help="the address")
    release = commands.add_parser("release", help="let the next account to sign in bind it")
    release.add_argument("--email", required=True, help="the address to release")
    move = commands.add_parser("move", help="move every session and the binding")
    move.add_argument("--from", dest="old", required=True, help="the user's old address")
    move.add_argument("--to", dest="new", required=True, help="the user's new address")
    return parser.parse_args(argv)


async def _show(email: str, user: str, settings: Settings) -> int:
    store = make_store(settings)
    try:
        held = await store.read_binding(email)
    finally:
        await store.close()
    summary = ShowSummary(
        bound=held is not None, bound_at=iso(held.bound_at) if held is not None else None
    )
    print(summary.model_dump_json(by_alias=True, exclude_none=True), flush=True)
    return 0


async def _release(email: str, user: str, settings: Settings) -> int:
    store = make_store(settings)
    released: bool | None = None
    try:
        released = await store.release_binding(email)
    finally:
        audit(
            "identity_release",
            user=user,
            by="operator",
            released=released,
            complete=released is not None,
        )
        await store.close()
    print(ReleaseSummary(released=released).model_dump_json(), flush=True)
    return 0


async def _move(old: str, new: str, user: str, settings: Settings) -> int:
    store = make_store(settings)
    report = MoveReport()
    refused: str | None = None
    try:
        try:
            await move_user(store, old, new, clock=SystemClock(), report=report)
        except AddressTaken as exc:
            refused = str(exc)
    finally:
        audit(
            "identity_move",
            user=user,
            to=user_hash(new, settings.log_hash_salt),
            by="operator",
            sessions=report.sessions,
            taken=len(report.taken),
            binding=report.binding,
            complete=report.complete,
        )
        await store.close()
    summary = MoveSummary(
        sessions=report.sessions,
        taken=report.taken,
        binding=report.binding,
        complete=report.complete,
        refused=refused,
    )
    print(summary.model_dump_json(exclude_none=True), flush=True)
    return 0 if report.complete else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "show":
        return run_for_user("identity show", args.email, _show)
    if args.command == "release":
        return run_for_user("identity release", args.email, _release)
    try:
        new = parse_email(args.new)
    except InvalidEmail as exc:
        print(f"identity move: --to: {exc}", file=sys.stderr)
        return 2
    if normalise_email(args.old) == new:
        print("identity move: --from and --to are the same address", file=sys.stderr)
        return 2
    return run_for_user(
        "identity move",
        args.old,
        lambda old, user, settings: _move(old, new, user, settings),
    )
