"""``python -m tools.smoke --base-url https://<app>.azurewebsites.net/api``: prove a deployment.

Run it right after ``pulumi up`` and publishing. One line per check, a summary, and an exit code
(docs/smoke-test.md): 0 every check passed; 1 a check failed; 2 it could not start (arguments,
no token); 3 it could not remove what it created; 128 + the signal's number when interrupted by
SIGINT or SIGTERM (after cleaning up). It never prints the token.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import httpx

from shared.consistency import HEADER as CONSISTENCY_HEADER
from tools.smoke.checks import Hook, Smoke

TOKEN_ENV = "PARLEY_SMOKE_TOKEN"  # noqa: S105 - the name of the variable
# Tests only: "<check>:<SIGNAME>" makes the command send itself that signal after that check,
# so an interruption lands at a known step (tests/tools/smoke).
SIGNAL_AFTER_ENV = "PARLEY_SMOKE_SIGNAL_AFTER"
TOKEN_COMMAND_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 120.0  # a model's answer can take a while; everything else is quick

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LEFT_BEHIND = 0, 1, 2, 3


class UsageError(Exception):
    """The command cannot start; the message says why."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: stop the checks (BaseException: no check may swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Signals:
    """SIGINT/SIGTERM stop the checks; while cleaning up they are only remembered, so that the
    cleanup (bounded by request timeouts) runs to the end."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferring = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if not self.deferring:
            self.deferring = True  # a second signal must not cut the cleanup short either
            raise Interrupted(signum)

    def defer(self) -> None:
        self.deferring = True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.smoke",
        description="Check a deployed Parley API end to end, leaving no data behind.",
    )
    parser.add_argument(
        "--base-url",
        required=True,
        help="the API's base URL, e.g. https://<app>.azurewebsites.net/api",
    )
    parser.add_argument("--origin", help="an allowed single-page-app origin (CORS must pass)")
    parser.add_argument(
        "--other-origin",
        default="https://not-allowed.invalid",
        help="an origin CORS must refuse (default: %(default)s)",
    )
    parser.add_argument(
        "--token-command",
        help=f"a command that prints an access token for the API (else ${TOKEN_ENV} is used)",
    )
    return parser.parse_args(argv)


def get_token(token_command: str | None, environ: dict[str, str]) -> str:
    """The bearer token: from ``--token-command`` if given, else the environment."""
    if token_command:
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own command, without a shell
                shlex.split(token_command),
                capture_output=True,
                text=True,
                timeout=TOKEN_COMMAND_TIMEOUT_S,
                check=False,
            )
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise UsageError(f"--token-command could not run ({type(exc).__name__})") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [""])[-1][:200]
            raise UsageError(f"--token-command failed (exit {done.returncode}): {last}")
        token = done.stdout.strip()
        if not token:
            raise UsageError("--token-command printed no token")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"no token: set {TOKEN_ENV} or pass --token-command")
    return token


def signal_after(spec: str | None) -> Hook | None:
    """The test hook of ``SIGNAL_AFTER_ENV``: send a signal to this process after one check."""
    if not spec:
        return None
    check, _, name = spec.partition(":")
    signum = getattr(signal, name, None)
    if not isinstance(signum, signal.Signals):
        raise UsageError(f"{SIGNAL_AFTER_ENV}: {name!r} is not a signal name")

    def hook(done: str) -> None:
        if done == check:
            os.kill(os.getpid(), signum)

    return hook


def exit_code(smoke: Smoke, interrupted: int | None) -> int:
    if "cleanup" in smoke.failed or not any(r.name == "cleanup" for r in smoke.results):
        return EXIT_LEFT_BEHIND
    if interrupted is not None:
        return 128 + interrupted
    return EXIT_FAILED if smoke.failed else EXIT_OK


def summary(smoke: Smoke, base_url: str, interrupted: int | None) -> str:
    counts = {
        status: sum(r.status == status for r in smoke.results)
        for status in ("PASS", "FAIL", "SKIP")
    }
    verdict = "passed" if not smoke.failed else "FAILED: " + ", ".join(smoke.failed)
    if interrupted is not None:
        verdict = f"interrupted by {signal.Signals(interrupted).name}; " + verdict
    if "cleanup" in smoke.failed:
        left = ", ".join(sorted(smoke.created)) or "see the cleanup line"
        verdict += f"; test data may remain (sessions tagged {smoke.marker}: {left})"
    return (
        f"smoke {verdict} ({counts['PASS']} passed, {counts['FAIL']} failed,"
        f" {counts['SKIP']} skipped) against {base_url}"
    )


class ConsistencyCarrier:
    """Sends each request with the latest Parley-Consistency the API answered, as the web
    client does: a deployment of several instances then shows each check what the previous
    one wrote (docs/http.md, on Parley-Consistency)."""

    def __init__(self) -> None:
        self.value: str | None = None

    def on_request(self, request: httpx.Request) -> None:
        if self.value is not None:
            request.headers[CONSISTENCY_HEADER] = self.value

    def on_response(self, response: httpx.Response) -> None:
        value = response.headers.get(CONSISTENCY_HEADER)
        if value:
            self.value = value


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        token = get_token(args.token_command, env)
        hook = signal_after(env.get(SIGNAL_AFTER_ENV))
    except UsageError as error:
        print(f"python -m tools.smoke: {error}", file=sys.stderr)
        return EXIT_USAGE
    signals = Signals()
    signals.install()
    base_url = args.base_url.rstrip("/")
    carrier = ConsistencyCarrier()
    hooks: dict[str, list[Callable[..., Any]]] = {
        "request": [carrier.on_request],
        "response": [carrier.on_response],
    }
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, event_hooks=hooks) as client:
        smoke = Smoke(
            client=client,
            token=token,
            out=sys.stdout,
            origin=args.origin,
            other_origin=args.other_origin,
            after_check=hook,
            before_cleanup=signals.defer,
        )
        try:
            smoke.run()
        except Interrupted:
            pass  # run() has cleaned up in its finally; the summary says what happened
        except Exception as error:  # a bug here, not in the deployment: still summarise
            print(f"FAIL {'smoke':<16} unexpected {type(error).__name__}", flush=True)
            return max(EXIT_FAILED, exit_code(smoke, signals.received))
    print(summary(smoke, base_url, signals.received), flush=True)
    return exit_code(smoke, signals.received)


if __name__ == "__main__":
    sys.exit(main())
