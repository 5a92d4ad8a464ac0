"""The API's errors (``openapi.yaml``): each knows its HTTP status and its snake_case code.

The service and the adapters raise these; the functions layer turns any of them into the
error object ``{"error": {"code", "message"}}`` in one place (``functions/http.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.models import RequestRecord

# Retry-After, in seconds, for a 429 or 503 whose cause names no better value.
DEFAULT_RETRY_AFTER_S = 5


def error_object(code: str, message: str) -> dict[str, dict[str, str]]:
    """``{"error": {"code", "message"}}``: the one shape of every error the service answers
    (the local host's own errors too)."""
    return {"error": {"code": code, "message": message}}


class ApiError(Exception):
    """An error that the caller may see: ``message`` is safe to show to anybody."""

    status: int = 500
    code: str = "internal"
    default_message: str = "Something went wrong on our side."

    def __init__(self, message: str | None = None, *, retry_after_s: int | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after_s = retry_after_s
        super().__init__(self.message)

    def body(self) -> dict[str, dict[str, str]]:
        """The error object every error response carries."""
        return error_object(self.code, self.message)


class InvalidRequest(ApiError):
    status, code, default_message = 400, "invalid_request", "The request is not valid."


class Unauthenticated(ApiError):
    status, code, default_message = 401, "unauthenticated", "Sign in to use this endpoint."


class Forbidden(ApiError):
    """The caller is signed in, but the address they present is bound to another account
    (``docs/security.md``, "Accounts")."""

    status, code = 403, "forbidden"
    default_message = (
        "This email address belongs to another account. If your account changed, ask support"
        " to move or release the address."
    )


class NotFound(ApiError):
    status, code, default_message = 404, "not_found", "No such session."


class Conflict(ApiError):
    status, code, default_message = 409, "conflict", "The request conflicts with another one."


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "payload_too_large", "The request is too large."


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"
    default_message = "Send the request body as application/json."


class TryLater(ApiError):
    """An error that always carries a Retry-After (the contract promises one on 429 and 503)."""

    def __init__(self, message: str | None = None, *, retry_after_s: int | None = None) -> None:
        super().__init__(message, retry_after_s=retry_after_s or DEFAULT_RETRY_AFTER_S)


class RateLimited(TryLater):
    status, code = 429, "rate_limited"
    default_message = "Too many requests to the model; try again shortly."


class QuotaExceeded(TryLater):
    """The caller's token budget for the day or the month is spent (``shared/usage/``):
    Retry-After is the time left until it resets."""

    status, code = 429, "quota_exceeded"
    default_message = "Your token budget is spent; try again once it resets."


class ModelError(ApiError):
    status, code, default_message = 502, "model_error", "The model could not answer."


class StorageUnavailable(TryLater):
    status, code = 503, "storage_unavailable"
    default_message = "Conversation storage is busy or unreachable; try again shortly."


class RealtimeUnavailableError(TryLater):
    """Real-time delivery is switched off or its service cannot be reached: clients keep up by
    polling ``GET /api/groups/{groupId}/messages?after=<seq>``."""

    status, code = 503, "realtime_unavailable"
    default_message = "Live updates are unavailable; fetch new messages instead, or try again."


class InternalError(ApiError):
    """Anything unexpected: the details go to the log, never to the caller."""


class ConcurrencyConflict(Exception):
    """A store's if-match (ETag) check failed: another writer changed the session first.

    Internal only: the service re-reads and retries; callers never see it.
    """


class DuplicateRequest(Exception):
    """A turn's clientMessageId is already recorded in the session: the request is a retry.

    Internal only: the service answers the retry from what was stored the first time.
    ``existing`` is the stored record when the store has it at hand (else the service reads it).
    """

    def __init__(self, existing: RequestRecord | None = None) -> None:
        super().__init__("duplicate clientMessageId")
        self.existing = existing
