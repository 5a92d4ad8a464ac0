"""``python -m devhost``: serve the app on http://127.0.0.1:$PORT (what ``make dev`` runs)."""

from __future__ import annotations

import logging

import uvicorn

from devhost.app import build_app
from devhost.realtime import start_local_webpubsub
from devhost.timeouts import timed_protocol
from shared.config import get_settings

# The largest request head (request line and headers) the local host reads. h11's own limit
# (16 KiB) applies only when a head arrives in several pieces, so a large identity header was
# refused or let through by chance of the network; with this, the app's own limits decide
# (an Easy Auth principal of more than 64 KiB is 401), every time.
MAX_REQUEST_HEAD_BYTES = 128 * 1024


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Before the settings are read: it sets WEBPUBSUB_ENDPOINT/KEY unless they are set.
    stand_in = start_local_webpubsub()
    try:
        settings = get_settings()
        uvicorn.run(
            build_app(),
            host="127.0.0.1",
            port=settings.port,
            log_level="warning",
            http=timed_protocol(settings.devhost_header_timeout_s, settings.devhost_body_timeout_s),
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        )
    finally:
        if stand_in is not None:
            stand_in.stop()


if __name__ == "__main__":
    main()
