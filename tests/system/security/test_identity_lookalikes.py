"""Addresses that look like (or Unicode-map to) a real user's never reach her data, in every
auth mode, through the real host. The rule (shared/auth/claims.py, docs/security.md
"Identities"): printable ASCII only, lower-cased with ASCII case mapping; anything else is 401.

Kate has a conversation. Each look-alike is sent the way its mode carries an identity: the
dev header (as UTF-8 bytes, the way a client would put it on the wire), a signed token's
``preferred_username`` (jwt), or Easy Auth's principal with a token naming the same address
(easyauth). A look-alike must get 401, or at least see none of Kate's sessions and change
nothing; the rule says 401, and the test holds it to that. Kate's own address in upper case is
Kate: that merge is intended."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.jwks import Issuer, bearer, token_settings
from tools.local.host import RunningHost, run_host

KATE = "kate@example.com"

LOOKALIKES = {
    "kelvin_sign": "\u212aate@example.com",  # lower() gives ASCII k
    "fullwidth_letters": "\uff4b\uff41\uff54\uff45@example.com",  # NFKC gives kate
    "fullwidth_at": "kate\uff20example.com",  # NFKC gives @
    "mathematical_bold_k": "\U0001d424ate@example.com",  # NFKC gives k
    "modifier_letter_k": "\u1d4fate@example.com",  # NFKC gives k
    "cyrillic_a": "k\u0430te@example.com",  # looks like a, is not
    "cyrillic_e_in_domain": "kate@\u0435xample.com",
    "ideographic_full_stop": "kate@example\u3002com",  # IDNA reads it as a dot
    "zero_width_space": "ka\u200bte@example.com",
    "zero_width_joiner": "kate\u200d@example.com",
    "byte_order_mark": "\ufeffkate@example.com",
    "soft_hyphen": "ka\u00adte@example.com",
    "no_break_space": "kate@example.com\u00a0",
    "trailing_space": "kate@example.com ",
}
SAME_USER = ["KATE@EXAMPLE.COM", "Kate@Example.Com"]
MODES = ["dev", "jwt", "easyauth"]


def principal(email: str) -> str:
    body = {"auth_typ": "aad", "claims": [{"typ": "preferred_username", "val": email}]}
    return base64.b64encode(json.dumps(body).encode()).decode()


def identity(mode: str, email: str, issuer: Issuer) -> dict[str, Any]:
    """The headers by which ``mode`` learns that the caller is ``email``."""
    if mode == "dev":
        return {"X-MS-CLIENT-PRINCIPAL-NAME": email.encode("utf-8")}
    token = issuer.token_for(email)
    if mode == "jwt":
        return bearer(token)
    return {"X-MS-CLIENT-PRINCIPAL": principal(email), **bearer(token)}


@pytest.fixture(scope="module", params=MODES)
def mode_host(
    request: pytest.FixtureRequest, jwks_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RunningHost]]:
    mode: str = request.param
    path = tmp_path_factory.mktemp(f"lookalike-{mode}")
    env = {"AUTH_MODE": mode, "SQLITE_PATH": str(path / "c.db")}
    if mode != "dev":
        env.update(token_settings(jwks_url))
    with run_host(env, path / "h.log") as host:
        yield mode, host


@pytest.fixture(scope="module")
def kate_session(mode_host: tuple[str, RunningHost], issuer: Issuer) -> str:
    mode, host = mode_host
    response = httpx.post(
        host.base_url + "/api/chat",
        json={"message": "kate's private notes"},
        headers=identity(mode, KATE, issuer),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


def kate_state(mode: str, host: RunningHost, issuer: Issuer, sid: str) -> tuple[Any, Any]:
    with httpx.Client(
        base_url=host.base_url, headers=identity(mode, KATE, issuer), timeout=10
    ) as client:
        detail, listing = client.get(f"/api/sessions/{sid}"), client.get("/api/sessions")
    assert detail.status_code == 200 and listing.status_code == 200
    return detail.json(), listing.json()


@pytest.mark.parametrize("lookalike", sorted(LOOKALIKES))
def test_a_lookalike_never_reaches_the_real_users_data(
    mode_host: tuple[str, RunningHost], issuer: Issuer, kate_session: str, lookalike: str
) -> None:
    mode, host = mode_host
    if mode == "dev" and LOOKALIKES[lookalike] != LOOKALIKES[lookalike].strip(" "):
        pytest.skip("HTTP cannot carry a header value's surrounding spaces; tokens can")
    before = kate_state(mode, host, issuer, kate_session)
    headers = identity(mode, LOOKALIKES[lookalike], issuer)
    with httpx.Client(base_url=host.base_url, headers=headers, timeout=10) as client:
        listing = client.get("/api/sessions")
        on_kates = {
            "get": client.get(f"/api/sessions/{kate_session}"),
            "chat": client.post("/api/chat", json={"message": "x", "sessionId": kate_session}),
            "stream": client.post(
                "/api/chat",
                json={"message": "x", "sessionId": kate_session},
                headers={"Accept": "text/event-stream"},
            ),
            "delete": client.delete(f"/api/sessions/{kate_session}"),
        }
    # The security property: refused, or a stranger to Kate's data.
    if listing.status_code != 401:
        assert listing.status_code == 200
        assert kate_session not in [s["sessionId"] for s in listing.json()["sessions"]]
    for name, response in on_kates.items():
        assert response.status_code in (401, 404), (name, response.text)
        assert "kate's private notes" not in response.text, name
    assert kate_state(mode, host, issuer, kate_session) == before
    # The rule (docs/security.md): a non-ASCII or padded address is refused outright.
    assert [listing.status_code, *(r.status_code for r in on_kates.values())] == [401] * 5


@pytest.mark.parametrize("variant", SAME_USER)
def test_the_same_address_in_another_ascii_case_is_the_same_user(
    mode_host: tuple[str, RunningHost], issuer: Issuer, kate_session: str, variant: str
) -> None:
    mode, host = mode_host
    response = httpx.get(
        f"{host.base_url}/api/sessions/{kate_session}",
        headers=identity(mode, variant, issuer),
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_a_refusal_is_logged_with_its_reason_and_never_the_address(
    mode_host: tuple[str, RunningHost], issuer: Issuer
) -> None:
    mode, host = mode_host
    if mode == "dev":
        pytest.skip("dev mode trusts its header as sent; it has no sign-in to explain")
    httpx.get(
        host.base_url + "/api/sessions",
        headers=identity(mode, LOOKALIKES["kelvin_sign"], issuer),
        timeout=10,
    )
    log = host.log()
    assert "preferred_username: the email address contains U+212A at position 0" in log
    assert "ate@example.com" not in log and KATE not in log
