"""``python -m devhost``: serve the app on http://127.0.0.1:$PORT (what ``make dev`` runs)."""

from __future__ import annotations

import logging

import uvicorn

from devhost.app import build_app
from devhost.timeouts import timed_protocol
from shared.config import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    uvicorn.run(
        build_app(),
        host="127.0.0.1",
        port=settings.port,
        log_level="warning",
        http=timed_protocol(settings.devhost_header_timeout_s, settings.devhost_body_timeout_s),
    )


if __name__ == "__main__":
    main()
