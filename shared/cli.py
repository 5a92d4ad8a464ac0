"""What the operators' commands for one user share (``python -m shared.export``/``erase``):
the email checked by the one identity rule, the settings, errors as exit codes."""

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

# (email, hashed user for the audit line, settings) -> exit code
Work = Callable[[str, str, Settings], Coroutine[Any, Any, int]]


def run_for_user(command: str, raw_email: str, work: Work) -> int:
    """Exit 2 for a malformed email or bad settings (nothing is touched), 1 when the store
    fails (run it again: what was done stays done), else what ``work`` says."""
    # Logs (the audit line among them) go to stderr; stdout carries the command's output.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        email = parse_email(raw_email)
    except InvalidEmail as exc:
        print(f"{command}: --email: {exc}", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(work(email, user_hash(email, settings.log_hash_salt), settings))
    except ApiError as exc:
        print(f"{command}: {exc.message}", file=sys.stderr)
        return 1
