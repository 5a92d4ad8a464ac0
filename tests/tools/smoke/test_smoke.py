"""``python -m tools.smoke`` as a real process against the real local host: it passes against a
properly locked deployment (jwt mode, the tests' own issuer and JWKS on a socket, CORS set), it
fails naming the problem against one that trusts client headers (dev mode), and whatever
happens (a signal half-way, or a kill that allows no cleanup and a second run) it leaves none
of its sessions behind and never touches the user's other data."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jwks import Issuer, bearer, token_settings
from tools.local.host import ROOT, RunningHost, dev_headers, run_host
from tools.smoke.checks import MIN_DELTA_READS, Smoke

ORIGIN = "https://app.example.com"
SMOKE_USER = "smoke-operator@example.com"
CHECKS = [
    "health",
    "no-token",
    "forged-identity",
    "cors-allowed",
    "cors-refused",
    "leftovers",
    "chat-json",
    "list",
    "get",
    "chat-stream",
    "delete",
    "cleanup",
]
RUN_TIMEOUT_S = 120


def host_env(mode: str, tmp: Path) -> dict[str, str]:
    return {
        "AUTH_MODE": mode,
        "STORAGE_BACKEND": "sqlite",
        "SQLITE_PATH": str(tmp / "c.db"),
        "CORS_ALLOWED_ORIGINS": ORIGIN,
    }


@pytest.fixture(scope="module")
def jwt_host(jwks_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    tmp = tmp_path_factory.mktemp("smoke-jwt")
    with run_host({**host_env("jwt", tmp), **token_settings(jwks_url)}, tmp / "h.log") as host:
        yield host


@pytest.fixture(scope="module")
def token(issuer: Issuer) -> str:
    return issuer.token_for(SMOKE_USER)


@pytest.fixture(scope="module")
def own_session(jwt_host: RunningHost, token: str) -> str:
    """A conversation of the smoke test's user that is not the command's: it must survive."""
    response = httpx.post(
        jwt_host.base_url + "/api/chat", json={"message": "my own notes"}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


def smoke(
    host: RunningHost, token: str | None, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", **env}
    if token is not None:
        base["PARLEY_SMOKE_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "tools.smoke", "--base-url", host.base_url + "/api", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def lines(output: str) -> dict[str, str]:
    """Each check's status, by name, from the command's one-line-per-check output."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("PASS", "FAIL", "SKIP"):
            found[rest.split()[0]] = status
    return found


