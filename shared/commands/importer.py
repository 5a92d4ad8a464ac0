"""``python -m shared.importer --email ADDRESS FILE``: a ChatGPT or Parley export into one
user's conversations, for a request that came by support (``shared/importer/`` is the rule)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.commands import run_for_user
from shared.config import Settings
from shared.importer import (
    JSON_MEDIA_TYPE,
    ZIP_MEDIA_TYPE,
    ImportReport,
    audit_import,
    import_file,
)
from shared.storage import make_store


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.importer",
        description=(
            "Import a ChatGPT data export (conversations.json or its zip) or a Parley export "
            "into one user's conversations; print the JSON report."
        ),
    )
    parser.add_argument("--email", required=True, help="the user's email address")
    parser.add_argument(
        "file", type=Path, help="conversations.json, the export's zip, or a Parley export"
    )
    return parser.parse_args(argv)


async def _import(email: str, user: str, settings: Settings, *, path: Path) -> int:
    size = (await asyncio.to_thread(path.stat)).st_size
    if size > settings.import_max_bytes:
        print(f"import: {path} is larger than IMPORT_MAX_BYTES", file=sys.stderr)
        return 2
    data = await asyncio.to_thread(path.read_bytes)
    media_type = ZIP_MEDIA_TYPE if data[:4] == b"PK\x03\x04" else JSON_MEDIA_TYPE
    store = make_store(settings)
    report: ImportReport | None = None
    try:
        report = await import_file(store, email, data, media_type)
    finally:
        await store.close()
        audit_import(user, "operator", report)
    print(report.model_dump_json(by_alias=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_for_user(
        "import",
        args.email,
        lambda email, user, settings: _import(email, user, settings, path=args.file),
    )
