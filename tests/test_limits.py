"""Connections cost the daemon bounded descriptors and log, however many come and however
little they send: each against a real daemon over real sockets, some under a small
RLIMIT_NOFILE so that a few hundred sockets are a flood."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FACTOR, Daemon, nbrelay, wait_for

from nbrelay.connections import connection_limit

NOFILE = 256  # the daemon's descriptor limit where it matters: soft and hard


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Daemons a test starts itself; each must stop cleanly (exit 0) afterwards."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        assert daemon.stop() == 0, daemon.log()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Client sockets, closed after the test."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def connect(daemon: Daemon, sockets: list[socket.socket], data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10 * FACTOR)
    sockets.append(sock)
    sock.sendall(data)
    return sock


def closed_by_daemon(sock: socket.socket) -> bool:
    """Whether the daemon closed ``sock``, reading whatever it sent first; never blocks."""
    sock.setblocking(False)
    try:
        while chunk := sock.recv(65536):
            assert len(chunk) < 65536, "the daemon kept sending"
        return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def soft_nofile(pid: int) -> int:
    limits = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+)", limits, re.MULTILINE)
    assert match, limits
    return int(match[1])


def test_soft_descriptor_limit_is_raised_to_the_hard_one(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Started with a soft RLIMIT_NOFILE below the hard one, the daemon raises it to the hard
    one and says so at debug level."""
    daemon = Daemon(tmp_path)
    daemons.append(daemon.start("--log-level", "debug", prefix=("prlimit", "--nofile=128:512")))
    assert daemon.proc is not None
    assert soft_nofile(daemon.proc.pid) == 512
    assert "descriptor limit raised from 128 to 512" in daemon.log()


def test_idle_connections_exhaust_nothing_and_lock_no_one_out(
    tmp_path: Path, daemons: list[Daemon], sockets: list[socket.socket]
) -> None:
    """Under a 256-descriptor limit, 300 connections that send nothing leave the daemon within
    its descriptors: the ones waiting longest are closed, an open viewer is not, the owner's
    requests are answered at once, and the log gains one line."""
    daemon = Daemon(tmp_path)
    daemons.append(daemon.start(prefix=("prlimit", f"--nofile={NOFILE}:{NOFILE}")))
    limit = connection_limit(1000, NOFILE)
    with daemon.viewer() as viewer:
        viewer.caught_up()
        log_before = daemon.log().splitlines()
        for _ in range(300):
            connect(daemon, sockets)
        for _ in range(3):
            assert daemon.get("api/health").status_code == 200
        wait_for(
            lambda: sum(not closed_by_daemon(s) for s in sockets) <= limit,
            10,
            f"the daemon to hold at most {limit} connections",
        )
        assert viewer.ws.ping().wait(5 * FACTOR)
        log = daemon.log()
    assert "Traceback" not in log and "out of system resource" not in log, log
    new_lines = log.splitlines()[len(log_before) :]  # a line per 5 s of flood
    assert 1 <= len(new_lines) <= 3, log
    assert all("connections at once, the limit" in line for line in new_lines), log


def test_connections_that_keep_the_daemon_waiting_are_closed(
    tmp_path: Path, daemons: list[Daemon], sockets: list[socket.socket]
) -> None:
    """With --request-timeout 1, connections that send nothing, half a request line, half the
    headers, half a WebSocket handshake, a body they never finish, a byte of their next
    request after a response, or their headers a byte at a time are closed within a few
    seconds; a viewer that sends nothing stays open."""
    daemon = Daemon(tmp_path)
    daemons.append(daemon.start("--request-timeout", "1"))
    host = f"Host: 127.0.0.1:{daemon.port}\r\n"
    key = base64.b64encode(os.urandom(16)).decode()
    waiting = [
        connect(daemon, sockets),
        connect(daemon, sockets, b"GET /api/hea"),
        connect(daemon, sockets, f"GET /api/health HTTP/1.1\r\n{host}".encode()),
        connect(
            daemon,
            sockets,
            f"GET /ws/view HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n".encode(),
        ),
        connect(daemon, sockets, f"POST / HTTP/1.1\r\n{host}Content-Length: 9\r\n\r\n".encode()),
    ]
    kept_alive = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10 * FACTOR)
    kept_alive.request("GET", "/static/icon.svg")
    assert kept_alive.getresponse().read()
    assert kept_alive.sock is not None
    sockets.append(kept_alive.sock)
    kept_alive.sock.sendall(b"G")  # uvicorn's keep-alive timeout stops at the first byte
    trickle = connect(daemon, sockets, f"GET / HTTP/1.1\r\n{host}X-Slow: ".encode())
    waiting += [kept_alive.sock, trickle]

    def all_closed() -> bool:
        with contextlib.suppress(OSError):  # once closed
            trickle.send(b"x")  # every poll, so it never stops sending for long
        return all(closed_by_daemon(s) for s in waiting)

    with daemon.viewer() as viewer:
        viewer.caught_up()
        wait_for(all_closed, 4, "the daemon to close the connections that keep it waiting")
        assert viewer.ws.ping().wait(5 * FACTOR)  # the viewer, as idle, is still served
    assert daemon.get("api/health").status_code == 200


def test_accept_errors_are_logged_once_per_interval(
    tmp_path: Path, daemons: list[Daemon], sockets: list[socket.socket]
) -> None:
    """While the daemon is out of descriptors, failed accepts cost one short line per
    interval, the next one saying how many were left out; it serves again once it has
    descriptors."""
    daemon = Daemon(tmp_path)
    daemons.append(daemon.start())
    assert daemon.proc is not None
    pid = daemon.proc.pid
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    # Descriptors taken by something else than connections (here, the limit is lowered):
    # the daemon's connection limit no longer fits, and accepts fail.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use, limits[1]))
    try:
        for _ in range(20):
            connect(daemon, sockets)
        wait_for(
            lambda: "more since the last line like this" in daemon.log(),
            15,
            "a second accept error line, with a count",
        )
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
    log = daemon.log()
    lines = [line for line in log.splitlines() if "out of system resource" in line]
    assert 2 <= len(lines) <= 3 and "Traceback" not in log, log
    assert "Too many open files" in lines[0]
    assert daemon.get("api/health").status_code == 200


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (("--max-connections", "128"), "--max-connections must be above --max-viewers plus"),
        (("--request-timeout", "0"), "--request-timeout must be above 0"),
    ],
)
def test_limits_that_cannot_work_are_refused(
    tmp_path: Path, flags: tuple[str, str], error: str
) -> None:
    """A connection limit that the WebSockets alone could fill, or no time at all for a
    request, is a one-line error at start."""
    out = nbrelay("--port", "0", "--db", str(tmp_path / "db.sqlite3"), *flags, runtime=tmp_path)
    assert out.returncode == 1 and error in out.stderr and "Traceback" not in out.stderr
