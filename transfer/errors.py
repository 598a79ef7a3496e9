"""What backends raise: the API layer only classifies, the Pacer decides what to do."""

from __future__ import annotations


class TransferError(Exception):
    """Base of every error hubsync's engine raises; `endpoint` names the call that failed."""

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.message}" if self.endpoint else self.message


class Retryable(TransferError):
    """A transient failure (5xx, 429, reset, time-out): the same call may succeed later."""

    def __init__(self, message: str, *, endpoint: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.retry_after = retry_after


class AuthExpired(TransferError):
    """The token was refused (HTTP 401 or a 401 envelope): log in again, then retry once."""


class AuthFailed(TransferError):
    """Logging in was refused: wrong user, password or key. Not retried."""


class Fatal(TransferError):
    """The platform refused the call for a reason retrying will not fix (a 4xx envelope)."""


class EndpointUnavailable(Fatal):
    """The endpoint answered 404/405: the API is switched off or hidden behind a proxy."""


class LocalFileChanged(TransferError):
    """The local file changed while it was hashed or sent; it must be sent again once stable."""


class ConfigError(Exception):
    """A configuration or usage problem; the CLI exits 2."""
