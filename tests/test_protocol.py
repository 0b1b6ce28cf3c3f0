"""The wire formats and the exactly-once rule, without I/O."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbrelay import protocol
from nbrelay.protocol import GAP, Hello, Output, ProtocolError

LIMIT = 2**20
HELLO = Hello("k1", "s1", "nb.ipynb", "host", 42, "2026-01-01T00:00:00Z")


def output(n: int, msg_type: str = "stream") -> Output:
    """What the daemon decodes from the hook's entry for message ``n``."""
    content = json.dumps({"name": "stdout", "text": f"{n}\n"})
    entry = protocol.encode_output(n, f"m{n}", msg_type, "p1", "2026-01-01T00:00:00Z", content)
    (out,) = protocol.decode_batch(protocol.encode_batch([entry]))
    return out


def test_hello_round_trip() -> None:
    """A hello decodes to what was encoded."""
    assert Hello.decode(HELLO.encode()) == HELLO


@pytest.mark.parametrize("version", [1, 2, 3])
def test_hooks_of_every_accepted_version_are_welcome(version: int) -> None:
    """A daemon of protocol 3 takes hellos of hooks of protocols 1, 2 and 3 (#22)."""
    hello = json.loads(HELLO.encode()) | {"protocol": version}
    assert Hello.decode(json.dumps(hello)) == HELLO


@pytest.mark.parametrize("msg_type", ["comm_open", "comm_msg", "comm_close"])
def test_widget_comm_messages_are_taken(msg_type: str) -> None:
    """Protocol 3 adds the comm messages of widgets to what a hook may send (#22)."""
    content = json.dumps({"comm_id": "c1", "data": {"state": {"value": 3}}})
    entry = protocol.encode_output(1, "m1", msg_type, "p1", "2026-01-01T00:00:00Z", content)
    (out,) = protocol.decode_batch(protocol.encode_batch([entry]))
    assert out.msg_type == msg_type and out.parsed_content() == json.loads(content)


def test_batch_round_trip_keeps_content_verbatim() -> None:
    """A batch entry carries ipykernel's content JSON unchanged, and decodes to the same values.
    Its parsed content is not kept: the text is stored as received, and parsed again if need be."""
    content = '{"name":"stdout","text":"caf\\u00e9 \\ud83d\\ude00 \\"q\\"\\n"}'
    entry = protocol.encode_output(1, "m1", "stream", None, "t", content)
    (out,) = protocol.decode_batch(protocol.encode_batch([entry]))
    assert out[:6] == (1, "m1", "stream", None, "t", None)
    assert out.parsed_content() == json.loads(content)
    ((_, body),) = protocol.plan_batch(HELLO, 0, [out], LIMIT)[0]
    assert body == '{"kernel_id":"k1",' + entry[len('{"n":1,') :]  # the text as received


@pytest.mark.parametrize(
    "entry",
    [
        '{"msg_id":"m","n":1,"msg_type":"stream","parent_msg_id":null,"time":"t","content":{}}',
        '{"n":1, "msg_id":"m","msg_type":"stream","parent_msg_id":null,"time":"t","content":{}}',
        '{"n":1,"msg_id":"m","msg_type":"stream","parent_msg_id":null,"time":"t","content":{},'
        '"seq":1}',
        '{"n":1,"msg_id":"m","msg_type":"stream","parent_msg_id":null,"time":"t","content":{},'
        '"kernel_id":"forged"}',
    ],
)
def test_entries_in_another_form_are_stored_encoded_anew(entry: str) -> None:
    """Only encode_output's exact form is stored as received: other key orders, spacing, or
    keys the record has itself (a forged seq or kernel_id) are encoded again from the values."""
    records, _ = protocol.plan_batch(
        HELLO, 0, protocol.decode_batch(f"{protocol.BATCH}\n{entry}"), LIMIT
    )
    assert json.loads(records[0][1]) == {
        "kernel_id": "k1",
        "msg_id": "m",
        "msg_type": "stream",
        "parent_msg_id": None,
        "time": "t",
        "content": {},
    }


