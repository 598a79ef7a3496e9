"""Network failures an operator meets, on real loopback sockets, through the CLI as a user runs it.

Each ends in bounded time with one clear line and no traceback (#12's table): a closed port,
a listener that accepts and never answers, a TLS listener whose certificate is not trusted, an
https URL on a plain-http port, and a ca_bundle that is missing or not PEM.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import Config
from emulator.testing import EmulatorThread
from transfer.api import Timeouts

from .conftest import run_cli, user_env


class _Listener:
    """A TCP listener on loopback that accepts (optionally wraps in TLS) and then never answers."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.tls is not None:
                conn.settimeout(5)
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()  # the client refused our certificate: that is the point
                    continue
            self._held.append(conn)  # read nothing, answer nothing

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self.sock.close()


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate (a CA for itself) for `name` and 127.0.0.1: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = user_env(_NoEmulator(url), tmp_path)
    env.update(extra)
    return env


class _NoEmulator:
    """user_env() wants something with a url."""

    def __init__(self, url: str) -> None:
        self.url = url


def _login(env: dict[str, str], *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = run_cli([*args, "login"], env, timeout=180)
    return result.returncode, result.stderr, time.monotonic() - started


def _one_clear_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def closed_port() -> Iterator[int]:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connecting is refused
    yield port


def test_a_closed_port_is_named_with_its_cause_within_15_s(tmp_path: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    code, stderr, seconds = _login(_env(tmp_path, url))
    line = _one_clear_line(stderr)
    assert code == 1
    assert url in line and "connection refused" in line, line
    assert seconds < 15, seconds


def test_a_server_that_never_answers_gives_up_saying_which_call_timed_out(tmp_path: Path) -> None:
    listener = _Listener()
    try:
        config = tmp_path / "config.toml"
        config.write_text("[transfer]\nrequest_timeout = 1\ngive_up_after = 2\n")
        code, stderr, seconds = _login(_env(tmp_path, f"http://127.0.0.1:{listener.port}"), "--config", str(config))
    finally:
        listener.close()
    line = _one_clear_line(stderr)
    assert code == 1
    assert "/prod-api/login" in line and "no answer" in line and "request_timeout" in line, line
    assert listener.accepted >= 2  # retried within its budget, then gave up
    assert seconds < 30, seconds


def test_the_default_budget_for_a_silent_server_is_within_2_minutes() -> None:
    """Computed from the defaults (not waited for): the last retry starts before give_up_after,
    and one attempt is at most a login and the call, each connect_timeout + request_timeout."""
    t = Config().transfer
    attempt = 2 * Timeouts(connect=t.connect_timeout, request=t.request_timeout).worst()
    assert t.give_up_after + attempt <= 120
    assert t.connect_timeout <= 12  # a refused connection is retried for connect_timeout: within 15 s


@pytest.mark.parametrize("trusted", [False, True], ids=["unknown-ca", "wrong-host"])
def test_an_untrusted_certificate_is_refused_at_once_pointing_to_ca_bundle(tmp_path: Path, trusted: bool) -> None:
    cert, key = _self_signed(tmp_path, "platform.example")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = _Listener(tls=context)
    try:
        # With the certificate as ca_bundle it is trusted, but it names another host than 127.0.0.1.
        args: list[str] = []
        if trusted:
            config = tmp_path / "config.toml"
            config.write_text(f'[platform]\nca_bundle = "{cert}"\n')
            args = ["--config", str(config)]
        code, stderr, seconds = _login(_env(tmp_path, f"https://127.0.0.1:{listener.port}"), *args)
    finally:
        listener.close()
    line = _one_clear_line(stderr)
    assert code == 1
    assert "certificate" in line and "ca_bundle" in line, line
    assert listener.accepted == 1  # not retried
    assert seconds < 15, seconds


def test_https_on_a_plain_http_port_says_the_server_does_not_speak_tls(emu: EmulatorThread, tmp_path: Path) -> None:
    url = emu.url.replace("http://", "https://")
    code, stderr, seconds = _login(_env(tmp_path, url))
    line = _one_clear_line(stderr)
    assert code == 1
    assert "does not speak TLS (is the URL http://?)" in line, line
    assert seconds < 15, seconds


@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n"], ids=["missing", "empty", "not-pem"])
def test_a_bad_ca_bundle_is_a_configuration_error_naming_key_and_file(tmp_path: Path, content: bytes | None) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    config = tmp_path / "config.toml"
    config.write_text(f'[platform]\nca_bundle = "{bundle}"\n')
    code, stderr, _ = _login(_env(tmp_path, "https://127.0.0.1:9"), "--config", str(config))
    line = _one_clear_line(stderr)
    assert code == 2
    assert "platform.ca_bundle" in line and str(bundle) in line, line


async def test_a_refused_sftp_connection_is_retried_only_for_connect_timeout(tmp_path: Path, closed_port: int) -> None:
    from transfer.api import PlatformClient
    from transfer.destinations.sftp import SftpDestination
    from transfer.errors import GaveUp, Retryable
    from transfer.models import SftpAccount
    from transfer.pacer import Pacer

    from .clocks import FakeClock

    clock = FakeClock()
    pacer = Pacer(give_up_after=300, clock=clock)
    async with PlatformClient("http://127.0.0.1:9", token="t", pacer=pacer) as api:
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", connect_timeout=4, pacer=pacer)
        account = SftpAccount(username="u", password="p", host="127.0.0.1", port=closed_port)
        with pytest.raises(GaveUp, match="connection refused") as caught:
            await pacer.call(lambda: dest._open(account))
    assert isinstance(caught.value.last, Retryable) and caught.value.last.patience == 4
    assert clock.elapsed <= 4  # not the whole give_up_after
