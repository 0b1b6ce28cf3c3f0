"""The delivery contract: every message a kernel sent is stored exactly once, in order,
through daemon crashes and absences; replay from any seq is exact and joins live output
without a gap or a duplicate."""

from __future__ import annotations

import json
import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from support import (
    CAPTURED,
    FACTOR,
    Daemon,
    Kernel,
    as_record,
    comparable,
    header,
    relayed,
    stream,
    stream_batch,
    wait_for,
)
from websockets.sync.client import connect

from nbrelay import protocol
from nbrelay.kernel_hook.outbox import Outbox
from nbrelay.kernel_hook.sender import Sender
from nbrelay.runtime import Endpoint


def test_buffer_overflow_leaves_an_explicit_gap(tmp_path: Path) -> None:
    """With the daemon away and the buffer full, the oldest output goes; a gap record says so."""
    daemon = Daemon(tmp_path)
    kernel = Kernel(daemon.runtime_dir, {"NBRELAY_BUFFER_BYTES": "30000"})
    try:
        loaded = kernel.run_ok("%load_ext nbrelay")
        msgs = kernel.run_ok("for i in range(400): print(i, flush=True)")
        daemon.start()
        # What the hook captured: from its own "relaying" line on, then the whole second cell.
        first = next(i for i, m in enumerate(loaded) if m["msg_type"] == "stream")
        captured = [as_record(m) for m in loaded[first:] + msgs if m["msg_type"] in CAPTURED]
        last_id = captured[-1]["msg_id"]
        wait_for(
            lambda: any(
                r["msg_id"] == last_id for r in daemon.messages(kernel_id=kernel.kernel_id)
            ),
            20,
            "the newest output",
        )
        records = daemon.messages(kernel_id=kernel.kernel_id)
        assert [r["msg_type"] for r in records[:2]] == ["nbrelay.start", "nbrelay.gap"]
        gap, kept = records[1]["content"], records[2:]
        assert gap["first_n"] == 1 and gap["dropped"] == gap["last_n"] > 0
        assert gap["dropped"] + len(kept) == len(captured)
        assert [comparable(r) for r in kept] == captured[gap["dropped"] :]
    finally:
        kernel.shutdown()
        if daemon.proc is not None:
            daemon.stop()


def test_replay_from_any_seq_joins_live_output_exactly(daemon: Daemon, kernel: Kernel) -> None:
    """Viewers connecting at random seqs while output flows get exactly the records after it."""
    kernel.run_ok("print('warm up')")
    rng = random.Random(7)

    def connect_viewers() -> list[tuple[int, Any]]:
        viewers = []
        first = daemon.head()
        for threshold in (50, 300, 600, 900, 1200):  # connect at different points of the stream
            wait_for(lambda t=threshold: daemon.head() >= first + t, 20, "more output")
            since = rng.randint(0, daemon.head())
            context = daemon.viewer(since=since)
            viewers.append((since, context, context.__enter__()))
        return viewers

    with ThreadPoolExecutor(1) as pool:
        connecting = pool.submit(connect_viewers)
        msgs = kernel.run_ok(stream(1500), 120)
        viewers = connecting.result()
    relayed(daemon, kernel, msgs)
    everything = daemon.messages()
    final = everything[-1]["seq"]
    for since, context, viewer in viewers:
        viewer.until(lambda v: bool(v.records) and v.records[-1]["seq"] >= final)
        viewer.caught_up()
        context.__exit__(None, None, None)
        assert viewer.records == [r for r in everything if r["seq"] > since]


def test_viewer_filtered_by_kernel(daemon: Daemon, kernel_factory: Any) -> None:
    """kernel_id= limits replay and live records to that kernel."""
    a, b = kernel_factory(), kernel_factory()
    for k in (a, b):
        k.run_ok("%load_ext nbrelay")
    with daemon.viewer(kernel_id=a.kernel_id) as viewer:
        viewer.caught_up()
        msgs = a.run_ok("print('from a')")
        b.run_ok("print('from b')")
        last = msgs[-1]["header"]["msg_id"]
        viewer.until(lambda v: any(r["msg_id"] == last for r in v.records))
    assert {r["kernel_id"] for r in viewer.records} == {a.kernel_id}
    assert viewer.records == daemon.messages(kernel_id=a.kernel_id)


