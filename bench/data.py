"""The bench's data sets, made once per run in a temp dir: sizes for a full and a quick run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Sizes:
    """How big each data set is and how many runs each measurement gets."""

    big: int
    small_count: int
    small_size: int
    medium_count: int
    medium_size: int
    many_count: int
    many_size: int
    runs: int
    files_per_dir: int
    latency_big: int = 512 * MiB  # the latency case's large file (python -m bench --latency-size)
    latency_small_count: int = 1000  # its 4 KiB files (its 1 MiB files are the medium tree)
    scale_count: int = 200_000  # case 9's tree of 8-byte files
    million_count: int = 1_000_000  # case 10's (make bench-scale; python -m bench --scale-files N)


FULL = Sizes(big=2 * GiB, small_count=5000, small_size=4 * KiB, medium_count=200, medium_size=MiB,
             many_count=50_000, many_size=64, runs=3, files_per_dir=500)
QUICK = Sizes(big=256 * MiB, small_count=500, small_size=4 * KiB, medium_count=20, medium_size=MiB,
              many_count=2000, many_size=64, runs=1, files_per_dir=100, latency_big=32 * MiB,
              latency_small_count=100, scale_count=5000, million_count=20_000)


def human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


@dataclass
class Data:
    """Paths of the data sets (each made on first use)."""

    root: Path
    sizes: Sizes

    @property
    def big(self) -> Path:
        return self._file("big", self.sizes.big)

    @property
    def latency_big(self) -> Path:
        return self._file("latency-big", self.sizes.latency_big)

    @property
    def latency_small(self) -> Path:
        return self._tree("latency-small", self.sizes.latency_small_count, self.sizes.small_size, random=True)

    @property
    def small(self) -> Path:
        return self._tree("small", self.sizes.small_count, self.sizes.small_size, random=True)

    @property
    def medium(self) -> Path:
        return self._tree("medium", self.sizes.medium_count, self.sizes.medium_size, random=True)

    @property
    def many(self) -> Path:
        return self._tree("many", self.sizes.many_count, self.sizes.many_size, random=False)

    def scale(self, count: int) -> Path:
        """`count` files of 8 distinct bytes each, 1,000 per folder (made once; kept with the data dir)."""
        return self._tree(f"scale-{count}", count, 8, random=False, per_dir=1000)

    def _file(self, name: str, size: int) -> Path:
        path = self.root / name / "big.bin"
        if not path.exists():
            _random_file(path, size)
        return path

    def _tree(self, name: str, count: int, size: int, *, random: bool, per_dir: int = 0) -> Path:
        """`count` files of `size` bytes in folders of at most files_per_dir (or `per_dir`) files."""
        root = self.root / name
        done = root / ".complete"
        if done.exists():
            return root / "tree"
        per_dir = min(per_dir or self.sizes.files_per_dir, count)
        for i in range(count):
            folder = root / "tree" / f"d{i // per_dir:03d}"
            if i % per_dir == 0:
                folder.mkdir(parents=True, exist_ok=True)
            if random:
                body = os.urandom(size)
            elif size <= 10:  # distinct too: the number itself
                body = f"{i:0{size}d}".encode()[-size:]
            else:  # distinct content per file, so no two files share an md5
                body = (f"file {i:08d} ".encode() * (size // 14 + 1))[:size]
            with open(folder / f"f{i:06d}.bin", "wb") as f:
                f.write(body)
        done.touch()
        return root / "tree"


def _random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n
    tmp.rename(path)
