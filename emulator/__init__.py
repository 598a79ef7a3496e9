"""A strict local stand-in for the compute platform's HTTP API (protocol.md's house reading).

Shares no code with the client (`transfer/`, `agent/`): it is the client's opponent in tests.
"""

from .accounts import SftpAccount, SftpAccounts
from .app import build_app, start_server
from .auth import TokenIssuer, decrypt_password
from .config import EmulatorConfig, EmulatorUser, default_users
from .faults import Faults
from .storage import Space, Storage, StorageError
from .testing import EmulatorThread

__all__ = [
    "EmulatorConfig",
    "EmulatorThread",
    "EmulatorUser",
    "Faults",
    "SftpAccount",
    "SftpAccounts",
    "Space",
    "Storage",
    "StorageError",
    "TokenIssuer",
    "build_app",
    "decrypt_password",
    "default_users",
    "start_server",
]
