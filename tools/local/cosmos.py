"""The Cosmos DB account that tests and the benchmark run against.

By default, a local wire-protocol server (``node tools/cosmos/server.mjs``, see
tools/cosmos/README.md) started for the process. When the user sets ``COSMOS_ENDPOINT``,
that account is used instead: ``COSMOS_KEY`` is its key (optional for an emulator on
localhost, which has the well-known key) and ``COSMOS_VERIFY_TLS`` (default true; ``0``,
``false``, ``no`` or ``off`` turn it off) says whether to verify its TLS certificate.

Public API:
    CosmosAccount          endpoint, key, verify_tls, is_local, mode; client_kwargs()
    CosmosMode             how a local server departs from its defaults (replica lag,
                           throttling) or relaxes Azure's strict behaviours; LAGGING, THROTTLED
    LocalCosmosError       the local server could not be started
    EMULATOR_KEY           the emulator's well-known key (the only one the local server accepts)
    local_cosmos(port=0, *, mode=None, **mode_fields)
                           context manager: a fresh local server for the duration of the block,
                           e.g. local_cosmos(replica_lag_writes=3) or local_cosmos(mode=LAGGING)
    cosmos_target()        context manager: the user's account, else a local server shared
                           (reference-counted) by every caller in this process (default mode)
    user_account()         the account COSMOS_ENDPOINT names, or None

The tests' fixtures built on these are in tests/support/cosmos.py.

This module installs nothing: the server comes from ``npm ci`` at the repository root.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path("tools") / "cosmos" / "server.mjs"
PACKAGE_DIR = REPO_ROOT / "node_modules" / "@vercel" / "cosmosdb-server"
EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
READY_PREFIX = "COSMOS_READY "
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

_FALSE_WORDS = {"0", "false", "no", "off"}
# The server's own environment switches (tools/cosmos/README.md). local_cosmos() removes them
# from the server's environment, so that its mode is exactly the one asked for.
_MODE_ENV = (
    "COSMOS_REPLICA_LAG_WRITES",
    "COSMOS_REPLICA_LAG_MS",
    "COSMOS_RU_PER_SECOND",
    "COSMOS_STRICT_CONTINUATIONS",
    "COSMOS_PAYLOAD_SIZE",
    "COSMOS_REQUEST_CHARGES",
    "COSMOS_OWNER_SUBSTATUS",
    "COSMOS_TEST_CLOCK",
)


@dataclass(frozen=True)
class CosmosMode:
    """The switches of ``node tools/cosmos/server.mjs`` (see tools/cosmos/README.md).

    The defaults are the server's: Azure's strict behaviours on, replica lag and throttling off.
    """

    # Reads, queries and feed reads without a session token that covers them see their
    # container as it was before its last N writes (0: off).
    replica_lag_writes: int = 0
    # ... or before the writes of the last N milliseconds (0: off).
    replica_lag_ms: int = 0
    # Throttle operations on items at N request units per second: 429 (0: off).
    ru_per_second: int = 0
    # A page exactly full may carry a continuation token that leads to an empty page.
    strict_continuations: bool = True
    # Items are weighed as sent (non-ASCII escaped) against the 2 MB limits, not as UTF-8.
    payload_as_sent: bool = True
    # x-ms-request-charge is the size-based estimate, not a constant 1.
    request_charges: bool = True
    # A missing database or container is 404 with x-ms-substatus 1003.
    owner_substatus: bool = True
    # Serve POST /_parley/clock, which moves the server's clock (items' _ts, time-to-live expiry)
    # forward, so that tests make items expire without sleeping.
    test_clock: bool = False

    def args(self) -> list[str]:
        """The server's command-line switches for this mode."""
        args: list[str] = []
        for flag, value in (
            ("--replica-lag-writes", self.replica_lag_writes),
            ("--replica-lag-ms", self.replica_lag_ms),
            ("--ru-per-second", self.ru_per_second),
        ):
            if value < 0:
                raise ValueError(f"{flag} must not be negative: {value}")
            if value:
                args += [flag, str(value)]
        for flag, on in (
            ("--no-strict-continuations", self.strict_continuations),
            ("--utf8-payload-size", self.payload_as_sent),
            ("--no-request-charges", self.request_charges),
            ("--no-owner-substatus", self.owner_substatus),
        ):
            if not on:
                args.append(flag)
        if self.test_clock:
            args.append("--test-clock")
        return args


# Replica lag: a client without a session token misses the last 5 writes of a container.
LAGGING = CosmosMode(replica_lag_writes=5)
# Throttling at 400 RU/s, the least throughput Azure lets a container provision: bursts get 429s
# that the SDK retries.
THROTTLED = CosmosMode(ru_per_second=400)


@dataclass(frozen=True)
class CosmosAccount:
    """Where to connect: pass ``endpoint``, ``key`` and ``**client_kwargs()`` to CosmosClient.

    ``mode`` is the local server's mode, None for an account named by COSMOS_ENDPOINT."""

    endpoint: str
    key: str
    verify_tls: bool
    is_local: bool
    mode: CosmosMode | None = None

    def client_kwargs(self) -> dict[str, Any]:
        return {"connection_verify": self.verify_tls}


