"""`python -m bench.hash_probe FILE`: time hubsync's pre-send hashing (transfer.hashing.hash_file) in-process."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transfer.hashing import hash_file, stat_file


def main() -> int:
    path = Path(sys.argv[1])
    local = stat_file(path, path.name)
    started = time.perf_counter()
    digest = hash_file(local)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "md5": digest.md5, "bytes": local.size}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
