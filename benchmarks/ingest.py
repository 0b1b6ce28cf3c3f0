"""Ingest: synthetic kernels (the hook's own Outbox and Sender) push stream messages of 100 B
and 10 kB, with 1 and 8 clients; acknowledged (committed) messages/s and MB/s, against the
ceiling of plain sqlite3 executemany of the same rows into the same schema, measured in the
same run. Also the cost of --durability full, and the daemon's peak memory.

    python benchmarks/ingest.py [--messages 200000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from common import Daemon, machine
from load import peak_rss_mb
from support import header

from nbrelay import protocol
from nbrelay.kernel_hook.outbox import Outbox
from nbrelay.kernel_hook.sender import Sender
from nbrelay.protocol import Hello, now_iso
from nbrelay.runtime import Endpoint
from nbrelay.store import SCHEMA

PARENT = b'{"msg_id": "bench-cell"}'


def content(size: int) -> bytes:
    return json.dumps({"name": "stdout", "text": "x" * (size - 30)}).encode()


def hooks_push(daemon: Daemon, clients: int, messages: int, size: int) -> float:
    """Seconds for ``clients`` hooks to get ``messages`` messages each acknowledged."""
    endpoint = Endpoint(daemon.url, daemon.token)
    body = content(size)
    # Built before the clock starts, as the ceiling's rows are: serialising a message is
    # ipykernel's work, which the kernel does with or without nbrelay.
    headers = [header(f"m{n}", date="2026-01-01T00:00:00Z") for n in range(messages)]
    senders = []
    for c in range(clients):
        outbox = Outbox(limit_bytes=2**31)
        hello = Hello(f"bench{c}-{size}", f"bench{c}-{size}-{time.time()}", None, "b", c, now_iso())
        senders.append((outbox, Sender(outbox, hello, locate=lambda: endpoint)))
    start = time.perf_counter()
    for _, sender in senders:
        sender.start()

    def produce(outbox: Outbox) -> None:
        for h in headers:
            outbox.put(h, PARENT, body)

    producers = [threading.Thread(target=produce, args=(o,)) for o, _ in senders]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    while any(o.stats()["acked"] < messages for o, _ in senders):
        time.sleep(0.005)
    took = time.perf_counter() - start
    for _, sender in senders:
        sender.close(5)
    return took


def ceiling(rows: int, size: int, batch: int = 1000) -> float:
    """Seconds for plain sqlite3 executemany of the same rows, same schema and pragmas."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "ceiling.sqlite3")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        body = json.loads(content(size))
        prepared = [  # the same rows the daemon stores, built before the clock starts
            (
                n + 1,
                "k",
                "stream",
                time.time(),
                protocol.record_body("k", f"m{n}", "stream", "p", "t", body),
            )
            for n in range(rows)
        ]
        start = time.perf_counter()
        for first in range(0, rows, batch):
            db.executemany(
                "INSERT INTO records (seq, kernel_id, msg_type, stored, body) "
                "VALUES (?, ?, ?, ?, ?)",
                prepared[first : first + batch],
            )
            db.commit()
        took = time.perf_counter() - start
        db.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages",
        type=int,
        default=200_000,
        help="per case, all clients (a tenth of it for 10 kB)",
    )
    args = parser.parse_args()
    results = []
    for durability in ("normal", "full"):
        with tempfile.TemporaryDirectory() as tmp:
            daemon = Daemon(Path(tmp)).start("--durability", durability)
            assert daemon.proc is not None
            try:
                for size in (100, 10_000):
                    total = args.messages if size == 100 else args.messages // 10
                    for clients in (1, 8):
                        if durability == "full" and clients == 8:
                            continue
                        took = hooks_push(daemon, clients, total // clients, size)
                        base = ceiling(total, size) if durability == "normal" else None
                        results.append(
                            {
                                "durability": durability,
                                "size": size,
                                "clients": clients,
                                "messages": total,
                                "msgs_per_s": round(total / took),
                                "mb_per_s": round(total * size / took / 1e6, 1),
                                "ceiling_msgs_per_s": round(total / base) if base else None,
                                "share_of_ceiling": round(base / took, 2) if base else None,
                                # over this daemon's cases so far
                                "daemon_peak_rss_mb": round(peak_rss_mb(daemon.proc.pid), 1),
                            }
                        )
                        print(json.dumps(results[-1]), flush=True)
            finally:
                daemon.stop()
    print(json.dumps({"benchmark": "ingest", "machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
