"""``python -m shared.report [--days N] [--out FILE | --json]``: the operators' figures from
the configured store, as HTML with charts or JSON (``shared/report/`` computes them)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.commands import DONE, run
from shared.config import Settings
from shared.report import MAX_DAYS, compute, to_html
from shared.storage import make_store


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.report",
        description="The operators' figures from the configured store: HTML with charts, or JSON.",
    )
    parser.add_argument("--days", type=int, default=30, help=f"UTC days, 1 to {MAX_DAYS}")
    parser.add_argument("--out", default="report.html", help="the HTML file to write")
    parser.add_argument("--json", action="store_true", help="print JSON instead of writing HTML")
    args = parser.parse_args(argv)
    if not 1 <= args.days <= MAX_DAYS:
        parser.error(f"--days must be from 1 to {MAX_DAYS}")
    return args


async def _report(args: argparse.Namespace, settings: Settings) -> int:
    store = make_store(settings)
    try:
        report = await compute(store, days=args.days, now=datetime.now(UTC))
    finally:
        await store.close()
    if args.json:
        print(json.dumps(report.to_json()), flush=True)
    else:
        await asyncio.to_thread(Path(args.out).write_text, to_html(report), encoding="utf-8")
        print(f"wrote {args.out}", flush=True)
    return DONE


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run("report", lambda settings: _report(args, settings))
