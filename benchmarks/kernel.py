"""Kernel overhead and latency, with real kernels started through jupyter_client.

Overhead: the same cells, (a) 200,000 plain prints and (b) 20,000 prints with flush=True (one
IOPub message each), timed from execute to idle, in a kernel without nbrelay, one with
``%load_ext nbrelay``, and one mirroring stdout to a log file through ipykernel's
``OutStream.echo`` (what people paste today); several kernels of each, in shuffled order,
with a second group of plain kernels as the control. With ``--pin`` (Linux), every kernel runs
on CPU 0 and the daemon and this process on the others: on a small virtual machine, where
the threads of an unpinned kernel land on different CPUs, waking each other across CPUs
dominates a flushed-print loop, and any other activity on the machine moves it (see
docs/benchmarks.md).

Latency: a kernel prints a line every 2 ms; viewers on /ws/view note when each record
arrives, against the time the kernel put in the message header. With 1 and with 20 viewers;
and with 1 viewer, a line every 50 ms (output now and then, as most cells print).

    python benchmarks/kernel.py [--kernels 6] [--runs 2] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from common import Daemon, machine
from support import Kernel
from websockets.asyncio.client import connect

CELLS = {
    "print x200000": "for i in range(200000): print(i)",
    "print(flush=True) x20000": "for i in range(20000): print(i, flush=True)",
}


def timed(kernel: Kernel, code: str) -> float:
    start = time.perf_counter()
    kernel.run_ok(code, timeout=300)
    return time.perf_counter() - start


VARIANTS = {  # the cells that set a kernel up
    "plain": [],
    "plain (control)": [],
    "nbrelay": ["%load_ext nbrelay"],
    "echo to file": ["import sys, tempfile\nsys.stdout.echo = tempfile.TemporaryFile('w')"],
}


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process onto ``cpus``; threads it starts later inherit that."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), cpus)


def overhead(
    daemon: Daemon, kernels: int, runs: int, pinned: bool = False
) -> dict[str, dict[str, float]]:
    """Slowdown of each variant against the plain kernels: median of all its timings.

    Two identical kernels on this kind of machine differ by up to 10 % for a whole run, so
    each variant gets several kernels, and a second group of plain kernels is measured like
    the others: its figure is what the method cannot tell apart from zero. Every round runs
    all kernels in a new shuffled order, so that no variant always runs first or after
    another."""
    everywhere = os.sched_getaffinity(0)
    pool = [(label, Kernel(daemon.runtime_dir)) for _ in range(kernels) for label in VARIANTS]
    try:
        for label, kernel in pool:
            for cell in VARIANTS[label]:
                kernel.run_ok(cell)
            if pinned:
                pin(kernel.km.provisioner.process.pid, {0})
        if pinned:
            assert daemon.proc is not None
            others = everywhere - {0}
            pin(os.getpid(), others)
            pin(daemon.proc.pid, others)
        results = {}
        for name, code in CELLS.items():
            times: dict[str, list[float]] = {label: [] for label in VARIANTS}
            for _ in range(runs):
                order = pool[:]
                random.shuffle(order)
                for label, kernel in order:
                    times[label].append(timed(kernel, code))
            base = statistics.median(times["plain"])
            results[name] = {
                label: round(statistics.median(t) / base - 1, 3)
                for label, t in times.items()
                if label != "plain"
            } | {"plain_s": round(base, 3), "timings_per_variant": kernels * runs}
        return results
    finally:
        for _, kernel in pool:
            kernel.shutdown()
        if pinned:  # the latency benchmark runs as a kernel would
            pin(os.getpid(), everywhere)
            pin(daemon.proc.pid, everywhere)


def latency(
    daemon: Daemon, viewers: int, lines: int = 1000, every: float = 0.002
) -> dict[str, float]:
    """A line printed every ``every`` seconds. The viewers are one asyncio loop in a thread of
    their own: each frame is stamped on arrival, and parsed after the run, so that the figure
    is the daemon's, not this process's (a thread per viewer would measure Python's GIL)."""
    kernel = Kernel(daemon.runtime_dir)
    arrivals: list[tuple[float, str]] = []
    ready = threading.Event()
    stop = threading.Event()

    async def watch(url: str, connected: asyncio.Queue[None]) -> None:
        async with connect(url, proxy=None, max_size=None) as ws:
            await connected.put(None)
            async for frame in ws:
                arrivals.append((time.time(), str(frame)))

    async def watch_all() -> None:
        url = daemon.ws_url(f"ws/view?since={daemon.head()}&token={daemon.token}")
        connected: asyncio.Queue[None] = asyncio.Queue()
        tasks = [asyncio.create_task(watch(url, connected)) for _ in range(viewers)]
        for _ in range(viewers):
            await connected.get()
        ready.set()
        await asyncio.to_thread(stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    loop = threading.Thread(target=asyncio.run, args=(watch_all(),))
    try:
        kernel.run_ok("%load_ext nbrelay")
        loop.start()
        ready.wait(60)
        kernel.run_ok(
            f"import time\nfor i in range({lines}):\n    print(i, flush=True); time.sleep({every})"
        )
        deadline = time.monotonic() + 30
        while (
            sum(f.count('"msg_type":"stream"') for _, f in arrivals) < lines * viewers
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join()
        kernel.shutdown()
    lags = sorted(
        now - datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
        for now, frame in arrivals
        if isinstance(records := json.loads(frame), list)
        for r in records
        if r["msg_type"] == "stream"
    )
    return {
        "viewers": viewers,
        "every_ms": every * 1000,
        "p50_ms": round(1000 * lags[len(lags) // 2], 2),
        "p99_ms": round(1000 * lags[int(len(lags) * 0.99)], 2),
        "samples": len(lags),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=6, help="kernels per variant")
    parser.add_argument("--runs", type=int, default=2, help="timings per kernel and cell")
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--pin", action="store_true", help="kernels on CPU 0, the rest apart")
    args = parser.parse_args()
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin needs at least two CPUs: one for the kernels, one for the rest")
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp)).start()
        try:
            result = {
                "benchmark": "kernel overhead (slowdown vs plain) and latency",
                "overhead": overhead(daemon, args.kernels, args.runs, args.pin),
                "pinned": args.pin,
                "latency": [latency(daemon, n, args.lines) for n in (1, 20)]
                + [latency(daemon, 1, args.lines // 5, every=0.05)],  # output now and then
                "machine": machine(),
            }
        finally:
            daemon.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
