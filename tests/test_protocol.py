"""The wire formats and the exactly-once rule, without I/O."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbrelay import protocol
from nbrelay.protocol import GAP, Hello, Output, ProtocolError

HELLO = Hello("k1", "s1", "nb.ipynb", "host", 42, "2026-01-01T00:00:00Z")


def output(n: int, msg_type: str = "stream") -> Output:
    return Output(
        n, f"m{n}", msg_type, "p1", "2026-01-01T00:00:00Z", {"name": "stdout", "text": f"{n}\n"}
    )


def test_hello_round_trip() -> None:
    """A hello decodes to what was encoded."""
    assert Hello.decode(HELLO.encode()) == HELLO


def test_batch_round_trip_keeps_content_verbatim() -> None:
    """A batch entry carries ipykernel's content JSON unchanged, and decodes to the same values."""
    content = '{"name":"stdout","text":"caf\\u00e9 \\ud83d\\ude00 \\"q\\"\\n"}'
    entry = protocol.encode_output(1, "m1", "stream", None, "t", content)
    (out,) = protocol.decode_batch(protocol.encode_batch([entry]))
    assert out == Output(1, "m1", "stream", None, "t", json.loads(content))


@pytest.mark.parametrize(
    "frame, problem",
    [
        (b"\xff\xfe", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"type": "hello"}', "missing field"),
        ('{"type": "batch", "messages": [1]}', "not a JSON object"),
        ('{"type": "batch", "messages": "x"}', "wrong type"),
        ('{"type": "batch", "messages": [{"msg_type": "comm_msg"}]}', "unknown msg_type"),
    ],
)
def test_malformed_frames_are_refused_with_a_reason(frame: str | bytes, problem: str) -> None:
    """Each malformed frame raises ProtocolError saying what is wrong."""
    with pytest.raises(ProtocolError, match=problem):
        if '"hello"' in str(frame):
            Hello.decode(frame)
        else:
            protocol.decode_batch(frame)


@pytest.mark.parametrize("n", [0, -1, 2**63, True, "1", 1.5])
def test_bad_message_numbers_are_refused(n: object) -> None:
    """Numbers must be positive integers that SQLite can hold; booleans are not numbers."""
    message = {
        "n": n,
        "msg_id": "m",
        "msg_type": "stream",
        "parent_msg_id": None,
        "time": "t",
        "content": {},
    }
    with pytest.raises(ProtocolError):
        protocol.decode_batch(json.dumps({"type": "batch", "messages": [message]}))


def test_numbers_must_increase_within_a_batch() -> None:
    """A batch out of order is a broken client, not something to store."""
    entries = [protocol.encode_output(n, "m", "stream", None, "t", "{}") for n in (2, 1)]
    with pytest.raises(ProtocolError, match="increase"):
        protocol.decode_batch(protocol.encode_batch(entries))


def test_record_json_splices_the_seq() -> None:
    """A stored body plus its seq is the record clients receive."""
    body = protocol.record_body("k", "m", "stream", None, "t", {"text": "x"})
    assert json.loads(protocol.record_json(7, body)) == {
        "seq": 7,
        "kernel_id": "k",
        "msg_id": "m",
        "msg_type": "stream",
        "parent_msg_id": None,
        "time": "t",
        "content": {"text": "x"},
    }


def test_plan_batch_skips_duplicates_and_marks_gaps() -> None:
    """Resent numbers are dropped; a jump becomes one gap record with the missing range."""
    records, acked = protocol.plan_batch(HELLO, 3, [output(2), output(3), output(4), output(7)])
    assert acked == 7
    kinds = [r.msg_type for r in records]
    assert kinds == ["stream", GAP, "stream"]
    gap = json.loads(records[1].body)["content"]
    assert gap == {"dropped": 2, "first_n": 5, "last_n": 6, "session": "s1"}


@given(
    sent=st.integers(min_value=1, max_value=60),
    lost=st.sets(st.integers(min_value=1, max_value=60)),
    batches=st.lists(st.tuples(st.integers(1, 60), st.integers(0, 20)), max_size=30),
)
def test_any_resend_pattern_stores_each_message_once_in_order(
    sent: int, lost: set[int], batches: list[tuple[int, int]]
) -> None:
    """Whatever is resent, in whatever batches, each number is stored at most once, in order,
    and every number below the highest stored is either stored or inside a gap record."""
    acked = 0
    stored: list[int] = []
    gaps: list[tuple[int, int]] = []
    # Random resends from any point, then one final clean pass, like a reconnecting hook.
    passes = [range(start, min(start + length, sent) + 1) for start, length in batches]
    for numbers in [*passes, range(acked + 1, sent + 1)]:
        outs = [output(n) for n in numbers if n not in lost]
        records, acked = protocol.plan_batch(HELLO, acked, outs)
        for r in records:
            body = json.loads(r.body)
            if r.msg_type == GAP:
                gaps.append((body["content"]["first_n"], body["content"]["last_n"]))
            else:
                stored.append(int(body["msg_id"][1:]))
    assert stored == sorted(set(stored))
    covered = set(stored) | {n for a, b in gaps for n in range(a, b + 1)}
    assert covered == set(range(1, max(covered, default=0) + 1))
    assert not set(stored) & {n for a, b in gaps for n in range(a, b + 1)}
