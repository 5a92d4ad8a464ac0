"""The local host as a real process on a real socket: for end-to-end tests and the benchmark."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0


def dev_headers(email: str) -> dict[str, str]:
    """Who a request is from, on a host in AUTH_MODE=dev (the header Easy Auth sets in Azure)."""
    return {"X-MS-CLIENT-PRINCIPAL-NAME": email}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningHost:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_host(
    env: Mapping[str, str], log_path: Path, *, command: Sequence[str] = ("devhost",)
) -> Iterator[RunningHost]:
    """Start ``python -m devhost`` (or ``python -m <command...>``) with exactly ``env`` on top
    of a clean base environment, wait until /api/health answers, and stop it afterwards
    (SIGTERM, then SIGKILL)."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    full_env = {**base, "PYTHONUNBUFFERED": "1", "PORT": str(port), **env}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - this Python and a module of ours, no shell
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    host = RunningHost(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(host)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(host: RunningHost) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if host.process.poll() is not None:
            raise RuntimeError(f"the host exited at start:\n{host.log()}")
        try:
            if httpx.get(host.base_url + "/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        # Polling a starting process for readiness, not waiting for time to pass.
        time.sleep(0.05)
    raise RuntimeError(f"the host did not answer within {STARTUP_TIMEOUT_S}s:\n{host.log()}")
