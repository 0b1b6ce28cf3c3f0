"""A bounded load on a real daemon: many kernels (the hook's own Outbox and Sender), many
viewers, some of them deliberately slow. Used by tests/test_load.py (briefly) and
benchmarks/load.py (for a minute, with figures).

Viewers check what they receive as it arrives, in constant memory: seqs must follow each
other with no gap or repeat, and each kernel's messages must come in their numbering order.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from support import Daemon, header
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from nbrelay.kernel_hook.outbox import Outbox
from nbrelay.kernel_hook.sender import Sender
from nbrelay.protocol import Hello, now_iso
from nbrelay.runtime import Endpoint

PARENT = b'{"msg_id": "load-cell"}'


@dataclass
class Viewer:
    slow: bool
    last_seq: int = 0
    records: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    next_n: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    seconds: float
    sent: int
    stored_per_s: float
    peak_rss_mb: float
    fast_lag_p50_ms: float
    fast_lag_p99_ms: float
    slow_behind_at_end: int  # records the slowest viewer still had to read when ingest ended
    viewers: list[Viewer]


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far, as Linux keeps it (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _watch(daemon: Daemon, viewer: Viewer, stop: threading.Event) -> None:
    """Follow the daemon like the viewer page does: on any disconnect (a slow viewer may miss
    the daemon's keepalive pings and be dropped), reconnect after the last seq received."""
    base = daemon.ws_url(f"ws/view?token={daemon.token}")
    while not stop.is_set():
        try:
            with connect(
                f"{base}&since={viewer.last_seq}", proxy=None, max_size=None, max_queue=2
            ) as ws:
                _read(ws, viewer, stop)
        except (ConnectionClosed, OSError):
            viewer.reconnects += 1


def _read(ws: Any, viewer: Viewer, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            data = json.loads(ws.recv(0.5))
        except TimeoutError:
            continue
        if not isinstance(data, list):
            continue
        now = time.time()
        for record in data:
            if record["seq"] != viewer.last_seq + 1:
                viewer.errors.append(f"seq {record['seq']} after {viewer.last_seq}")
            viewer.last_seq = record["seq"]
            viewer.records += 1
            if record["msg_type"] == "stream":
                kernel, n = record["msg_id"].rsplit("-", 1)
                expected = viewer.next_n.get(kernel, 1)
                if int(n) != expected:
                    viewer.errors.append(f"{kernel}: message {n} where {expected} was due")
                viewer.next_n[kernel] = int(n) + 1
                if not viewer.slow:
                    viewer.lags.append(now - record["content"]["sent"])
            elif record["msg_type"] != "nbrelay.start":
                viewer.errors.append(f"unexpected {record['msg_type']}")
        if viewer.slow:
            stop.wait(0.2)  # a viewer on a bad link: it reads a frame, then dawdles


def run(
    daemon: Daemon, kernels: int, viewers: int, slow: int, seconds: float, rate: int = 400
) -> Report:
    """``kernels`` hooks each send ``rate`` messages/s for ``seconds`` while ``viewers``
    follow (``slow`` of them slowly); returns once every message is acknowledged and every
    fast viewer has caught up."""
    assert daemon.proc is not None
    endpoint = Endpoint(daemon.url, daemon.token)
    watchers = [Viewer(slow=i < slow) for i in range(viewers)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_watch, args=(daemon, v, stop), daemon=True) for v in watchers
    ]
    for t in threads:
        t.start()
    hooks = []
    for k in range(kernels):
        outbox = Outbox(limit_bytes=512 * 2**20)
        hello = Hello(f"load{k}", f"load{k}-session", f"load{k}.ipynb", "bench", k, now_iso())
        sender = Sender(outbox, hello, locate=lambda: endpoint)
        sender.start()
        hooks.append((outbox, sender))
    sent = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) + 1
        for k, (outbox, _) in enumerate(hooks):
            for n in range(outbox.stats()["captured"] + 1, due + 1):
                content = json.dumps(
                    {"name": "stdout", "text": f"kernel {k} line {n}\n", "sent": time.time()}
                ).encode()
                outbox.put(header(f"load{k}-{n}"), PARENT, content)
                sent += 1
        time.sleep(0.01)  # pacing the producers, not synchronising on anything
    deadline = time.monotonic() + 60
    while any(o.stats()["pending"] for o, _ in hooks):
        assert time.monotonic() < deadline, "ingest was not all acknowledged within 60 s"
        time.sleep(0.05)
    took = time.monotonic() - start
    head = daemon.head()
    slow_behind = max((head - v.last_seq for v in watchers if v.slow), default=0)
    deadline = time.monotonic() + 60
    while any(v.last_seq < head for v in watchers if not v.slow) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for _, sender in hooks:
        sender.close(5)
    for t in threads:
        t.join(10)
    lags = sorted(lag for v in watchers if not v.slow for lag in v.lags) or [0.0]
    return Report(
        seconds=took,
        sent=sent,
        stored_per_s=sent / took,
        peak_rss_mb=peak_rss_mb(daemon.proc.pid),
        fast_lag_p50_ms=1000 * lags[len(lags) // 2],
        fast_lag_p99_ms=1000 * lags[int(len(lags) * 0.99)],
        slow_behind_at_end=slow_behind,
        viewers=watchers,
    )


def summary(report: Report) -> dict[str, Any]:
    return {
        k: round(v, 1) if isinstance(v, float) else v
        for k, v in report.__dict__.items()
        if k != "viewers"
    }
