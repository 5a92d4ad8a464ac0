"""AUTH_MODE=easyauth is not one lock: the principal App Service Authentication injects is
believed only with a token this app verifies itself (signed by the configured issuer, for this
service, current) that names the same user. Through the real host, with the tests' own issuer
and its JWKS on a socket (tests/support/jwks.py): a forged principal reads and changes nothing,
and a configuration that cannot verify tokens refuses every call and says why."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jwks import OTHER_AUDIENCE, Issuer, bearer, token_settings
from tools.local.host import RunningHost, run_host

KATE = "kate@example.com"
MALLORY = "mallory@example.com"
NEVER_EXISTED = "s_" + "e" * 32


def principal(email: str) -> dict[str, str]:
    """An X-MS-CLIENT-PRINCIPAL header naming ``email``, as App Service Authentication builds it
    (or as anybody can, when it is not there to strip it)."""
    body = {"auth_typ": "aad", "claims": [{"typ": "preferred_username", "val": email}]}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(body).encode()).decode()}


def easyauth_host(env: dict[str, str], tmp: Path) -> AbstractContextManager[RunningHost]:
    return run_host(
        {"AUTH_MODE": "easyauth", "SQLITE_PATH": str(tmp / "c.db"), **env}, tmp / "h.log"
    )


@pytest.fixture(scope="module")
def host(jwks_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    # WEBSITE_AUTH_ENABLED=True, as App Service sets it when its authentication is on.
    env = {**token_settings(jwks_url), "WEBSITE_AUTH_ENABLED": "True"}
    with easyauth_host(env, tmp_path_factory.mktemp("layers")) as running:
        yield running


@pytest.fixture(scope="module")
def kate(issuer: Issuer) -> dict[str, str]:
    """Kate as she really arrives: the platform's principal and her own token."""
    return {**principal(KATE), **bearer(issuer.token_for(KATE))}


@pytest.fixture(scope="module")
def kate_session(host: RunningHost, kate: dict[str, str]) -> str:
    response = httpx.post(
        host.base_url + "/api/chat", json={"message": "kate's secret plan"}, headers=kate
    )
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


def snapshot(host: RunningHost, headers: dict[str, str], sid: str) -> tuple[Any, Any]:
    with httpx.Client(base_url=host.base_url, headers=headers, timeout=10) as client:
        detail, listing = client.get(f"/api/sessions/{sid}"), client.get("/api/sessions")
    assert detail.status_code == 200 and listing.status_code == 200
    return detail.json(), listing.json()


def attempts(host: RunningHost, headers: dict[str, str], sid: str) -> dict[str, httpx.Response]:
    """Every way to read or change Kate's data, with ``headers`` as the caller's identity."""
    with httpx.Client(base_url=host.base_url, headers=headers, timeout=10) as client:
        return {
            "list": client.get("/api/sessions"),
            "get": client.get(f"/api/sessions/{sid}"),
            "chat": client.post("/api/chat", json={"message": "x", "sessionId": sid}),
            "stream": client.post(
                "/api/chat",
                json={"message": "x", "sessionId": sid},
                headers={"Accept": "text/event-stream"},
            ),
            "new": client.post("/api/chat", json={"message": "planted"}),
            "delete": client.delete(f"/api/sessions/{sid}"),
        }


def assert_all_401(responses: dict[str, httpx.Response]) -> None:
    for name, response in responses.items():
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"]["code"] == "unauthenticated", name
        assert "kate's secret plan" not in response.text, name


