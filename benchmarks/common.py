"""What the benchmarks share: a real daemon in a temp dir, filled through its ingest socket."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import Daemon  # noqa: E402  (the tests' real-daemon harness)

from nbrelay import protocol  # noqa: E402

__all__ = ["Daemon", "fill", "machine"]


def fill(daemon: Daemon, kernel_id: str, count: int, batch: int = 2000) -> float:
    """Store ``count`` one-line stream records for ``kernel_id``; returns records/s."""
    start = time.perf_counter()
    hello = protocol.Hello(kernel_id, kernel_id + "-1", f"{kernel_id}.ipynb", "bench", 1, "t")
    with daemon.ingest(hello) as ws:
        for first in range(1, count + 1, batch):
            entries = [
                protocol.encode_output(
                    n,
                    f"{kernel_id}-{n}",
                    "stream",
                    "cell-1",
                    "2026-01-01T00:00:00Z",
                    json.dumps({"name": "stdout", "text": f"line {n}\n"}),
                )
                for n in range(first, min(first + batch, count + 1))
            ]
            ws.send(protocol.encode_batch(entries))
        acked = 0
        while acked < count:
            acked = json.loads(ws.recv())["acked"]
    return count / (time.perf_counter() - start)


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
