"""AUTH_MODE=easyauth, unset and dev, through the real host. (Easy Auth's second lock, the
token the app verifies itself, has its own module: test_easyauth_layers.py.)"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jwks import Issuer, bearer, token_settings
from tools.local.host import RunningHost, run_host

SID = "s_" + "a" * 32
IDENTITY_CALLS = [
    ("POST", "/api/chat", {"message": "hello"}),
    ("GET", "/api/sessions", None),
    ("GET", f"/api/sessions/{SID}", None),
    ("DELETE", f"/api/sessions/{SID}", None),
]


def principal(claims: list[dict[str, Any]] | Any) -> str:
    """An X-MS-CLIENT-PRINCIPAL value as App Service Authentication builds it."""
    body = {"auth_typ": "aad", "claims": claims} if isinstance(claims, list) else claims
    return base64.b64encode(json.dumps(body).encode()).decode()


def _host(env: dict[str, str], tmp: Path) -> Iterator[RunningHost]:
    with run_host(
        {"STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(tmp / "c.db"), **env}, tmp / "h.log"
    ) as h:
        yield h


@pytest.fixture(scope="module")
def easyauth_host(jwks_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    env = {"AUTH_MODE": "easyauth", **token_settings(jwks_url)}
    yield from _host(env, tmp_path_factory.mktemp("easyauth"))


@pytest.fixture(scope="module")
def unset_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    yield from _host({}, tmp_path_factory.mktemp("unset"))


# ---- easyauth ----------------------------------------------------------------------------------

BAD_PRINCIPALS = {
    "not_base64": "!!!not base64!!!",
    "not_json": base64.b64encode(b"{not json").decode(),
    "not_utf8": base64.b64encode(b"\xff\xfe\xfa").decode(),
    "json_list": base64.b64encode(b"[1, 2]").decode(),
    "claims_not_list": principal({"claims": "preferred_username"}),
    "no_email_claim": principal([{"typ": "name", "val": "Carol"}]),
    "email_not_an_email": principal([{"typ": "preferred_username", "val": "carol"}]),
    "email_not_text": principal([{"typ": "email", "val": 42}]),
    "claim_not_object": principal(["preferred_username"]),
    "deeply_nested": base64.b64encode(b"[" * 20000).decode(),
    "too_large": "A" * (70 * 1024),
}


@pytest.mark.parametrize("case", sorted(BAD_PRINCIPALS))
def test_bad_principal_is_401_never_500(
    easyauth_host: RunningHost, issuer: Issuer, case: str
) -> None:
    # With a valid token beside it: the principal itself is what is refused.
    headers = {"X-MS-CLIENT-PRINCIPAL": BAD_PRINCIPALS[case], **bearer(issuer.token())}
    with httpx.Client(base_url=easyauth_host.base_url, headers=headers, timeout=10) as client:
        for method, path, body in IDENTITY_CALLS:
            response = client.request(method, path, json=body)
            assert response.status_code == 401, (case, method, path, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"


def test_easyauth_ignores_the_dev_header(easyauth_host: RunningHost, issuer: Issuer) -> None:
    response = httpx.get(
        easyauth_host.base_url + "/api/sessions",
        headers={
            "X-MS-CLIENT-PRINCIPAL-NAME": "carol@example.com",
            **bearer(issuer.token_for("carol@example.com")),
        },
        timeout=10,
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "claim",
    [
        "preferred_username",
        "email",
        "upn",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ],
)
def test_principal_email_is_found_and_lower_cased(
    easyauth_host: RunningHost, issuer: Issuer, claim: str
) -> None:
    mixed_email, lower_email = f"Carol.{len(claim)}@Example.COM", f"carol.{len(claim)}@example.com"
    mixed = {
        "X-MS-CLIENT-PRINCIPAL": principal([{"typ": claim, "val": mixed_email}]),
        **bearer(issuer.token_for(mixed_email)),
    }
    lower = {
        "X-MS-CLIENT-PRINCIPAL": principal([{"typ": "email", "val": lower_email}]),
        **bearer(issuer.token_for(lower_email.upper())),
    }
    with httpx.Client(base_url=easyauth_host.base_url, timeout=10) as client:
        created = client.post("/api/chat", json={"message": "hi"}, headers=mixed)
        assert created.status_code == 200, created.text
        sid = created.json()["sessionId"]
        # The same person, however the provider cased the address: one partition.
        assert client.get(f"/api/sessions/{sid}", headers=lower).status_code == 200


# ---- unset: fail closed ------------------------------------------------------------------------


def test_unset_mode_refuses_every_identity_call_and_says_why(unset_host: RunningHost) -> None:
    # Even with every kind of identity header a client could send.
    headers = {
        "X-MS-CLIENT-PRINCIPAL-NAME": "eve@example.com",
        "X-MS-CLIENT-PRINCIPAL": principal([{"typ": "email", "val": "eve@example.com"}]),
        "Authorization": "Bearer x.y.z",
    }
    with httpx.Client(base_url=unset_host.base_url, headers=headers, timeout=10) as client:
        for method, path, body in IDENTITY_CALLS:
            response = client.request(method, path, json=body)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "unauthenticated"
        assert client.get("/api/health").status_code == 200
    log = unset_host.log()
    assert "AUTH_MODE is not set: every call that needs an identity is refused" in log
    assert log.count("refused a call: AUTH_MODE is not set") >= len(IDENTITY_CALLS)


# ---- dev: warns at start -----------------------------------------------------------------------


def test_dev_mode_warns_at_start(tmp_path: Path) -> None:
    env = {"AUTH_MODE": "dev", "SQLITE_PATH": str(tmp_path / "c.db")}
    # run_host returns once /api/health answers: no identity-needing call has been made yet.
    with run_host(env, tmp_path / "h.log") as host:
        log = host.log()
    assert "WARNING parley.auth AUTH_MODE=dev" in log
    assert "parley.http request" not in log


def test_other_modes_do_not_warn_about_dev(easyauth_host: RunningHost) -> None:
    assert "AUTH_MODE=dev" not in easyauth_host.log()
