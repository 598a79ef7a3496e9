"""PlatformClient: one aiohttp session, the auth flow, one method per platform call."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import aiohttp.payload

from . import remotepath
from .auth import TokenSource, encrypt_password, jwt_claims
from .envelope import Envelope, PlatformRefused, body_excerpt, classify, classify_download, classify_failure
from .errors import AuthExpired, AuthFailed, ConfigError, Fatal, LocalFileChanged, Retryable
from .hashing import SPAN_PIECE, FileSpan, pread_full
from .models import CheckResult, RemoteEntry, SftpAccount, Space, UserInfo
from .pacer import Pacer
from .readback import ByteSink

log = logging.getLogger("hubsync.api")
T = TypeVar("T")
# Rows asked per getFolderInfo page: the seed's example asks 100, and every request lists the
# folder again on the platform's side, so a folder of 500 files was 6 requests and is now 2.
LIST_PAGE = 1000
# A page shorter than this is a folder's last. A longer short page may be a platform's cap on
# requestFileAccount (below what was asked): one more request, empty at the end, settles it.
LIST_PAGE_SURE = 100
# mergeFile answers once the platform has joined and hashed the chunks: bounded by its disks.
MERGE_RATE = 20 << 20


@dataclass(frozen=True)
class Timeouts:
    """How long one request may take ([transfer] connect_timeout, request_timeout, min_rate).

    `request` bounds the wait for an answer once the request is sent; a request with a body
    of N bytes also gets N / `min_rate` seconds to send it, so a chunk's deadline scales with
    the chunk and a slow link is not mistaken for a dead one.
    """

    connect: float = 10.0
    request: float = 30.0
    min_rate: float = 32 << 10

    def for_call(self, body: int = 0, work: float = 0.0) -> aiohttp.ClientTimeout:
        """The aiohttp timeout of one request sending `body` bytes, whose answer takes `work` s more."""
        read = self.request + work
        return aiohttp.ClientTimeout(total=self.connect + read + body / self.min_rate, connect=None,
                                     sock_connect=self.connect, sock_read=read)

    def worst(self, body: int = 0, work: float = 0.0) -> float:
        """The longest one request may take."""
        return self.connect + self.request + work + body / self.min_rate


class SpanPayload(aiohttp.payload.Payload):
    """A chunk streamed from the file in 2 MiB pieces (memory per chunk in flight: one piece).

    When the span asks for it, the md5 of what is read is checked against the span's before its
    last piece goes out: a file that changed since the chunk was hashed is never sent as that
    chunk. Otherwise the receiver's own check of the chunk's md5 is what catches that, and on a
    plain TCP connection the span goes by sendfile(2): from the page cache to the socket, never
    copied through this process (`zero_copy` says it did).
    """

    def __init__(self, span: FileSpan, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)
        self._span = span
        self._size = span.length
        self.zero_copy = False

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file span is binary")

    async def write(self, writer: Any) -> None:
        span = self._span
        if not span.verify and _plain_stream(writer):
            await self._sendfile(writer)
            return
        fd = await asyncio.to_thread(os.open, span.path, os.O_RDONLY)
        md5 = hashlib.md5() if span.verify else None

        def read(at: int) -> bytes:
            n = min(SPAN_PIECE, span.length - at)
            data = pread_full(fd, n, span.offset + at)
            if len(data) < n:
                raise LocalFileChanged(f"{span.path} got shorter while a chunk of it was sent")
            if md5 is not None:
                md5.update(data)  # in order: each read starts after the previous one is done
            return data

        loop = asyncio.get_running_loop()
        try:
            done = 0
            pending = loop.run_in_executor(None, read, 0)
            while done < span.length:
                data = await pending
                done += len(data)
                if done < span.length:
                    pending = loop.run_in_executor(None, read, done)  # the next piece, while this one goes out
                elif md5 is not None and md5.hexdigest() != span.md5:
                    raise LocalFileChanged(f"{span.path} changed while a chunk of it was sent")
                await writer.write(data)
        finally:
            if done < span.length and not pending.done():
                await asyncio.wait([pending])
            os.close(fd)

    async def _sendfile(self, writer: Any) -> None:
        span = self._span
        file = await asyncio.to_thread(open, span.path, "rb", buffering=0)
        try:
            sent = await asyncio.get_running_loop().sendfile(writer.transport, file, span.offset, span.length)
        finally:
            file.close()
        self.zero_copy = True
        # What StreamWriter.write would have counted: the body's length left, the bytes out.
        if writer.length is not None:
            writer.length -= sent
        writer.output_size += sent
        if sent < span.length:
            raise LocalFileChanged(f"{span.path} got shorter while a chunk of it was sent")

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await self.write(writer)


def _plain_stream(writer: Any) -> bool:
    """Whether bytes can go to `writer`'s socket as they are: an aiohttp StreamWriter whose
    headers are out, with no chunked encoding, compression or body hook, over plain TCP.

    Read through getattr with defaults that say no: an aiohttp whose writer differs falls
    back to the streamed reads, never to a corrupted request.
    """
    transport = getattr(writer, "transport", None)
    return (transport is not None and getattr(writer, "chunked", True) is False
            and getattr(writer, "_compress", True) is None and getattr(writer, "_headers_buf", True) is None
            and getattr(writer, "on_body_write", True) is None and isinstance(getattr(writer, "output_size", None), int)
            and transport.get_extra_info("sslcontext") is None)
FormFactory = Callable[[], aiohttp.FormData]


def wire_path(path: str) -> str:
    """The form every call takes a folder in: '/a/b', and '/' for the space root."""
    return "/" + remotepath.join(path)


def _parse_size(text: str) -> int:
    """'4.00KB' -> 4096: only a fallback when fileSizeBytes is missing."""
    units = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
    text = text.strip().upper()
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * units[unit])
            except ValueError:
                return 0
    try:
        return int(float(text))
    except ValueError:
        return 0


async def _one_body(form: aiohttp.FormData) -> aiohttp.payload.Payload:
    """The form's multipart body as one buffer unless it streams a file span.

    aiohttp writes each part's boundary, headers and value as separate socket writes (nine
    sends for a small file's upload); one buffer goes out with the request headers in one.
    """
    body = form()
    if not isinstance(body, aiohttp.MultipartWriter) or any(isinstance(p, SpanPayload) for p, _, _ in body):
        return body
    return aiohttp.payload.BytesPayload(await body.as_bytes(), content_type=body.content_type)


def _local_change(exc: BaseException) -> LocalFileChanged | None:
    """The LocalFileChanged that aiohttp wrapped into a connection error, if that is what it was."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, LocalFileChanged):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def _ssl_context(url: str, ca_bundle: str) -> ssl.SSLContext | bool:
    """Verification is never switched off; `ca_bundle` adds a CA (a ConfigError if it is not one)."""
    if urlsplit(url).scheme != "https":
        return True
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except FileNotFoundError as exc:
            raise ConfigError(f"platform.ca_bundle: {ca_bundle}: no such file") from exc
        except OSError as exc:
            raise ConfigError(f"platform.ca_bundle: cannot read {ca_bundle}: {exc.strerror or exc}") from exc
        except ssl.SSLError as exc:
            raise ConfigError(f"platform.ca_bundle: {ca_bundle} is not a PEM file of CA certificates"
                              f" ({exc.reason or exc})") from exc
    return context


