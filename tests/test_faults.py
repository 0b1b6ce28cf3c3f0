"""Faults survived, each against real processes, each judged by the one checker."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from checker import check
from support import FACTOR, Daemon, Kernel, nbrelay, relayed, stream, stream_text, wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def test_daemon_killed_five_times_mid_stream(daemon: Daemon, kernel: Kernel) -> None:
    """SIGKILL and restart the daemon five times while a cell prints 5000 lines: every message
    is stored exactly once, in order."""

    def crash_repeatedly() -> None:
        for threshold in (400, 1200, 2000, 2800, 3600):
            wait_for(lambda t=threshold: daemon.head(kernel.kernel_id) >= t, 30, "output to flow")
            daemon.kill()
            daemon.start()

    # The kernel client stays on this thread (jupyter_client's loops are per thread).
    with ThreadPoolExecutor(1) as pool:
        faults = pool.submit(crash_repeatedly)
        sent = kernel.run_ok(stream(5000, 20), 180)
        faults.result()
    assert daemon.starts == 6
    relayed(daemon, kernel, sent)
    check(sent, daemon.messages())


def test_daemon_absent_when_the_kernel_starts(tmp_path: Path) -> None:
    """Cells run normally with no daemon; the hook says so once, in the kernel's log and not in
    the notebook; once a daemon starts, everything arrives, in order."""
    daemon = Daemon(tmp_path)
    kernel = Kernel(daemon.runtime_dir)
    try:
        loaded = kernel.run_ok("%load_ext nbrelay")
        assert "no daemon runs yet" in stream_text(loaded)
        sent = kernel.run_ok(stream(300, 10))
        warning = "no nbrelay daemon is running"
        wait_for(lambda: warning in kernel.log_path.read_text(), 10, "a warning")
        assert "daemon found" not in stream_text(loaded + sent)
        daemon.start()
        relayed(daemon, kernel, sent)
        check(sent, daemon.messages())
        log = kernel.log_path.read_text()
        assert log.count(warning) == 1, log  # said once, not at every retry
    finally:
        kernel.shutdown()
        if daemon.proc is not None:
            daemon.stop()


def test_viewer_reconnect_storm(daemon: Daemon, kernel: Kernel) -> None:
    """100 viewers connect at random seqs while output flows, read a while and drop; each
    got exactly the contiguous records after its since."""
    kernel.run_ok("print('warm up')")
    rng = random.Random(5)
    seen: list[tuple[int, list[dict[str, Any]]]] = []

    def storm() -> None:
        url = daemon.ws_url(f"ws/view?token={daemon.token}")
        for _ in range(100):
            since = rng.randint(0, daemon.head())
            received: list[dict[str, Any]] = []
            with connect(f"{url}&since={since}", proxy=None, max_size=None) as ws:
                live = False
                for _ in range(rng.randint(1, 4)):  # a few frames, then drop the connection
                    try:  # once caught up, frames come only as the kernel prints
                        data = json.loads(ws.recv(0.1 if live else 10 * FACTOR))
                    except TimeoutError:
                        break
                    if isinstance(data, list):
                        received.extend(data)
                    else:
                        live = data["type"] == "caught_up"
            seen.append((since, received))

    with ThreadPoolExecutor(1) as pool:
        storming = pool.submit(storm)
        sent = kernel.run_ok(stream(4000, 10), 120)
        storming.result()
    relayed(daemon, kernel, sent)
    assert len(seen) == 100 and sum(len(r) for _, r in seen) > 100
    check(sent, daemon.messages(), seen)


def test_kernel_restart_keeps_history_and_marks_it(daemon: Daemon, kernel: Kernel) -> None:
    """A restart (same kernel id, new process, numbering from 1 again) is stored after the old
    history, which stays readable, with a start record where the restart happened."""
    before = kernel.run_ok("print('before the restart')")
    # As Jupyter restarts: a shutdown request first; the hook delivers what it holds at exit.
    kernel.km.restart_kernel(now=False)
    kernel.kc.wait_for_ready(timeout=60 * FACTOR)
    kernel.run_ok("%load_ext nbrelay")
    after = kernel.run_ok("print('after the restart')")
    relayed(daemon, kernel, after)
    stored = daemon.messages(kernel_id=kernel.kernel_id)
    check(before + after, stored)
    starts = [i for i, r in enumerate(stored) if r["msg_type"] == "nbrelay.start"]
    assert len(starts) == 2
    first, second = (stored[i]["content"] for i in starts)
    assert first["session"] != second["session"] and first["pid"] != second["pid"]
    ids = [r["msg_id"] for r in stored]
    assert starts[1] > ids.index(before[-1]["header"]["msg_id"])  # the marker sits between
    assert starts[1] < ids.index(after[0]["header"]["msg_id"])
    # The old process said it exited; the new one's state is what shows.
    (info,) = [k for k in daemon.get("api/kernels").json()["kernels"] if k["connected"]]
    assert info["kernel_id"] == kernel.kernel_id and info["execution_state"] == "idle"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, to fill up on purpose (needs root, as in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_stops_acks_and_nothing_is_lost(tmp_path: Path, small_disk: Path) -> None:
    """With the disk full the daemon stops acknowledging and says so in its log and API; the
    hook keeps its buffer; once there is room again, everything is stored exactly once."""
    daemon = Daemon(tmp_path)
    daemon.db = small_disk / "nbrelay.sqlite3"
    daemon.start()
    kernel = Kernel(daemon.runtime_dir)
    try:
        kernel.run_ok("%load_ext nbrelay")
        sent = kernel.run_ok(stream(3000, 500), 120)  # about 1.5 MB
        wait_for(lambda: "storage is failing" in daemon.log(), 30, "the failure in the log")
        health = wait_for(  # one response: the state can flip between two requests
            lambda: (response := daemon.get("api/health")).status_code == 503 and response,
            30,
            "the daemon to report the full disk in its API",
        ).json()
        assert health["storage"] == "failing" and health["error"], (health, daemon.log())
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        relayed(daemon, kernel, sent)
        check(sent, daemon.messages())
        assert daemon.get("api/health").json()["storage"] == "ok"
        assert "storage works again" in daemon.log()
    finally:
        kernel.shutdown()
        daemon.stop()


@pytest.mark.parametrize("kind", ["garbage", "foreign"])
def test_unusable_database_is_refused_and_left_untouched(tmp_path: Path, kind: str) -> None:
    """A corrupt file, or another program's SQLite database, as --db: a clear error at start,
    and the file is byte for byte what it was."""
    db = tmp_path / "data.db"
    if kind == "garbage":
        db.write_bytes(os.urandom(8192))
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
            conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
        conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    out = nbrelay("--port", "0", "--db", str(db), runtime=tmp_path)
    assert out.returncode == 1
    assert str(db) in out.stderr and "left untouched" in out.stderr
    assert "Traceback" not in out.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("data.db")) == ["data.db"]


def test_sigterm_commits_acks_closes_viewers_and_cleans_up(daemon: Daemon, kernel: Kernel) -> None:
    """SIGTERM mid-stream: viewers are closed with 1001, the process exits 0 within seconds,
    its runtime file is gone, and after a restart nothing the kernel sent is missing or doubled."""
    url = daemon.ws_url(f"ws/view?token={daemon.token}")
    with connect(url, proxy=None, max_size=None) as viewer:
        running = kernel.kc.execute(stream(2000, 10))
        wait_for(lambda: daemon.head(kernel.kernel_id) > 300, 30, "output to flow")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(10 * FACTOR) == 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                viewer.recv(10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert not daemon.runtime_file.exists()
    daemon.start()
    sent = kernel.collect(running, 120)
    relayed(daemon, kernel, sent)
    check(sent, daemon.messages())


def test_second_daemon_on_the_same_database_refuses(daemon: Daemon) -> None:
    """A second daemon on the same database stops with a message naming the first."""
    out = nbrelay("--port", "0", "--db", str(daemon.db), runtime=daemon.workdir / "other")
    assert out.returncode == 1
    assert f"pid {daemon.proc.pid}" in out.stderr and daemon.url in out.stderr  # type: ignore[union-attr]
    assert daemon.get("api/kernels").status_code == 200
