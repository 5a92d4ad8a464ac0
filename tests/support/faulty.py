"""Stores that fail on cue.

In this process: ``FaultyStore`` delegates to a real store, and a test's hook replaces any
method (``Crash`` is the injected failure).

As a real process: the local host, or an operator command, whose store fails on cue: what a
storage failure part-way looks like from outside (a cut-off export, a file never written).

    python -m tests.support.faulty devhost|shared.export|shared.erase [arguments...]

``PARLEY_TEST_FAIL=method:N`` makes the N-th call of that store method (counted from 1), and
every later one, raise StorageUnavailable, as a storage outage would; every other call is the
real store's. ``PARLEY_TEST_SLOW=method:S`` makes every call of that store method pause S
seconds before it starts (the pause injected between a write's start and its end). The module
then runs as ``python -m <module>`` would.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.storage.base import Store
from tools.local.host import RunningHost, run_host


class Crash(RuntimeError):
    """An injected failure (stands in for a process crash or a storage error mid-step)."""


Hook = Callable[..., Awaitable[Any]]


class FaultyStore:
    """Delegates to a real store; ``hooks[name]`` replaces a method and receives the real one
    first, so a hook can call it and then fail, fail part-way, or do something in between."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.hooks: dict[str, Hook] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.inner, name)
        hook = self.hooks.get(name)
        if hook is None:
            return real

        async def hooked(*args: Any, **kwargs: Any) -> Any:
            return await hook(real, *args, **kwargs)

        return hooked


FAIL_ENV = "PARLEY_TEST_FAIL"
SLOW_ENV = "PARLEY_TEST_SLOW"


class FailingStore:
    def __init__(self, inner: Any, method: str, call: int) -> None:
        self.inner, self.method, self.call, self.calls = inner, method, call, 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.inner, name)
        if name != self.method:
            return real

        async def counted(*args: Any, **kwargs: Any) -> Any:
            from shared.errors import StorageUnavailable

            self.calls += 1
            if self.calls >= self.call:
                raise StorageUnavailable("injected by tests.support.faulty")
            return await real(*args, **kwargs)

        return counted


class SlowStore:
    def __init__(self, inner: Any, method: str, pause_s: float) -> None:
        self.inner, self.method, self.pause_s = inner, method, pause_s

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.inner, name)
        if name != self.method:
            return real

        async def paused(*args: Any, **kwargs: Any) -> Any:
            import asyncio

            await asyncio.sleep(self.pause_s)
            return await real(*args, **kwargs)

        return paused


def install_pause(plan: str) -> None:
    import shared.storage

    method, seconds = plan.split(":")
    real = shared.storage.make_store
    shared.storage.make_store = lambda settings: SlowStore(real(settings), method, float(seconds))  # type: ignore[assignment,return-value]


def install(plan: str) -> None:
    import shared.storage

    method, call = plan.split(":")
    real = shared.storage.make_store
    shared.storage.make_store = lambda settings: FailingStore(real(settings), method, int(call))  # type: ignore[assignment,return-value]


@contextmanager
def run_faulty_host(env: Mapping[str, str], log_path: Path) -> Iterator[RunningHost]:
    """``run_host``, with this module in front of ``devhost``."""
    with run_host(env, log_path, command=("tests.support.faulty", "devhost")) as host:
        yield host


def main() -> None:
    module, *arguments = sys.argv[1:]
    if os.environ.get(FAIL_ENV):
        install(os.environ[FAIL_ENV])
    if os.environ.get(SLOW_ENV):
        install_pause(os.environ[SLOW_ENV])
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
