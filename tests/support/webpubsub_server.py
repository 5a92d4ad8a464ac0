"""The Web PubSub service that tests run against: the local stand-in (tools/webpubsub/README.md),
served from a thread of the test process on a free port with a fresh random access key.

Public API:
    local_webpubsub()      context manager: a fresh stand-in for the duration of the block
    webpubsub              module-scoped pytest fixture built on it (a RunningWebPubSub:
                           endpoint, access_key, service, connection_string)
    HUB                    the hub the app uses by default (WEBPUBSUB_HUB)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tools.webpubsub import RunningWebPubSub, start_in_thread

HUB = "parley"


@contextmanager
def local_webpubsub() -> Iterator[RunningWebPubSub]:
    stand_in = start_in_thread()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture(scope="module")
def webpubsub() -> Iterator[RunningWebPubSub]:
    with local_webpubsub() as stand_in:
        yield stand_in