@pytest.mark.parametrize("canonical", [True, False])
def test_integers_beyond_64_bits_stay_exact_when_content_is_encoded_again(
    canonical: bool,
) -> None:
    """Content is stored encoded anew when it is cut (here, above a 4 kB limit) or not in
    encode_output's form; the protocol's parser (orjson) would make its big integers floats."""
    big = 2**70 + 1
    content = json.dumps({"name": "stdout", "text": "x" * 10_000, "n": big})
    entry = protocol.encode_output(1, "m", "stream", None, "t", content)
    if not canonical:
        entry = entry.replace(",", ", ", 1)
    (out,) = protocol.decode_batch(protocol.encode_batch([entry]))
    assert (out.tail is not None) == canonical
    ((_, body),) = protocol.plan_batch(HELLO, 0, [out], 4096)[0]
    stored = json.loads(body)["content"]
    assert protocol.TRUNCATED in stored and stored["n"] == big


def test_whitespace_around_json_is_json() -> None:
    """Frames and lines with spaces around the object are valid JSON, and accepted."""
    assert Hello.decode(f"  {HELLO.encode()} \t") == HELLO
    entry = protocol.encode_output(1, "m", "stream", None, "t", "{}")
    (out,) = protocol.decode_batch(f"{protocol.BATCH}\n {entry} ")
    assert out.n == 1 and out.tail is None  # not in the canonical form: encoded anew


def test_content_with_newlines_still_makes_one_line() -> None:
    """A serialiser that indents puts newlines between tokens; entries must stay one line."""
    content = json.dumps({"name": "stdout", "text": "a\nb"}, indent=1)
    (out,) = protocol.decode_batch(
        protocol.encode_batch([protocol.encode_output(1, "m", "stream", None, "t", content)])
    )
    assert out.parsed_content() == {"name": "stdout", "text": "a\nb"}


