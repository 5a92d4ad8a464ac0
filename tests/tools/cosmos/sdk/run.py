"""Runs the azure-cosmos SDK's own test suite against the local Cosmos server (tools/cosmos).

    python -m tests.tools.cosmos.sdk.run                  # what `make test` runs (CORE_MODULES)
    python -m tests.tools.cosmos.sdk.run --all            # every module that applies (MODULES)
    python -m tests.tools.cosmos.sdk.run test_ttl.py ...  # the modules named

It takes the ``tests/`` folder of the sdist of the azure-cosmos version pinned in
requirements.txt (downloaded once with ``pip download --no-binary :all: --no-deps`` into
.data/cosmos-sdk/, git-ignored), copies it to a scratch folder, points its ``test_config.py`` at
a local server it starts (``node tools/cosmos/server.mjs --cert-out``: the SDK's clients verify
TLS, so the server's certificate is their CA), runs the modules in one pytest process, and prints
passed / failed / skipped per module. It fails on any failure not on the out-of-scope list
(tests/tools/cosmos/sdk/out_of_scope.py, one reason per entry), and on any entry of that list that
now passes (so the list stays exact). tools/cosmos/README.md holds the last full result.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tests.tools.cosmos.sdk.out_of_scope import MAY_PASS, OUT_OF_SCOPE

__all__ = ["MAY_PASS", "OUT_OF_SCOPE", "main", "reason_for", "report"]

REPO_ROOT = Path(__file__).resolve().parents[4]
CACHE = REPO_ROOT / ".data" / "cosmos-sdk"
LAUNCHER = REPO_ROOT / "tools" / "cosmos" / "server.mjs"
EMULATOR_HOST_LINE = "local_host = 'https://localhost:8081/'"
# Longest a single SDK test may run before it counts as failed (some retry for minutes when a
# server answers something unexpected).
TEST_TIMEOUT_S = 120

# The modules of the SDK's suite that apply to a single-region account on one physical
# partition, with key authorization. Left out, as modules: AAD, multi-region, failover, circuit
# breakers, partition splits, fault injection and other client-only unit tests (which need no
# server), change feed, vector and hybrid search, stored procedures/triggers/users
# (test_crud covers what remains of those and lists them in out_of_scope.py).
MODULES = (
    "test_crud.py",
    "test_crud_container.py",
    "test_crud_database.py",
    "test_crud_subpartition.py",
    "test_crud_response_payload_on_write_disabled.py",
    "test_query.py",
    "test_aggregate.py",
    "test_orderby.py",
    "test_multi_orderby.py",
    "test_computed_properties.py",
    "test_query_response_headers.py",
    "test_ttl.py",
    "test_transactional_batch.py",
    "test_headers.py",
    "test_session.py",
    "test_partition_key.py",
    "test_none_options.py",
    "test_read_items.py",
    "test_full_text_policy.py",
)
# What `make test` runs: the modules covering what Parley uses (point operations and their
# headers, conditional writes, queries with ORDER BY and aggregates, batches, session tokens,
# time to live), kept to a modest time.
CORE_MODULES = (
    "test_crud.py",
    "test_query.py",
    "test_orderby.py",
    "test_aggregate.py",
    "test_ttl.py",
    "test_transactional_batch.py",
    "test_headers.py",
    "test_session.py",
)

# Left out of the CORE run (they pass, but take 110 s between them): they time the SDK's own
# retry and timeout loops (throttling retried for 60 s, a 30 s timeout, a paged request's
# timeout), which say nothing about the server. The full run (--all) keeps them.
CORE_DESELECT = (
    "test_crud.py::TestCRUDOperations::test_timeout_on_throttling_error",
    "test_crud.py::TestCRUDOperations::test_inner_exceptions_on_timeout",
    "test_crud.py::TestCRUDOperations::test_timeout_for_paged_request",
    "test_crud.py::TestCRUDOperations::test_timeout_on_read_operation",
)

# A stand-in for the azure-sdk-for-python repository's devtools_testutils (not on PyPI), of
# which test_config.py uses two names; with key authorization against an emulator neither is
# reached for anything but these defaults.
DEVTOOLS_STUB = {
    "__init__": "",
    "helpers": ("def is_live():\n    return False\n\n\nis_live._cache = False\n"),
    "azure_recorded_testcase": (
        "def get_credential(is_async=False, **kwargs):\n"
        "    raise RuntimeError('AAD credentials are out of scope for the local server')\n"
    ),
}
# A per-test time limit (SIGALRM), so that a hanging test fails instead of stalling the run.
TIMEOUT_PLUGIN = f"""
import signal

