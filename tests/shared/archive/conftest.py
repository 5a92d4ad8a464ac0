"""Fixtures of the archival suites: the stores under test and the test's clock (the helpers are
in tests/shared/archive/support.py and tests/support/).

Every scenario runs inside one ``asyncio.run`` (the Cosmos client belongs to one event loop):
a test asks ``stores`` for an async context manager and does its work in it. The Cosmos store
gets the test's FixedClock, so the ages its moves stamp are the test's to decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.clock import FixedClock
from tests.shared.archive.support import BACKENDS, NOW, StoreFactory, make_store_factory


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock) -> StoreFactory:
    """Opens the store under test (a fresh SQLite file, or a fresh Cosmos database)."""
    return make_store_factory(request, request.param, tmp_path, clock)


@pytest.fixture
def cosmos_stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock
) -> StoreFactory:
    """The Cosmos store only: for what exists only there (the steps of a move)."""
    return make_store_factory(request, "cosmos", tmp_path, clock)


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    yield FixedClock(NOW)