def test_acks_for_back_to_back_batches_are_combined_and_the_last_one_comes(
    daemon: Daemon,
) -> None:
    """Each ack wakes two threads in the kernel, so batches sent back to back share acks;
    the last batch is still acknowledged, with no further frame to prompt it."""
    hello = protocol.Hello("paced-kernel", "paced-session", None, "h", 1, "t")
    with daemon.ingest(hello) as ws:
        for n in range(1, 51):
            ws.send(stream_batch([n]))
        acks = [json.loads(ws.recv(10 * FACTOR))["acked"]]
        while acks[-1] < 50:
            acks.append(json.loads(ws.recv(10 * FACTOR))["acked"])
    assert acks == sorted(acks) and len(acks) < 50


def test_daemon_drops_resends_and_records_gaps(daemon: Daemon) -> None:
    """The daemon's half of the contract, spoken directly: resends are ignored, jumps recorded."""
    hello = protocol.Hello("raw-kernel", "raw-session", None, "h", 1, "t").encode()
    with daemon.ingest() as ws:
        ws.send(hello)
        assert json.loads(ws.recv(10))["acked"] == 0
        ws.send(stream_batch([1, 2, 3]))
        assert json.loads(ws.recv(10)) == {"type": "ack", "acked": 3}
    with daemon.ingest() as ws:  # a reconnect resends from an older point
        ws.send(hello)
        assert json.loads(ws.recv(10))["acked"] == 3
        ws.send(stream_batch([2, 3, 4]))
        assert json.loads(ws.recv(10))["acked"] == 4
        ws.send(stream_batch([7]))
        assert json.loads(ws.recv(10))["acked"] == 7
    records = daemon.messages(kernel_id="raw-kernel")
    assert [r["msg_id"] for r in records] == [
        "raw-session:start",
        "m1",
        "m2",
        "m3",
        "m4",
        "raw-session:gap:5",
        "m7",
    ]
    assert records[5]["content"]["dropped"] == 2


def test_a_message_with_an_unreadable_header_is_a_gap_and_the_rest_arrives(
    daemon: Daemon,
) -> None:
    """The sender reads headers (the tap only finds the type): one it cannot read, e.g. with
    no msg_id, is skipped there, not sent to be refused, and the daemon records its number
    as a gap. A parent header it cannot read is no parent."""
    outbox = Outbox(limit_bytes=2**20)
    hello = protocol.Hello("odd-kernel", "odd-session", None, "h", 1, protocol.now_iso())
    content = b'{"name": "stdout", "text": "x\\n"}'
    outbox.put(header("first"), b"{}", content)
    outbox.put(b'{"msg_type": "stream", "date": "2026-01-01T00:00:00Z"}', b"{}", content)
    outbox.put(header("third"), b"{}", content)
    outbox.put(header("fourth"), b"not json", content)  # this ended the sender thread
    sender = Sender(outbox, hello, locate=lambda: Endpoint(daemon.url, daemon.token))
    sender.start()
    assert sender.close(10 * FACTOR)  # everything acknowledged
    records = daemon.messages(kernel_id="odd-kernel")
    assert [(r["msg_id"], r["parent_msg_id"]) for r in records] == [
        ("odd-session:start", None),
        ("first", None),
        ("odd-session:gap:2", None),
        ("third", None),
        ("fourth", None),
    ]


