"""Fixtures of the browser suite: Debian's Chromium, pages at desktop and phone width, and
local hosts on either store (SQLite, or the test Cosmos account) with their stores at hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from shared.storage.base import Store
from tests.support.fake_openai import FakeOpenAI
from tests.web.browser.support import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE, StoredHost, open_page
from tools.local.cosmos import CosmosAccount
from tools.local.host import RunningHost, run_host

VENDOR = Path(__file__).resolve().parents[3] / "web" / "vendor"


@pytest.fixture(scope="session", autouse=True)
def vendored_libraries() -> None:
    # The page imports them; without them it cannot start, and every test would fail obscurely.
    missing = [n for n in ("marked.esm.js", "purify.es.js") if not (VENDOR / n).is_file()]
    assert not missing, f"web/vendor/ lacks {missing}: run `make vendor` (docs/web.md)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Debian's Chromium: Playwright's own browser download cannot work here (see Makefile).
    # One per module, not per session: Playwright's sync API runs an event loop on this thread
    # while it is open, and the suites after this one need the thread's asyncio.run.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser, DESKTOP)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser, PHONE)


@pytest.fixture
def titled_host(sqlite_env: dict[str, str], tmp_path: Path) -> Iterator[RunningHost]:
    """The local host with model-written titles (the echo model "writes" them)."""
    with run_host({**sqlite_env, "TITLE_MODE": "model"}, tmp_path / "titled-host.log") as running:
        yield running


def _sqlite_host(sqlite_env: dict[str, str], tmp_path: Path) -> Iterator[StoredHost]:
    from shared.storage.sqlite import SqliteStore

    def open_store() -> Store:
        return SqliteStore(sqlite_env["SQLITE_PATH"])

    with run_host(sqlite_env, tmp_path / "host.log") as running:
        yield StoredHost(running, "sqlite", open_store)


def _cosmos_host(account: CosmosAccount, tmp_path: Path) -> Iterator[StoredHost]:
    from tests.support.databases import cosmos_database

    with cosmos_database(account) as database:
        env = {
            "AUTH_MODE": "dev",
            "STORAGE_BACKEND": "cosmos",
            "COSMOS_ENDPOINT": account.endpoint,
            "COSMOS_KEY": account.key,
            "COSMOS_VERIFY_TLS": "true" if account.verify_tls else "false",
            "COSMOS_DATABASE": database.name,
            "LLM_PROVIDER": "echo",
        }
        with run_host(env, tmp_path / "cosmos-host.log") as running:
            yield StoredHost(running, "cosmos", database.store)


@pytest.fixture(params=["sqlite", "cosmos"])
def stored_host(
    request: pytest.FixtureRequest, sqlite_env: dict[str, str], tmp_path: Path
) -> Iterator[StoredHost]:
    """The local host on each store in turn, with that store at hand for seeding."""
    if request.param == "sqlite":
        yield from _sqlite_host(sqlite_env, tmp_path)
    else:
        yield from _cosmos_host(request.getfixturevalue("cosmos_account"), tmp_path)


@pytest.fixture
def sqlite_host(sqlite_env: dict[str, str], tmp_path: Path) -> Iterator[StoredHost]:
    """The local host on SQLite, with the store at hand for seeding."""
    yield from _sqlite_host(sqlite_env, tmp_path)


@pytest.fixture
def fake_model() -> Iterator[FakeOpenAI]:
    """A scripted OpenAI-compatible model on a real socket: answers chosen by the test, and
    answers held part-way until the test lets them go."""
    with FakeOpenAI().running() as server:
        yield server


@pytest.fixture
def model_host(
    sqlite_env: dict[str, str], fake_model: FakeOpenAI, tmp_path: Path
) -> Iterator[RunningHost]:
    """The local host on SQLite with the scripted model behind it (checkpoints every 50 ms)."""
    env = {
        **sqlite_env,
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake_model.url + "/v1",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_MODEL": "scripted-model",
        "LLM_MAX_RETRIES": "0",
        "TITLE_MODE": "first-message",
        "STREAM_CHECKPOINT_MS": "50",
    }
    with run_host(env, tmp_path / "model-host.log") as running:
        yield running


@pytest.fixture
def patient_expect() -> Iterator[None]:
    """Expectations that wait up to 20 s (not 5): a turn through the model server, its
    checkpoints and the host takes longer on a machine shared with other test runs. Only a
    bound: each waits for its result, never for the time."""
    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=5_000)
