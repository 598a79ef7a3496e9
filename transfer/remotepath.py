"""Local names -> remote paths: the one mapping (product.md "Promises", protocol.md §6).

`RemoteFolder.target` is the only place that makes a remote path out of a local one. It takes
a local name as it is or refuses it (`RefusedName`): never valid UTF-8, a control character, a
`\\`, an empty, `.` or `..` component. It never translates (a local `\\` is not a `/`), so two
distinct local paths can never land on one remote path, and every accepted path stays below
the REMOTE folder. Remote folders the user types go through `parse_folder` (the same rules;
doubled, leading and trailing `/` are canonicalised away). `join` puts together pieces that
are already remote paths (a listing's folder and an entry's name), nothing else.

`display` shows any name safely (surrogate-escaped bytes as `\\xff`, controls as `\\n`...): the
journal, the JSON output and the logs carry names through it, so no name can crash them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, Fatal
from .models import DatahubSpace, RemoteTarget, Space

# C0, DEL and C1 controls (as the platform refuses them), '\', '/' inside a name, and any
# surrogate: os.fsdecode turns bytes that are not UTF-8 into U+DC80..U+DCFF.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\\\\/\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
MAX_NAME_BYTES = 255  # what the platform (and most file systems) hold in one name
PART_SUFFIX = ".hubsync-part"


class RefusedName(Fatal):
    """A local name the platform cannot hold as it is: the file is not sent (never translated)."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot be one remote path component as it is; None when it can."""
    if name in ("", ".", ".."):
        return f"is '{name}'" if name else "is empty"
    if _UNSAFE.search(name) is None:
        return None
    if any("\ud800" <= c <= "\udfff" for c in name):
        return "is not valid UTF-8"
    if _CONTROL.search(name):
        return "has a control character"
    if "\\" in name:
        return "has a '\\' (it is never turned into '/')"
    return "has a '/'"


def display(name: str) -> str:
    """`name` safe to print, log, journal or put in JSON: bytes that are not UTF-8 as `\\xNN`,
    control characters as `\\n`, `\\r`, `\\t` or `\\xNN`. Printable names come back unchanged."""
    if name.isprintable() or (_CONTROL.search(name) is None and not _has_surrogate(name)):
        return name
    out = []
    for c in name:
        o = ord(c)
        if 0xDC80 <= o <= 0xDCFF:  # a byte os.fsdecode could not decode
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        elif _CONTROL.match(c):
            out.append(_ESCAPES.get(c) or f"\\x{o:02x}")
        else:
            out.append(c)
    return "".join(out)


def display_values(value: Any) -> Any:
    """`value` (JSON-able: dicts, lists, strings...) with every string passed through `display`."""
    if isinstance(value, str):
        return display(value)
    if isinstance(value, dict):
        return {display_values(k): display_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [display_values(v) for v in value]
    return value


def _has_surrogate(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def join(*parts: str) -> str:
    """Join pieces that are already remote paths: no leading, trailing or doubled '/'.

    Nothing is translated or checked here: local names go through `RemoteFolder` instead.
    """
    if all(not p or (p[0] != "/" and p[-1] != "/" and "//" not in p) for p in parts):
        return "/".join(p for p in parts if p)  # the common case, without splitting
    return "/".join(piece for part in parts for piece in part.split("/") if piece)


def split(path: str) -> tuple[str, str]:
    """('a/b', 'c') for the remote path 'a/b/c'."""
    folder, _, name = join(path).rpartition("/")
    return folder, name


def parse_folder(text: str, *, what: str = "") -> str:
    """A remote folder as the user typed it, canonical ('a/b' for '/a//b/'); ConfigError when
    a component is one the platform cannot hold (`..`, `.`, `\\`, a control character).
    `what` names it in the message (default: the path itself)."""
    pieces = [p for p in text.split("/") if p]
    for piece in pieces:
        problem = name_problem(piece)
        if problem is not None:
            label = what or f"remote path '{display(text)}'"
            raise ConfigError(f"{label}: a component {problem};"
                              " remote paths are '/'-separated names, without '.' or '..' components")
    return "/".join(pieces)


@dataclass(frozen=True)
class RemoteFolder:
    """A REMOTE folder (its path canonical and checked): maps local relative paths below it."""

    space: Space | DatahubSpace
    path: str
    _folders: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, space: Space | DatahubSpace, text: str) -> RemoteFolder:
        return cls(space, parse_folder(text))

    def __str__(self) -> str:
        return f"{self.space}:/{self.path}"

    def target(self, rel: str) -> RemoteTarget:
        """Where the local file at '/'-separated `rel` goes; RefusedName if it cannot go as it is."""
        folder, sep, name = rel.rpartition("/")
        problem = name_problem(name)
        if problem is not None:
            raise RefusedName(f"not sent: its name {problem}")
        if sep and not folder:
            raise RefusedName("not sent: its path has an empty component")
        return RemoteTarget(self.space, self.folder(folder), name)

    def folder(self, rel_folder: str) -> str:
        """The space path of the local folder `rel_folder` ('' = the REMOTE folder itself)."""
        remote = self._folders.get(rel_folder)
        if remote is None:
            for part in rel_folder.split("/") if rel_folder else ():
                problem = name_problem(part)
                if problem is not None:
                    raise RefusedName(f"not sent: the folder name '{display(part)}' {problem}" if part
                                      else "not sent: its path has an empty component")
            remote = join(self.path, rel_folder)
            if len(self._folders) >= 4096:  # bounded: a daemon keeps this for days
                self._folders.clear()
            self._folders[rel_folder] = remote
        return remote

    def path_of(self, rel: str) -> str:
        """The space path of the local file or folder `rel` (RefusedName as `target`)."""
        return self.target(rel).path if rel else self.path

    def child(self, rel_folder: str, name: str) -> str | None:
        """The relative path of entry `name` of a remote listing of `rel_folder`; None for a
        name no local file could map to (hubsync never made it, so it is never deleted)."""
        return None if name_problem(name) is not None else (f"{rel_folder}/{name}" if rel_folder else name)


def part_name(name: str, tag: str) -> str:
    """The hidden name a file is written under until complete: `.NAME.TAG.hubsync-part`.

    `tag` is this agent's own (random, kept in its state dir), so a user's file that ends in
    `.hubsync-part` is never taken for one of ours. A name too long for the 255-byte limit
    keeps a prefix and gets a hash of the whole name instead.
    """
    part = f".{name}.{tag}{PART_SUFFIX}"
    if len(part.encode("utf-8")) <= MAX_NAME_BYTES:
        return part
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    room = MAX_NAME_BYTES - len(f"..~{digest}.{tag}{PART_SUFFIX}".encode())
    prefix = name.encode("utf-8")[:max(0, room)].decode("utf-8", "ignore")
    return f".{prefix}~{digest}.{tag}{PART_SUFFIX}"


def is_part_name(name: str, tag: str) -> bool:
    """Whether `name` is one of this agent's part files (by its tag)."""
    return name.startswith(".") and name.endswith(f".{tag}{PART_SUFFIX}") and len(name) > len(tag) + len(PART_SUFFIX) + 2


def part_path(target: RemoteTarget, tag: str) -> str:
    """The space path of `target`'s part file, beside it."""
    return join(target.folder, part_name(target.name, tag))
