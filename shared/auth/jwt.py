"""Bearer-token identity for ``AUTH_MODE=jwt``: verify a JWT against the issuer's JWKS.

Why this exists: outside Azure (or behind a gateway that does not run Easy Auth) the function
app has to check the caller's token itself. The caller's email becomes the partition key of all
of their data, so a token that is not *provably* from the configured issuer, for this service,
and current, must never yield an identity. Every failure is an ``Unauthenticated`` (401) whose
message is safe to show; the reason goes to the ``parley.auth`` log, never the token itself.

Why not ``jwt.PyJWKClient``: it re-downloads the key set whenever its cache lifespan ends and
throttles with a clock we cannot control in tests. Here the keys are fetched once, then only
when a token names a key id we do not know (the issuer has rotated its keys), and at most once
per ``jwks_refresh_min_interval_s`` so that a flood of tokens with made-up key ids cannot turn
this service into a load generator against the issuer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import jwt

from shared.auth.claims import Caller, InvalidEmail, caller_from_claims
from shared.errors import Unauthenticated

log = logging.getLogger("parley.auth")

# The only algorithm accepted. Fixed here, never taken from the token's header: trusting the
# header's ``alg`` is what makes ``alg: none`` and RS256-to-HS256 key-confusion attacks work.
ALGORITHMS: tuple[str, ...] = ("RS256",)
# Claims without which a token is refused even if its signature is good.
REQUIRED_CLAIMS: tuple[str, ...] = ("exp", "iss", "aud")
# A JWKS request must not hold a request thread (and the refresh lock) for long.
JWKS_TIMEOUT_S = 5.0
# A real key set is a few KiB; refuse to buffer an unbounded response.
MAX_JWKS_BYTES = 1024 * 1024
# Real tokens are a few KiB; anything far larger is not worth parsing.
MAX_TOKEN_LENGTH = 16 * 1024
# Key ids are short identifiers; a long one is not a real key id and is not worth logging whole.
MAX_KID_LENGTH = 256

# The caller-facing messages: short, and never echo the token or any claim.
MSG_INVALID = "The sign-in token is not valid."
MSG_EXPIRED = "The sign-in token has expired; sign in again."
MSG_NOT_YET_VALID = "The sign-in token is not valid yet."
MSG_WRONG_SERVICE = "The sign-in token was not issued for this service."
MSG_MISSING_CLAIM = "The sign-in token lacks a required claim."
MSG_BAD_SIGNATURE = "The sign-in token's signature is not valid."
MSG_UNKNOWN_KEY = "The sign-in token was signed with an unknown key."
MSG_NO_EMAIL = "The sign-in token does not name a usable email address."
MSG_KEYS_UNAVAILABLE = "Sign-in could not be verified right now; try again shortly."


class JwtVerifier:
    """Verifies RS256 bearer tokens from one issuer and returns the caller's email.

    Safe to share between threads: the key cache is replaced as a whole (readers never see a
    half-built one) and refreshes are serialised by a lock, so concurrent requests that meet
    the same new key id cause one fetch, not one each.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str],
        jwks_url: str,
        leeway_s: int = 60,
        jwks_refresh_min_interval_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the verifier; nothing is fetched until the first token arrives.

        ``clock`` only drives the refresh throttle (tests inject one so they need no sleeps);
        PyJWT checks ``exp``/``nbf`` against real time. ``audience`` may list several accepted
        audiences (Entra ID access tokens name the API by ``api://<id>`` or by its bare id).
        """
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        if not issuer or not audiences or not all(audiences):
            raise ValueError("JwtVerifier needs an issuer and an audience")
        scheme = urlparse(jwks_url).scheme.lower()
        if scheme not in ("http", "https"):
            # urllib would also open file:// and ftp:// URLs; a key set comes from the web only.
            raise ValueError("JwtVerifier's jwks_url must be an http(s) URL")
        if leeway_s < 0 or jwks_refresh_min_interval_s < 0:
            raise ValueError("leeway_s and jwks_refresh_min_interval_s must not be negative")
        self._issuer = issuer
        self._audiences = audiences
        self._jwks_url = jwks_url
        self._leeway_s = leeway_s
        self._refresh_interval_s = jwks_refresh_min_interval_s
        self._clock = clock
        # kid -> key. Replaced, never mutated, so the lock-free read in _key_for is safe.
        self._keys: Mapping[str, jwt.PyJWK] = {}
        self._last_fetch_at: float | None = None  # when the last fetch was attempted
        self._refresh_lock = threading.Lock()

    def caller_for(self, token: str) -> Caller:
        """A valid token's caller (email, and account when it names one); ``Unauthenticated``
        otherwise."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise self._reject(MSG_INVALID, "malformed token (empty, not text or too long)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise self._reject(MSG_INVALID, f"malformed token ({type(exc).__name__})") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise self._reject(MSG_INVALID, "token header has no usable kid")

        key = self._key_for(kid)
        claims = self._decode(token, key)

        try:
            return caller_from_claims(claims)
        except InvalidEmail as exc:
            # The reason names the claim and a code point, never the address itself.
            raise self._reject(
                MSG_NO_EMAIL, f"valid token without a usable email ({exc})"
            ) from None

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        """Check signature, issuer, audience and times; map each failure to a safe message."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,  # the bare public key: only an RSA algorithm can use it
                algorithms=list(ALGORITHMS),
                audience=list(self._audiences),
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iss": True,
                    "verify_aud": True,
                    "require": list(REQUIRED_CLAIMS),
                },
            )
        except jwt.ExpiredSignatureError:
            raise self._reject(MSG_EXPIRED, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise self._reject(MSG_NOT_YET_VALID, "token not yet valid (nbf/iat)") from None
        except jwt.MissingRequiredClaimError as exc:
            # exc.claim is one of our own REQUIRED_CLAIMS names, never a value from the token.
            raise self._reject(MSG_MISSING_CLAIM, f"token lacks claim {exc.claim!r}") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as exc:
            raise self._reject(MSG_WRONG_SERVICE, f"{type(exc).__name__}") from None
        except jwt.InvalidSignatureError:
            raise self._reject(MSG_BAD_SIGNATURE, "signature verification failed") from None
        except jwt.PyJWTError as exc:
            # Disallowed alg, bad encoding, malformed claims, ... Only the type is logged:
            # some PyJWT messages quote parts of the token.
            raise self._reject(MSG_INVALID, f"invalid token ({type(exc).__name__})") from None
        except Exception as exc:
            raise self._reject(
                MSG_INVALID, f"unexpected error verifying token ({type(exc).__name__})", warn=True
            ) from None
        return claims

    def _key_for(self, kid: str) -> jwt.PyJWK:
        """The cached key for ``kid``, refreshing the key set (throttled) when it is unknown."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._refresh_lock:
            # Another thread may have fetched the new key while this one waited for the lock.
            key = self._keys.get(kid)
            if key is not None:
                return key
            now = self._clock()
            last = self._last_fetch_at
            # A clock that went backwards (now < last) does not block refreshes forever.
            if last is not None and 0 <= now - last < self._refresh_interval_s:
                raise self._reject(
                    MSG_UNKNOWN_KEY if self._keys else MSG_KEYS_UNAVAILABLE,
                    f"unknown kid {kid[:64]!r}; JWKS refresh throttled",
                    warn=True,
                )
            self._last_fetch_at = now
            try:
                self._keys = self._fetch_keys()
            except Exception as exc:
                # Keep the keys we had: an issuer outage must not revoke every session.
                raise self._reject(
                    MSG_KEYS_UNAVAILABLE,
                    f"JWKS fetch from {self._jwks_url} failed ({type(exc).__name__}: {exc})",
                    warn=True,
                ) from None
            key = self._keys.get(kid)
        if key is None:
            raise self._reject(
                MSG_UNKNOWN_KEY, f"kid {kid[:64]!r} not in the issuer's JWKS", warn=True
            )
        return key

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        """Download the JWKS and keep the RS256 signing keys that have a key id.

        Raises on network errors, non-JSON bodies and sets with no usable key, so the caller
        keeps its previous keys rather than replacing them with nothing.
        """
        # The constructor accepts only http(s) URLs, so no file: or custom scheme reaches here.
        request = urllib.request.Request(  # noqa: S310
            self._jwks_url, headers={"Accept": "application/json", "User-Agent": "parley"}
        )
        with urllib.request.urlopen(request, timeout=JWKS_TIMEOUT_S) as response:  # noqa: S310
            body = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("JWKS response too large")
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise TypeError("JWKS response has no 'keys' list")

        keys: dict[str, jwt.PyJWK] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or not kid:
                continue
            if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") not in ALGORITHMS:
                continue  # an encryption key, or one meant for another algorithm
            try:
                keys[kid] = jwt.PyJWK(entry, algorithm=ALGORITHMS[0])
            except jwt.PyJWTError as exc:
                log.warning("JWKS key %r skipped: %s", kid[:64], type(exc).__name__)
        if not keys:
            raise ValueError("JWKS has no usable RS256 signing key")
        log.info("JWKS fetched from %s: %d signing key(s)", self._jwks_url, len(keys))
        return keys

    @staticmethod
    def _reject(message: str, reason: str, *, warn: bool = False) -> Unauthenticated:
        """Log why a token was refused (never the token) and build the caller-facing error."""
        log.log(logging.WARNING if warn else logging.INFO, "JWT rejected: %s", reason)
        return Unauthenticated(message)


__all__ = ["JwtVerifier"]