def test_headers_arrive_as_they_were_whatever_their_form(daemon: Daemon) -> None:
    """The sender takes msg_id, msg_type and date from ipykernel's header as they stand in its
    JSON (with jupyter_client's json packer or the compact form of orjson), and parses any
    other header: escapes, other text, another key order. Every form arrives the same."""
    cases = [  # (msg_id, msg_type, username, json.dumps arguments)
        ("plain", "stream", "u", {}),
        ("compact", "stream", "u", {"separators": (",", ":")}),
        ("error", "error", "u", {}),
        ("caf\u00e9 \u2615", "stream", "u", {"ensure_ascii": False}),
        ("ascii caf\u00e9", "stream", "u", {"ensure_ascii": True}),
        ('quote"d', "stream", "u", {}),
        ("tab\t", "stream", "u", {}),
        ("user", "stream", 'a"b', {}),
        ("escaped type", "stream", "u", {}),
        ("reordered", "stream", "u", {}),
    ]
    outbox = Outbox(limit_bytes=2**20)
    hello = protocol.Hello("forms", "forms-session", None, "h", 1, protocol.now_iso())
    for n, (msg_id, msg_type, username, form) in enumerate(cases):
        date = f"2026-01-01T00:00:0{n}.000000Z"
        fields = {"msg_id": msg_id, "msg_type": msg_type, "username": username}
        fields |= {"session": "s", "date": date, "version": "5.4"}  # ipykernel's order
        if msg_id == "reordered":
            fields = {"date": date, **fields}
        text = json.dumps(fields, **form)
        if msg_id == "escaped type":
            text = text.replace('"stream"', '"str\\u0065am"')
        content = json.dumps({"name": "stdout", "text": f"{n}\n"}).encode()
        outbox.put(text.encode(), json.dumps({"msg_id": f"cell-{n}"}).encode(), content)
    sender = Sender(outbox, hello, locate=lambda: Endpoint(daemon.url, daemon.token))
    sender.start()
    assert sender.close(10 * FACTOR)
    records = daemon.messages(kernel_id="forms")[1:]  # after the session's start record
    assert [(r["msg_id"], r["msg_type"], r["parent_msg_id"], r["time"]) for r in records] == [
        (msg_id, msg_type, f"cell-{n}", f"2026-01-01T00:00:0{n}.000000Z")
        for n, (msg_id, msg_type, _, _) in enumerate(cases)
    ]


def test_an_unreadable_last_message_does_not_hold_up_close(daemon: Daemon) -> None:
    """No later number's ack covers a skipped message that was the last one: close() must
    not wait for it (it waited out its whole timeout and reported output as lost)."""
    outbox = Outbox(limit_bytes=2**20)
    hello = protocol.Hello("odd-end", "odd-end-session", None, "h", 1, protocol.now_iso())
    outbox.put(header("first"), b"{}", b'{"name": "stdout", "text": "x\\n"}')
    outbox.put(b'{"msg_type": "stream"}', b"{}", b'{"name": "stdout", "text": "y\\n"}')
    sender = Sender(outbox, hello, locate=lambda: Endpoint(daemon.url, daemon.token))
    sender.start()
    assert sender.close(10 * FACTOR)  # False, after 10 s, when it waited for an ack
    assert [r["msg_id"] for r in daemon.messages(kernel_id="odd-end")] == [
        "odd-end-session:start",
        "first",
    ]


def test_a_header_whose_msg_type_is_not_a_string_is_skipped_and_the_rest_arrives(
    daemon: Daemon,
) -> None:
    """A header the sender has to parse, with a list for msg_type, is skipped like any other
    it cannot read: it raised TypeError, which ended the sender thread and all relaying."""
    outbox = Outbox(limit_bytes=2**20)
    hello = protocol.Hello("odd-type", "odd-type-session", None, "h", 1, protocol.now_iso())
    odd = {"msg_id": "odd", "msg_type": ["stream"], "date": protocol.now_iso()}
    content = b'{"name": "stdout", "text": "x\\n"}'
    outbox.put(json.dumps(odd).encode(), b"{}", content)
    outbox.put(header("after"), b"{}", content)
    sender = Sender(outbox, hello, locate=lambda: Endpoint(daemon.url, daemon.token))
    sender.start()
    assert sender.close(10 * FACTOR)
    assert [r["msg_id"] for r in daemon.messages(kernel_id="odd-type")] == [
        "odd-type-session:start",
        "odd-type-session:gap:1",
        "after",
    ]


