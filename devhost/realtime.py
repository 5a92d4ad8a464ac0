"""The local host's Web PubSub: a stand-in (``tools/webpubsub/``) started with the host, so
that ``make dev`` delivers group events live with no extra step, and stopped with it."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

from tools.webpubsub import RunningWebPubSub, start_in_thread

log = logging.getLogger("parley.devhost")


def start_local_webpubsub(
    environ: MutableMapping[str, str] | None = None,
) -> RunningWebPubSub | None:
    """Start the stand-in and point the app at it (``WEBPUBSUB_ENDPOINT``/``WEBPUBSUB_KEY`` in
    ``environ``, before the settings are read), unless the environment names a Web PubSub of
    its own. It serves from a thread of the host's process, so it ends with the host."""
    env = os.environ if environ is None else environ
    if env.get("WEBPUBSUB_ENDPOINT", ""):
        return None
    stand_in = start_in_thread()
    env["WEBPUBSUB_ENDPOINT"] = stand_in.endpoint
    env["WEBPUBSUB_KEY"] = stand_in.access_key
    log.info("local Web PubSub stand-in at %s (tools/webpubsub/README.md)", stand_in.endpoint)
    return stand_in
