"""Fixtures of the infrastructure suites (the mocks and the program's run are in
tests/infra/support.py)."""

from __future__ import annotations

import asyncio

import pulumi
import pytest

from tests.infra.support import Deployment, RecordingMocks, make_config, run_program


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    return run_program(make_config())


@pytest.fixture
def pulumi_mocks() -> RecordingMocks:
    """Fresh mocks for a test that declares resources itself (set ``deployed_outputs`` to give
    the stack a previous deployment)."""
    mocks = RecordingMocks()
    # Pulumi's mocks use the thread's current event loop; an earlier test's asyncio.run()
    # leaves none set, so give the program a fresh one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="parley", stack="test", preview=False)
    return mocks
