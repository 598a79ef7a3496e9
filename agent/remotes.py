"""The remote syntax of product.md: private:/dir, public:/dir, KIND:ASSET@VERSION[:/path]."""

from __future__ import annotations

import re
from dataclasses import dataclass

from transfer.errors import ConfigError
from transfer.models import Space
from transfer.remotepath import display, parse_folder

KINDS = ("dataset", "model", "algo", "image")
_DATAHUB = re.compile(r"^(?P<kind>dataset|model|algo|image):(?P<asset>[^@:/]+)@(?P<version>[^:/]+)(?::(?P<path>.*))?$")


@dataclass(frozen=True)
class FileRemote:
    """A folder in the private or public space."""

    space: Space
    path: str

    def __str__(self) -> str:
        return f"{self.space}:/{self.path}"

    def prefix(self) -> str:
        """The journal key prefix of files under this remote."""
        return f"{self.space}:/{self.path}/" if self.path else f"{self.space}:/"


@dataclass(frozen=True)
class DatahubRemote:
    """A folder inside a datahub asset version."""

    kind: str
    asset: str
    version: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.asset}@{self.version}:/{self.path}"


Remote = FileRemote | DatahubRemote


def _check_components(path: str, text: str) -> str:
    return parse_folder(path, what=f"remote '{display(text)}'")


def parse_remote(text: str) -> Remote:
    """Parse a remote; a malformed one is a ConfigError (exit 2) that shows the accepted forms."""
    for space in Space:
        if text.startswith(f"{space}:"):
            return FileRemote(space, _check_components(text[len(space) + 1 :], text))
    match = _DATAHUB.match(text)
    if match:
        return DatahubRemote(
            kind=match["kind"],
            asset=match["asset"],
            version=match["version"],
            path=_check_components(match["path"] or "", text),
        )
    raise ConfigError(
        f"not a remote: {text!r}; use private:/dir, public:/dir or KIND:ASSET@VERSION[:/path]"
        f" with KIND one of {', '.join(KINDS)}"
    )
