"""State that lasts one run, then is dropped: a long-lived daemon must not keep a one-time decision for weeks.

`Engine.run` makes one per run (a daemon makes one per batch it hands the engine) and hands it
to every destination call of that run. A destination keeps what it learns during the run
(a refused login, a password reset already done, "this platform does not index SFTP uploads")
in its own typed part of the scope, created on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

S = TypeVar("S")


class RunScope:
    """One run's memory: a typed part per owner (a destination), made on first use."""

    def __init__(self) -> None:
        self._parts: dict[tuple[int, type], object] = {}

    def part(self, owner: object, kind: type[S], make: Callable[[], S] | None = None) -> S:
        """`owner`'s part of type `kind` in this run (`make()`, or `kind()`, the first time)."""
        key = (id(owner), kind)
        found = self._parts.get(key)
        if found is None:
            found = self._parts[key] = make() if make is not None else kind()
        return cast(S, found)
