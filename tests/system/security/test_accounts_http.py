"""An address belongs to the account that first used it (docs/security.md, "Accounts"), through
the real local host in jwt and easyauth mode, on the embedded store and on local Cosmos: a second
account presenting the same address (a reused address, or a token naming the victim's address
from another tenant) gets 403 ``forbidden`` on every endpoint, and reads and changes nothing;
the first account keeps working; a sign-in without account ids binds nothing."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import CosmosDatabase, cosmos_database
from tests.support.jwks import Issuer, bearer, token_settings
from tools.local.cosmos import CosmosAccount
from tools.local.host import RunningHost, run_host

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
KATE_OID = "00000000-0000-4000-8000-00000000000a"
MALLORY_OID = "00000000-0000-4000-8000-00000000000b"
SECRET = "kate's secret plan"
OBJECT_ID_URI = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TENANT_ID_URI = "http://schemas.microsoft.com/identity/claims/tenantid"


@pytest.fixture(scope="module", params=["sqlite", "cosmos"])
def store_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("accounts")
        yield {"STORAGE_BACKEND": "sqlite", "SQLITE_PATH": str(path / "c.db")}
        return
    account: CosmosAccount = request.getfixturevalue("cosmos_account")
    with cosmos_database(account) as database:
        yield cosmos_env(database)


def cosmos_env(database: CosmosDatabase) -> dict[str, str]:
    account = database.account
    return {
        "STORAGE_BACKEND": "cosmos",
        "COSMOS_ENDPOINT": account.endpoint,
        "COSMOS_KEY": account.key,
        "COSMOS_VERIFY_TLS": "true" if account.verify_tls else "false",
        "COSMOS_DATABASE": database.name,
    }


@pytest.fixture(scope="module")
def jwt_host(
    store_env: dict[str, str], jwks_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHost]:
    env = {"AUTH_MODE": "jwt", "LLM_PROVIDER": "echo", **token_settings(jwks_url), **store_env}
    with run_host(env, tmp_path_factory.mktemp("jwt") / "host.log") as running:
        yield running


@pytest.fixture(scope="module")
def easyauth_host(jwks_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    path = tmp_path_factory.mktemp("easyauth")
    env = {
        "AUTH_MODE": "easyauth",
        "WEBSITE_AUTH_ENABLED": "True",
        "LLM_PROVIDER": "echo",
        "SQLITE_PATH": str(path / "c.db"),
        **token_settings(jwks_url),
    }
    with run_host(env, path / "host.log") as running:
        yield running


def address() -> str:
    return f"kate-{uuid.uuid4().hex[:10]}@example.com"


def jwt_caller(issuer: Issuer, email: str, **ids: Any) -> dict[str, str]:
    return bearer(issuer.token_for(email, **ids))


def seed(host: RunningHost, headers: dict[str, str]) -> tuple[str, str]:
    """Kate's conversation with a rated answer: (session id, answer's message id)."""
    with httpx.Client(base_url=host.base_url, headers=headers, timeout=30) as client:
        turn = client.post("/api/chat", json={"message": SECRET})
        assert turn.status_code == 200, turn.text
        sid, answer = turn.json()["sessionId"], turn.json()["messages"][1]["id"]
        rated = client.put(f"/api/sessions/{sid}/messages/{answer}/feedback", json={"rating": "up"})
        assert rated.status_code == 200, rated.text
    return sid, answer


def snapshot(host: RunningHost, headers: dict[str, str], sid: str) -> list[Any]:
    """Everything Kate can see of her data."""
    with httpx.Client(base_url=host.base_url, headers=headers, timeout=30) as client:
        responses = [
            client.get("/api/sessions"),
            client.get(f"/api/sessions/{sid}"),
            client.get(f"/api/sessions/{sid}/messages"),
            client.get("/api/export"),
        ]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    views = [r.json() for r in responses]
    views[3].pop("exportedAt", None)
    return views


def every_endpoint(
    host: RunningHost, headers: dict[str, str], sid: str, message_id: str
) -> dict[str, httpx.Response]:
    """Every endpoint that takes an identity, as ``headers``' caller, aimed at Kate's data."""
    feedback = f"/api/sessions/{sid}/messages/{message_id}/feedback"
    with httpx.Client(base_url=host.base_url, headers=headers, timeout=30) as client:
        return {
            "list": client.get("/api/sessions"),
            "list archived": client.get("/api/sessions", params={"archived": "true"}),
            "get": client.get(f"/api/sessions/{sid}"),
            "messages": client.get(f"/api/sessions/{sid}/messages"),
            "search": client.get("/api/search", params={"q": "secret"}),
            "export": client.get("/api/export"),
            "chat": client.post("/api/chat", json={"message": "x", "sessionId": sid}),
            "stream": client.post(
                "/api/chat",
                json={"message": "x", "sessionId": sid},
                headers={"Accept": "text/event-stream"},
            ),
            "new chat": client.post("/api/chat", json={"message": "planted"}),
            "rename": client.patch(f"/api/sessions/{sid}", json={"title": "mine now"}),
            "rate": client.put(feedback, json={"rating": "down"}),
            "unrate": client.delete(feedback),
            "delete": client.delete(f"/api/sessions/{sid}"),
            "delete all": client.delete("/api/sessions"),
        }


def assert_all_forbidden(responses: dict[str, httpx.Response]) -> None:
    for name, response in responses.items():
        assert response.status_code == 403, (name, response.status_code, response.text)
        error = response.json()["error"]
        assert error["code"] == "forbidden", name
        assert "another account" in error["message"], name
        assert SECRET not in response.text, name


@pytest.mark.parametrize(
    "stranger",
    [
        pytest.param({"oid": MALLORY_OID, "tid": TENANT}, id="reused-address"),
        pytest.param({"oid": KATE_OID, "tid": OTHER_TENANT}, id="other-tenant-same-oid"),
    ],
)
def test_another_account_with_the_address_is_refused_everywhere(
    jwt_host: RunningHost, issuer: Issuer, stranger: dict[str, str]
) -> None:
    email = address()
    kate = jwt_caller(issuer, email, oid=KATE_OID, tid=TENANT)
    sid, answer = seed(jwt_host, kate)
    before = snapshot(jwt_host, kate, sid)
    # The stranger's token names Kate's address, in another case too (one identity).
    assert_all_forbidden(
        every_endpoint(jwt_host, jwt_caller(issuer, email.upper(), **stranger), sid, answer)
    )
    assert snapshot(jwt_host, kate, sid) == before
    # Kate herself is not locked out by the attempts.
    again = httpx.post(
        jwt_host.base_url + "/api/chat",
        json={"message": "still me", "sessionId": sid},
        headers=kate,
        timeout=30,
    )
    assert again.status_code == 200, again.text


def test_the_first_account_of_a_fresh_address_owns_it(
    jwt_host: RunningHost, issuer: Issuer
) -> None:
    email = address()
    first = jwt_caller(issuer, email, oid=MALLORY_OID, tid=TENANT)
    listing = httpx.get(jwt_host.base_url + "/api/sessions", headers=first, timeout=30)
    assert listing.status_code == 200, listing.text  # a read binds too
    second = jwt_caller(issuer, email, oid=KATE_OID, tid=TENANT)
    refused = httpx.post(
        jwt_host.base_url + "/api/chat", json={"message": "hello"}, headers=second, timeout=30
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


def test_a_token_without_account_ids_binds_nothing(jwt_host: RunningHost, issuer: Issuer) -> None:
    email = address()
    anonymous = jwt_caller(issuer, email)  # no oid, no tid: as a dev identity
    sid, _ = seed(jwt_host, anonymous)
    # Nothing was bound, so the first account to come with ids binds the address ...
    kate = jwt_caller(issuer, email, oid=KATE_OID, tid=TENANT)
    detail = httpx.get(f"{jwt_host.base_url}/api/sessions/{sid}", headers=kate, timeout=30)
    assert detail.status_code == 200, detail.text
    # ... and a caller without ids is still never refused.
    detail = httpx.get(f"{jwt_host.base_url}/api/sessions/{sid}", headers=anonymous, timeout=30)
    assert detail.status_code == 200, detail.text


def principal(email: str, claims: dict[str, str]) -> dict[str, str]:
    body = {
        "auth_typ": "aad",
        "claims": [
            {"typ": "preferred_username", "val": email},
            *({"typ": typ, "val": val} for typ, val in claims.items()),
        ],
    }
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(body).encode()).decode()}


def test_easyauth_binds_the_principals_account(easyauth_host: RunningHost, issuer: Issuer) -> None:
    """Easy Auth's principal reports the ids under their claim URIs; the token it comes with may
    or may not carry them (an ID token of a cookie session without oid, say)."""
    email = address()
    kate = {
        **principal(email, {OBJECT_ID_URI: KATE_OID, TENANT_ID_URI: TENANT}),
        **bearer(issuer.token_for(email)),
    }
    sid, answer = seed(easyauth_host, kate)
    before = snapshot(easyauth_host, kate, sid)
    mallory = {
        **principal(email, {"oid": MALLORY_OID, "tid": TENANT}),  # short names too
        **bearer(issuer.token_for(email, oid=MALLORY_OID, tid=TENANT)),
    }
    assert_all_forbidden(every_endpoint(easyauth_host, mallory, sid, answer))
    assert snapshot(easyauth_host, kate, sid) == before


def test_easyauth_refuses_a_principal_and_token_of_different_accounts(
    easyauth_host: RunningHost, issuer: Issuer
) -> None:
    email = address()
    mixed = {
        **principal(email, {OBJECT_ID_URI: KATE_OID, TENANT_ID_URI: TENANT}),
        **bearer(issuer.token_for(email, oid=MALLORY_OID, tid=TENANT)),
    }
    response = httpx.get(easyauth_host.base_url + "/api/sessions", headers=mixed, timeout=30)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_refusal_is_logged_without_the_address(jwt_host: RunningHost, issuer: Issuer) -> None:
    email = address()
    httpx.get(
        jwt_host.base_url + "/api/sessions",
        headers=jwt_caller(issuer, email, oid=KATE_OID, tid=TENANT),
        timeout=30,
    )
    refused = httpx.get(
        jwt_host.base_url + "/api/sessions",
        headers=jwt_caller(issuer, email, oid=MALLORY_OID, tid=TENANT),
        timeout=30,
    )
    assert refused.status_code == 403
    log = Path(jwt_host.log_path).read_text()
    assert "bound to another account" in log
    assert email not in log and MALLORY_OID not in log
