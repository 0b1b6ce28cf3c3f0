"""Replay: a database with a million records; time to the first record on /ws/view?since=0,
records/s until caught up, and /api/messages paging; the daemon's peak memory meanwhile.

    python benchmarks/replay.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import Daemon, fill, machine
from load import peak_rss_mb
from websockets.sync.client import connect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp)).start()
        try:
            ingest_rate = fill(daemon, "replay", args.records)
            assert daemon.proc is not None
            url = daemon.ws_url(f"ws/view?since=0&token={daemon.token}")
            start = time.perf_counter()
            first = None
            count = 0
            with connect(url, proxy=None, max_size=None) as ws:
                while True:
                    data = json.loads(ws.recv())
                    if first is None:
                        first = time.perf_counter() - start
                    if not isinstance(data, list):
                        break
                    count += len(data)
            ws_took = time.perf_counter() - start
            start = time.perf_counter()
            since, paged = 0, 0
            while page := daemon.get("api/messages", since=since).json()["messages"]:
                paged += len(page)
                since = page[-1]["seq"]
            api_took = time.perf_counter() - start
            peak = peak_rss_mb(daemon.proc.pid)
        finally:
            daemon.stop()
    assert first is not None and count == paged == args.records + 1
    print(
        json.dumps(
            {
                "benchmark": "replay",
                "records": count,
                "first_record_ms": round(first * 1000, 1),
                "ws_records_per_s": round(count / ws_took),
                "api_records_per_s": round(paged / api_took),
                "ingest_records_per_s_while_filling": round(ingest_rate),
                "daemon_peak_rss_mb": round(peak, 1),
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
