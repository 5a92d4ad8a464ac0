"""Fixtures of the HTTP suites."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tools.local.host import RunningHost, dev_headers


@pytest.fixture
def alice(host: RunningHost) -> Iterator[httpx.Client]:
    """A client of the test's host, signed in as Alice (an address with capitals)."""
    with httpx.Client(
        base_url=host.base_url, headers=dev_headers("Alice@Example.com"), timeout=30
    ) as client:
        yield client


@pytest.fixture(params=["sqlite", "cosmos"])
def any_host(request: pytest.FixtureRequest) -> RunningHost:
    """The suite's host on SQLite (``host``) and on Cosmos DB (the module's ``cosmos_host``)."""
    running: RunningHost = request.getfixturevalue(
        "host" if request.param == "sqlite" else "cosmos_host"
    )
    return running
