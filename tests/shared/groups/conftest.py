"""Fixtures of the group suites."""

from __future__ import annotations

import pytest

from tests.support.groups import People


@pytest.fixture
def people(emails: tuple[str, str]) -> People:
    """The test's own people: its two callers and three more with their tag."""
    return People(*emails)
