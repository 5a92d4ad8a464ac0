"""``python -m shared.usage --email ADDRESS [--reset]``: one user's token usage, every period
recorded, as one JSON line; with ``--reset``, then deleted (``shared/usage/`` is the rule)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from shared.audit import audit
from shared.commands import run_for_user
from shared.config import Settings
from shared.storage import make_store
from shared.usage import spent_json


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.usage",
        description=(
            "Print one user's token usage, every period recorded, as one JSON line; with "
            "--reset, then delete it (the user's budgets start again from zero)."
        ),
    )
    parser.add_argument("--email", required=True, help="the user's email address")
    parser.add_argument("--reset", action="store_true", help="delete the usage after printing it")
    return parser.parse_args(argv)


async def _usage(email: str, user: str, settings: Settings, *, reset: bool) -> int:
    store = make_store(settings)
    try:
        spent = await store.read_usage(email)
        if reset:
            await store.clear_usage(email)
            # Who reset whose budget: the hashed user, never the address.
            audit("usage_reset", user=user, by="operator", periods=len(spent))
    finally:
        await store.close()
    print(json.dumps({"usage": spent_json(spent), "reset": reset}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_for_user(
        "usage",
        args.email,
        lambda email, user, settings: _usage(email, user, settings, reset=args.reset),
    )
