"""Whether a delete pass may run: a source that looks empty must never empty a remote.

product.md: a source folder that is empty, missing, or a mount point whose file system is not
mounted deletes nothing; nor does one on another file system than at the last good pass, nor a
pass that would delete more than the limit. Every check runs at every pass (a disk can go away
while a daemon runs). The parsers are pure; `source_refusal` does the blocking reads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

FSTAB = Path("/etc/fstab")
MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """fstab and mountinfo write a space as \\040 (and tab, newline, backslash likewise)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def fstab_mount_points(text: str) -> list[str]:
    """The mount points /etc/fstab lists (swap and comments left out)."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("#"):
            continue
        point = _unescape(fields[1])
        if point.startswith("/") and (len(fields) < 3 or fields[2] != "swap"):
            points.append(os.path.normpath(point))
    return points


def mounted_points(mountinfo: str) -> set[str]:
    """The mount points of /proc/self/mountinfo (its fifth field)."""
    return {os.path.normpath(_unescape(f[4])) for f in (line.split() for line in mountinfo.splitlines()) if len(f) > 4}


def unmounted_fstab_point(source: str, fstab: str, mountinfo: str) -> str | None:
    """The fstab mount point holding `source` (a real path) that is not mounted, if any."""
    holding = [p for p in fstab_mount_points(fstab) if p != "/" and (source == p or source.startswith(p + "/"))]
    if not holding:
        return None
    point = max(holding, key=len)  # the nearest one decides
    return None if point in mounted_points(mountinfo) else point


def count_refusal(deletes: int, remote_files: int, max_delete: int | None, what: str = "--max-delete") -> str | None:
    """Why deleting `deletes` of `remote_files` is refused; without a limit, more than half is."""
    if max_delete is None:
        if deletes * 2 > remote_files and deletes > 0:
            return (f"{deletes} of the remote's {remote_files} files would go (more than half);"
                    f" nothing was deleted: pass {what} N to allow it")
        return None
    if deletes > max_delete:
        return f"{deletes} remote files would go, more than {what} {max_delete}; nothing was deleted"
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def source_refusal(root: Path, recorded_device: int | None, *, fstab: Path = FSTAB,
                   mountinfo: Path = MOUNTINFO) -> tuple[str | None, int | None]:
    """(why deletes are refused or None, the source's device now). Blocking: run in a thread."""
    try:
        st = os.stat(root)
    except OSError as exc:
        return f"the source {root} is missing ({exc.strerror})", None
    real = os.path.realpath(root)
    point = unmounted_fstab_point(real, _read(fstab), _read(mountinfo))
    if point is not None:
        return f"the source {root} is on {point}, listed in /etc/fstab but not mounted", st.st_dev
    if recorded_device is not None and st.st_dev != recorded_device:
        return (f"the source {root} is on another file system than at the last good pass (unmounted?);"
                " if it moved on purpose, run once without --delete to record the new one"), st.st_dev
    if os.path.isdir(root):
        with os.scandir(root) as entries:
            if next(entries, None) is None:
                return f"the source {root} is empty", st.st_dev
    return None, st.st_dev
