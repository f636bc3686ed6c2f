"""One error hierarchy for the domain; ``web/errors.py`` maps it to HTTP."""

from __future__ import annotations


class AppError(Exception):
    """Base of every error the domain raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(AppError):
    status = 400
    code = "bad_request"


class ValidationFailed(ClientError):
    status = 422
    code = "validation_failed"


class Unauthorized(ClientError):
    status = 401
    code = "unauthorized"


class Forbidden(ClientError):
    status = 403
    code = "forbidden"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class Conflict(ClientError):
    status = 409
    code = "conflict"


class Gone(ClientError):
    status = 410
    code = "gone"


class Locked(ClientError):
    status = 423
    code = "locked"


class RateLimited(ClientError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class ServiceUnavailable(AppError):
    status = 503
    code = "unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class IntegrityFailure(AppError):
    """Stored data failed its integrity check (tampering or corruption).

    The client sees a generic message; the details go to the audit log.
    """

    status = 500
    code = "integrity_failure"

    def __init__(self) -> None:
        super().__init__("stored data failed its integrity check; the event was audited")


class TooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class RangeNotSatisfiable(ClientError):
    status = 416
    code = "range_not_satisfiable"
