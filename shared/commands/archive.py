"""``python -m shared.archive [--older-than-days N] [--dry-run]``: one archival pass with the
configured storage; prints the pass's one-line JSON summary (``docs/operations.md``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from shared.archive.sweep import ArchivePolicy, ArchiveSummary, run_archive
from shared.commands import AGAIN, DONE, run
from shared.config import Settings
from shared.storage import make_store


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.archive",
        description="Run one archival pass with the configured storage; print a JSON summary.",
    )
    parser.add_argument(
        "--older-than-days",
        type=int,
        metavar="N",
        help="archive sessions not updated for N days (default: ARCHIVE_AFTER_DAYS)",
    )
    parser.add_argument("--dry-run", action="store_true", help="change nothing, count only")
    args = parser.parse_args(argv)
    if args.older_than_days is not None and args.older_than_days < 1:
        parser.error("--older-than-days must be at least 1")
    return args


async def _archive(args: argparse.Namespace, settings: Settings) -> int:
    store = make_store(settings)
    try:
        policy = ArchivePolicy.from_settings(
            settings, older_than_days=args.older_than_days, dry_run=args.dry_run
        )
        summary: ArchiveSummary = await run_archive(store, policy)
    finally:
        await store.close()
    print(summary.to_json(), flush=True)
    return AGAIN if summary.failed else DONE


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 after a clean run, 1 if anything failed, 2 for bad arguments or settings."""
    args = parse_args(argv)
    # Warnings (failed sessions) go to stderr; stdout carries only the JSON line.
    return run("archive", lambda settings: _archive(args, settings), log_level=logging.WARNING)
