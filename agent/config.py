"""Configuration: TOML + environment, validated with pydantic, refused with key, value and reason."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from transfer.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mi": 1024**2, "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
          "t": 1000**4, "tb": 1000**4, "ti": 1024**4, "tib": 1024**4}


def parse_size(value: str | int) -> int:
    """'8MiB' -> 8388608; '20MB' -> 20000000; a bare number is bytes."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    match = _SIZE.match(value)
    if not match or match.group(2) is None and not match.group(1):
        raise ValueError(f"not a size (use e.g. 8MiB, 512KiB, 1048576): {value!r}")
    unit = (match.group(2) or "").lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {match.group(2)!r}")
    return int(float(match.group(1)) * _UNITS[unit])


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PlatformConfig(_Section):
    url: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: str = ""
    password_key: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    ca_bundle: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("password_key")
    @classmethod
    def _key(cls, v: SecretStr) -> SecretStr:
        n = len(v.get_secret_value().encode("utf-8"))
        if n and n not in (16, 24, 32):
            raise ValueError(f"must be 16, 24 or 32 bytes long (AES key), is {n}")
        return v


class TransferConfig(_Section):
    chunk_size: int = Field(default=8 << 20)
    transfers: int = Field(default=4, ge=1, le=256)
    chunks_per_file: int = Field(default=4, ge=1, le=64)
    bandwidth_limit: int = 0
    transport: Literal["auto", "http", "sftp"] = "auto"
    small_file_threshold: int = Field(default=1 << 20)
    # auto: seconds on SFTP after the chunk API answered 404/405, before HTTP is tried again.
    sftp_fallback_seconds: float = Field(default=600.0, gt=0)
    # Deadlines (seconds). One call retries transient failures for give_up_after at most (a
    # refused connection for connect_timeout); one request waits request_timeout for its answer,
    # and a chunk also gets chunk_size / min_rate to be sent.
    connect_timeout: float = Field(default=10.0, gt=0)
    request_timeout: float = Field(default=30.0, gt=0)
    give_up_after: float = Field(default=30.0, ge=0)
    min_rate: int = Field(default=32 << 10, gt=0)
    confirm_timeout: float = Field(default=5.0, ge=0)  # a merged file may take this long to be listed
    settle_timeout: float = Field(default=120.0, gt=0)  # a file changed while sent must settle within it

    @field_validator("chunk_size", "small_file_threshold", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)

    @field_validator("chunk_size")
    @classmethod
    def _chunk_range(cls, v: int) -> int:
        if not (64 << 10) <= v <= (1 << 30):
            raise ValueError("must be between 64KiB and 1GiB")
        return v

    @field_validator("min_rate", mode="before")
    @classmethod
    def _min_rate(cls, v: Any) -> int:
        return parse_size(re.sub(r"/s$", "", v.strip()) if isinstance(v, str) else v)

    @field_validator("bandwidth_limit", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> int:
        if v in ("", None, 0):
            return 0
        if isinstance(v, str):
            v = re.sub(r"/s$", "", v.strip())
        try:
            return parse_size(v)
        except ValueError:
            raise ValueError(f"not a rate (use e.g. 20MiB/s, 512KiB/s; 0 = unlimited): {v!r}") from None


class SftpConfig(_Section):
    known_hosts: str = ""
    allow_password_reset: bool = False
    stale_part_age: float = Field(default=7 * 86400, ge=0)


class StateConfig(_Section):
    dir: str = ""


class DatahubConfig(_Section):
    via: Literal["staged", "direct"] = "staged"
    keep_staging: bool = False
    import_batch: int = Field(default=100, ge=1, le=10000)
    poll_timeout: float = Field(default=600.0, gt=0)


class WatchConfig(_Section):
    source: str
    remote: str
    exclude: list[str] = Field(default_factory=list)
    settle_seconds: float = Field(default=5.0, ge=0)
    delete: bool = False
    name: str = ""  # the job's name in logs, status and the journal; default: the remote
    poll: bool = False  # poll instead of inotify (network file systems do not report changes)
    follow_symlinks: bool = False  # follow symbolic links that lead outside the source

    def job_name(self) -> str:
        return self.name or self.remote


_LOOPBACK = re.compile(r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])$")
_TIMETABLE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*,\s*(.+?)\s*$")


