"""AUTH_MODE=jwt through the real host: a key pair made by the tests, its JWKS served on a real
socket (tests/support/jwks.py), tokens signed here. JwtVerifier's unit tests
(tests/shared/auth/test_jwt.py) cover each rule in depth; this proves the HTTP path applies them and
answers 401 with the error object."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jwks import (
    DEFAULT_EMAIL,
    KID,
    OTHER_AUDIENCE,
    Issuer,
    bearer,
    token_settings,
)
from tools.local.host import RunningHost, run_host

EMAIL = DEFAULT_EMAIL


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture(scope="module")
def jwt_host(jwks_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    path = tmp_path_factory.mktemp("jwt")
    env = {
        "AUTH_MODE": "jwt",
        **token_settings(jwks_url),
        "STORAGE_BACKEND": "sqlite",
        "SQLITE_PATH": str(path / "c.db"),
    }
    with run_host(env, path / "host.log") as running:
        yield running


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["preferred_username"] = "mallory@example.com"
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


def _unsigned(issuer: Issuer) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": KID}).encode())
    return f"{header}.{_b64(json.dumps(issuer.claims()).encode())}."


def _hs256_with_public_key(issuer: Issuer) -> str:
    # The key-confusion attack: HMAC "signed" with the issuer's public key as the secret.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    payload = _b64(json.dumps(issuer.claims()).encode())
    mac = hmac.new(issuer.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


ATTACKS: dict[str, Any] = {
    "expired": lambda i: i.token(exp=int(time.time()) - 3600, nbf=int(time.time()) - 7200),
    "not_yet_valid": lambda i: i.token(nbf=int(time.time()) + 3600),
    "wrong_audience": lambda i: i.token(aud="api://someone-else"),
    "wrong_issuer": lambda i: i.token(iss="https://evil.example.test/v2.0"),
    "unknown_kid": lambda i: i.token(kid="key-unknown", key=i.stranger),
    "signed_by_another_key": lambda i: i.token(key=i.stranger),
    "tampered_payload": lambda i: _tampered(i.token()),
    "alg_none": _unsigned,
    "hs256_with_public_key": _hs256_with_public_key,
    "no_email_claim": lambda i: i.token(preferred_username=None),
    "no_expiry": lambda i: i.token(exp=None),
    "garbage": lambda i: "not.a.jwt",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_bad_tokens_are_401_on_every_endpoint(
    jwt_host: RunningHost, issuer: Issuer, attack: str
) -> None:
    headers = bearer(ATTACKS[attack](issuer))
    sid = "s_" + "0" * 32
    calls = [
        ("POST", "/api/chat", {"message": "hello"}),
        ("GET", "/api/sessions", None),
        ("GET", f"/api/sessions/{sid}", None),
        ("DELETE", f"/api/sessions/{sid}", None),
    ]
    with httpx.Client(base_url=jwt_host.base_url, headers=headers, timeout=10) as client:
        for method, path, body in calls:
            response = client.request(method, path, json=body)
            assert response.status_code == 401, (attack, method, path, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
            assert set(response.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic ZGFuYTpwdw=="},
        {"Authorization": "Bearer"},
        # The dev header means nothing in jwt mode.
        {"X-MS-CLIENT-PRINCIPAL-NAME": "dana.jones@example.com"},
    ],
    ids=["none", "basic", "empty_bearer", "dev_header"],
)
def test_missing_bearer_is_401(jwt_host: RunningHost, headers: dict[str, str]) -> None:
    response = httpx.get(jwt_host.base_url + "/api/sessions", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_valid_token_works_and_the_email_is_lower_cased(
    jwt_host: RunningHost, issuer: Issuer
) -> None:
    # Two tokens whose emails differ only in case are one user with one set of conversations.
    upper = bearer(issuer.token())
    lower = bearer(issuer.token(preferred_username=None, email=EMAIL.lower()))
    with httpx.Client(base_url=jwt_host.base_url, timeout=10) as client:
        created = client.post("/api/chat", json={"message": "hi there"}, headers=upper)
        assert created.status_code == 200, created.text
        sid = created.json()["sessionId"]
        listed = client.get("/api/sessions", headers=lower)
        assert listed.status_code == 200
        assert sid in [s["sessionId"] for s in listed.json()["sessions"]]
        assert client.get(f"/api/sessions/{sid}", headers=lower).status_code == 200


def test_every_listed_audience_is_accepted(jwt_host: RunningHost, issuer: Issuer) -> None:
    # AUTH_AUDIENCE lists two audiences, as Entra ID names an API both ways.
    for audience in (issuer.claims()["aud"], OTHER_AUDIENCE):
        headers = bearer(issuer.token(aud=audience))
        response = httpx.get(jwt_host.base_url + "/api/sessions", headers=headers, timeout=10)
        assert response.status_code == 200, (audience, response.text)


def test_no_token_reaches_the_log(jwt_host: RunningHost, issuer: Issuer) -> None:
    tokens = [issuer.token(), *(make(issuer) for make in ATTACKS.values())]
    for token in tokens:
        httpx.get(jwt_host.base_url + "/api/sessions", headers=bearer(token), timeout=10)
    log = jwt_host.log()
    assert "JWT rejected" in log  # the reasons are logged ...
    for token in tokens:
        for part in token.split("."):
            if len(part) > 16:  # ... but no part of any token
                assert part not in log
    assert EMAIL.lower() not in log.lower()


def test_host_refuses_jwt_mode_without_its_settings(tmp_path: Path) -> None:
    env = {"AUTH_MODE": "jwt", "SQLITE_PATH": str(tmp_path / "c.db")}
    with pytest.raises(RuntimeError, match="AUTH_JWKS_URL"), run_host(env, tmp_path / "h.log"):
        pass
