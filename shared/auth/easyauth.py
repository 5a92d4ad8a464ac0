"""App Service Authentication (Easy Auth): the principal the platform injects.

When the platform's authentication is on, it strips client-sent ``X-MS-CLIENT-PRINCIPAL``
headers and sets its own after verifying the sign-in. The app does not rely on that alone (if
the authentication settings are ever missing or off, anybody can send the header): the
Authenticator also verifies a token and requires it to name the same user (docs/security.md,
"Authentication"). The header is decoded defensively: bad base64 or JSON is 401, never 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from shared.auth.claims import (
    OBJECT_ID_CLAIMS,
    TENANT_ID_CLAIMS,
    Caller,
    InvalidEmail,
    caller_from_claims,
)
from shared.errors import Unauthenticated

log = logging.getLogger("parley.auth")

PRINCIPAL_HEADER = "x-ms-client-principal"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
# The ID token of a cookie session, forwarded by Easy Auth when its token store is on.
ID_TOKEN_HEADER = "x-ms-token-aad-id-token"  # noqa: S105 - a header name
MAX_PRINCIPAL_BYTES = 64 * 1024

# Easy Auth reports claims with their full URIs for some providers.
_CLAIM_ALIASES = {
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": "email",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "upn",
    "emails": "email",
    # The account's ids, reported under their URIs (claims.OBJECT_ID_CLAIMS/TENANT_ID_CLAIMS).
    OBJECT_ID_CLAIMS[1]: "oid",
    TENANT_ID_CLAIMS[1]: "tid",
}


def caller_from_principal(header: str | None) -> Caller:
    """The caller (address, and account when its claims name one) in an
    ``X-MS-CLIENT-PRINCIPAL`` header value."""
    if not header:
        raise Unauthenticated()
    if len(header) > MAX_PRINCIPAL_BYTES:
        raise Unauthenticated("The identity header is not valid.")
    try:
        padded = header.strip() + "=" * (-len(header.strip()) % 4)
        principal: Any = json.loads(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a deeply nested JSON value fits in the size limit, not in the parser.
        raise Unauthenticated("The identity header is not valid.") from None
    raw_claims = principal.get("claims") if isinstance(principal, dict) else None
    if not isinstance(raw_claims, list):
        raise Unauthenticated("The identity header is not valid.")
    claims: dict[str, Any] = {}
    for claim in raw_claims:
        typ = claim.get("typ") if isinstance(claim, dict) else None
        if isinstance(typ, str):
            claims.setdefault(_CLAIM_ALIASES.get(typ, typ), claim.get("val"))
    try:
        return caller_from_claims(claims)
    except InvalidEmail as exc:
        # The reason names the claim and a code point, never the address itself.
        log.warning("refused a call: the Easy Auth principal has no usable email (%s)", exc)
        raise Unauthenticated("The signed-in identity has no usable email address.") from None