def sessions(host: RunningHost, headers: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for archived in ("false", "true"):
        response = httpx.get(
            host.base_url + "/api/sessions",
            params={"limit": 100, "archived": archived},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        found += response.json()["sessions"]
    return found


def tagged(host: RunningHost, token: str) -> list[dict[str, Any]]:
    return [s for s in sessions(host, bearer(token)) if s["preview"].startswith("[parley-smoke:")]


def assert_nothing_left(host: RunningHost, token: str, own_session: str) -> None:
    remaining = sessions(host, bearer(token))
    assert [s["sessionId"] for s in remaining] == [own_session], remaining


# ---- a locked-down deployment ------------------------------------------------------------------


def test_the_command_passes_and_leaves_nothing_behind(
    jwt_host: RunningHost, token: str, own_session: str
) -> None:
    done = smoke(jwt_host, token, "--origin", ORIGIN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines(done.stdout) == dict.fromkeys(CHECKS, "PASS"), done.stdout
    assert done.stdout.splitlines()[-1].startswith("smoke passed (12 passed, 0 failed, 0 skipped)")
    assert token not in done.stdout + done.stderr
    assert_nothing_left(jwt_host, token, own_session)


def test_the_token_can_come_from_a_command(
    jwt_host: RunningHost, token: str, own_session: str
) -> None:
    command = f"{sys.executable} -c \"print('{token}')\""
    done = smoke(jwt_host, None, "--token-command", command)
    assert done.returncode == 0, done.stdout + done.stderr
    # Without --origin the allowed-origin check is skipped, not failed.
    assert lines(done.stdout)["cors-allowed"] == "SKIP"
    assert token not in done.stdout + done.stderr
    assert_nothing_left(jwt_host, token, own_session)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no token: set PARLEY_SMOKE_TOKEN or pass --token-command"),
        (("--token-command", f"{sys.executable} -c 'import sys; sys.exit(4)'"), "(exit 4)"),
        (("--token-command", f"{sys.executable} -c 'pass'"), "printed no token"),
    ],
    ids=["no_token", "command_fails", "command_prints_nothing"],
)
def test_without_a_token_it_does_not_start(
    jwt_host: RunningHost, args: tuple[str, ...], message: str
) -> None:
    done = smoke(jwt_host, None, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""  # not one request was made


def test_a_wrong_token_fails_the_authenticated_checks(
    jwt_host: RunningHost, issuer: Issuer, token: str, own_session: str
) -> None:
    expired = issuer.token_for(SMOKE_USER, exp=1, iat=0, nbf=0)
    done = smoke(jwt_host, expired, "--origin", ORIGIN)
    assert done.returncode == 1
    results = lines(done.stdout)
    assert results["chat-json"] == "FAIL" and results["health"] == "PASS"
    assert "POST /chat answered 401 (unauthenticated), not 200" in done.stdout
    assert results["list"] == "SKIP"
    assert_nothing_left(jwt_host, token, own_session)


# ---- a deployment that trusts client headers ---------------------------------------------------


def test_the_command_fails_against_a_host_without_authentication(
    tmp_path: Path, token: str
) -> None:
    with run_host(host_env("dev", tmp_path), tmp_path / "h.log") as host:
        done = smoke(host, token, "--origin", ORIGIN)
        forged = sessions(host, dev_headers("smoke-forged-identity@parley.invalid"))
    assert done.returncode == 1, done.stdout
    results = lines(done.stdout)
    assert results["forged-identity"] == "FAIL"
    assert "the API trusts identity headers a client can forge" in done.stdout
    assert "forged-identity" in done.stdout.splitlines()[-1]  # the summary names it
    assert forged == []  # the check only reads: nothing was written as the made-up user


# ---- interrupted half-way ------------------------------------------------------------------------


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_half_way_cleans_up_before_exiting(
    jwt_host: RunningHost, token: str, own_session: str, signame: str, code: int
) -> None:
    done = smoke(
        jwt_host, token, "--origin", ORIGIN, PARLEY_SMOKE_SIGNAL_AFTER=f"chat-json:{signame}"
    )
    assert done.returncode == code, done.stdout + done.stderr
    results = lines(done.stdout)
    assert results["chat-json"] == "PASS" and "list" not in results  # stopped right there
    assert results["cleanup"] == "PASS"
    assert f"interrupted by {signame}" in done.stdout.splitlines()[-1]
    assert_nothing_left(jwt_host, token, own_session)


def test_a_run_killed_half_way_is_cleaned_up_by_the_next(
    jwt_host: RunningHost, issuer: Issuer, token: str, own_session: str
) -> None:
    # SIGKILL allows no cleanup at all: the tagged session stays until the next run.
    killed = smoke(jwt_host, token, PARLEY_SMOKE_SIGNAL_AFTER="chat-json:SIGKILL")
    assert killed.returncode == -9
    assert "PASS chat-json" in killed.stdout
    left = tagged(jwt_host, token)
    assert len(left) == 1
    # Another user's session that merely looks like a leftover is not the command's to touch.
    other = "someone-else@example.com"
    decoy = httpx.post(
        jwt_host.base_url + "/api/chat",
        json={"message": left[0]["preview"]},
        headers=bearer(issuer.token_for(other)),
    )
    assert decoy.status_code == 200

    again = smoke(jwt_host, token, "--origin", ORIGIN)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "PASS leftovers        removed 1 session(s) left by an interrupted run" in again.stdout
    assert_nothing_left(jwt_host, token, own_session)
    assert len(sessions(jwt_host, bearer(issuer.token_for(other)))) == 1


# ---- a stream that reaches the client piece by piece, or in one block --------------------------


def test_the_stream_check_reports_deltas_arriving_in_separate_reads(
    jwt_host: RunningHost, token: str, own_session: str
) -> None:
    done = smoke(jwt_host, token, "--origin", ORIGIN)
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("PASS chat-stream")]
    reads = int(line.split(" in ", 1)[1].split(" reads", 1)[0])
    assert reads >= MIN_DELTA_READS, line


SSE_HEAD = 'event: session\ndata: {"sessionId":"s1","title":"t"}\n\n'
SSE_DELTAS = [f'event: delta\ndata: {{"content":"w{n} "}}\n\n' for n in range(6)]
SSE_DONE = 'event: done\ndata: {"messages":[]}\n\n'


def stream_check(chunks: list[str]) -> tuple[str, str]:
    """``chat-stream`` against a deployment that sends the stream in these chunks (one read
    each): its status and detail. Each read is one tick of the injected clock."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream; charset=utf-8"},
            content=iter([chunk.encode() for chunk in chunks]),
        )

    ticks = iter(range(1000))
    out = io.StringIO()
    with httpx.Client(base_url="https://api.test/api", transport=httpx.MockTransport(answer)) as c:
        check = Smoke(c, "token", out, clock=lambda: float(next(ticks)), session_id="s1")
        check.check("chat-stream", check.chat_stream)
    [result] = check.results
    return result.status, result.detail


def test_deltas_in_separate_reads_pass() -> None:
    status, detail = stream_check([SSE_HEAD, *SSE_DELTAS, SSE_DONE])
    assert (status, detail) == ("PASS", "session, delta x6 in 6 reads over 5.00s, done")


def test_a_stream_buffered_into_one_block_fails() -> None:
    # What a buffering proxy delivers: everything at once, when the answer is over.
    status, detail = stream_check(["".join([SSE_HEAD, *SSE_DELTAS, SSE_DONE])])
    assert status == "FAIL"
    assert "the 6 deltas arrived in 1 read(s) of the response, all at once" in detail


def test_deltas_buffered_apart_from_the_first_event_fail_too() -> None:
    status, _ = stream_check([SSE_HEAD, "".join(SSE_DELTAS) + SSE_DONE])
    assert status == "FAIL"


def test_events_split_across_reads_and_keepalives_are_read_whole() -> None:
    text = "".join([SSE_HEAD, ": keep-alive\n\n", *SSE_DELTAS, SSE_DONE])
    chunks = [text[i : i + 7] for i in range(0, len(text), 7)]  # cut anywhere, even mid-event
    status, detail = stream_check(chunks)
    assert status == "PASS" and "delta x6" in detail


def test_a_single_delta_cannot_show_streaming() -> None:
    status, detail = stream_check([SSE_HEAD, SSE_DELTAS[0], SSE_DONE])
    assert status == "FAIL" and "too few to tell" in detail


def test_the_command_carries_the_latest_consistency_token() -> None:
    """Each request goes with the Parley-Consistency of the latest answer that had one."""
    from tools.smoke.__main__ import ConsistencyCarrier

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Parley-Consistency"))
        token = {1: "first", 3: "second"}.get(len(seen))
        return httpx.Response(200, headers={"Parley-Consistency": token} if token else {})

    carrier = ConsistencyCarrier()
    hooks = {"request": [carrier.on_request], "response": [carrier.on_response]}
    with httpx.Client(transport=httpx.MockTransport(answer), event_hooks=hooks) as client:
        for _ in range(4):
            client.get("https://api.example/api/sessions")
    assert seen == [None, "first", "first", "second"]
