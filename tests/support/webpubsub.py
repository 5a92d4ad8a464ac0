"""The tests' Web PubSub fixture, on the launcher in tools/local/webpubsub.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.local.webpubsub import local_webpubsub
from tools.webpubsub import RunningWebPubSub


@pytest.fixture(scope="module")
def webpubsub() -> Iterator[RunningWebPubSub]:
    """A local Web PubSub stand-in for the module's tests."""
    with local_webpubsub() as stand_in:
        yield stand_in
