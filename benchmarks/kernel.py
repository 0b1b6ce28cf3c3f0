"""Kernel overhead and latency, with real kernels started through jupyter_client.

Overhead: the same cells, (a) 200,000 plain prints and (b) 20,000 prints with flush=True (one
IOPub message each), timed from execute to idle, in a kernel without nbrelay, one with
``%load_ext nbrelay``, and one mirroring stdout to a log file through ipykernel's
``OutStream.echo`` (what people paste today), alternating runs.

Latency: a kernel prints a line every 2 ms; viewers on /ws/view note when each record
arrives, against the time the kernel put in the message header. With 1 and with 20 viewers.

    python benchmarks/kernel.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from common import Daemon, machine
from support import Kernel
from websockets.sync.client import connect

CELLS = {
    "print x200000": "for i in range(200000): print(i)",
    "print(flush=True) x20000": "for i in range(20000): print(i, flush=True)",
}


def timed(kernel: Kernel, code: str) -> float:
    start = time.perf_counter()
    kernel.run_ok(code, timeout=300)
    return time.perf_counter() - start


def overhead(daemon: Daemon, runs: int) -> dict[str, dict[str, float]]:
    plain, relayed, echoed = (Kernel(daemon.runtime_dir) for _ in range(3))
    try:
        relayed.run_ok("%load_ext nbrelay")
        echoed.run_ok("import sys, tempfile\nsys.stdout.echo = tempfile.TemporaryFile('w')")
        results = {}
        for name, code in CELLS.items():
            times: dict[str, list[float]] = {"plain": [], "nbrelay": [], "echo to file": []}
            for _ in range(runs):  # alternate, so drift hits all three alike
                for label, kernel in (
                    ("plain", plain),
                    ("nbrelay", relayed),
                    ("echo to file", echoed),
                ):
                    times[label].append(timed(kernel, code))
            base = statistics.median(times["plain"])
            results[name] = {
                label: round(statistics.median(t) / base - 1, 3) for label, t in times.items()
            } | {"plain_s": round(base, 3)}
        return results
    finally:
        for k in (plain, relayed, echoed):
            k.shutdown()


def latency(daemon: Daemon, viewers: int, lines: int = 1000) -> dict[str, float]:
    kernel = Kernel(daemon.runtime_dir)
    lags: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    ready = threading.Barrier(viewers + 1, timeout=60)

    def watch() -> None:
        head = daemon.head()
        url = daemon.ws_url(f"ws/view?since={head}&token={daemon.token}")
        with connect(url, proxy=None, max_size=None) as ws:
            ready.wait()
            while not stop.is_set():
                try:
                    frame = ws.recv(0.5)
                except TimeoutError:
                    continue
                now = time.time()  # before parsing: the lag is the daemon's, not ours
                data = json.loads(frame)
                if isinstance(data, list):
                    sent = [
                        datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
                        for r in data
                        if r["msg_type"] == "stream"
                    ]
                    with lock:
                        lags.extend(now - t for t in sent)

    try:
        kernel.run_ok("%load_ext nbrelay")
        threads = [threading.Thread(target=watch) for _ in range(viewers)]
        for t in threads:
            t.start()
        ready.wait()
        kernel.run_ok(
            f"import time\nfor i in range({lines}):\n    print(i, flush=True); time.sleep(0.002)"
        )
        deadline = time.monotonic() + 30
        while len(lags) < lines * viewers and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
    finally:
        kernel.shutdown()
    lags.sort()
    return {
        "viewers": viewers,
        "p50_ms": round(1000 * lags[len(lags) // 2], 2),
        "p99_ms": round(1000 * lags[int(len(lags) * 0.99)], 2),
        "samples": len(lags),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp)).start()
        try:
            result = {
                "benchmark": "kernel overhead (slowdown vs plain) and latency",
                "overhead": overhead(daemon, args.runs),
                "latency": [latency(daemon, n, args.lines) for n in (1, 20)],
                "machine": machine(),
            }
        finally:
            daemon.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
