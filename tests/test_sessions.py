"""Sessions against hostile ingest clients (#20): a token holder who reuses another kernel
process's session, which every record of its start shows, can neither take it for another
kernel nor make the daemon drop that kernel's output without a word."""

from __future__ import annotations

from typing import Any

import pytest
from support import FACTOR, Daemon, Kernel, assert_relayed, relayed, stream_batch, wait_for
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


def spoof(daemon: Daemon, kernel_id: str, session: str) -> None:
    """Take ``session`` over and claim that its messages up to HUGE are stored. The kernel's
    hook takes it back as soon as it reconnects: try until a claim is acknowledged."""

    def claimed() -> bool:
        try:
            with daemon.ingest(hello(kernel_id, session)) as ws:
                ws.send(stream_batch([HUGE], "spoofed"))
                return protocol.decode_ack(ws.recv(10 * FACTOR)) == HUGE
        except ConnectionClosed:
            return False

    wait_for(claimed, 10, "a spoofed claim to be acknowledged")


def test_a_spoofed_session_does_not_swallow_the_kernels_output(
    daemon: Daemon, kernel: Kernel
) -> None:
    """After another client claimed the kernel's session with a huge message number, the
    kernel's later output is still stored, exactly once and in order: its hook, told that more
    is stored than it ever sent, says so in the kernel's log and goes on under a new session,
    which it keeps across a reload of the extension."""
    relayed(daemon, kernel, kernel.run_ok("print('before')"))
    (start,) = [
        r for r in daemon.messages(kernel_id=kernel.kernel_id) if r["msg_type"] == "nbrelay.start"
    ]
    session = start["content"]["session"]
    spoof(daemon, kernel.kernel_id, session)
    assert_relayed(daemon, kernel, kernel.run_ok("print('after the spoof')"))
    log = kernel.log_path.read_text()
    assert f"counts {HUGE} messages of session {session} as stored" in log
    kernel.run_ok("%unload_ext nbrelay")
    kernel.run_ok("%load_ext nbrelay")
    assert_relayed(daemon, kernel, kernel.run_ok("print('after a reload')"))
    records = daemon.messages(kernel_id=kernel.kernel_id)
    starts = [r["content"]["session"] for r in records if r["msg_type"] == "nbrelay.start"]
    assert len(starts) == 2 and starts[0] == session  # one new session, kept by the reload
    assert "another client has used this session" in daemon.log()
    texts = [r["content"].get("text") for r in records if r["msg_type"] == "stream"]
    assert texts.count("after the spoof\n") == 1 and texts.count("after a reload\n") == 1
