"""The error hierarchy: each error carries its HTTP status and CLI exit code."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class for errors that users can act on."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers the answer needs (such as Retry-After)."""
        return {}


class InvalidInput(RecsysError):
    """Bad input from a user: a malformed row, parameter or file."""

    http_status = 422
    exit_code = 2


class NotFound(RecsysError):
    """An article or build that does not exist."""

    http_status = 404
    exit_code = 2


class PayloadTooLarge(RecsysError):
    """A request body or batch over the configured limit."""

    http_status = 413
    exit_code = 2


class UriTooLong(RecsysError):
    """A request line (path plus query) over the configured limit."""

    http_status = 414
    exit_code = 2


class Unauthorized(RecsysError):
    """A write without a valid API key."""

    http_status = 401
    exit_code = 2

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}


class Forbidden(RecsysError):
    """A request this server is configured to refuse (writes with no keys set, a foreign origin)."""

    http_status = 403
    exit_code = 2


class TooManyRequests(RecsysError):
    """A client over its rate limit; `retry_after` is in whole seconds."""

    http_status = 429
    exit_code = 2

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ConfigError(RecsysError):
    """A setting that cannot be honoured, such as a model that will not load."""

    http_status = 503
    exit_code = 2


class IndexMismatch(RecsysError):
    """An index build made with another model or dimension than the one loaded."""

    http_status = 503
    exit_code = 2


class StorageUnavailable(RecsysError):
    """The disk is full or the database cannot be written: nothing of the request was stored."""

    http_status = 503
    exit_code = 2

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "60"}
