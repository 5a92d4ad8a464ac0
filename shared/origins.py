"""Which web origins may call the API across origins, and which hosts are this machine: the one
rule, read by the settings (CORS_ALLOWED_ORIGINS) and by the stack's config (spaOrigins)."""

from __future__ import annotations

from urllib.parse import urlsplit

# Host names that can only be this machine: a Cosmos DB endpoint there is a local emulator
# (never an Azure account), and a CORS origin there may use http.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def origin_problem(origin: str) -> str | None:
    """The problem with one CORS origin, or None: exactly ``scheme://host[:port]`` as a browser
    sends it (lower case), https, or http for this machine only; never a wildcard, since
    credentials are sent."""
    if "*" in origin:
        return f"{origin!r}: wildcards are not allowed (credentials are sent); list each origin"
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"{origin!r} is not a valid origin"
    if parts.path or parts.query or parts.fragment or parts.username or not parts.hostname:
        return f"{origin!r} must be scheme://host[:port] only (no path, not even a trailing '/')"
    if origin != origin.lower():
        return f"{origin!r} must be lower case, as browsers send it"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
        return None
    return f"{origin!r} must use https (http is allowed only for localhost)"
