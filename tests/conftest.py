"""Fixtures shared by every suite: stores under test, the local host, identities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.local.host import RunningHost, run_host

# Fixtures every suite may use, registered once: the Cosmos accounts, the token issuer, the
# Web PubSub stand-in, the stores the API scenarios run on, the operators' commands' storage.
pytest_plugins = [
    "tests.support.cosmos",
    "tests.support.jwks",
    "tests.support.webpubsub",
    "tests.support.stores",
    "tests.support.commands",
]


def _not_in_this_mode(item: pytest.Item) -> bool:
    """- ``volume`` tests (thousands of items, or live traffic for many passes) do not run on
      the local Cosmos server under its 400 RU/s budget: at Azure's least throughput their
      work alone takes minutes. Throttled bulk work is covered by the archival pass's
      throttling tests, which run in that mode.
    - ``cross_instance`` tests read through the host, at once, what another client wrote (a
      test's own seeding or archival pass, or a restarted host's predecessor). Session
      consistency promises that only within one client (docs/design.md, "Consistency"), and
      the lagging server's replicas stay behind until more writes come, so those tests do not
      run on it; every flow within one host does."""
    if "cosmos-throttled" in item.name and item.get_closest_marker("volume"):
        return True
    return "cosmos-lagging" in item.name and item.get_closest_marker("cross_instance") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        (drop if _not_in_this_mode(item) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {"AUTH_MODE": "dev", "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(tmp_path / "c.db")}


@pytest.fixture
def host(sqlite_env: dict[str, str], tmp_path: Path) -> Iterator[RunningHost]:
    """A running local host on the embedded store, echo model, dev identities."""
    with run_host(sqlite_env, tmp_path / "host.log") as running:
        yield running