def parse_timetable(entries: list[str]) -> list[tuple[int, int]]:
    """['08:00,2MiB/s', '18:00,off'] -> [(480, 2097152), (1080, 0)]: minute of the day, bytes/s (0 = unlimited)."""
    table = []
    for entry in entries:
        match = _TIMETABLE.match(entry)
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise ValueError(f"{entry!r} is not 'HH:MM,RATE' (e.g. '08:00,2MiB/s' or '18:00,off')")
        rate = match.group(3)
        limit = 0 if rate.lower() in ("off", "unlimited") else parse_size(re.sub(r"/s$", "", rate))
        table.append((int(match.group(1)) * 60 + int(match.group(2)), limit))
    if len({minute for minute, _ in table}) != len(table):
        raise ValueError("two entries for the same time")
    return sorted(table)


class DaemonConfig(_Section):
    metrics: str = ""
    rescan_seconds: float = Field(default=3600.0, gt=0)
    # Every this many seconds (+-25 %) each job lists its remote and sends again what the
    # journal calls done but the platform no longer holds as sent; 0: never (stat only).
    remote_check_seconds: float = Field(default=6 * 3600.0, ge=0)
    max_delete: int = Field(default=1000, ge=0)
    grace_seconds: float = Field(default=10.0, ge=0)
    delete_delay: float = Field(default=60.0, ge=0)
    order: Literal["smallest", "largest", "oldest"] = "smallest"
    retry_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    # A refused login pauses the jobs; logins are tried again after doubling delays, capped.
    login_retry_seconds: float = Field(default=5.0, gt=0)
    login_retry_max_seconds: float = Field(default=600.0, gt=0)
    timetable: list[str] = Field(default_factory=list)

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: str) -> str:
        if not v:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464")
        if not _LOOPBACK.match(host):
            raise ValueError("must be a loopback address (127.0.0.1, [::1] or localhost): metrics are not authenticated")
        return v

    @field_validator("timetable")
    @classmethod
    def _timetable(cls, v: list[str]) -> list[str]:
        parse_timetable(v)
        return v


