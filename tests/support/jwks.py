"""A token issuer made by the tests: an RSA key pair, its JWKS served on a real socket, and
tokens signed with it. The host under test fetches the keys over HTTP exactly as it would from
Entra ID, so the whole verification path runs (tests/system/security, tests/tools/smoke)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://login.example.test/tenant/v2.0"
AUDIENCE = "api://parley-test"
# A second accepted audience, as Entra ID names an API both ways (api://<id> and the bare id).
OTHER_AUDIENCE = "11111111-2222-4333-8444-555555555555"
KID = "key-1"
DEFAULT_EMAIL = "Dana.Jones@Example.COM"


class Issuer:
    """A signing key, the JWKS that publishes it, and tokens signed with it."""

    def __init__(self) -> None:
        # 2048 bits: PyJWT refuses shorter RSA keys for RS256 in its default policy.
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]}

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @staticmethod
    def claims(**changes: Any) -> dict[str, Any]:
        """Valid claims for now; a change of None removes that claim."""
        now = int(time.time())
        base = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 600,
            "preferred_username": DEFAULT_EMAIL,
        }
        return {k: v for k, v in {**base, **changes}.items() if v is not None}

    def token(self, *, kid: str = KID, key: rsa.RSAPrivateKey | None = None, **changes: Any) -> str:
        return jwt.encode(
            self.claims(**changes), key or self.key, algorithm="RS256", headers={"kid": kid}
        )

    def token_for(self, email: str, **changes: Any) -> str:
        """A valid token whose caller is ``email`` (in ``preferred_username``)."""
        return self.token(preferred_username=email, **changes)


@contextmanager
def serve_jwks(issuer: Issuer) -> Iterator[str]:
    """Serve ``issuer``'s JWKS on 127.0.0.1; yield its URL."""
    body = json.dumps(issuer.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/keys"
    finally:
        server.shutdown()
        server.server_close()


def token_settings(jwks_url: str) -> dict[str, str]:
    """The settings that make the host verify this issuer's tokens (jwt and easyauth modes)."""
    return {
        "AUTH_ISSUER": ISSUER,
        "AUTH_AUDIENCE": f"{AUDIENCE},{OTHER_AUDIENCE}",
        "AUTH_JWKS_URL": jwks_url,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="session")
def jwks_url(issuer: Issuer) -> Iterator[str]:
    with serve_jwks(issuer) as url:
        yield url