def test_close_sends_what_just_came_and_stops_once_it_is_acknowledged(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output that came just before close() is sent and acknowledged, and the sender stops
    then. It used to wait out the frame spacing and IDLE_CHECK for more output first: a
    second more at every %unload_ext and kernel exit that followed output (here, both are
    long, and close() gave up waiting for the thread)."""
    monkeypatch.setattr("nbrelay.kernel_hook.sender.SPACING", 600.0)
    monkeypatch.setattr("nbrelay.kernel_hook.sender.IDLE_CHECK", 600.0)
    outbox = Outbox(limit_bytes=2**20)
    hello = protocol.Hello("closing", "closing-session", None, "h", 1, protocol.now_iso())
    sender = Sender(outbox, hello, locate=lambda: Endpoint(daemon.url, daemon.token))
    sender.start()
    outbox.put(header("first"), b"{}", b'{"name": "stdout", "text": "x\\n"}')
    wait_for(lambda: len(daemon.messages(kernel_id="closing")) == 2, 10, "the first message")
    # The sender now waits out the spacing: "second" is still unsent when close() comes.
    outbox.put(header("second"), b"{}", b'{"name": "stdout", "text": "y\\n"}')
    assert sender.close(10 * FACTOR)
    assert not sender.connected  # the sender thread is done, not waiting for output
    assert [r["msg_id"] for r in daemon.messages(kernel_id="closing")][1:] == ["first", "second"]


def test_a_viewer_that_does_not_read_does_not_hold_up_ingest(daemon: Daemon) -> None:
    """Ingest keeps being acknowledged while a viewer reads nothing; that viewer later gets
    every record, in order, from its own cursor."""
    view = daemon.ws_url(f"ws/view?since=0&token={daemon.token}")
    with connect(view, proxy=None, max_queue=1) as stalled:
        with daemon.ingest(protocol.Hello("busy", "busy-session", None, "h", 1, "t")) as ws:
            for start in range(1, 20_001, 500):
                numbers = range(start, start + 500)
                ws.send(stream_batch(numbers, "y" * 1000))
                assert json.loads(ws.recv(10))["acked"] == numbers[-1]
        received: list[int] = []
        while len(received) < 20_001:
            data = json.loads(stalled.recv(10))
            if isinstance(data, list):
                received.extend(r["seq"] for r in data)
        assert received == list(range(1, 20_002))


def test_seqs_are_never_reused_after_rows_are_deleted(daemon: Daemon) -> None:
    """Deleting the newest rows (as pruning may) does not make the daemon reuse their seqs."""
    hello = protocol.Hello("seq-kernel", "seq-session", None, "h", 1, "t").encode()
    with daemon.ingest() as ws:
        ws.send(hello)
        ws.recv(10)
        ws.send(stream_batch([1, 2, 3]))
        ws.recv(10)
    old_head = daemon.messages()[-1]["seq"]
    assert daemon.stop() == 0
    with sqlite3.connect(daemon.db) as db:
        db.execute("DELETE FROM records WHERE seq > 1")
    db.close()
    daemon.start()
    with daemon.ingest() as ws:
        ws.send(hello)
        ws.recv(10)
        ws.send(stream_batch([4]))
        ws.recv(10)
    assert [r["seq"] for r in daemon.messages()] == [1, old_head + 1]


def test_the_wal_stays_bounded_while_kernels_write_and_is_folded_in_at_stop(
    tmp_path: Path,
) -> None:
    """Checkpoints run beside the writer, and the WAL only starts over after one that copied
    all of it: under sustained ingest the WAL grew with everything stored (300 MB for 300 MB)
    until, past the limit, the writer itself finished each checkpoint. At a clean stop it is
    folded into the database file and removed."""
    daemon = Daemon(tmp_path).start()
    wal = Path(f"{daemon.db}-wal")
    text = "x" * 10_000
    messages, per_frame = 12_000, 100  # 120 MB, well past the 32 MiB limit
    try:
        with daemon.ingest(protocol.Hello("big", "big-session", None, "h", 1, "t")) as ws:
            for first in range(1, messages + 1, per_frame):
                ws.send(stream_batch(range(first, first + per_frame), text))
            acked = 0
            while acked < messages:
                acked = protocol.decode_ack(ws.recv(timeout=30 * FACTOR))
        assert wal.stat().st_size < 64 * 2**20  # the limit, and what came in meanwhile
        assert daemon.head("big") == messages + 1  # and its start record
    finally:
        daemon.stop()
    assert not wal.exists()
    with closing(sqlite3.connect(daemon.db)) as db:
        assert db.execute("SELECT count(*) FROM records").fetchone() == (messages + 1,)
