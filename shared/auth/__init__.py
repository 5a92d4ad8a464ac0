"""Who is calling: the caller's lower-cased email from a verified identity, or 401.

The identity never comes from the request body or query string. With ``AUTH_MODE`` unset
every call that needs an identity is refused (fail closed), and the log says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.auth.claims import normalise_email
from shared.auth.easyauth import PRINCIPAL_HEADER, PRINCIPAL_NAME_HEADER, email_from_principal
from shared.config import Settings
from shared.errors import Unauthenticated

if TYPE_CHECKING:
    from shared.auth.jwt import JwtVerifier

log = logging.getLogger("parley.auth")

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


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._mode = settings.auth_mode
        self._verifier: JwtVerifier | None = None
        if self._mode == "jwt":
            from shared.auth.jwt import JwtVerifier  # PyJWT and cryptography: only when used

            assert settings.auth_issuer and settings.auth_audience and settings.auth_jwks_url
            self._verifier = JwtVerifier(
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
                jwks_url=settings.auth_jwks_url,
            )
        else:
            announce_auth_mode(self._mode)

    async def email_for(self, headers: Mapping[str, str]) -> str:
        """The caller's email from the request headers (case-insensitive mapping)."""
        if self._mode == "easyauth":
            return email_from_principal(headers.get(PRINCIPAL_HEADER))
        if self._mode == "dev":
            email = normalise_email(headers.get(PRINCIPAL_NAME_HEADER))
            if email is None:
                raise Unauthenticated(
                    "Set the X-MS-CLIENT-PRINCIPAL-NAME header to an email address."
                )
            return email
        if self._verifier is not None:
            scheme, _, token = (headers.get("authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("Send an Authorization: Bearer token.")
            # A JWKS refresh (rare) blocks on the network: keep it off the event loop.
            return await asyncio.to_thread(self._verifier.email_for, token.strip())
        log.warning("refused a call: AUTH_MODE is not set, so no identity can be verified")
        raise Unauthenticated("Authentication is not configured on this service.")