FORGERIES = {
    # Easy Auth missing or off: the header is the client's own, with no token at all.
    "principal_only": lambda issuer: principal(KATE),
    # Mallory's real token beside a principal naming Kate.
    "someone_elses_token": lambda issuer: {**principal(KATE), **bearer(issuer.token_for(MALLORY))},
    # A token for Kate, but not signed by the issuer.
    "token_signed_by_another_key": lambda issuer: {
        **principal(KATE),
        **bearer(issuer.token_for(KATE, key=issuer.stranger)),
    },
    # A token for Kate from the right key but for another service.
    "token_for_another_audience": lambda issuer: {
        **principal(KATE),
        **bearer(issuer.token_for(KATE, aud="api://someone-else")),
    },
    # Mallory's real ID token where Easy Auth's token store would put one.
    "someone_elses_id_token": lambda issuer: {
        **principal(KATE),
        "X-MS-TOKEN-AAD-ID-TOKEN": issuer.token_for(MALLORY, aud=OTHER_AUDIENCE),
    },
    # A valid token for Kate, but no principal: in easyauth mode both locks are needed.
    "token_without_principal": lambda issuer: bearer(issuer.token_for(KATE)),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_identity_reads_and_changes_nothing(
    host: RunningHost, issuer: Issuer, kate: dict[str, str], kate_session: str, forgery: str
) -> None:
    before = snapshot(host, kate, kate_session)
    assert_all_401(attempts(host, FORGERIES[forgery](issuer), kate_session))
    assert snapshot(host, kate, kate_session) == before


def test_the_real_caller_gets_in_with_a_bearer_or_an_id_token(
    host: RunningHost, issuer: Issuer, kate: dict[str, str], kate_session: str
) -> None:
    # The same person with either proof: an access token (Authorization: Bearer), or the ID
    # token Easy Auth forwards for a cookie session (aud: the app registration's bare id).
    id_token = {
        **principal(KATE),
        "X-MS-TOKEN-AAD-ID-TOKEN": issuer.token_for(KATE.upper(), aud=OTHER_AUDIENCE),
    }
    for headers in (kate, id_token):
        listing = httpx.get(host.base_url + "/api/sessions", headers=headers, timeout=10)
        assert listing.status_code == 200, listing.text
        assert kate_session in [s["sessionId"] for s in listing.json()["sessions"]]


def test_refusals_are_logged_without_tokens(host: RunningHost, issuer: Issuer) -> None:
    token = issuer.token_for(MALLORY)
    httpx.get(host.base_url + "/api/sessions", headers={**principal(KATE), **bearer(token)})
    httpx.get(host.base_url + "/api/sessions", headers=principal(KATE))
    log = host.log()
    assert "the Easy Auth principal and the token name different users" in log
    assert "an Easy Auth principal came without a token to verify" in log
    for part in token.split("."):
        assert part not in log
    assert MALLORY not in log and KATE not in log


# ---- configurations that cannot verify tokens: every call refused, and the log says why -------


BROKEN = {
    "no_token_settings": (
        None,
        "AUTH_MODE=easyauth needs AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URL",
    ),
    "unusable_jwks_url": (
        {"AUTH_JWKS_URL": "file:///etc/passwd"},  # not http(s): the verifier refuses it
        "AUTH_MODE=easyauth: the token settings are not usable",
    ),
    "platform_reports_auth_off": (
        {"WEBSITE_AUTH_ENABLED": "False"},
        "AUTH_MODE=easyauth but App Service reports its authentication off"
        " (WEBSITE_AUTH_ENABLED=False)",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_configuration_that_cannot_verify_refuses_every_call(
    case: str, jwks_url: str, issuer: Issuer, tmp_path: Path
) -> None:
    changes, reason = BROKEN[case]
    env = {} if changes is None else {**token_settings(jwks_url), **changes}
    real_kate = {**principal(KATE), **bearer(issuer.token_for(KATE))}
    with easyauth_host(env, tmp_path) as host:
        responses = attempts(host, real_kate, NEVER_EXISTED)
        health = httpx.get(host.base_url + "/api/health", timeout=10)
        log = host.log()
    assert_all_401(responses)
    assert all(
        r.json()["error"]["message"] == "Authentication is not configured on this service."
        for r in responses.values()
    )
    assert health.status_code == 200
    assert f"ERROR parley.auth {reason}" in log, log
    assert log.count(f"WARNING parley.auth refused a call: {reason}") >= len(responses)
