"""The tests' Cosmos DB fixtures, on the launcher in tools/local/cosmos.py.

Public API:
    cosmos_account         session-scoped fixture: the user's account (COSMOS_ENDPOINT), else
                           the local server shared by the process (tools.local.cosmos_target)
    cosmos_account_lagging, cosmos_account_throttled
                           session-scoped fixtures: each its own local server in the
                           LAGGING / THROTTLED mode; skipped when COSMOS_ENDPOINT is set
    COSMOS_MODE_FIXTURES   the suites' Cosmos parameter ids and the fixture of each
    account_for(request, backend)
                           the account of such a parameter
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.local.cosmos import (
    LAGGING,
    THROTTLED,
    CosmosAccount,
    CosmosMode,
    cosmos_target,
    local_cosmos,
    user_account,
)


@pytest.fixture(scope="session")
def cosmos_account() -> Iterator[CosmosAccount]:
    """The Cosmos account for the whole test session (see cosmos_target)."""
    with cosmos_target() as account:
        yield account


def _local_mode_account(mode: CosmosMode) -> Iterator[CosmosAccount]:
    if user_account() is not None:
        pytest.skip("COSMOS_ENDPOINT names an account; server modes exist on the local server only")
    with local_cosmos(mode=mode) as account:
        yield account


@pytest.fixture(scope="session")
def cosmos_account_lagging() -> Iterator[CosmosAccount]:
    """A local server of its own in the LAGGING mode, for the whole test session."""
    yield from _local_mode_account(LAGGING)


@pytest.fixture(scope="session")
def cosmos_account_throttled() -> Iterator[CosmosAccount]:
    """A local server of its own in the THROTTLED mode, for the whole test session."""
    yield from _local_mode_account(THROTTLED)


# The local server's modes the suites run in, by the parameter id they use, and the fixture
# that provides each: the default (strict) one, lagging replicas, and a tight RU budget.
COSMOS_MODE_FIXTURES: dict[str, str] = {
    "cosmos": "cosmos_account",
    "cosmos-lagging": "cosmos_account_lagging",
    "cosmos-throttled": "cosmos_account_throttled",
}


def account_for(request: pytest.FixtureRequest, backend: str) -> CosmosAccount:
    """The Cosmos account of a suite parameter such as ``"cosmos-lagging"``."""
    account: CosmosAccount = request.getfixturevalue(COSMOS_MODE_FIXTURES[backend])
    return account
