"""The user's data rights: "Download my data" (the export, saved only when whole) and "Delete
all my conversations" (named counts first, then DELETE repeated while it answers 202)."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Download, Page, Route, expect

from tests.web.browser.support import (
    EMAIL,
    api_chat,
    api_get,
    archive_everything,
    json_error,
    screenshot,
    session_titles,
    sign_in,
)
from tools.local.host import RunningHost

pytestmark = pytest.mark.browser


def seed(host: RunningHost, sqlite_path: str) -> None:
    """One archived and two active conversations, and somebody else's."""
    api_chat(host, "An old one")
    assert archive_everything(sqlite_path) == 1
    api_chat(host, "Recent one")
    api_chat(host, "Most recent one")
    api_chat(host, "Not yours", email="bob@example.com")


def test_download_my_data_saves_the_whole_export(
    host: RunningHost, page: Page, sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    seed(host, sqlite_env["SQLITE_PATH"])
    sign_in(page, host)
    button = page.get_by_role("button", name="Download my data")
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename.startswith("parley-export-")
    assert download.suggested_filename.endswith(".json")
    saved = tmp_path / "export.json"
    download.save_as(saved)
    document = json.loads(saved.read_text())
    assert document["complete"] is True and document["email"] == EMAIL
    titles = sorted(s["title"] for s in document["sessions"])
    assert titles == ["An old one", "Most recent one", "Recent one"]
    assert [s["archived"] for s in document["sessions"]].count(True) == 1
    expect(page.locator("#data-status")).to_have_text("Your data was downloaded: 3 conversations.")
    expect(button).to_be_focused()


@pytest.mark.parametrize(
    "body",
    [
        # Cut off part-way (storage failed once streaming began): it does not parse.
        '{"exportedAt":"2026-01-01T00:00:00Z","email":"a@b.c","sessions":[{"sessionId":',
        # Parses, but never says it is complete.
        '{"exportedAt":"2026-01-01T00:00:00Z","email":"a@b.c","sessions":[]}',
        '{"exportedAt":"2026-01-01T00:00:00Z","sessions":[],"complete":false}',
    ],
    ids=["cut-off", "no-complete", "complete-false"],
)
def test_an_incomplete_download_is_not_saved(host: RunningHost, page: Page, body: str) -> None:
    sign_in(page, host)
    downloads: list[Download] = []

    def saw(download: Download) -> None:
        downloads.append(download)

    page.on("download", saw)

    def cut_off(route: Route) -> None:
        route.fulfill(
            status=200,
            headers={
                "Content-Type": "application/json",
                "Content-Disposition": 'attachment; filename="parley-export-x.json"',
            },
            body=body,
        )

    page.route("**/api/export", cut_off)
    page.get_by_role("button", name="Download my data").click()
    error = page.locator("#data-error")
    expect(error).to_have_text("The download was incomplete, so nothing was saved. Try again.")
    expect(error).to_have_attribute("role", "alert")
    assert downloads == []


def test_a_failed_download_says_why(host: RunningHost, page: Page) -> None:
    sign_in(page, host)
    page.route("**/api/export", json_error(503, "storage_unavailable", {"Retry-After": "4"}))
    page.get_by_role("button", name="Download my data").click()
    expect(page.locator("#data-error")).to_have_text(
        "Your data could not be downloaded. Conversation storage is busy or unreachable. "
        "Try again in 4 seconds."
    )
    page.unroute("**/api/export")
    with page.expect_download():
        page.get_by_role("button", name="Download my data").click()
    expect(page.locator("#data-error")).to_be_empty()
    expect(page.locator("#data-status")).to_have_text("Your data was downloaded: 0 conversations.")


def test_delete_everything_names_the_loss_and_repeats_until_done(
    host: RunningHost, page: Page, sqlite_env: dict[str, str]
) -> None:
    seed(host, sqlite_env["SQLITE_PATH"])
    sign_in(page, host)
    expect(session_titles(page)).to_have_text(["Most recent one", "Recent one"])

    erase = page.get_by_role("button", name="Delete all my conversations")
    dialog = page.get_by_role("dialog", name="Delete all your conversations?")
    erase.click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(
        "Your 3 conversations (2 active, 1 archived) and every message in them will be "
        "deleted for good."
    )
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    screenshot(page, "erase-dialog.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(erase).to_be_focused()
    assert len(api_get(host, "/sessions").json()["sessions"]) == 2

    # The first answer is 202 (not finished, ask again in a second); then the real ones.
    calls: list[tuple[float, str]] = []

    def first_not_done(route: Route) -> None:
        if route.request.method != "DELETE":
            route.fallback()
            return
        calls.append((time.monotonic(), route.request.method))
        if len(calls) == 1:
            route.fulfill(
                status=202,
                headers={"Content-Type": "application/json", "Retry-After": "1"},
                body='{"remaining":true}',
            )
        else:
            route.fallback()

    page.route("**/api/sessions", first_not_done)
    erase.click()
    expect(dialog.get_by_role("button", name="Delete everything")).to_be_enabled()
    dialog.get_by_role("button", name="Delete everything").click()
    expect(page.locator("#data-status")).to_have_text(
        "All your conversations were deleted.", timeout=10_000
    )
    assert len(calls) == 2
    assert calls[1][0] - calls[0][0] >= 0.9  # Retry-After was respected
    expect(page.get_by_text("No conversations yet.")).to_be_visible()
    expect(session_titles(page)).to_have_count(0)
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(page.get_by_role("button", name="New chat")).to_be_focused()

    for archived in ("false", "true"):
        listed = api_get(host, f"/sessions?archived={archived}").json()
        assert listed["sessions"] == []
    assert api_get(host, "/sessions", email="bob@example.com").json()["sessions"] != []
    page.get_by_role("button", name="Archived").click()
    expect(page.get_by_text("No archived conversations.")).to_be_visible()


def test_delete_everything_stops_asking_when_it_never_ends(host: RunningHost, page: Page) -> None:
    api_chat(host, "Kept, as the server never finishes")
    sign_in(page, host)
    steps: list[str] = []

    def never_done(route: Route) -> None:
        if route.request.method != "DELETE":
            route.fallback()
            return
        steps.append(route.request.url)
        route.fulfill(
            status=202,
            headers={"Content-Type": "application/json", "Retry-After": "0"},
            body='{"remaining":true}',
        )

    page.route("**/api/sessions", never_done)
    page.get_by_role("button", name="Delete all my conversations").click()
    dialog = page.get_by_role("dialog", name="Delete all your conversations?")
    expect(dialog).to_contain_text("Your 1 conversation (1 active, 0 archived)")
    dialog.get_by_role("button", name="Delete everything").click()
    expect(page.locator("#data-error")).to_have_text(
        "Not everything was deleted. It is taking too long. Deleting again finishes the job.",
        timeout=15_000,
    )
    assert len(steps) == 100
    expect(session_titles(page)).to_have_text(["Kept, as the server never finishes"])


@pytest.mark.parametrize("export_format", ["markdown", "csv"])
def test_download_my_data_as_markdown_or_csv(
    host: RunningHost,
    page: Page,
    sqlite_env: dict[str, str],
    tmp_path: Path,
    export_format: str,
) -> None:
    seed(host, sqlite_env["SQLITE_PATH"])
    sign_in(page, host)
    page.get_by_label("Download as").select_option(export_format)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download my data").click()
    download = info.value
    extension = "zip" if export_format == "markdown" else "csv"
    assert download.suggested_filename.endswith(f".{extension}")
    saved = tmp_path / f"export.{extension}"
    download.save_as(saved)
    if export_format == "markdown":
        with zipfile.ZipFile(saved) as archive:
            texts = [archive.read(name).decode() for name in archive.namelist()]
        assert sorted(text.splitlines()[0] for text in texts) == [
            "# An old one",
            "# Most recent one",
            "# Recent one",
        ]
        expect(page.locator("#data-status")).to_have_text("Your data was downloaded as Markdown.")
    else:
        rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"), newline="")))
        assert rows[0] == [
            "sessionId",
            "title",
            "seq",
            "role",
            "timestamp",
            "content",
            "rating",
            "version",
        ]
        assert sorted(row[5] for row in rows[1:] if row[3] == "user") == [
            "An old one",
            "Most recent one",
            "Recent one",
        ]
        expect(page.locator("#data-status")).to_have_text("Your data was downloaded as CSV.")


def test_a_zip_without_its_directory_is_not_saved(host: RunningHost, page: Page) -> None:
    sign_in(page, host)
    downloads: list[Download] = []

    def saw(download: Download) -> None:
        downloads.append(download)

    page.on("download", saw)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("0001-a.txt", "# A\n" * 100)
    whole = buffer.getvalue()

    def cut_off(route: Route) -> None:
        route.fulfill(
            status=200,
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": 'attachment; filename="parley-export-x.zip"',
            },
            body=whole[: len(whole) // 2],  # the files so far, not the directory
        )

    page.route("**/api/export?format=markdown", cut_off)
    page.get_by_label("Download as").select_option("markdown")
    page.get_by_role("button", name="Download my data").click()
    error = page.locator("#data-error")
    expect(error).to_have_text("The download was incomplete, so nothing was saved. Try again.")
    assert downloads == []