def _entry_size(size_bytes: object, size_text: object) -> int:
    """A listing row's size when fileSizeBytes is not an int: a digit string, else fileSize ('4.00KB')."""
    if isinstance(size_bytes, int | float | str) and str(size_bytes).isdigit():
        return int(size_bytes)
    return _parse_size(str(size_text))


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


class PlatformClient:
    """The platform's HTTP API. Methods classify errors; the Pacer retries; 401 re-logs in once."""

    def __init__(
        self,
        url: str,
        *,
        username: str = "",
        password: str = "",
        password_key: str = "",
        token: str = "",
        ca_bundle: str = "",
        pacer: Pacer | None = None,
        clock: Callable[[], float] = time.time,
        timeouts: Timeouts | None = None,
        connections: int = 64,
    ) -> None:
        self.base_url = url.rstrip("/")
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise Fatal(f"platform url must start with http:// or https://, got {url!r}")
        self._username = username
        self._password = password
        self._password_key = password_key
        self._ssl_context = _ssl_context(self.base_url, ca_bundle)  # a bad ca_bundle stops here, not mid-run
        self.pacer = pacer or Pacer()
        self.timeouts = timeouts or Timeouts()
        can_login = bool(username and password and password_key)
        if not can_login and not token:
            raise AuthFailed("no credentials: set username, password and password_key, or a token")
        self.tokens = TokenSource(self._login if can_login else None, static_token=token or None, clock=clock)
        self._timeout = self.timeouts.for_call()
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._user: UserInfo | None = None
        self._user_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl_context)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the request cycle -----------------------------------------------------------------
    async def _send(
        self, method: str, path: str, token: str | None, json_body: Any, form: FormFactory | None,
        limits: aiohttp.ClientTimeout | None = None,
    ) -> Envelope:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"headers": headers, "timeout": limits or self._timeout}
        if form is not None:
            kwargs["data"] = await _one_body(form())
        elif json_body is not None:
            kwargs["json"] = json_body
        try:
            async with self.session.request(method, self.base_url + path, **kwargs) as resp:
                body = await resp.read()
                if log.isEnabledFor(logging.DEBUG):  # -vv: every answer, its body cut short
                    log.debug("%s %s: HTTP %d, %d bytes: %s", method, path, resp.status, len(body), body_excerpt(body))
                return classify(resp.status, body, resp.headers.get("Retry-After"), endpoint=path)
        except (aiohttp.ClientError, ssl.SSLError, TimeoutError) as exc:
            changed = _local_change(exc)
            if changed is not None:  # a streamed chunk found its file changed: not the network's fault
                raise changed from exc
            read = (limits or self._timeout).sock_read or self.timeouts.request
            raise classify_failure(exc, url=self.base_url, endpoint=path, connect_timeout=self.timeouts.connect,
                                   read_timeout=read) from exc

    async def _authed(
        self, method: str, path: str, json_body: Any, form: FormFactory | None, limits: aiohttp.ClientTimeout | None
    ) -> Envelope:
        return await self._with_token(lambda token: self._send(method, path, token, json_body, form, limits), path)

    async def _with_token(self, attempt: Callable[[str], Awaitable[T]], path: str) -> T:
        """The auth flow of one attempt: with the current token; refused (401), log in again and once more."""
        token = await self.tokens.get()
        try:
            return await attempt(token)
        except AuthExpired:
            token = await self.tokens.refresh(token)
        try:
            return await attempt(token)
        except AuthExpired as exc:
            # A fresh token refused at once: either it expired in between (short lifetimes) or
            # the platform is flapping. Let the pacer space out another full attempt.
            raise Retryable(f"token refused right after logging in: {exc.message}", endpoint=path) from exc

    async def call(
        self, path: str, body: Any = None, *, method: str = "POST", form: FormFactory | None = None,
        sends: int = 0, work: float = 0.0,
    ) -> Envelope:
        """One authenticated call with retries; returns the success envelope or raises.

        `sends` is the size of its body (a chunk), `work` the seconds the platform may take on
        top of request_timeout to answer (a merge): both widen this call's deadline.
        """
        limits = self.timeouts.for_call(sends, work) if sends or work else None
        return await self.pacer.call(lambda: self._authed(method, path, body, form, limits), what=path)

    async def download(self, url: str, size: int, sink: ByteSink) -> None:
        """GET a file of the platform (a datahub tempUrl: a path, or a URL on the platform's own
        host) with the token, its body streamed into `sink`. Paced: an attempt cut off midway is
        followed by one asking for the rest (a Range request from `sink.position`)."""
        full = self.base_url + url if url.startswith("/") else url
        if urlsplit(full)[:2] != urlsplit(self.base_url)[:2]:
            # The token goes with the request: never to another host.
            raise Fatal(f"download URL is not on the platform ({urlsplit(full).netloc or url!r})", endpoint=url)
        endpoint = urlsplit(full).path
        # A download of N bytes gets N / min_rate on top of request_timeout, as a chunk sent does.
        limits = self.timeouts.for_call(size)
        await self.pacer.call(
            lambda: self._with_token(lambda token: self._get(full, endpoint, token, sink, limits), endpoint),
            what=endpoint,
        )

    async def _get(self, url: str, endpoint: str, token: str, sink: ByteSink, limits: aiohttp.ClientTimeout) -> None:
        start = sink.position
        headers = {"Authorization": f"Bearer {token}"}
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            async with self.session.get(url, headers=headers, timeout=limits) as resp:
                log.debug("GET %s from byte %d: HTTP %d", endpoint, start, resp.status)
                if resp.status == 416 and start:
                    sink.restart()  # the file got shorter than what was read: read it again
                    raise Retryable("HTTP 416: the file is shorter than the bytes already read", endpoint=endpoint)
                if not 200 <= resp.status < 300:
                    classify_download(resp.status, await resp.content.read(4096), resp.headers.get("Retry-After"),
                                      endpoint=endpoint)
                if resp.status != 206 or not resp.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
                    sink.restart()  # no Range (or another one) honoured: the whole file comes
                async for data in resp.content.iter_chunked(SPAN_PIECE):
                    await sink.write(data)
        except (aiohttp.ClientError, ssl.SSLError, TimeoutError) as exc:
            raise classify_failure(exc, url=self.base_url, endpoint=endpoint, connect_timeout=self.timeouts.connect,
                                   read_timeout=limits.sock_read or self.timeouts.request) from exc

    async def _login(self) -> str:
        cipher = encrypt_password(self._password, self._password_key)
        body = {"username": self._username, "password": cipher}

        # One attempt: login runs inside a call's pacer, which retries the whole flow.
        try:
            envelope = await self._send("POST", "/prod-api/login", None, body, None)
        except (PlatformRefused, AuthExpired) as exc:
            raise AuthFailed(f"login refused for user {self._username!r}: {exc.message}", endpoint="/prod-api/login") from exc
        token = (envelope.model_extra or {}).get("token") or (
            envelope.data.get("token") if isinstance(envelope.data, dict) else None
        )
        if not isinstance(token, str) or not token:
            raise AuthFailed("login answered without a token", endpoint="/prod-api/login")
        return token

    async def relogin(self, password: str | None = None) -> None:
        """Log in now, with `password` from now on if given (a daemon paused by a refused login)."""
        if password is not None:
            self._password = password
        current = self.tokens.current()
        await self.tokens.refresh(current.value if current else None)

    # -- identity --------------------------------------------------------------------------
    async def user(self) -> UserInfo:
        """The caller's userId (from getInfo, cached for the client's life)."""
        async with self._user_lock:
            if self._user is None:
                envelope = await self.call("/prod-api/getInfo", method="GET")
                extra = envelope.model_extra or {}
                user = extra.get("user") or (envelope.data or {}).get("user") or {}
                if not isinstance(user, dict) or user.get("userId") is None:
                    raise Fatal("getInfo answered without user.userId", endpoint="/prod-api/getInfo")
                self._user = UserInfo(
                    user_id=str(user["userId"]),
                    user_name=str(user.get("userName", "")),
                    tenant_id=str(user.get("tenantId", "")),
                )
            return self._user

    async def token_expiry(self) -> float | None:
        await self.tokens.get()
        token = self.tokens.current()
        return token.expires_at if token else None

    def token_claims(self) -> dict[str, object]:
        token = self.tokens.current()
        return jwt_claims(token.value) if token else {}

    # -- folders ---------------------------------------------------------------------------
    async def list_folder(self, space: Space, folder: str, until: Collection[str] | None = None) -> list[RemoteEntry]:
        """Every entry of a folder, all pages (requestBegin is a 1-based item index).

        With `until` (the names a caller looks for), paging stops once all of them were seen:
        the entries returned are then only part of the folder, enough to look those names up.
        A page shorter than asked ends a folder only when shorter than LIST_PAGE_SURE (a platform
        may cap a page below what is asked), so a folder of 500 names costs two requests whole,
        one when the names looked for are all on its first page (a no-op's check, a confirmation).
        """
        uid = (await self.user()).user_id
        entries: dict[str, RemoteEntry] = {}
        begin = 1
        while True:
            body = {
                "fileName": "",
                "path": wire_path(folder),
                "requestBegin": begin,
                "requestFileAccount": LIST_PAGE,
                "userId": None if space.is_public else uid,
            }
            envelope = await self.call("/api/file/file/getFolderInfo", body)
            rows = envelope.result
            if isinstance(rows, dict):  # tolerate {"list"/"rows"/"records": [...]} wrappers
                rows = rows.get("list") or rows.get("rows") or rows.get("records") or []
            rows = rows or []
            new = 0
            # The folder is canonical and each name one component (a name with a '/' or '..' is
            # never matched by a local file: transfer.remotepath), so the path is a plain join.
            base = remotepath.join(folder)
            base = f"{base}/" if base else ""
            for row in rows:
                if type(row) is not dict or not (name := row.get("fileName")):
                    continue
                name = str(name)
                if name in entries:
                    continue
                new += 1
                flag = row.get("isDirectory", row.get("isDirection", "0"))
                is_dir = flag == "1" if type(flag) is str and len(flag) == 1 else _truthy(flag)
                size = row.get("fileSizeBytes")
                if type(size) is not int or size < 0:  # the documented int, or whatever else a platform sends
                    size = _entry_size(size, row.get("fileSize", "0"))
                mtime = row.get("lastModifyTime")
                entries[name] = RemoteEntry(name, base + name, is_dir, 0 if is_dir else size,
                                            int(mtime) if isinstance(mtime, int | float) else None)
            # A platform reading requestBegin as a page number would repeat rows: stop then.
            if len(rows) < LIST_PAGE_SURE or new == 0:
                return list(entries.values())
            if until is not None and all(name in entries for name in until):
                return list(entries.values())
            begin += len(rows)

    async def add_folder(self, space: Space, parent: str, name: str) -> None:
        uid = (await self.user()).user_id
        path = "/api/file/file/addPublicFolder" if space.is_public else "/api/file/file/addFolder"
        body = {"folderName": name, "parentPath": wire_path(parent), "userId": uid, "publicUserId": uid}
        await self.call(path, body)

    async def delete(self, space: Space, paths: list[str]) -> None:
        uid = (await self.user()).user_id
        path = (
            "/api/file/file/deletePublicFileOrDictory" if space.is_public else "/api/file/file/deleteFileOrDictory"
        )
        await self.call(path, {"sPath": [wire_path(p) for p in paths], "userId": uid, "publicUserId": uid})

    # -- uploads ---------------------------------------------------------------------------
    async def simple_upload(self, space: Space, folder: str, name: str, data: bytes) -> None:
        """One-request upload (no md5, no resume): zero-byte and small files."""
        uid = (await self.user()).user_id

        def form() -> aiohttp.FormData:
            # quote_fields=False: the platform takes the part's filename literally (raw UTF-8).
            fd = aiohttp.FormData(quote_fields=False)
            fd.add_field("file", data, filename=name, content_type="application/octet-stream")
            if space.is_public:
                fd.add_field("publicUserId", uid)
            fd.add_field("currentPath", wire_path(folder))
            return fd

        path = "/api/file/file/uploadPublicFolder" if space.is_public else "/api/file/file/uploadFolder"
        await self.call(path, form=form, sends=len(data))

    async def check_file(self, space: Space, folder: str, name: str, md5: str, size: int) -> CheckResult:
        uid = (await self.user()).user_id
        body = {
            "userId": uid,
            "isPublic": space.is_public,
            "fileName": name,
            "fileMd5": md5,
            "fileSize": size,
            "currentPath": wire_path(folder),
        }
        envelope = await self.call("/api/file/file/checkFileExist", body)
        result = envelope.result if isinstance(envelope.result, dict) else {}
        try:
            status = int(result.get("fileStatus", 2))
        except (TypeError, ValueError):
            status = 2
        chunks: dict[int, str] = {}
        for item in result.get("chunks") or []:
            if isinstance(item, dict) and item.get("index") is not None:
                try:
                    chunks[int(item["index"])] = str(item.get("md5") or "").lower()
                except (TypeError, ValueError):
                    continue
        return CheckResult(held=status == 1, chunks=chunks)

    async def upload_chunk(
        self,
        space: Space,
        folder: str,
        name: str,
        *,
        file_md5: str,
        index: int,
        total: int,
        data: bytes | memoryview | FileSpan,
        chunk_md5: str,
    ) -> None:
        uid = (await self.user()).user_id
        length = data.length if isinstance(data, FileSpan) else len(data)

        def form() -> aiohttp.FormData:
            fd = aiohttp.FormData(quote_fields=False)
            fd.add_field("userId", uid)
            fd.add_field("isPublic", "true" if space.is_public else "false")
            fd.add_field("currentPath", wire_path(folder))
            fd.add_field("fileName", name)
            fd.add_field("fileMd5", file_md5)
            fd.add_field("chunkSize", str(length))
            fd.add_field("chunkMd5", chunk_md5)
            fd.add_field("index", str(index))
            fd.add_field("total", str(total))
            body = SpanPayload(data) if isinstance(data, FileSpan) else bytes(data) if isinstance(data, memoryview) else data
            fd.add_field("chunk", body, filename=name, content_type="application/octet-stream")
            return fd

        await self.call("/api/file/file/uploadFile", form=form, sends=length)

    async def merge(self, space: Space, folder: str, name: str, *, file_md5: str, size: int, total: int) -> None:
        uid = (await self.user()).user_id
        body = {
            "userId": uid,
            "isPublic": space.is_public,
            "currentPath": wire_path(folder),
            "fileName": name,
            "fileMd5": file_md5,
            "fileSize": size,
            "total": total,
        }
        await self.call("/api/file/file/mergeFile", body, work=size / MERGE_RATE)

    # -- SFTP accounts ---------------------------------------------------------------------
    def _account(self, envelope: Envelope, endpoint: str) -> SftpAccount:
        result = envelope.result if isinstance(envelope.result, dict) else {}
        try:
            port = int(str(result.get("port") or "22"))
        except ValueError as exc:
            raise Fatal(f"SFTP port is not a number: {result.get('port')!r}", endpoint=endpoint) from exc
        if not result.get("username") or not result.get("password"):
            raise Fatal("SFTP account answered without username or password", endpoint=endpoint)
        return SftpAccount(
            username=str(result["username"]),
            password=str(result["password"]),
            host=str(result.get("address") or "") or self.host,
            port=port,
        )

    async def sftp_account(self, space: Space) -> SftpAccount:
        uid = (await self.user()).user_id
        endpoint = "/api/file/user/queryUserInfo"
        envelope = await self.call(endpoint, {"userId": uid, "svcType": "sftp", "isPublic": space.is_public})
        return self._account(envelope, endpoint)

    async def reset_sftp_password(self, space: Space) -> SftpAccount:
        """Ask the platform to generate a new SFTP password (affects every user of the account)."""
        endpoint = "/api/file/user/updateUserInfo"
        envelope = await self.call(endpoint, {"isPublic": space.is_public, "password": "hubsync-reset"})
        return self._account(envelope, endpoint)
