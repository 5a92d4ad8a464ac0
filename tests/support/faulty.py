"""The local host, or an operator command, as a real process whose store fails on cue: what a
storage failure part-way looks like from outside (a cut-off export, a file never written).

    python -m tests.support.faulty devhost|shared.export|shared.erase [arguments...]

``PARLEY_TEST_FAIL=method:N`` makes the N-th call of that store method (counted from 1), and
every later one, raise StorageUnavailable, as a storage outage would; every other call is the
real store's. The module then runs as ``python -m <module>`` would.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.host import ROOT, RunningHost, _wait_ready, free_port

FAIL_ENV = "PARLEY_TEST_FAIL"


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


def install(plan: str) -> None:
    import shared.storage

    method, call = plan.split(":")
    real = shared.storage.make_store
    shared.storage.make_store = lambda settings: FailingStore(real(settings), method, int(call))  # type: ignore[assignment,return-value]


@contextmanager
def run_faulty_host(env: Mapping[str, str], log_path: Path) -> Iterator[RunningHost]:
    """``run_host``, with this module in front of ``devhost``."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    full_env = {**base, "PYTHONUNBUFFERED": "1", "PORT": str(port), **env}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.faulty", "devhost"],
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


def main() -> None:
    module, *arguments = sys.argv[1:]
    if os.environ.get(FAIL_ENV):
        install(os.environ[FAIL_ENV])
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
