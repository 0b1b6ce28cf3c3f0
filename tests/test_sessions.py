"""Sessions against hostile ingest clients (#20): a token holder who reuses another kernel
process's session, which every record of its start shows, can neither take it for another
kernel nor make the daemon drop that kernel's output without a word."""

from __future__ import annotations

from typing import Any

import pytest
from support import FACTOR, Daemon, stream_batch
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from nbrelay import protocol

HUGE = 2**62


def hello(kernel_id: str, session: str) -> protocol.Hello:
    return protocol.Hello(kernel_id, session, None, "h", 1, "t")


def closed_by(ws: Any) -> Close:
    """How the daemon closed ``ws``: it must do so without a further frame."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(10 * FACTOR)
    assert closed.value.rcvd is not None
    return closed.value.rcvd


def test_a_hello_for_a_session_of_another_kernel_is_refused(daemon: Daemon) -> None:
    """A session belongs to the kernel that opened it: another kernel's hello for it closes
    with 1008 and a reason, and the session goes on as it was."""
    with daemon.ingest(hello("victim", "taken-session")) as ws:
        ws.send(stream_batch([1, 2]))
        assert protocol.decode_ack(ws.recv(10 * FACTOR)) == 2
    with daemon.ingest() as ws:
        ws.send(hello("intruder", "taken-session").encode())
        close = closed_by(ws)
    assert close.code == 1008 and "belongs to another kernel" in close.reason
    assert [k["kernel_id"] for k in daemon.get("api/kernels").json()["kernels"]] == ["victim"]
    with daemon.ingest() as ws:
        ws.send(hello("victim", "taken-session").encode())
        assert protocol.Welcome.decode(ws.recv(10 * FACTOR)).acked == 2
    assert "belongs to another kernel" in daemon.log()


def test_a_second_connection_for_a_session_takes_it_over(daemon: Daemon) -> None:
    """One connection a session: a newer hello for it closes the older connection with 1008
    and a reason (a hook reconnecting after a network failure is not locked out until the
    daemon notices that its old connection is dead), and the daemon logs it."""
    with daemon.ingest(hello("k", "s")) as old:
        old.send(stream_batch([1]))
        assert protocol.decode_ack(old.recv(10 * FACTOR)) == 1
        with daemon.ingest() as new:
            new.send(hello("k", "s").encode())
            assert protocol.Welcome.decode(new.recv(10 * FACTOR)).acked == 1
            close = closed_by(old)
            assert close.code == 1008 and "another connection" in close.reason
            new.send(stream_batch([2]))
            assert protocol.decode_ack(new.recv(10 * FACTOR)) == 2
    assert "takes over session 's'" in daemon.log()


def test_messages_below_what_a_connection_was_told_is_stored_are_reported(
    daemon: Daemon,
) -> None:
    """A hook never sends a number at or below the welcome's acked; one that does (a hook of an
    earlier version, told a spoofed count) has its messages dropped as duplicates, and the
    daemon says so in its log instead of acknowledging them in silence."""
    with daemon.ingest(hello("k", "s")) as ws:
        ws.send(stream_batch([HUGE]))
        assert protocol.decode_ack(ws.recv(10 * FACTOR)) == HUGE
    with daemon.ingest(hello("k", "s")) as ws:
        ws.send(stream_batch([5]))
        assert protocol.decode_ack(ws.recv(10 * FACTOR)) == HUGE
    assert f"numbered 5, at or below the {HUGE}" in daemon.log()
