"""This agent's random tag, kept in its state dir: it marks the part files only hubsync writes.

A user's file that happens to end in `.hubsync-part` is then an ordinary file (sent, deleted
with --delete like any other), and only names carrying this tag are taken for our own.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

TAG_FILE = "part_tag"
_TAG = re.compile(r"[0-9a-f]{8}")


def load_tag(state_dir: Path) -> str:
    """The tag of the agent using `state_dir`, made (8 random hex digits) on first use. Blocking."""
    path = Path(state_dir) / TAG_FILE
    try:
        tag = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        tag = ""
    if _TAG.fullmatch(tag):
        return tag
    tag = secrets.token_hex(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{TAG_FILE}.{os.getpid()}")
    tmp.write_text(tag + "\n", encoding="ascii")
    try:
        os.link(tmp, path)  # two agents starting at once on one state dir agree on the first tag
    except FileExistsError:
        theirs = path.read_text(encoding="ascii", errors="replace").strip()
        if _TAG.fullmatch(theirs):  # another agent made it meanwhile
            tmp.unlink()
            return theirs
        os.replace(tmp, path)  # there but damaged: ours replaces it
        return tag
    tmp.unlink()
    return tag
