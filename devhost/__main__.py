"""``python -m devhost``: serve the app on http://127.0.0.1:$PORT (what ``make dev`` runs)."""

from __future__ import annotations

import logging
import socket

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


class Server(uvicorn.Server):
    """uvicorn's server, which says where it serves once its socket listens (uvicorn's own
    start-up lines are below the log level this host runs at)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"Parley on http://{self.config.host}:{port}/ (the API under /api/)", flush=True)
            print("ready", flush=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Before the settings are read: it sets WEBPUBSUB_ENDPOINT/KEY unless they are set.
    stand_in = start_local_webpubsub()
    try:
        settings = get_settings()
        config = uvicorn.Config(
            build_app(),
            host="127.0.0.1",
            port=settings.port,
            log_level="warning",
            http=timed_protocol(settings.devhost_header_timeout_s, settings.devhost_body_timeout_s),
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        )
        Server(config).run()
    finally:
        if stand_in is not None:
            stand_in.stop()


if __name__ == "__main__":
    main()
