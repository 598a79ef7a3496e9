"""Fault injection: switches a test flips between calls to make the emulator misbehave.

Every switch is off by default. All random decisions come from one `random.Random`, so a run
with a `seed` is reproducible call for call (given the same order of calls).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import Any, Literal

AuthErrorForm = Literal["random", "http", "body"]

_RATES = ("chunk_error_rate", "reset_rate", "busy_rate", "wrong_chunk_md5_rate", "download_error_rate",
          "download_cut_rate")
_DELAYS = ("latency", "datahub_create_delay", "datahub_import_delay", "datahub_assemble_delay")
_SWITCHES = ("chunk_api_off", "datahub_create_fail", "datahub_import_drop", "lenient_paths", "html_errors")


@dataclass
class Faults:
    """Runtime fault switches; assign attributes (or `update`) at any time, from any thread.

    The `datahub_*_delay` fields are not faults but the platform's pace: how long its
    asynchronous datahub jobs take. They live here so that tests can change them at run time.
    """

    seed: int | None = None
    #: Fraction of chunk-protocol calls (simple uploads, datahub uploadFile too) answered HTTP 500.
    chunk_error_rate: float = 0.0
    #: Fraction of uploadFile calls (file and datahub) whose connection is aborted mid-body.
    reset_rate: float = 0.0
    #: Fraction of file downloads (GETs of a datahub tempUrl) answered HTTP 500 (plain, no envelope).
    download_error_rate: float = 0.0
    #: Fraction of file downloads whose connection is aborted partway through the body (in its first half).
    download_cut_rate: float = 0.0
    #: Seconds added to every API call.
    latency: float = 0.0
    #: Fraction of API calls answered `busy_status` with `Retry-After: retry_after`.
    busy_rate: float = 0.0
    busy_status: int = 503
    retry_after: int = 1
    #: checkFileExist/uploadFile/mergeFile answer HTTP 404, as on a platform without them.
    chunk_api_off: bool = False
    #: In checkFileExist (fileStatus 2), each received chunk is reported with a wrong md5 at this rate.
    wrong_chunk_md5_rate: float = 0.0
    #: The injected 500s and 503s are a proxy's HTML error page of several KiB, not an envelope.
    html_errors: bool = False
    #: Never inject more than this many error faults (500, 503/429, reset) in a row.
    max_consecutive_errors: int = 3
    #: Overrides `EmulatorConfig.token_lifetime` for tokens issued from now on.
    token_lifetime: float | None = None
    #: How an invalid or expired token is answered: HTTP 401, HTTP 200 with code 401, or either.
    auth_error_form: AuthErrorForm = "random"
    #: Seconds a datahub createVersion stays in createStatus 0.
    datahub_create_delay: float = 0.3
    #: Datahub version creations started from now on end in createStatus 2 (failed).
    datahub_create_fail: bool = False
    #: Seconds before a datahub importFiles job copies its sources.
    datahub_import_delay: float = 0.2
    #: Datahub import jobs started from now on never run (the files never appear).
    datahub_import_drop: bool = False
    #: Paths as a lax real platform may take them, over HTTP and SFTP: `\\` is a literal
    #: character of a name, `.` and `..` components are resolved (confined to the space).
    #: The house reading (off) refuses them; tests turn this on to prove the client refuses them itself.
    lenient_paths: bool = False
    #: Seconds between a submitId's last chunk and its file appearing in the version.
    datahub_assemble_delay: float = 0.1
    #: Seconds added to every time the platform reports of a file (listings' updateTime and
    #: lastModifyTime, datahub updateTime, SFTP stat mtimes): a platform clock ahead of the
    #: client's (+) or behind it (-). Times the platform stores are untouched.
    clock_offset: float = 0.0
    #: getFolderInfo returns at most this many rows per page, whatever requestFileAccount asks
    #: (0: no cap), as a platform that caps its pages would.
    list_page_cap: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _consecutive: int = field(default=0, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # Re-seeding on assignment makes `faults.seed = 7` mid-test as reproducible as a fresh run.
        object.__setattr__(self, name, value)
        if name == "seed":
            object.__setattr__(self, "_rng", random.Random(value))
            object.__setattr__(self, "_consecutive", 0)

    def public_fields(self) -> dict[str, Any]:
        """The switches as a JSON-able dict (for `GET /__emulator__/faults`)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def update(self, changes: dict[str, Any]) -> None:
        """Validate and apply several switches at once; raises ValueError naming a bad one."""
        known = self.public_fields()
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault field {name!r}")
            checked[name] = _check(name, value)
        for name, value in checked.items():
            setattr(self, name, value)

    # -- decisions, all made in the emulator's event loop ---------------------------------

    def chance(self, rate: float) -> bool:
        """True with probability `rate` (no draw at all when the rate is 0)."""
        return rate > 0 and self._rng.random() < rate

    def inject_error(self, rate: float) -> bool:
        """Decide an error fault at `rate`, honouring `max_consecutive_errors`."""
        if self._consecutive >= self.max_consecutive_errors:
            return False
        if self.chance(rate):
            self._consecutive += 1
            return True
        return False

    def clean_call(self) -> None:
        """A call went through without an error fault: the run of errors is over."""
        self._consecutive = 0

    def auth_error_in_body(self) -> bool:
        """True: answer HTTP 200 with code 401 in the body; False: HTTP 401."""
        if self.auth_error_form == "random":
            return self._rng.random() < 0.5
        return self.auth_error_form == "body"

    def reset_point(self, length: int) -> int:
        """How many body bytes to read before a reset: somewhere in the first half."""
        return self._rng.randint(1, max(1, length // 2)) if length > 0 else 0

    def wrong_md5(self, md5: str) -> str:
        """A plausible but wrong md5 in place of `md5`."""
        wrong = md5
        while wrong == md5:
            wrong = f"{self._rng.getrandbits(128):032x}"
        return wrong


def _check(name: str, value: Any) -> Any:
    """The value for `name` if it has the right type and range; else ValueError."""
    if name in _RATES:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number in [0, 1]")
        return float(value)
    if name in _DELAYS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name} must be a number >= 0")
        return float(value)
    if name == "clock_offset":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("clock_offset must be a number of seconds")
        return float(value)
    if name == "token_lifetime":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("token_lifetime must be a number of seconds or null")
        return float(value)
    if name in ("retry_after", "max_consecutive_errors", "list_page_cap"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0")
        return value
    if name == "busy_status":
        if value not in (503, 429) or isinstance(value, bool):
            raise ValueError("busy_status must be 503 or 429")
        return value
    if name == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError("seed must be an integer or null")
        return value
    if name in _SWITCHES:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if name == "auth_error_form":
        if value not in ("random", "http", "body"):
            raise ValueError("auth_error_form must be 'random', 'http' or 'body'")
        return value
    raise ValueError(f"unknown fault field {name!r}")  # pragma: no cover - guarded by update()