class LocalCosmosError(RuntimeError):
    """The local Cosmos server could not be started."""


def _check_installed() -> str:
    node = shutil.which("node")
    if node is None:
        raise LocalCosmosError(
            "node is not on PATH: the local Cosmos server needs Node.js 20 or later "
            "(or set COSMOS_ENDPOINT to use another account)"
        )
    if not (PACKAGE_DIR / "package.json").is_file():
        raise LocalCosmosError(
            f"{PACKAGE_DIR.relative_to(REPO_ROOT)} is missing: run `npm ci` at the repository "
            "root to install the local Cosmos server (or set COSMOS_ENDPOINT to use another "
            "account)"
        )
    return node


def _drain(stream: Any, sink: queue.Queue[str | None] | None, tail: collections.deque[str]) -> None:
    """Reads a pipe to its end so the server never blocks on a full pipe."""
    for line in iter(stream.readline, ""):
        tail.append(line.rstrip("\n"))
        if sink is not None:
            sink.put(line)
    if sink is not None:
        sink.put(None)
    stream.close()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


@contextlib.contextmanager
def local_cosmos(
    port: int = 0, *, mode: CosmosMode | None = None, **mode_fields: Any
) -> Iterator[CosmosAccount]:
    """Starts ``node tools/cosmos/server.mjs`` on 127.0.0.1 (port 0: any free port) in ``mode``
    (default: the server's defaults) with ``mode_fields`` (CosmosMode's fields) on top, waits for
    its ready line, yields the account, and stops the server when the block ends. The server's
    COSMOS_* mode variables are not passed on: the mode is exactly the one asked for."""
    node = _check_installed()
    chosen = dataclasses.replace(mode or CosmosMode(), **mode_fields)
    proc = subprocess.Popen(  # noqa: S603 - node and our own launcher, without a shell
        [node, str(LAUNCHER), "--port", str(port), "--exit-on-stdin-close", *chosen.args()],
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if k not in _MODE_ENV},
        stdin=subprocess.PIPE,  # closes when this process dies: the server then stops too
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )
    stdout_lines: queue.Queue[str | None] = queue.Queue()
    stdout_tail: collections.deque[str] = collections.deque(maxlen=50)
    stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, stdout_lines, stdout_tail), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, None, stderr_tail), daemon=True),
    ]
    for reader in readers:
        reader.start()

    def stop() -> None:
        _stop(proc)
        for reader in readers:
            reader.join(timeout=STOP_TIMEOUT_S)

    try:
        endpoint = _wait_ready(proc, stdout_lines)
    except LocalCosmosError as error:
        stop()
        raise LocalCosmosError(f"{error}; its stderr:\n" + "\n".join(stderr_tail)) from None
    except BaseException:
        stop()
        raise
    try:
        yield CosmosAccount(
            endpoint=endpoint, key=EMULATOR_KEY, verify_tls=False, is_local=True, mode=chosen
        )
    finally:
        stop()


def _wait_ready(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LocalCosmosError(
                f"the local Cosmos server printed no ready line within {START_TIMEOUT_S:.0f} s"
            )
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:  # stdout closed: the server exited
            code = proc.wait(timeout=STOP_TIMEOUT_S)
            raise LocalCosmosError(
                f"the local Cosmos server exited with code {code} before it was ready"
            )
        if line.startswith(READY_PREFIX):
            return line[len(READY_PREFIX) :].strip()


def _verify_from_env(value: str | None) -> bool:
    return value is None or value.strip().lower() not in _FALSE_WORDS


def user_account() -> CosmosAccount | None:
    endpoint = os.environ.get("COSMOS_ENDPOINT", "").strip()
    if not endpoint:
        return None
    key = os.environ.get("COSMOS_KEY", "").strip()
    if not key:
        host = urlsplit(endpoint).hostname or ""
        if host not in {"localhost", "127.0.0.1", "::1"}:
            raise LocalCosmosError(
                "COSMOS_ENDPOINT is set but COSMOS_KEY is not: set the account's key"
            )
        key = EMULATOR_KEY
    return CosmosAccount(
        endpoint=endpoint,
        key=key,
        verify_tls=_verify_from_env(os.environ.get("COSMOS_VERIFY_TLS")),
        is_local=False,
    )


class _SharedLocal:
    """One local server per process, whoever asks for it; stopped when the last user is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._stack: contextlib.ExitStack | None = None
        self._account: CosmosAccount | None = None

    def acquire(self) -> CosmosAccount:
        with self._lock:
            if self._account is None:
                stack = contextlib.ExitStack()
                self._account = stack.enter_context(local_cosmos())
                self._stack = stack
            self._users += 1
            return self._account

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._stack is not None:
                stack, self._stack, self._account = self._stack, None, None
                stack.close()


_shared_local = _SharedLocal()


@contextlib.contextmanager
def cosmos_target() -> Iterator[CosmosAccount]:
    """The account tests use: the user's (``COSMOS_ENDPOINT``), else the shared local server."""
    account = user_account()
    if account is not None:
        yield account
        return
    account = _shared_local.acquire()
    try:
        yield account
    finally:
        _shared_local.release()
