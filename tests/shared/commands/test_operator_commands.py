"""The operators' commands for one user, as processes (``shared/export/``, ``shared/erase/``):

    python -m shared.export --email alice@example.com [--out FILE]
    python -m shared.erase --email alice@example.com [--dry-run]

on the embedded store and on Cosmos (the local server, or COSMOS_ENDPOINT's account). What they
print, what they write, what they leave, and their audit line on stderr: the hashed user and
counts, never the address or any message text.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from shared.audit import user_hash
from shared.storage.base import Store
from tests.support.commands import (
    SALT,
    SECRET,
    Storage,
    assert_nothing_revealed,
    audit_lines,
    populate,
)
from tests.support.faulty import FAIL_ENV
from tests.support.scenarios import (
    START,
    nothing_of,
    seed_session,
    without_volatile,
)
from tests.support.store_state import raw_items
from tools.local.host import dev_headers, run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


@pytest.fixture
def users() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"kate-{tag}@example.com", f"bob-{tag}@example.com"


def test_export_writes_what_the_api_serves(
    storage: Storage, users: tuple[str, str], tmp_path: Path
) -> None:
    kate, bob = users
    sessions, messages = storage.with_store(lambda store: populate(store, kate))
    storage.with_store(lambda store: populate(store, bob))
    with (
        run_host(storage.env, tmp_path / "host.log") as host,
        httpx.Client(base_url=host.base_url, headers=dev_headers(kate), timeout=60) as client,
    ):
        served = client.get("/api/export").json()
        served_csv = client.get("/api/export", params={"format": "csv"}).content
        served_zip = client.get("/api/export", params={"format": "markdown"}).content

    # The other formats: the command writes what the API serves (the zip's times aside).
    as_csv = tmp_path / "exports" / "kate.csv"
    ran_csv = storage.command(
        "shared.export", "--email", kate, "--out", str(as_csv), "--format", "csv"
    )
    assert ran_csv.returncode == 0, ran_csv.stderr
    assert as_csv.read_bytes() == served_csv
    assert served_csv.startswith(b"\xef\xbb\xbfsessionId,title,seq,role,timestamp,content,rating")
    as_zip = tmp_path / "exports" / "kate.zip"
    ran_zip = storage.command(
        "shared.export", "--email", kate, "--out", str(as_zip), "--format", "markdown"
    )
    assert ran_zip.returncode == 0, ran_zip.stderr
    with (
        zipfile.ZipFile(as_zip) as written_zip,
        zipfile.ZipFile(io.BytesIO(served_zip)) as served_archive,
    ):
        names = written_zip.namelist()
        assert names == served_archive.namelist() and len(names) == sessions
        for name in names:
            assert written_zip.read(name) == served_archive.read(name)
    assert [line["format"] for line in audit_lines(ran_zip.stderr, "export")] == ["markdown"]
    for path in (as_csv, as_zip):
        path.unlink()

    out = tmp_path / "exports" / "kate.json"
    ran = storage.command("shared.export", "--email", kate, "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    [line] = ran.stdout.splitlines()
    assert json.loads(line) == {"sessions": sessions, "messages": messages, "complete": True}
    text = out.read_text(encoding="utf-8")
    assert text.endswith('"complete":true}\n')
    written = json.loads(text)
    assert written.pop("exportedAt").endswith("Z")
    served.pop("exportedAt")
    assert written == served
    assert len(written["sessions"]) == sessions
    assert audit_lines(ran.stderr, "export") == [
        {
            "user": user_hash(kate, SALT),
            "by": "operator",
            "format": "json",
            "sessions": sessions,
            "messages": messages,
            "complete": True,
        }
    ]
    assert_nothing_revealed(ran.stderr + ran.stdout, kate, bob)
    assert sorted(p.name for p in out.parent.iterdir()) == ["kate.json"]  # no temporary left

    # Without --out the document is the standard output, the summary goes to stderr; the
    # address is taken as the identity rule takes it (lower-cased).
    to_stdout = storage.command("shared.export", "--email", kate.upper())
    assert to_stdout.returncode == 0, to_stdout.stderr
    document = json.loads(to_stdout.stdout)
    document.pop("exportedAt")
    assert document == served
    assert {"sessions": sessions, "messages": messages, "complete": True} in [
        json.loads(x) for x in to_stdout.stderr.splitlines() if x.startswith('{"sessions"')
    ]


@pytest.mark.parametrize("fail", ["page_messages:3", "all_sessions:1"])
def test_an_export_that_fails_part_way_writes_no_file(
    storage: Storage, users: tuple[str, str], tmp_path: Path, fail: str
) -> None:
    kate, _ = users
    storage.with_store(lambda store: populate(store, kate))
    out = tmp_path / "out" / "kate.json"
    ran = storage.command(
        "tests.support.faulty",
        "shared.export",
        "--email",
        kate,
        "--out",
        str(out),
        extra={FAIL_ENV: fail},
    )
    assert ran.returncode == 1, ran.stderr
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # nor any part of it under another name
    assert ran.stdout == ""
    [audit] = audit_lines(ran.stderr, "export")
    assert (audit["complete"], audit["user"]) == (False, user_hash(kate, SALT))
    assert_nothing_revealed(ran.stderr, kate)


def test_erase_counts_then_leaves_nothing(storage: Storage, users: tuple[str, str]) -> None:
    kate, bob = users
    sessions, messages = storage.with_store(lambda store: populate(store, kate))
    storage.with_store(lambda store: populate(store, bob))
    before = storage.with_store(lambda store: raw_items(store, kate))
    bob_before = storage.with_store(lambda store: raw_items(store, bob))

    dry = storage.command("shared.erase", "--email", kate, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    [line] = dry.stdout.splitlines()
    assert json.loads(line) == {"sessions": sessions, "messages": messages, "dryRun": True}
    after_dry = storage.with_store(lambda store: raw_items(store, kate))
    assert without_volatile(after_dry) == without_volatile(before)
    assert audit_lines(dry.stderr, "erase") == [
        {
            "user": user_hash(kate, SALT),
            "by": "operator",
            "sessions": sessions,
            "messages": messages,
            "dryRun": True,
            "complete": True,
        }
    ]

    ran = storage.command("shared.erase", "--email", kate)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"sessions": sessions, "messages": messages, "dryRun": False}
    assert storage.with_store(lambda store: nothing_of(store, kate))
    bob_after = storage.with_store(lambda store: raw_items(store, bob))
    assert without_volatile(bob_after) == without_volatile(bob_before)
    assert audit_lines(ran.stderr, "erase") == [
        {
            "user": user_hash(kate, SALT),
            "by": "operator",
            "sessions": sessions,
            "messages": messages,
            "dryRun": False,
            "complete": True,
        }
    ]
    for output in (dry.stdout + dry.stderr, ran.stdout + ran.stderr):
        assert_nothing_revealed(output, kate, bob)

    again = storage.command("shared.erase", "--email", kate)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"sessions": 0, "messages": 0, "dryRun": False}


@pytest.mark.parametrize(
    ("fail", "counted", "left"),
    [("delete_session:2", True, 2), ("usage:1", False, 3)],
    ids=["after-one-session", "before-counting"],
)
def test_an_erase_that_fails_part_way_still_writes_its_audit_line(
    storage: Storage, users: tuple[str, str], fail: str, counted: bool, left: int
) -> None:
    kate, _ = users
    sessions, messages = storage.with_store(lambda store: populate(store, kate))
    ran = storage.command(
        "tests.support.faulty", "shared.erase", "--email", kate, extra={FAIL_ENV: fail}
    )
    assert ran.returncode == 1, ran.stderr
    assert ran.stdout == ""  # no summary: it did not finish
    # One session went before the failure, or none did; the line says so either way.
    assert storage.with_store(lambda store: store.usage(kate))[0] == left
    assert audit_lines(ran.stderr, "erase") == [
        {
            "user": user_hash(kate, SALT),
            "by": "operator",
            "sessions": sessions if counted else None,
            "messages": messages if counted else None,
            "dryRun": False,
            "complete": False,
        }
    ]
    assert_nothing_revealed(ran.stderr, kate)


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "\u212aATE@example.com",  # a Kelvin sign, which lower-cases to the k of kate@...
        "kate@example.com\u200b",  # a zero-width space
        "kate@@example.com",
        "",
    ],
    ids=["not-an-email", "kelvin-sign", "zero-width", "two-at", "empty"],
)
@pytest.mark.parametrize("command", ["export", "erase"])
def test_a_malformed_email_exits_2_and_touches_nothing(
    storage: Storage, tmp_path: Path, email: str, command: str
) -> None:
    victim = "kate@example.com"  # what a look-alike must never become
    storage.with_store(lambda store: populate(store, victim))
    before = storage.with_store(lambda store: raw_items(store, victim))
    out = tmp_path / "never.json"
    args = ["--out", str(out)] if command == "export" else []
    ran = storage.command(f"shared.{command}", "--email", email, *args)
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert ran.stdout == ""
    assert f"{command}: --email: " in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1  # one clear line, no stack
    assert audit_lines(ran.stderr, command) == []
    assert not out.exists()
    after = storage.with_store(lambda store: raw_items(store, victim))
    assert without_volatile(after) == without_volatile(before)


def test_the_commands_cover_shares(
    storage: Storage, users: tuple[str, str], tmp_path: Path
) -> None:
    from shared.clock import FixedClock
    from shared.models import ShareCreateRequest
    from shared.sharing import ShareService

    kate, bob = users

    async def share_and_view(store: Store) -> tuple[str, str]:
        clock = FixedClock(START)
        shares = ShareService(store, clock, token_key="k" * 32)
        mine = await seed_session(store, kate, [f"shared {SECRET}", "answer"])
        theirs = await seed_session(store, bob, [f"theirs {SECRET}", "answer"])
        request = ShareCreateRequest.model_validate({"audience": "signed_in"})
        kates = await shares.create(kate, mine.id, request)
        bobs = await shares.create(bob, theirs.id, request)
        await shares.read(bob, kates.share_id)
        await shares.read(kate, bobs.share_id)
        return kates.share_id, bobs.share_id

    kates, bobs = storage.with_store(share_and_view)

    out = tmp_path / "kate.json"
    exported = storage.command("shared.export", "--email", kate, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    document = json.loads(out.read_text())
    assert [s["shareId"] for s in document["shares"]] == [kates]
    assert [v["email"] for v in document["shares"][0]["viewLog"]] == [bob]
    assert [v["shareId"] for v in document["sharesViewed"]] == [bobs]

    erased = storage.command("shared.erase", "--email", kate)
    assert erased.returncode == 0, erased.stderr
    assert_nothing_revealed(erased.stdout + erased.stderr, kate, bob)

    async def after(store: Store) -> None:
        assert await store.get_share(kates) is None  # her share went
        assert await store.share_views(kates) == []
        assert await store.share_views(bobs) == []  # she left Bob's log
        assert await store.get_share(bobs) is not None  # Bob's share stays
        assert await nothing_of(store, kate)

    storage.with_store(after)


def test_usage_reads_and_resets_one_user(storage: Storage, users: tuple[str, str]) -> None:
    kate, bob = users
    storage.with_store(lambda store: populate(store, kate))
    storage.with_store(lambda store: populate(store, bob))

    read = storage.command("shared.usage", "--email", kate.upper())
    assert read.returncode == 0, read.stderr
    shown = json.loads(read.stdout)
    assert shown["reset"] is False
    # Kate's three answered turns, in her day's and her month's records.
    assert [(u["period"].split("-")[0], u["turns"]) for u in shown["usage"]] == [
        ("day", 3),
        ("month", 3),
    ]
    assert all(u["promptTokens"] > 0 for u in shown["usage"])

    reset = storage.command("shared.usage", "--email", kate, "--reset")
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout) == shown | {"reset": True}
    assert audit_lines(reset.stderr, "usage_reset") == [
        {"user": user_hash(kate, SALT), "by": "operator", "periods": 2}
    ]
    assert_nothing_revealed(reset.stderr + reset.stdout, kate, bob)
    after = storage.command("shared.usage", "--email", kate)
    assert json.loads(after.stdout) == {"usage": [], "reset": False}
    # Bob's usage is his own.
    assert len(storage.with_store(lambda store: store.read_usage(bob))) == 2
    assert storage.command("shared.usage", "--email", "not-an-address").returncode == 2
