"""The error hierarchy: each error carries its HTTP status and CLI exit code."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class for errors that users can act on."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class ConfigError(RecsysError):
    """A setting that cannot be honoured, such as a model that will not load."""

    http_status = 503
    exit_code = 2


class IndexMismatch(RecsysError):
    """An index build made with another model or dimension than the one loaded."""

    http_status = 503
    exit_code = 2
