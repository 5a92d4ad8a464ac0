"""``python -m shared.export --email ADDRESS [--out FILE] [--format json|markdown|csv]``: one
user's export for a request that came by support (``shared/export/`` is the rule)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from shared.answers import ShownAt, answer_budget_s
from shared.clock import SystemClock
from shared.commands import run_for_user
from shared.config import Settings
from shared.export import ExportCount, audit_export
from shared.export_formats import export_stream, parse_format
from shared.storage import make_store


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.export",
        description=(
            "Write everything of one user as one JSON document (to --out, else to standard "
            "output); print a JSON summary."
        ),
    )
    parser.add_argument("--email", required=True, help="the user's email address")
    parser.add_argument("--out", type=Path, help="the file to write (made only when complete)")
    parser.add_argument(
        "--format",
        choices=("json", "markdown", "csv"),
        default="json",
        help="json (the default), markdown (a zip of .md files) or csv (one row per message)",
    )
    return parser.parse_args(argv)


async def _export(
    email: str, user: str, settings: Settings, *, out: Path | None, export_format: str
) -> int:
    store = make_store(settings)
    count = ExportCount()
    try:
        now = SystemClock().now()
        budget = answer_budget_s(settings.llm_timeout_s, settings.llm_max_retries)
        pieces = export_stream(
            store,
            email,
            parse_format(export_format),
            now=now,
            count=count,
            shown=ShownAt(now, budget),
        )
        if out is None:
            async for piece in pieces:
                sys.stdout.buffer.write(piece)
            if export_format == "json":
                sys.stdout.buffer.write(b"\n")
            sys.stdout.flush()
        else:
            await _write_atomically(out, pieces, newline=export_format == "json")
    finally:
        await store.close()
        audit_export(user, "operator", export_format, count)
    summary = {"sessions": count.sessions, "messages": count.messages, "complete": True}
    # With the document on stdout, the summary goes to stderr.
    print(json.dumps(summary, separators=(",", ":")), file=sys.stdout if out else sys.stderr)
    return 0


async def _write_atomically(out: Path, pieces: AsyncIterator[bytes], *, newline: bool) -> None:
    """The file appears under its name only when the export is whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            async for piece in pieces:
                file.write(piece)
            if newline:
                file.write(b"\n")
        os.replace(temporary, out)
    except BaseException:
        await asyncio.to_thread(Path(temporary).unlink, missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_for_user(
        "export",
        args.email,
        lambda email, user, settings: _export(
            email, user, settings, out=args.out, export_format=args.format
        ),
    )
