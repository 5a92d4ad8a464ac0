"""The local Web PubSub stand-in (tools/webpubsub/README.md) for the length of a block: served
from a thread of this process on a free port with a fresh random access key.

Public API:
    local_webpubsub()      context manager: a fresh stand-in for the duration of the block
                           (a RunningWebPubSub: endpoint, access_key, service, connection_string)
    HUB                    the hub the app uses by default (WEBPUBSUB_HUB)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shared.config import Settings
from tools.webpubsub import RunningWebPubSub, start_in_thread

HUB: str = Settings.model_fields["webpubsub_hub"].default


@contextmanager
def local_webpubsub() -> Iterator[RunningWebPubSub]:
    stand_in = start_in_thread()
    try:
        yield stand_in
    finally:
        stand_in.stop()
