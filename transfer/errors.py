"""What backends raise: the API layer only classifies, the Pacer decides what to do.

Three classes, as rclone's shouldRetry: `Retryable` (the pacer tries again), `AuthExpired` (log in
again, then once more), everything else final (`Fatal`, `AuthFailed`, `GaveUp`, ...).
"""

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
    """A transient failure (5xx, 429, reset, time-out): the same call may succeed later.

    `patience` caps how long this kind of failure is retried (seconds since the call's first
    attempt): a refused connection is worth a few quick tries, not the whole budget.
    """

    def __init__(
        self, message: str, *, endpoint: str = "", retry_after: float | None = None, patience: float | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.retry_after = retry_after
        self.patience = patience


class GaveUp(TransferError):
    """A retryable failure that lasted the retry policy's whole budget; never retried again."""

    def __init__(self, last: Retryable, *, seconds: float, attempts: int) -> None:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        super().__init__(f"{last.message} (gave up after {seconds:.0f}s, {tries})", endpoint=last.endpoint)
        self.last = last
        self.seconds = seconds
        self.attempts = attempts


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


class JournalError(Exception):
    """The journal (in the state dir) cannot be read or written: a full disk, a lock held too long.

    A run-level error, never one file's: no file can be recorded, so the run stops (the CLI
    exits 1). Deliberately not a TransferError nor an OSError, which are per-file failures.
    """


class JournalUnusable(JournalError):
    """The journal cannot be used at all: a read-only state dir, a schema from a newer hubsync (exit 2)."""


# -- datahub names: typed so that the application phrases them (the engine names no CLI flag) --


class AssetNotFound(ConfigError):
    """No asset of this kind has this name (or id); `others` are (id, name) of similar or existing ones."""

    def __init__(self, kind: str, name: str, others: list[tuple[str, str]], similar: bool) -> None:
        self.kind, self.name, self.others, self.similar = kind, name, others, similar
        listing = "\n".join(f"  {i}  {n}" for i, n in others[:30])
        more = f"\n  ... and {len(others) - 30} more" if len(others) > 30 else ""
        tail = f"; {'similar' if similar else 'existing'} {kind}s:\n{listing}{more}" if others else f"; there are no {kind}s"
        super().__init__(f"no {kind} named {name!r}{tail}")


class AmbiguousName(ConfigError):
    """Several assets (or versions of one asset) have this name; `matches` are (id, name, detail)."""

    def __init__(self, what: str, name: str, matches: list[tuple[str, str, str]]) -> None:
        self.what, self.name, self.matches = what, name, matches
        rows = "\n".join(f"  {i}  {n}" + (f"  ({d})" if d else "") for i, n, d in matches)
        super().__init__(f"{what} {name!r} is ambiguous: {len(matches)} have it; use the id:\n{rows}")


class VersionNotFound(ConfigError):
    """The asset has no version of this name (or id); `versions` are the names it has."""

    def __init__(self, kind: str, asset: str, version: str, versions: list[str]) -> None:
        self.kind, self.asset, self.version, self.versions = kind, asset, version, versions
        super().__init__(f"{kind} {asset!r} has no version {version!r} (versions: {', '.join(versions) or 'none'})")


class ParentNotFound(ConfigError):
    """The version to create a new one from is not a single version of the asset."""

    def __init__(self, kind: str, asset: str, parent: str, versions: list[str]) -> None:
        self.kind, self.asset, self.parent, self.versions = kind, asset, parent, versions
        super().__init__(f"no single version {parent!r} of {kind} {asset!r} (versions: {', '.join(versions) or 'none'})")


class ParentNotApplicable(ConfigError):
    """An image version always starts empty: it has no parent version."""

    def __init__(self, kind: str, asset: str) -> None:
        self.kind, self.asset = kind, asset
        super().__init__(f"a new version of {kind} {asset!r} starts empty: it takes no parent version")


class VersionCreateFailed(Fatal):
    """The platform's asynchronous version creation failed (createStatus 2) or did not end in time."""

    def __init__(self, kind: str, asset: str, version: str, reason: str) -> None:
        self.kind, self.asset, self.version, self.reason = kind, asset, version, reason
        super().__init__(f"creating version {version!r} of {kind} {asset!r} failed: {reason}")
