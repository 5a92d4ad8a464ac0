"""The operators' commands, apart from the rules they run (``docs/operations.md``):

    python -m shared.export     shared/commands/export.py
    python -m shared.erase      shared/commands/erase.py
    python -m shared.archive    shared/commands/archive.py
    python -m shared.identity   shared/commands/identity.py
    python -m shared.usage      shared/commands/usage.py
    python -m shared.importer   shared/commands/importer.py
    python -m shared.report     shared/commands/report.py

The ``python -m`` names are the documented ones; each of those modules only hands over to its
command here. What every command shares is this module: logs (audit lines among them) on stderr,
output on stdout, and one set of exit codes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from shared.audit import user_hash
from shared.auth.claims import InvalidEmail, parse_email
from shared.config import ConfigError, Settings, load_settings
from shared.errors import ApiError

# The exit codes of every command.
DONE = 0
# The store failed, or the work is not complete: run it again (what was done stays done).
AGAIN = 1
# Bad arguments or settings: nothing was touched.
REFUSED = 2

# settings -> exit code
Command = Callable[[Settings], Coroutine[Any, Any, int]]
# (email, hashed user for the audit line, settings) -> exit code
Work = Callable[[str, str, Settings], Coroutine[Any, Any, int]]


def run(command: str, work: Command, *, log_level: int = logging.INFO) -> int:
    """Read the settings and run ``work``: ``REFUSED`` for bad settings, ``AGAIN`` when the
    store fails, else what ``work`` says."""
    # Logs (the audit line among them) go to stderr; stdout carries the command's output.
    logging.basicConfig(level=log_level, stream=sys.stderr, format="%(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return REFUSED
    try:
        return asyncio.run(work(settings))
    except ApiError as exc:
        print(f"{command}: {exc.message}", file=sys.stderr)
        return AGAIN


def run_for_user(command: str, raw_email: str, work: Work) -> int:
    """``run`` for one user: the email checked by the one identity rule first (``REFUSED`` for
    a malformed one), and hashed for the audit line."""
    try:
        email = parse_email(raw_email)
    except InvalidEmail as exc:
        print(f"{command}: --email: {exc}", file=sys.stderr)
        return REFUSED
    return run(
        command, lambda settings: work(email, user_hash(email, settings.log_hash_salt), settings)
    )
