"""The local stand-in of Azure Web PubSub (README.md): ``LocalWebPubSub`` is the service,
``start_in_thread`` serves it on a free local port from a thread of its own (what the local
host and the tests do), ``python -m tools.webpubsub`` serves it in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from tools.webpubsub.server import SUBPROTOCOL, LocalWebPubSub

__all__ = ["SUBPROTOCOL", "LocalWebPubSub", "RunningWebPubSub", "serve", "start_in_thread"]

START_TIMEOUT_S = 10.0


@dataclass
class RunningWebPubSub:
    endpoint: str
    access_key: str
    service: LocalWebPubSub
    _loop: asyncio.AbstractEventLoop
    _runner: web.AppRunner
    _thread: threading.Thread

    @property
    def connection_string(self) -> str:
        return f"Endpoint={self.endpoint};AccessKey={self.access_key};Version=1.0;"

    def stop(self) -> None:
        """Close every client connection and the listening socket, and end the thread."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=START_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=START_TIMEOUT_S)


async def serve(service: LocalWebPubSub, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Listen on ``host:port`` (0: a free port); the runner and the endpoint's URL."""
    runner = web.AppRunner(service.app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{host}:{bound_port}"


def start_in_thread(
    access_key: str | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> RunningWebPubSub:
    """Serve a fresh stand-in from a daemon thread (it dies with the process at the latest);
    a random access key unless one is given."""
    key = access_key or secrets.token_urlsafe(32)
    service = LocalWebPubSub(key)
    loop = asyncio.new_event_loop()
    started: list[tuple[web.AppRunner, str]] = []
    failed: list[BaseException] = []
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.append(loop.run_until_complete(serve(service, host, port)))
        except BaseException as exc:  # reported to the starting thread
            failed.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="webpubsub-stand-in", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S):
        raise RuntimeError("the Web PubSub stand-in did not start")
    if failed:
        raise RuntimeError(f"the Web PubSub stand-in did not start: {failed[0]}")
    runner, endpoint = started[0]
    return RunningWebPubSub(endpoint, key, service, loop, runner, thread)


@contextlib.contextmanager
def running(access_key: str | None = None) -> Iterator[RunningWebPubSub]:
    stand_in = start_in_thread(access_key)
    try:
        yield stand_in
    finally:
        stand_in.stop()
