"""The emulator's shared state, and the keys under which the app and requests carry it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .accounts import SftpAccounts
from .auth import TokenIssuer
from .config import EmulatorConfig, EmulatorUser
from .datahub_files import SubmitStore
from .datahub_jobs import DatahubJobs
from .datahub_store import DatahubStore
from .request_log import RequestLog
from .storage import Storage


@dataclass
class EmulatorState:
    """Everything the route handlers share; one per running emulator."""

    config: EmulatorConfig
    storage: Storage
    accounts: SftpAccounts
    tokens: TokenIssuer
    log: RequestLog
    datahub: DatahubStore
    submits: SubmitStore
    jobs: DatahubJobs
    # Serialises merges with chunk writes of the same (space, fileMd5), and the chunks of one
    # datahub submitId.
    chunk_locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    @classmethod
    def create(cls, config: EmulatorConfig) -> EmulatorState:
        """Build the state for `config` (creates the root's directories)."""
        assert config.log_path is not None  # set by EmulatorConfig.__post_init__
        datahub = DatahubStore(config.root)
        submits = SubmitStore(datahub.dir)
        return cls(
            config=config,
            storage=Storage(config.root),
            accounts=SftpAccounts(config.root),
            tokens=TokenIssuer(config.jwt_secret),
            log=RequestLog(config.log_path),
            datahub=datahub,
            submits=submits,
            jobs=DatahubJobs(datahub, submits, config.faults),
        )


STATE = web.AppKey("emulator_state", EmulatorState)
#: The authenticated caller of a business call.
USER = web.RequestKey("emulator_user", EmulatorUser)
#: Endpoint fields for the request log, filled by the handler.
LOG_FIELDS = web.RequestKey("emulator_log_fields", dict[str, Any])
#: Name of the fault injected into this request, if any.
FAULT = web.RequestKey("emulator_fault", str)