import pytest


def _expired(signum, frame):
    raise TimeoutError("test ran longer than {TEST_TIMEOUT_S} s")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    signal.signal(signal.SIGALRM, _expired)
    signal.alarm({TEST_TIMEOUT_S})
    try:
        yield
    finally:
        signal.alarm(0)
"""


def pinned_version() -> str:
    text = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    match = re.search(r"^azure-cosmos==(\S+)", text, re.MULTILINE)
    if not match:
        raise SystemExit("azure-cosmos is not pinned in requirements.txt")
    return match.group(1)


def sdist_tests(version: str) -> Path:
    """The sdist's tests/ folder, downloaded and unpacked once under .data/cosmos-sdk/."""
    root = CACHE / f"azure_cosmos-{version}"
    if (root / "tests" / "test_config.py").is_file():
        return root / "tests"
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"azure_cosmos-{version}.tar.gz"
    if not archive.is_file():
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
                "--no-deps", f"azure-cosmos=={version}", "-d", str(CACHE),
            ],
            check=True,
        )  # fmt: skip
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if f"azure_cosmos-{version}/tests/" in m.name]
        tar.extractall(CACHE, members=members, filter="data")
    return root / "tests"


def prepare(tests: Path, work: Path, endpoint: str) -> Path:
    """A scratch copy of the suite, its test_config pointed at ``endpoint``."""
    suite = work / "tests"
    shutil.copytree(tests, suite)
    config = suite / "test_config.py"
    text = config.read_text(encoding="utf-8")
    if EMULATOR_HOST_LINE not in text:
        raise SystemExit(f"test_config.py no longer has {EMULATOR_HOST_LINE!r}: update run.py")
    # The emulator's address is what the suite treats as "the emulator" (key auth, not live).
    config.write_text(
        text.replace(EMULATOR_HOST_LINE, f"local_host = {endpoint.rstrip('/') + '/'!r}"),
        encoding="utf-8",
    )
    for name, content in DEVTOOLS_STUB.items():
        path = (work / "stubs" / "devtools_testutils" / name).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    (work / "stubs" / "parley_sdk_timeout.py").write_text(TIMEOUT_PLUGIN, encoding="utf-8")
    (suite / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return suite


class Server:
    """``node tools/cosmos/server.mjs`` on a free port, writing its certificate for the SDK."""

    def __init__(self, work: Path) -> None:
        self.cert = work / "server-cert.pem"
        self.log = (work / "server.log").open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                "node", str(LAUNCHER), "--port", "0", "--exit-on-stdin-close",
                "--cert-out", str(self.cert),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("COSMOS_READY "):
            self.stop()
            raise SystemExit(f"the local Cosmos server did not start: {line!r}")
        self.endpoint = line.split(" ", 1)[1].strip()
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@dataclass
class ModuleResult:
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0


def reason_for(test_id: str) -> str | None:
    for pattern, reason in OUT_OF_SCOPE.items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


def parse_junit(path: Path) -> tuple[dict[str, ModuleResult], set[str]]:
    """Results per module, and the ids of every test that ran (passed or failed)."""
    results: dict[str, ModuleResult] = collections.defaultdict(ModuleResult)
    ran: set[str] = set()
    for case in ET.parse(path).getroot().iter("testcase"):
        module, _, cls = case.get("classname", "").partition(".")
        name = case.get("name")
        test_id = f"{module}.py::{cls}::{name}" if cls else f"{module}.py::{name}"
        result = results[f"{module}.py"]
        if case.find("skipped") is not None:
            result.skipped += 1
            continue
        ran.add(test_id)
        if case.find("failure") is not None or case.find("error") is not None:
            result.failed.append(test_id)
        else:
            result.passed += 1
    return results, ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to run (default: CORE_MODULES)")
    parser.add_argument("--all", action="store_true", help="every module in MODULES")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    modules = list(MODULES if args.all else args.modules or CORE_MODULES)
    deselect = [] if args.all or args.modules else [f"--deselect={t}" for t in CORE_DESELECT]

    version = pinned_version()
    tests = sdist_tests(version)
    work = Path(tempfile.mkdtemp(prefix="parley-cosmos-sdk-"))
    server = Server(work)
    started = time.monotonic()
    try:
        suite = prepare(tests, work, server.endpoint)
        env = {
            **os.environ,
            "PYTHONPATH": str(work / "stubs"),
            "REQUESTS_CA_BUNDLE": str(server.cert),
            "SSL_CERT_FILE": str(server.cert),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for name in ("ACCOUNT_HOST", "ACCOUNT_KEY", "COSMOS_TEST_DATA_AUTH_MODE"):
            env.pop(name, None)

        def run_pytest(names: list[str], junit: Path) -> tuple[dict[str, ModuleResult], set[str]]:
            log = junit.with_suffix(".log")
            with log.open("w", encoding="utf-8") as out:
                subprocess.run(
                    [
                        sys.executable, "-m", "pytest", *names, *deselect, "-q",
                        "-p", "no:cacheprovider", "-p", "parley_sdk_timeout", "-W", "ignore",
                        f"--junitxml={junit}", "-o", "junit_family=xunit1",
                    ],
                    cwd=suite,
                    env=env,
                    stdout=None if os.environ.get("COSMOS_SDK_VERBOSE") else out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )  # fmt: skip
            if not junit.is_file():
                return {}, set()
            results, ran = parse_junit(junit)
            stopped = [name for name in names if name not in results]
            if stopped:
                # The pytest process ended before these modules (seen once in a CI-like run,
                # cause not found): say so, with its last lines, so that it can be diagnosed.
                tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
                print(
                    f"the SDK suite stopped before {', '.join(stopped)}; its last lines:",
                    *tail,
                    sep="\n",
                    file=sys.stderr,
                )
            return results, ran

        results, ran = run_pytest(modules, work / "junit.xml")
        if not results:
            print("the SDK suite did not run (no junit report)", file=sys.stderr)
            return 1
        stopped = [name for name in modules if name not in results]
        if stopped:
            # Once more for the modules a stopped process never reached (never for failures:
            # a test that failed stays failed): each must still run and match the list.
            print(f"running {', '.join(stopped)} again, once", file=sys.stderr)
            more, more_ran = run_pytest(stopped, work / "junit-again.xml")
            results.update(more)
            ran |= more_ran
        elapsed = time.monotonic() - started
        return report(version, modules, results, ran, elapsed)
    finally:
        server.stop()
        if args.keep:
            print(f"scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(
    version: str,
    modules: list[str],
    results: dict[str, ModuleResult],
    ran: set[str],
    elapsed: float,
) -> int:
    print(f"azure-cosmos {version} SDK tests against tools/cosmos ({elapsed:.0f} s)")
    print(f"{'module':50} {'passed':>7} {'failed':>7} {'skipped':>8} {'out of scope':>13}")
    unexpected: list[str] = []
    known = 0
    failed_ids: set[str] = set()
    for module in modules:
        result = results.get(module, ModuleResult())
        listed = [t for t in result.failed if reason_for(t)]
        unexpected += [t for t in result.failed if not reason_for(t)]
        failed_ids.update(result.failed)
        known += len(listed)
        print(
            f"{module:50} {result.passed:7} {len(result.failed):7} {result.skipped:8} "
            f"{len(listed):13}"
        )
        if module not in results:
            unexpected.append(f"{module}: nothing ran (collection error?)")
    # Entries that match tests which ran, none of which failed: the list is stale.
    stale = [
        pattern
        for pattern in OUT_OF_SCOPE
        if pattern not in MAY_PASS
        and fnmatch.filter(ran, pattern)
        and not fnmatch.filter(failed_ids, pattern)
    ]
    print(f"failures on the out-of-scope list: {known}")
    for test_id in unexpected:
        print(f"UNEXPECTED FAILURE: {test_id}")
    for pattern in stale:
        print(f"PASSES NOW (remove from tests/tools/cosmos/sdk/out_of_scope.py): {pattern}")
    return 1 if unexpected or stale else 0


if __name__ == "__main__":
    sys.exit(main())