@pytest.mark.parametrize(
    "frame, problem",
    [
        (b"\xff\xfe", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"type": "hello", "protocol": 1}', "missing field"),
        ('{"type": "hello"}', "ingest protocol none, daemon 3"),
        ('{"type": "hello", "protocol": true}', "ingest protocol none, daemon 3"),
        ('{"type": "hello", "protocol": [1]}', "ingest protocol none, daemon 3"),
        ('{"type": "hello", "protocol": 4}', "ingest protocol 4, daemon 3"),
        ('{"type": "batch"}', "no messages"),
        ('{"type": "batch"}\n[1]', "not a JSON object"),
        ('{"type": "batch"}\n{"n": 1,\n"msg_id": "m"}', "not JSON"),
        ('{"type": "batch"}\n{"msg_type": "stream", "n": "1"}', "wrong type"),
        ('{"type": "batch"}\n{"msg_type": "shell_reply"}', "unknown msg_type"),
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
        protocol.decode_batch(f"{protocol.BATCH}\n{json.dumps(message)}")


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
    records, acked = protocol.plan_batch(
        HELLO, 3, [output(2), output(3), output(4), output(7)], LIMIT
    )
    assert acked == 7
    kinds = [msg_type for msg_type, _ in records]
    assert kinds == ["stream", GAP, "stream"]
    gap = json.loads(records[1][1])["content"]
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
        records, acked = protocol.plan_batch(HELLO, acked, outs, LIMIT)
        for msg_type, text in records:
            body = json.loads(text)
            if msg_type == GAP:
                gaps.append((body["content"]["first_n"], body["content"]["last_n"]))
            else:
                stored.append(int(body["msg_id"][1:]))
    assert stored == sorted(set(stored))
    covered = set(stored) | {n for a, b in gaps for n in range(a, b + 1)}
    assert covered == set(range(1, max(covered, default=0) + 1))
    assert not set(stored) & {n for a, b in gaps for n in range(a, b + 1)}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=40,
)


VALID_FRAMES: dict[str, tuple[Any, dict[str, Any]]] = {
    "hello": (Hello.decode, json.loads(HELLO.encode())),
    "welcome": (
        protocol.Welcome.decode,
        {"type": "welcome", "acked": 0, "max_frame_bytes": 1, "max_output_bytes": 1},
    ),
    "ack": (protocol.decode_ack, {"type": "ack", "acked": 0}),
    "batch entry": (
        lambda line: protocol.decode_batch(f"{protocol.BATCH}\n{line}"),
        {"n": 1, "msg_id": "m", "msg_type": "stream", "parent_msg_id": None, "time": "t"}
        | {"content": {}},
    ),
}


@given(
    frame=st.sampled_from(sorted(VALID_FRAMES)),
    data=st.data(),
    value=JSON,
    compact=st.booleans(),
)
def test_any_json_value_in_any_field_is_decoded_or_refused(
    frame: str, data: st.DataObject, value: object, compact: bool
) -> None:
    """A frame with any JSON value in one of its fields decodes or raises ProtocolError, never
    another exception (a list as msg_type raised TypeError: the daemon closed with 1011)."""
    decode, valid = VALID_FRAMES[frame]
    field = data.draw(st.sampled_from(sorted(valid)))
    text = json.dumps(valid | {field: value}, separators=(",", ":") if compact else None)
    with contextlib.suppress(ProtocolError):
        decode(text)


@given(content=st.dictionaries(st.text(), JSON), limit=st.integers(4096, 20_000))
def test_fit_content_always_fits_and_leaves_small_content_alone(
    content: dict[str, object], limit: int
) -> None:
    """Whatever the content, the result fits in the limit; content that fits is untouched."""
    fitted = protocol.fit_content(content, limit)
    if protocol._size(content) <= limit:
        assert fitted is content
    else:
        assert protocol._size(fitted) <= limit
        assert fitted[protocol.TRUNCATED]["original_bytes"] == protocol._size(content)


@given(text=st.text(min_size=1), repeat=st.integers(1000, 5000))
def test_fit_content_keeps_both_ends_of_long_text(text: str, repeat: int) -> None:
    """A long stream keeps its start and its end; the marker says how much went."""
    content = {"name": "stdout", "text": "<<" + text * repeat + ">>"}
    fitted = protocol.fit_content(content, 4096)
    if fitted is not content:
        assert fitted["text"].startswith("<<") and fitted["text"].endswith(">>")
        assert "bytes cut]" in fitted["text"]


def test_images_go_before_text_is_cut() -> None:
    """An oversized display loses its image, not its text."""
    content = {"data": {"image/png": "A" * 50_000, "text/plain": "a plot"}, "metadata": {}}
    fitted = protocol.fit_content(content, 4096)
    assert fitted["data"] == {"text/plain": "a plot"}
    assert fitted[protocol.TRUNCATED]["removed"] == ["image/png"]


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "hello", "kernel_id": NaN}',
        '{"type": "hello", "kernel_id": "\\ud800"}',
        "[" * 100_000,
        '{"a":' * 100_000,
    ],
)
def test_json_that_is_not_storable_is_refused(frame: str) -> None:
    """NaN, lone surrogates and absurd nesting are protocol errors, not crashes later."""
    with pytest.raises(ProtocolError):
        Hello.decode(frame)


@pytest.mark.parametrize("escape", ["\\ud800", "\\uDBFF", "\\udc00", "\\uDfFf"])
def test_a_lone_surrogate_anywhere_in_a_batch_is_refused(escape: str) -> None:
    """Every escape from D800 to DFFF, in either case, on any line of the batch."""
    entries = [
        protocol.encode_output(1, "m1", "stream", None, "t", '{"text": "fine"}'),
        protocol.encode_output(2, "m2", "stream", None, "t", '{"text": "a' + escape + 'b"}'),
    ]
    with pytest.raises(ProtocolError, match="surrogate"):
        protocol.decode_batch(protocol.encode_batch(entries))


def test_record_frames_stay_below_a_mebibyte_unless_one_record_is_larger() -> None:
    """Replay frames are cut at about 1 MiB; every record is in exactly one frame, in order."""
    records = [
        protocol.record_json(i, '{"x":"' + "a" * size + '"}')
        for i, size in enumerate([10, 600_000, 600_000, 3_000_000, 5, 5])
    ]
    frames = [json.loads(f) for f in protocol.record_frames(records)]
    assert [r["seq"] for f in frames for r in f] == list(range(6))
    assert [len(f) for f in frames] == [2, 1, 1, 2]
