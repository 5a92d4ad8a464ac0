"""Who is calling: the caller's identity (``claims.parse_email``) from a verified sign-in, or 401.

The identity never comes from the request body or query string. With ``AUTH_MODE`` unset
every call that needs an identity is refused (fail closed), and the log says why.

``easyauth`` has two locks (docs/security.md, "Authentication"): the principal App Service
Authentication injects, and a token the app verifies itself (``Authorization: Bearer``, or the
ID token Easy Auth forwards for a cookie session) that must name the same user. If the
platform's authentication is ever off, a forged principal still opens nothing; if the app cannot
verify tokens (settings missing or unusable) or the platform says its authentication is off,
every call is refused and the log says why.

The caller comes with the account behind the address when the sign-in names one (``Caller``);
``shared.identity`` then checks that the address is bound to that account.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.auth.claims import Caller, normalise_email
from shared.auth.easyauth import (
    ID_TOKEN_HEADER,
    PRINCIPAL_HEADER,
    PRINCIPAL_NAME_HEADER,
    caller_from_principal,
)
from shared.config import Settings
from shared.errors import Unauthenticated

if TYPE_CHECKING:
    from shared.auth.jwt import JwtVerifier

log = logging.getLogger("parley.auth")

MSG_NOT_CONFIGURED = "Authentication is not configured on this service."
MSG_SEND_TOKEN = "Send an Authorization: Bearer token."  # noqa: S105 - a message
MSG_MISMATCH = "The sign-in token and the signed-in identity name different users."
MSG_ACCOUNT_MISMATCH = "The sign-in token and the signed-in identity name different accounts."

_announced = False


def announce_auth_mode(mode: str | None = None) -> None:
    """Log, once per process, a mode an operator must not miss: ``dev`` (identities trusted as
    sent) or none (every call refused). Called when the app loads, before the first request;
    ``mode`` defaults to the raw ``AUTH_MODE`` so that a bad setting elsewhere cannot stop it."""
    global _announced
    if _announced:
        return
    _announced = True
    if mode is None:
        mode = os.environ.get("AUTH_MODE", "").strip() or None
    if mode == "dev":
        log.warning(
            "AUTH_MODE=dev: the X-MS-CLIENT-PRINCIPAL-NAME header is trusted as is."
            " Never use this outside a local run."
        )
    elif mode is None:
        log.error(
            "AUTH_MODE is not set: every call that needs an identity is refused (401)."
            " Set it to easyauth, jwt or dev."
        )


def configuration_problem(settings: Settings) -> str | None:
    """Why ``settings`` cannot authenticate anybody in a token mode (jwt, easyauth), or None.

    One place for the rule, so the log at start and the log at each refused call agree.
    """
    mode = settings.auth_mode
    if mode not in ("jwt", "easyauth"):
        return None
    if mode == "easyauth" and settings.website_auth_enabled is False:
        return (
            "AUTH_MODE=easyauth but App Service reports its authentication off"
            " (WEBSITE_AUTH_ENABLED=False): identity headers could be forged"
        )
    missing = [
        name
        for name, value in (
            ("AUTH_ISSUER", settings.auth_issuer),
            ("AUTH_AUDIENCE", settings.auth_audiences),
            ("AUTH_JWKS_URL", settings.auth_jwks_url),
        )
        if not value
    ]
    if missing:
        return f"AUTH_MODE={mode} needs {', '.join(missing)} to verify the caller's token"
    return None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._mode = settings.auth_mode
        self._verifier: JwtVerifier | None = None
        # Why every call is refused, when the configuration cannot authenticate anybody.
        self._refusal = configuration_problem(settings)
        if self._mode in ("jwt", "easyauth"):
            if self._refusal is None:
                self._refusal = self._build_verifier(settings)
            if self._refusal is not None:
                log.error("%s: every call that needs an identity is refused (401)", self._refusal)
        else:
            announce_auth_mode(self._mode)

    def _build_verifier(self, settings: Settings) -> str | None:
        """Make the token verifier; the problem with its settings if it cannot be made."""
        from shared.auth.jwt import JwtVerifier  # PyJWT and cryptography: only when used

        assert settings.auth_issuer and settings.auth_jwks_url
        try:
            self._verifier = JwtVerifier(
                issuer=settings.auth_issuer,
                audience=settings.auth_audiences,
                jwks_url=settings.auth_jwks_url,
            )
        except ValueError as exc:
            return f"AUTH_MODE={self._mode}: the token settings are not usable ({exc})"
        return None

    async def email_for(self, headers: Mapping[str, str]) -> str:
        """The caller's email from the request headers (case-insensitive mapping)."""
        return (await self.caller_for(headers)).email

    async def caller_for(self, headers: Mapping[str, str]) -> Caller:
        """The caller (email, and account when the sign-in names one) from the headers."""
        if self._refusal is not None:
            log.warning("refused a call: %s", self._refusal)
            raise Unauthenticated(MSG_NOT_CONFIGURED)
        if self._mode == "easyauth":
            return await self._easyauth_caller(headers)
        if self._mode == "dev":
            email = normalise_email(headers.get(PRINCIPAL_NAME_HEADER))
            if email is None:
                raise Unauthenticated(
                    "Set the X-MS-CLIENT-PRINCIPAL-NAME header to an email address."
                )
            return Caller(email)  # no account: dev identities bind nothing
        if self._mode == "jwt":
            token = bearer_token(headers)
            if token is None:
                raise Unauthenticated(MSG_SEND_TOKEN)
            return await self._verified_caller(token)
        log.warning("refused a call: AUTH_MODE is not set, so no identity can be verified")
        raise Unauthenticated(MSG_NOT_CONFIGURED)

    async def _easyauth_caller(self, headers: Mapping[str, str]) -> Caller:
        """The principal's caller, once a token verified here names the same user (and, when
        both name an account, the same account: the verified token's is the one used)."""
        principal = caller_from_principal(headers.get(PRINCIPAL_HEADER))
        token = bearer_token(headers) or (headers.get(ID_TOKEN_HEADER) or "").strip()
        if not token:
            # Forged, or a cookie session without Easy Auth's token store: either way unproven.
            log.warning("refused a call: an Easy Auth principal came without a token to verify")
            raise Unauthenticated(MSG_SEND_TOKEN)
        verified = await self._verified_caller(token)
        if verified.email != principal.email:
            log.warning(
                "refused a call: the Easy Auth principal and the token name different users"
            )
            raise Unauthenticated(MSG_MISMATCH)
        if principal.account and verified.account and principal.account != verified.account:
            log.warning(
                "refused a call: the Easy Auth principal and the token name different accounts"
            )
            raise Unauthenticated(MSG_ACCOUNT_MISMATCH)
        return Caller(
            principal.email, verified.account or principal.account, verified.name or principal.name
        )

    async def _verified_caller(self, token: str) -> Caller:
        assert self._verifier is not None  # set whenever a token mode has no refusal
        # A JWKS refresh (rare) blocks on the network: keep it off the event loop.
        return await asyncio.to_thread(self._verifier.caller_for, token)