class Config(_Section):
    """The whole configuration file."""

    platform: PlatformConfig = Field(default_factory=PlatformConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    sftp: SftpConfig = Field(default_factory=SftpConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    datahub: DatahubConfig = Field(default_factory=DatahubConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    watch: list[WatchConfig] = Field(default_factory=list)

    def state_dir(self) -> Path:
        return Path(self.state.dir).expanduser() if self.state.dir else Path(platformdirs.user_state_dir("hubsync"))

    def password(self) -> str:
        """The password from the config/environment, else from password_file."""
        secret = self.platform.password.get_secret_value()
        if secret or not self.platform.password_file:
            return secret
        path = Path(self.platform.password_file).expanduser()
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"platform.password_file: cannot read {path}: {exc.strerror}") from exc


ENV = {
    "HUBSYNC_URL": ("platform", "url"),
    "HUBSYNC_USERNAME": ("platform", "username"),
    "HUBSYNC_PASSWORD": ("platform", "password"),
    "HUBSYNC_PASSWORD_KEY": ("platform", "password_key"),
    "HUBSYNC_TOKEN": ("platform", "token"),
    "HUBSYNC_PASSWORD_FILE": ("platform", "password_file"),  # e.g. a systemd credential
    "HUBSYNC_STATE_DIR": ("state", "dir"),
}
SECRET_KEYS = {("platform", "password"), ("platform", "token"), ("platform", "password_key")}


# A key whose name looks like it holds a secret never has its value shown, known or not.
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|credential|auth|cookie|cipher|private", re.IGNORECASE)


def _shown_value(loc: tuple[Any, ...], value: Any, error_type: str) -> str:
    """How an invalid value appears in the error: hidden when it may be a secret."""
    names = [str(part) for part in loc]
    if any(_SECRET_NAME.search(name) for name in names):
        return "<hidden>"
    if names[:1] == ["platform"] and (error_type == "extra_forbidden" or len(names) == 1):
        return "<hidden>"  # [platform] holds the credentials: an unknown key there is never echoed
    if isinstance(value, dict):
        return "<table>"  # a whole table may hold secrets under any name
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return "<tables>"
    return repr(value)


def _reason(err: Any) -> str:
    """A pydantic error as a rule a person reads (never the errors.pydantic.dev link)."""
    kind, ctx = err["type"], err.get("ctx") or {}
    rules = {"extra_forbidden": "unknown key", "missing": "required key is missing",
             "greater_than_equal": f"must be at least {ctx.get('ge')}", "less_than_equal": f"must be at most {ctx.get('le')}",
             "greater_than": f"must be more than {ctx.get('gt')}", "less_than": f"must be less than {ctx.get('lt')}",
             "literal_error": f"must be one of {ctx.get('expected')}", "int_parsing": "must be a whole number",
             "int_type": "must be a whole number", "bool_parsing": "must be true or false",
             "bool_type": "must be true or false", "float_parsing": "must be a number", "string_type": "must be a string",
             "list_type": "must be a list", "model_type": "must be a table", "dict_type": "must be a table"}
    return rules.get(kind) or str(err["msg"]).removeprefix("Value error, ")


def validation_errors(exc: ValidationError) -> list[tuple[str, str | None, str]]:
    """Each error of `exc` as (key path, the value shown or None, the rule); secrets are hidden."""
    found: list[tuple[str, str | None, str]] = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        reason = _reason(err)
        if err["type"] == "missing":
            found.append((key, None, reason))  # the input is the whole enclosing table: not worth showing
            continue
        shown = _shown_value(tuple(err["loc"]), err.get("input"), err["type"])
        value = err.get("input")
        if shown == "<hidden>" and isinstance(value, str) and value:
            reason = reason.replace(value, "<hidden>")  # a validator's message may quote the value
        found.append((key, shown, reason))
    return found


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for key, shown, reason in validation_errors(exc):
        lines.append(f"  {key}: {reason}" if shown is None else f"  {key} = {shown}: {reason}")
    return "\n".join(lines)


def default_config_path(env: dict[str, str] | None = None) -> Path:
    """$XDG_CONFIG_HOME/hubsync/config.toml (default ~/.config/hubsync/config.toml)."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "hubsync" / "config.toml"


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    """Load the file (if any) and apply the environment; returns the config and warnings."""
    env = dict(os.environ if env is None else env)
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    origin = "environment"
    chosen = path or env.get("HUBSYNC_CONFIG")
    if not chosen and default_config_path(env).is_file():
        chosen = default_config_path(env)
    if chosen:
        file = Path(chosen).expanduser()
        origin = str(file)
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file} is not valid TOML: {exc}") from exc
        section = raw.get("platform")
        platform: dict[str, Any] = section if isinstance(section, dict) else {}
        if any(platform.get(k) for k in ("password", "token", "password_key")):
            warnings.extend(_exposure_warning(file))
    for var, (section, key) in ENV.items():
        if env.get(var):
            raw.setdefault(section, {})
            if isinstance(raw[section], dict):
                raw[section][key] = env[var]
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from exc
    if config.platform.password_file:
        warnings.extend(_exposure_warning(Path(config.platform.password_file).expanduser()))
    return config, warnings


def _exposure_warning(path: Path) -> list[str]:
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [f"warning: {path} holds a secret and is readable by group or others; fix: chmod 600 {path}"]
    return []


def journal_path(config: Config) -> Path:
    """The journal's file in the state dir (the one place that names it)."""
    return config.state_dir() / "journal.sqlite3"
