"""JwtVerifier against a real JWKS endpoint on a local socket.

Why a real HTTP server rather than a mocked fetch: the fetch count, the timeout and the
"issuer is down" behaviour are part of what is being verified, so they must go over a socket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

import shared.auth.jwt as jwt_module
from shared.auth.jwt import JwtVerifier
from shared.errors import Unauthenticated

ISSUER = "https://login.example.test/tenant-1/v2.0"
AUDIENCE = "api://parley"
EMAIL = "Alice.Smith@Example.COM"
INTERVAL_S = 60.0


# --- keys and tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with the key id it is published under."""

    kid: str
    private_key: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWKS entry, the way an identity provider publishes it."""
        data: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _new_key(kid: str) -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def key_a() -> SigningKey:
    return _new_key("key-a")


@pytest.fixture(scope="session")
def key_b() -> SigningKey:
    return _new_key("key-b")


@pytest.fixture(scope="session")
def key_unpublished() -> SigningKey:
    return _new_key("key-never-published")


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for now; an override of None removes that claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "sub": "subject-1",
        "preferred_username": EMAIL,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def make_token(
    key: SigningKey, payload: dict[str, Any] | None = None, kid: str | None = None
) -> str:
    """An RS256 token signed by ``key``, naming ``kid`` (default: the key's own) in its header."""
    return jwt.encode(
        claims() if payload is None else payload,
        key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid if kid is None else kid},
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


# --- the JWKS endpoint -------------------------------------------------------------------------


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts fetches and can rotate keys or fail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._document: dict[str, Any] = {"keys": []}
        self._fetches = 0
        self.status = 200
        self.raw_body: bytes | None = None  # served instead of the document when set
        self.hang = threading.Event()  # set => requests block until release is set
        self.release = threading.Event()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with state._lock:
                    state._fetches += 1
                    body = state.raw_body or json.dumps(state._document).encode()
                    status = state.status
                if state.hang.is_set():
                    state.release.wait(10)
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}/discovery/v2.0/keys"

    def publish(self, *keys: SigningKey) -> None:
        """Replace the published key set (a rotation when the kids change)."""
        with self._lock:
            self._document = {"keys": [k.jwk() for k in keys]}

    @property
    def fetches(self) -> int:
        with self._lock:
            return self._fetches

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def jwks(key_a: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(key_a)
    yield server
    server.close()


class FakeClock:
    """The refresh throttle's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


VerifierFactory = Callable[..., JwtVerifier]


@pytest.fixture
def make_verifier(jwks: JwksServer, clock: FakeClock) -> VerifierFactory:
    def make(**overrides: Any) -> JwtVerifier:
        kwargs: dict[str, Any] = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_url": jwks.url,
            "leeway_s": 60,
            "jwks_refresh_min_interval_s": INTERVAL_S,
            "clock": clock,
        }
        kwargs.update(overrides)
        return JwtVerifier(**kwargs)

    return make


@pytest.fixture
def verifier(make_verifier: VerifierFactory) -> JwtVerifier:
    return make_verifier()


def assert_401(verifier: JwtVerifier, token: str) -> Unauthenticated:
    """The token is refused with a 401 whose message echoes neither the token nor the email."""
    with pytest.raises(Unauthenticated) as caught:
        verifier.caller_for(token)
    error = caught.value
    assert error.status == 401
    assert error.code == "unauthenticated"
    assert error.message
    if token:
        assert token not in error.message
        for segment in token.split("."):
            if len(segment) > 3:
                assert segment not in error.message
    assert EMAIL.lower() not in error.message.lower()
    return error


# --- accepted tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["preferred_username", "email", "upn"])
def test_valid_token_gives_lower_cased_email(
    verifier: JwtVerifier, key_a: SigningKey, claim: str
) -> None:
    payload = claims(**{"preferred_username": None, claim: EMAIL})
    assert verifier.caller_for(make_token(key_a, payload)).email == "alice.smith@example.com"


def test_audience_list_containing_ours_is_accepted(
    verifier: JwtVerifier, key_a: SigningKey
) -> None:
    token = make_token(key_a, claims(aud=["api://other", AUDIENCE]))
    assert verifier.caller_for(token).email == "alice.smith@example.com"


def test_any_of_several_configured_audiences_is_accepted(
    make_verifier: VerifierFactory, key_a: SigningKey
) -> None:
    verifier = make_verifier(audience=("api://other-name-of-parley", AUDIENCE))
    for audience in ("api://other-name-of-parley", AUDIENCE):
        assert verifier.caller_for(make_token(key_a, claims(aud=audience))).email == EMAIL.lower()
    assert_401(verifier, make_token(key_a, claims(aud="api://someone-else")))


@pytest.mark.parametrize("audience", ["", (), ("api://parley", "")])
def test_an_empty_audience_is_a_configuration_error(jwks: JwksServer, audience: Any) -> None:
    with pytest.raises(ValueError, match="audience"):
        JwtVerifier(issuer=ISSUER, audience=audience, jwks_url=jwks.url)


def test_a_lookalike_email_claim_is_401(verifier: JwtVerifier, key_a: SigningKey) -> None:
    # KELVIN SIGN lower-cases to ASCII k: the rule (shared/auth/claims.py) refuses it.
    error = assert_401(verifier, make_token(key_a, claims(preferred_username="\u212aate@x.com")))
    assert "email" in error.message


@pytest.mark.parametrize(
    "overrides",
    [{"exp": -30}, {"nbf": 30}],
    ids=["expired-within-leeway", "nbf-within-leeway"],
)
def test_times_within_leeway_are_accepted(
    verifier: JwtVerifier, key_a: SigningKey, overrides: dict[str, int]
) -> None:
    now = int(time.time())
    payload = claims(**{name: now + delta for name, delta in overrides.items()})
    if "nbf" in overrides:
        payload["iat"] = payload["nbf"]
    assert verifier.caller_for(make_token(key_a, payload)).email == "alice.smith@example.com"


def test_token_without_nbf_is_accepted(verifier: JwtVerifier, key_a: SigningKey) -> None:
    assert (
        verifier.caller_for(make_token(key_a, claims(nbf=None))).email == "alice.smith@example.com"
    )


# --- refused: time, audience, issuer, claims ---------------------------------------------------


def test_expired_token_is_401(verifier: JwtVerifier, key_a: SigningKey) -> None:
    now = int(time.time())
    error = assert_401(verifier, make_token(key_a, claims(iat=now - 900, exp=now - 120)))
    assert "expired" in error.message


def test_not_yet_valid_token_is_401(verifier: JwtVerifier, key_a: SigningKey) -> None:
    now = int(time.time())
    error = assert_401(verifier, make_token(key_a, claims(nbf=now + 600, exp=now + 1200)))
    assert "not valid yet" in error.message


def test_leeway_is_configurable(make_verifier: VerifierFactory, key_a: SigningKey) -> None:
    now = int(time.time())
    token = make_token(key_a, claims(exp=now - 30))
    assert make_verifier(leeway_s=60).caller_for(token).email == "alice.smith@example.com"
    assert_401(make_verifier(leeway_s=0), token)


def test_wrong_audience_is_401(verifier: JwtVerifier, key_a: SigningKey) -> None:
    error = assert_401(verifier, make_token(key_a, claims(aud="api://someone-else")))
    assert "not issued for this service" in error.message


def test_wrong_issuer_is_401(verifier: JwtVerifier, key_a: SigningKey) -> None:
    token = make_token(key_a, claims(iss="https://login.example.test/other-tenant/v2.0"))
    error = assert_401(verifier, token)
    assert "not issued for this service" in error.message


@pytest.mark.parametrize("missing", ["exp", "iss", "aud"])
def test_missing_required_claim_is_401(
    verifier: JwtVerifier, key_a: SigningKey, missing: str
) -> None:
    assert_401(verifier, make_token(key_a, claims(**{missing: None})))


@pytest.mark.parametrize(
    "overrides",
    [
        {"preferred_username": None},
        {"preferred_username": "not-an-email"},
        {"preferred_username": 42},
        {"preferred_username": None, "email": "", "upn": "  "},
    ],
    ids=["no-claim", "not-an-email", "not-a-string", "blank-claims"],
)
def test_token_without_usable_email_is_401(
    verifier: JwtVerifier, key_a: SigningKey, overrides: dict[str, Any]
) -> None:
    error = assert_401(verifier, make_token(key_a, claims(**overrides)))
    assert "email" in error.message


# --- refused: forged and malformed tokens ------------------------------------------------------


def test_unknown_kid_signed_with_another_key_is_401(
    verifier: JwtVerifier, key_unpublished: SigningKey, jwks: JwksServer
) -> None:
    error = assert_401(verifier, make_token(key_unpublished))
    assert "unknown key" in error.message
    assert jwks.fetches == 1


def test_known_kid_signed_with_another_key_is_401(
    verifier: JwtVerifier, key_a: SigningKey, key_unpublished: SigningKey
) -> None:
    assert_401(verifier, make_token(key_unpublished, kid=key_a.kid))


def test_tampered_payload_is_401(verifier: JwtVerifier, key_a: SigningKey) -> None:
    header, _, signature = make_token(key_a).split(".")
    forged = b64url_json(claims(preferred_username="mallory@example.com"))
    error = assert_401(verifier, f"{header}.{forged}.{signature}")
    assert "signature" in error.message


def test_alg_none_is_401(verifier: JwtVerifier, key_a: SigningKey) -> None:
    header = b64url_json({"alg": "none", "typ": "JWT", "kid": key_a.kid})
    unsigned = f"{header}.{b64url_json(claims())}."
    assert_401(verifier, unsigned)
    # The same with a junk signature, and with "None" capitalised.
    assert_401(verifier, unsigned + "c2ln")
    header2 = b64url_json({"alg": "None", "typ": "JWT", "kid": key_a.kid})
    assert_401(verifier, f"{header2}.{b64url_json(claims())}.")


def test_hs256_signed_with_public_key_pem_is_401(verifier: JwtVerifier, key_a: SigningKey) -> None:
    """The key-confusion attack: HMAC keyed with the (public) RSA key."""
    signing_input = f"{b64url_json({'alg': 'HS256', 'typ': 'JWT', 'kid': key_a.kid})}." + (
        b64url_json(claims())
    )
    for secret in (key_a.public_pem(), json.dumps(key_a.jwk()).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert_401(verifier, f"{signing_input}.{b64url(mac)}")


def test_rs256_key_used_with_other_rsa_alg_header_is_401(
    verifier: JwtVerifier, key_a: SigningKey
) -> None:
    token = jwt.encode(claims(), key_a.private_key, algorithm="RS512", headers={"kid": key_a.kid})
    assert_401(verifier, token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b.c",
        "a.b",
        "a.b.c.d.e",
        "!!!.@@@.###",
        "Bearer abc.def.ghi",
        "....",
        "eyJhbGciOiJSUzI1NiJ9.%%%.xyz",  # valid header without kid, junk payload
        b64url(b"\xff\xfe\x00") + ".e30.",
        b64url_json({"alg": "RS256", "kid": 7}) + ".e30.c2ln",  # non-string kid
        b64url_json({"alg": "RS256", "kid": "x" * 1000}) + ".e30.c2ln",  # absurd kid
        "x" * 100_000,
    ],
)
def test_garbage_is_401(verifier: JwtVerifier, token: str) -> None:
    assert_401(verifier, token)


def test_token_with_unknown_kid_and_no_signature_is_401(
    verifier: JwtVerifier, key_a: SigningKey
) -> None:
    header = b64url_json({"alg": "RS256", "typ": "JWT", "kid": key_a.kid})
    assert_401(verifier, f"{header}.{b64url_json(claims())}.")


# --- the JWKS cache ----------------------------------------------------------------------------


def test_jwks_fetched_once_for_many_verifications(
    verifier: JwtVerifier, key_a: SigningKey, jwks: JwksServer
) -> None:
    assert jwks.fetches == 0  # nothing is fetched before the first token
    for i in range(25):
        token = make_token(key_a, claims(preferred_username=f"user{i}@example.com"))
        assert verifier.caller_for(token).email == f"user{i}@example.com"
    assert jwks.fetches == 1


def test_concurrent_first_use_fetches_once(
    verifier: JwtVerifier, key_a: SigningKey, jwks: JwksServer
) -> None:
    token = make_token(key_a)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: verifier.caller_for(token).email, range(64)))
    assert set(results) == {"alice.smith@example.com"}
    assert jwks.fetches == 1


def test_key_rotation_refetches_once_and_accepts_new_key(
    verifier: JwtVerifier,
    key_a: SigningKey,
    key_b: SigningKey,
    jwks: JwksServer,
    clock: FakeClock,
) -> None:
    assert verifier.caller_for(make_token(key_a)).email == "alice.smith@example.com"
    assert jwks.fetches == 1

    jwks.publish(key_b)  # the issuer rotates: key-a retired, key-b in use
    clock.advance(INTERVAL_S + 1)
    assert verifier.caller_for(make_token(key_b)).email == "alice.smith@example.com"
    assert jwks.fetches == 2
    for _ in range(5):
        assert verifier.caller_for(make_token(key_b)).email == "alice.smith@example.com"
    assert jwks.fetches == 2

    # The retired key is gone from the cache along with the set that carried it.
    assert_401(verifier, make_token(key_a))


def test_rotation_within_interval_waits_for_the_throttle(
    verifier: JwtVerifier,
    key_a: SigningKey,
    key_b: SigningKey,
    jwks: JwksServer,
    clock: FakeClock,
) -> None:
    verifier.caller_for(make_token(key_a))
    jwks.publish(key_a, key_b)
    clock.advance(INTERVAL_S / 2)
    assert_401(verifier, make_token(key_b))
    assert jwks.fetches == 1
    clock.advance(INTERVAL_S / 2)
    assert verifier.caller_for(make_token(key_b)).email == "alice.smith@example.com"
    assert verifier.caller_for(make_token(key_a)).email == "alice.smith@example.com"
    assert jwks.fetches == 2


def test_unknown_kids_refetch_at_most_once_per_interval(
    verifier: JwtVerifier,
    key_a: SigningKey,
    key_unpublished: SigningKey,
    jwks: JwksServer,
    clock: FakeClock,
) -> None:
    verifier.caller_for(make_token(key_a))
    assert jwks.fetches == 1

    for i in range(20):  # a flood straight after the first fetch: no refetch at all
        assert_401(verifier, make_token(key_unpublished, kid=f"bogus-{i}"))
    assert jwks.fetches == 1

    clock.advance(INTERVAL_S)
    for i in range(20):  # the interval has passed: one refetch, then throttled again
        assert_401(verifier, make_token(key_unpublished, kid=f"bogus-2-{i}"))
    assert jwks.fetches == 2

    clock.advance(INTERVAL_S - 1)
    assert_401(verifier, make_token(key_unpublished, kid="bogus-3"))
    assert jwks.fetches == 2
    clock.advance(1)
    assert_401(verifier, make_token(key_unpublished, kid="bogus-4"))
    assert jwks.fetches == 3

    # Known keys are still served from the cache throughout.
    assert verifier.caller_for(make_token(key_a)).email == "alice.smith@example.com"
    assert jwks.fetches == 3


def test_clock_going_backwards_does_not_block_refresh_forever(
    verifier: JwtVerifier,
    key_a: SigningKey,
    key_b: SigningKey,
    jwks: JwksServer,
    clock: FakeClock,
) -> None:
    verifier.caller_for(make_token(key_a))
    jwks.publish(key_a, key_b)
    clock.advance(-3600)
    assert verifier.caller_for(make_token(key_b)).email == "alice.smith@example.com"
    assert jwks.fetches == 2


# --- the issuer misbehaving --------------------------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/keys"


def test_jwks_unreachable_is_401(make_verifier: VerifierFactory, key_a: SigningKey) -> None:
    verifier = make_verifier(jwks_url=_closed_port_url())
    error = assert_401(verifier, make_token(key_a))
    assert "try again" in error.message
    assert_401(verifier, make_token(key_a))  # throttled: still a 401, not an exception


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, None),
        (200, b"<html>not json</html>"),
        (200, b"[1, 2, 3]"),
        (200, b'{"keys": []}'),
        (200, b'{"keys": [{"kty": "RSA", "kid": "key-a", "n": "bad", "e": "AQAB"}]}'),
        (200, b'{"keys": [{"kty": "oct", "kid": "key-a", "k": "c2VjcmV0"}]}'),
    ],
    ids=["http-500", "not-json", "not-an-object", "no-keys", "broken-key", "symmetric-key"],
)
def test_jwks_bad_response_is_401(
    verifier: JwtVerifier,
    key_a: SigningKey,
    jwks: JwksServer,
    status: int,
    body: bytes | None,
) -> None:
    jwks.status = status
    jwks.raw_body = body
    assert_401(verifier, make_token(key_a))
    assert jwks.fetches == 1


def test_jwks_keys_for_other_uses_or_algs_are_ignored(
    verifier: JwtVerifier, key_a: SigningKey, key_b: SigningKey, jwks: JwksServer
) -> None:
    enc = {**key_a.jwk(), "use": "enc"}
    rs512 = {**key_b.jwk(), "alg": "RS512"}
    jwks.raw_body = json.dumps({"keys": [enc, rs512]}).encode()
    assert_401(verifier, make_token(key_a))
    assert_401(verifier, make_token(key_b))


def test_issuer_outage_keeps_cached_keys_and_recovers(
    verifier: JwtVerifier,
    key_a: SigningKey,
    key_b: SigningKey,
    jwks: JwksServer,
    clock: FakeClock,
) -> None:
    verifier.caller_for(make_token(key_a))
    jwks.status = 503
    clock.advance(INTERVAL_S)
    assert_401(verifier, make_token(key_b))  # refresh attempted, failed
    assert jwks.fetches == 2
    # The keys from before the outage still work, without another fetch.
    assert verifier.caller_for(make_token(key_a)).email == "alice.smith@example.com"
    assert jwks.fetches == 2

    jwks.status = 200
    jwks.publish(key_a, key_b)
    assert_401(verifier, make_token(key_b))  # a failed attempt also starts the interval
    assert jwks.fetches == 2
    clock.advance(INTERVAL_S)
    assert verifier.caller_for(make_token(key_b)).email == "alice.smith@example.com"
    assert jwks.fetches == 3


def test_jwks_fetch_times_out(
    verifier: JwtVerifier,
    key_a: SigningKey,
    jwks: JwksServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jwt_module, "JWKS_TIMEOUT_S", 0.2)
    jwks.hang.set()
    started = time.monotonic()
    assert_401(verifier, make_token(key_a))
    assert time.monotonic() - started < 5
    assert jwks.fetches == 1


# --- what the log and the caller see -----------------------------------------------------------


def test_log_gives_reason_without_token_or_email(
    verifier: JwtVerifier, key_a: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    tokens = [
        make_token(key_a, claims(exp=now - 3600, iat=now - 7200)),
        make_token(key_a, claims(aud="api://someone-else")),
        "!!!.@@@.###",
    ]
    with caplog.at_level(logging.INFO, logger="parley.auth"):
        for token in tokens:
            assert_401(verifier, token)
    rejected = [r for r in caplog.records if r.name == "parley.auth" and "rejected" in r.message]
    assert len(rejected) == len(tokens)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "expired" in text
    for token in tokens:
        for segment in token.split("."):
            if len(segment) > 3:
                assert segment not in text
    assert EMAIL.lower() not in text.lower()


def test_jwks_url_must_be_http(jwks: JwksServer) -> None:
    with pytest.raises(ValueError):
        JwtVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_url="file:///etc/passwd")
