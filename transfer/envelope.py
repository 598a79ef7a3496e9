"""The platform's three response envelopes, and failures of the connection, classified in one place."""

from __future__ import annotations

import email.utils
import json
import re
import ssl
import time
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict

from .errors import AuthExpired, EndpointUnavailable, Fatal, Retryable, TransferError


class Envelope(BaseModel):
    """Any of ruoyi `{code,msg}`, file `{success,errorCode,message,result}`, datahub `{code,success,message,data}`."""

    model_config = ConfigDict(extra="allow")

    code: int | str | None = None
    success: bool | None = None
    errorCode: int | str | None = None  # noqa: N815 - the platform's spelling
    msg: str | None = None
    message: str | None = None
    result: Any = None
    data: Any = None

    @property
    def text(self) -> str:
        return self.msg or self.message or ""

    def status_code(self) -> int | None:
        """The envelope's own status (errorCode on file routes, code elsewhere)."""
        for value in (self.errorCode, self.code):
            try:
                if value is not None:
                    return int(value)
            except (TypeError, ValueError):
                continue
        return None

    @property
    def ok(self) -> bool:
        """Success iff `success` is true, or (no `success` key) `code` == 200."""
        if self.success is not None:
            return self.success
        try:
            return int(self.code) == 200 if self.code is not None else False
        except (TypeError, ValueError):
            return False

    @property
    def is_auth_failure(self) -> bool:
        return self.status_code() == 401 and not self.ok


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def classify(status: int, body: bytes, retry_after: str | None, *, endpoint: str) -> Envelope:
    """Return the envelope of a successful call, or raise the error class that fits."""
    if status == 401:
        raise AuthExpired(f"HTTP 401 {_snippet(body)}", endpoint=endpoint)
    if status in (404, 405):
        raise EndpointUnavailable(f"HTTP {status}: endpoint not available", endpoint=endpoint)
    if status == 429 or status >= 500:
        raise Retryable(
            f"HTTP {status} {_snippet(body)}".strip(),
            endpoint=endpoint,
            retry_after=parse_retry_after(retry_after),
        )
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raw = None
    if not isinstance(raw, dict):
        if 200 <= status < 300:
            # A proxy's error page or a truncated body: worth another try, bounded by the pacer.
            raise Retryable(f"HTTP {status} with a body that is not a JSON object", endpoint=endpoint)
        raise Fatal(f"HTTP {status} {_snippet(body)}".strip(), endpoint=endpoint)
    envelope = Envelope.model_validate(raw)
    if envelope.is_auth_failure:
        raise AuthExpired(envelope.text or "token refused", endpoint=endpoint)
    if not 200 <= status < 300:
        raise Fatal(f"HTTP {status} {envelope.text}".strip(), endpoint=endpoint)
    if not envelope.ok:
        raise PlatformRefused(envelope, endpoint=endpoint)
    return envelope


def classify_download(status: int, body: bytes, retry_after: str | None, *, endpoint: str) -> None:
    """Raise the error class of a file download's answer that is not 2xx (protocol.md §1: a
    download is no envelope family; its 401 is plain HTTP)."""
    if status == 401:
        raise AuthExpired(f"HTTP 401 {_snippet(body)}".strip(), endpoint=endpoint)
    if status == 429 or status >= 500:
        raise Retryable(f"HTTP {status} {_snippet(body)}".strip(), endpoint=endpoint,
                        retry_after=parse_retry_after(retry_after))
    if status == 404:
        raise Fatal(f"HTTP 404 {_snippet(body)} (no such file)".replace("  ", " "), endpoint=endpoint)
    if not 200 <= status < 300:
        raise Fatal(f"HTTP {status} {_snippet(body)}".strip(), endpoint=endpoint)


def classify_failure(
    exc: BaseException, *, url: str, endpoint: str, connect_timeout: float, read_timeout: float
) -> TransferError:
    """The error class of a request that got no answer (rclone's shouldRetry for the transport).

    Certificate, TLS and DNS failures are final (retrying cannot fix them); a refused connection
    is retried only for `connect_timeout` seconds; resets and time-outs are retryable. The
    message names the URL, or the call that timed out, and the config key to look at.
    """
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", "") or str(exc.certificate_error)
        if "mismatch" in reason:
            return Fatal(f"the TLS certificate of {url} is for another host ({reason.rstrip('.')}); use the name it"
                         " was issued for in [platform] url (a CA of your own goes in [platform] ca_bundle)",
                         endpoint=endpoint)
        return Fatal(f"the TLS certificate of {url} is not trusted ({reason}); if your platform's certificate is"
                     " signed by your own CA, set [platform] ca_bundle to that CA's PEM file", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        cause = getattr(exc, "os_error", exc)
        if "WRONG_VERSION_NUMBER" in str(cause) or "wrong version number" in str(cause).lower():
            return Fatal(f"{url}: the server does not speak TLS (is the URL http://?)", endpoint=endpoint)
        return Fatal(f"TLS with {url} failed: {cause}", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Fatal(f"cannot resolve the host of {url}: {getattr(exc, 'os_error', exc)}", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError):
            return Retryable(f"cannot connect to {url}: connection refused", endpoint=endpoint,
                             patience=connect_timeout)
        return Retryable(f"cannot connect to {url}: {cause.strerror or cause}", endpoint=endpoint,
                         patience=connect_timeout)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Retryable(f"cannot connect to {url}: no connection within {connect_timeout:g}s"
                         " ([transfer] connect_timeout)", endpoint=endpoint)
    if isinstance(exc, TimeoutError):
        return Retryable(f"no answer from {url} within {read_timeout:g}s ([transfer] request_timeout)",
                         endpoint=endpoint)
    return Retryable(f"{type(exc).__name__}: {exc}".rstrip(": "), endpoint=endpoint)


class PlatformRefused(Fatal):
    """A well-formed failure envelope; `code` is the envelope's status, `text` its message."""

    def __init__(self, envelope: Envelope, *, endpoint: str) -> None:
        code = envelope.status_code()
        super().__init__(f"{envelope.text or 'refused'} (code {code})", endpoint=endpoint)
        self.code = code
        self.text = envelope.text


#: A response body in a -vv log line is cut to this many characters.
BODY_LOG_LIMIT = 300
_SECRET_VALUE = re.compile(r'("[A-Za-z_]*(?:token|password|passwd|secret)[A-Za-z_]*"\s*:\s*)"[^"]*"?', re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def body_excerpt(body: bytes, limit: int = BODY_LOG_LIMIT) -> str:
    """A response body for a log line: one line, secrets' values starred, at most `limit` characters."""
    text = " ".join(body[: limit * 4].decode("utf-8", "replace").split())
    text = _SECRET_VALUE.sub(r'\1"***"', text)  # a token or an SFTP password is never logged, even cut short
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _snippet(body: bytes, limit: int = 200) -> str:
    """What an error message quotes of a failed answer: its message, an HTML page's title, or its start."""
    head = body[: limit * 4].decode("utf-8", "replace")
    title = _TITLE.search(head) if head.lstrip()[:1] == "<" else None
    if title is not None:
        # A proxy's error page: its title says it all (less the status, which the message has).
        return re.sub(r"^\d{3}\s+", "", " ".join(title.group(1).split()))[:limit]
    text = body_excerpt(body, limit)
    try:
        raw = json.loads(body)
        if isinstance(raw, dict):
            text = str(raw.get("msg") or raw.get("message") or text)
    except (ValueError, UnicodeDecodeError):
        pass
    return text


__all__ = ["Envelope", "PlatformRefused", "classify", "classify_download", "classify_failure", "parse_retry_after", "TransferError"]
