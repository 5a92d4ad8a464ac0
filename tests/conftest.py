"""Fixtures shared by every suite: stores under test, the local host, identities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cosmos_server import (  # noqa: F401  (fixtures)
    cosmos_account,
    cosmos_account_lagging,
    cosmos_account_throttled,
)
from tests.support.host import RunningHost, run_host
from tests.support.jwks import issuer, jwks_url  # noqa: F401  (fixtures)


def dev_headers(email: str) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL-NAME": email}


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {"AUTH_MODE": "dev", "STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(tmp_path / "c.db")}


@pytest.fixture
def host(sqlite_env: dict[str, str], tmp_path: Path) -> Iterator[RunningHost]:
    """A running local host on the embedded store, echo model, dev identities."""
    with run_host(sqlite_env, tmp_path / "host.log") as running:
        yield running
