"""``python -m tools.webpubsub [--port 7072] [--key KEY]``: the Web PubSub stand-in in the
foreground, for running an app against it by hand (``make dev`` starts one by itself)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets

from tools.webpubsub import serve
from tools.webpubsub.server import LocalWebPubSub


async def main(port: int, key: str) -> None:
    runner, endpoint = await serve(LocalWebPubSub(key), "127.0.0.1", port)
    # The key is the developer's own, made up for this run: printing it is how they get it.
    print(f"WEBPUBSUB_READY {endpoint}", flush=True)
    print(f"WEBPUBSUB_ENDPOINT={endpoint} WEBPUBSUB_KEY={key}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    key = os.environ.get("WEBPUBSUB_KEY") or secrets.token_urlsafe(32)
    parser.add_argument("--key", default=key)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.port, args.key))
