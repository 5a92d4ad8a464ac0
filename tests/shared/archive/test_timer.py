"""The archival timer: registered with the configured schedule, fired by the local host's
schedule (driven by a FixedClock, no waiting) and on demand through a running host."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest

from devhost.app import timers
from devhost.schedule import Timer, TimerRunner, settings_environ
from shared.clock import FixedClock
from shared.runtime import reset_runtime
from shared.storage.sqlite import SqliteStore
from tests.support.scenarios import seed
from tests.support.store_state import items
from tools.local.host import ROOT, dev_headers, run_host

ALICE = "alice@example.com"


def function_app() -> func.FunctionApp:
    """A fresh import of function_app.py: get_functions() may run once per app object, and
    other suites index the shared ``function_app.app``."""
    spec = importlib.util.spec_from_file_location(
        "function_app_archive_test", ROOT / "function_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app: func.FunctionApp = module.app
    return app


def archive_timer(environ: dict[str, str]) -> Timer:
    found = [
        t for t in timers(function_app().get_functions(), environ) if t.name == "archive_timer"
    ]
    assert len(found) == 1
    return found[0]


def test_the_timer_is_registered_with_the_configured_schedule() -> None:
    [function] = [
        f for f in function_app().get_functions() if f.get_function_name() == "archive_timer"
    ]
    [binding] = function.get_bindings()
    raw: dict[str, Any] = binding.get_dict_repr()
    assert raw["type"] == "timerTrigger"
    assert raw["schedule"] == "%ARCHIVE_SCHEDULE%"  # Azure reads the app setting
    assert (raw["name"], raw["useMonitor"], raw["runOnStartup"]) == ("timer", True, False)
    # The local host resolves it the same way: the setting, else shared/config.py's default.
    assert archive_timer({"ARCHIVE_SCHEDULE": "0 15 4 * * 1"}).expression == "0 15 4 * * 1"
    defaults = {k: v for k, v in settings_environ().items() if k != "ARCHIVE_SCHEDULE"}
    from shared.config import Settings

    default = Settings.model_fields["archive_schedule"].default
    assert archive_timer({**defaults, "ARCHIVE_SCHEDULE": default}).expression == "0 0 3 * * *"


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's settings, as the host reads them: the embedded store in tmp_path."""
    path = tmp_path / "timer.db"
    monkeypatch.setenv("STORAGE_BACKEND", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(path))
    monkeypatch.setenv("AUTH_MODE", "dev")
    monkeypatch.delenv("COSMOS_ENDPOINT", raising=False)
    monkeypatch.delenv("ARCHIVE_TIME_BUDGET_S", raising=False)
    return path


@pytest.mark.parametrize("late_s", [0, 120])
def test_the_local_schedule_fires_the_timer(
    app_env: Path, caplog: pytest.LogCaptureFixture, late_s: int
) -> None:
    timer = archive_timer({"ARCHIVE_SCHEDULE": "0 30 2 * * *"})
    schedule_clock = FixedClock(datetime(2026, 11, 22, 1, 0, tzinfo=UTC))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        schedule_clock.advance(seconds=seconds + late_s)  # no real waiting

    async def scenario() -> dict[str, Any]:
        await reset_runtime()
        store = SqliteStore(app_env)
        # The pass itself runs on the real clock (the runtime's): stale relative to now.
        stale = await seed(store, ALICE, datetime.now(UTC) - timedelta(days=40))
        fresh = await seed(store, ALICE, datetime.now(UTC) - timedelta(days=1))
        try:
            await TimerRunner([timer], clock=schedule_clock, sleep=sleep).run_one(timer, rounds=2)
        finally:
            await reset_runtime()
        return {
            "stale": await items(store, ALICE, stale),
            "fresh": await items(store, ALICE, fresh),
        }

    with caplog.at_level(logging.INFO):
        state = asyncio.run(scenario())

    assert slept[0] == 90 * 60  # 01:00 to 02:30
    assert slept[1] == 24 * 3600 - late_s
    assert state["stale"]["active"] == (False, []) and state["stale"]["archive"][0] is True
    assert state["fresh"]["active"][0] is True
    runs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("archive_run ")]
    assert len(runs) == 2
    assert '"archived":1' in runs[0] and '"archived":0' in runs[1]
    past_due = [r for r in caplog.records if r.getMessage() == "archive_timer_past_due"]
    assert len(past_due) == (2 if late_s else 0)


def test_a_running_host_fires_the_timer_and_serves_archived_sessions(tmp_path: Path) -> None:
    path = tmp_path / "host.db"

    async def prepare() -> str:
        store = SqliteStore(path)
        return await seed(store, ALICE, datetime.now(UTC) - timedelta(days=45), 2)

    session_id = asyncio.run(prepare())
    env = {"AUTH_MODE": "dev", "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(path)}
    with run_host(env, tmp_path / "host.log") as host, httpx.Client(base_url=host.base_url) as http:
        headers = dev_headers(ALICE)
        assert http.post("/admin/functions/archive_timer").status_code == 202

        assert http.get("/api/sessions", headers=headers).json()["sessions"] == []
        listed = http.get("/api/sessions?archived=true", headers=headers).json()["sessions"]
        assert [(s["sessionId"], s["archived"]) for s in listed] == [(session_id, True)]
        detail = http.get(f"/api/sessions/{session_id}", headers=headers).json()
        assert detail["archived"] is True and len(detail["messages"]) == 2

        # A new message brings it back to the active store first.
        chat = http.post(
            "/api/chat", headers=headers, json={"message": "hi", "sessionId": session_id}
        )
        assert chat.status_code == 200, chat.text
        assert chat.json()["messages"][1]["content"] == "echo[2]:\nhi"
        active = http.get("/api/sessions", headers=headers).json()["sessions"]
        assert [(s["sessionId"], s["archived"], s["messageCount"]) for s in active] == [
            (session_id, False, 4)
        ]
        assert http.get("/api/sessions?archived=true", headers=headers).json()["sessions"] == []
        log = host.log()
    runs = [line for line in log.splitlines() if "archive_run {" in line]
    assert len(runs) == 1 and '"archived":1' in runs[0]
    assert ALICE not in log
