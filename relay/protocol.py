"""The wire formats of nbrelay: frames and records, encoded, decoded and checked, with no I/O.

Two conversations use them.

Ingest, kernel hook -> daemon (``/ws/ingest``)::

    hook:   {"type": "hello", "kernel_id", "session", "notebook", "hostname", "pid", "started"}
    daemon: {"type": "welcome", "acked": N}
    hook:   {"type": "batch", "messages": [{"n", "msg_id", "msg_type", "parent_msg_id",
                                            "time", "content"}, ...]}
    daemon: {"type": "ack", "acked": N}            (after the SQLite commit)

``session`` names one kernel process; ``n`` numbers that process's messages 1, 2, 3...
``acked`` is cumulative: every message of the session up to ``N`` is stored. The hook
resends whatever is above ``acked`` after a reconnect, so the daemon drops numbers it has
already stored, and turns a jump in the numbering (the hook's buffer overflowed) into an
explicit gap record. Exactly-once storage follows from those two rules alone.

View, daemon -> viewer (``/ws/view``): a JSON array of records per text frame; anything
else is a JSON object with a ``"type"`` and no ``"seq"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

#: IOPub message types the hook captures: what the notebook UI renders, plus the cell
#: boundaries (``execute_input``) and busy/idle (``status``).
CAPTURED_TYPES = frozenset(
    {
        "stream",
        "error",
        "display_data",
        "update_display_data",
        "execute_result",
        "clear_output",
        "execute_input",
        "status",
    }
)

#: Record types the daemon writes itself. Dotted, so they can never collide with Jupyter's.
START = "nbrelay.start"  # a kernel process connected for the first time (start or restart)
GAP = "nbrelay.gap"  # the hook had to drop messages: how many, and which numbers

#: WebSocket close codes (RFC 6455).
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011

_MAX_INT = 2**63 - 1  # SQLite's INTEGER


class ProtocolError(ValueError):
    """A frame that breaks the protocol; the connection that sent it is closed with ``code``."""

    def __init__(self, reason: str, code: int = CLOSE_INVALID_DATA) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def now_iso() -> str:
    """The current time in the format Jupyter puts in message headers."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _loads_object(data: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object")
    return obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise ProtocolError(f"{where}: missing field {name!r}")
    value = obj[name]
    # bool is an int in Python, never in this protocol.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProtocolError(f"{where}: field {name!r} has the wrong type")
    return value


def _count(obj: dict[str, Any], name: str, where: str, minimum: int = 0) -> int:
    value: int = _field(obj, name, int, where)
    if not minimum <= value <= _MAX_INT:
        raise ProtocolError(f"{where}: field {name!r} is out of range")
    return value


def _text(obj: dict[str, Any], name: str, where: str, optional: bool = False) -> Any:
    kind: tuple[type, ...] = (str, type(None)) if optional else (str,)
    value = _field(obj, name, kind, where)
    if value == "" and not optional:
        raise ProtocolError(f"{where}: field {name!r} is empty")
    return value


@dataclass(frozen=True)
class Hello:
    """Who is sending: one kernel process."""

    kernel_id: str
    session: str
    notebook: str | None
    hostname: str
    pid: int
    started: str

    def encode(self) -> str:
        return _dumps({"type": "hello", **self.__dict__})

    @classmethod
    def decode(cls, data: str | bytes) -> Hello:
        obj = _loads_object(data)
        if obj.get("type") != "hello":
            raise ProtocolError("expected a hello frame first")
        return cls(
            kernel_id=_text(obj, "kernel_id", "hello"),
            session=_text(obj, "session", "hello"),
            notebook=_text(obj, "notebook", "hello", optional=True),
            hostname=_text(obj, "hostname", "hello"),
            pid=_count(obj, "pid", "hello"),
            started=_text(obj, "started", "hello"),
        )


@dataclass(frozen=True)
class Output:
    """One captured IOPub message, as the daemon receives it."""

    n: int
    msg_id: str
    msg_type: str
    parent_msg_id: str | None
    time: str
    content: dict[str, Any]


def encode_output(
    n: int, msg_id: str, msg_type: str, parent_msg_id: str | None, time: str, content_json: str
) -> str:
    """One batch entry. ``content_json`` goes in as ipykernel serialised it: no second encode."""
    head = _dumps(
        {
            "n": n,
            "msg_id": msg_id,
            "msg_type": msg_type,
            "parent_msg_id": parent_msg_id,
            "time": time,
        }
    )
    return f'{head[:-1]},"content":{content_json}}}'


def encode_batch(entries: Iterable[str]) -> str:
    """A batch frame from entries made by :func:`encode_output`."""
    return '{"type":"batch","messages":[' + ",".join(entries) + "]}"


def decode_batch(data: str | bytes) -> list[Output]:
    obj = _loads_object(data)
    if obj.get("type") != "batch":
        raise ProtocolError("expected a batch frame")
    messages = _field(obj, "messages", list, "batch")
    outputs = []
    previous = 0
    for raw in messages:
        if not isinstance(raw, dict):
            raise ProtocolError("batch: a message is not a JSON object")
        msg_type = _text(raw, "msg_type", "message")
        if msg_type not in CAPTURED_TYPES:
            raise ProtocolError(f"message: unknown msg_type {msg_type[:40]!r}")
        n = _count(raw, "n", "message", minimum=1)
        if n <= previous:
            raise ProtocolError("batch: message numbers must increase")
        previous = n
        outputs.append(
            Output(
                n=n,
                msg_id=_text(raw, "msg_id", "message"),
                msg_type=msg_type,
                parent_msg_id=_text(raw, "parent_msg_id", "message", optional=True),
                time=_text(raw, "time", "message"),
                content=_field(raw, "content", dict, "message"),
            )
        )
    return outputs


def welcome(acked: int, max_frame_bytes: int) -> str:
    """The answer to hello: what is stored already, and how large a frame may be."""
    return _dumps({"type": "welcome", "acked": acked, "max_frame_bytes": max_frame_bytes})


def decode_welcome(data: str | bytes) -> tuple[int, int]:
    """``(acked, max_frame_bytes)`` of a welcome frame (the hook's side)."""
    obj = _loads_object(data)
    if obj.get("type") != "welcome":
        raise ProtocolError("expected a welcome frame")
    return _count(obj, "acked", "welcome"), _count(obj, "max_frame_bytes", "welcome", minimum=1)


def ack(acked: int) -> str:
    return _dumps({"type": "ack", "acked": acked})


def decode_ack(data: str | bytes) -> int:
    """The cumulative ``acked`` of an ack frame (the hook's side)."""
    obj = _loads_object(data)
    if obj.get("type") != "ack":
        raise ProtocolError("expected an ack frame")
    return _count(obj, "acked", "ack")


@dataclass(frozen=True)
class NewRecord:
    """A record about to be stored: the store gives it its ``seq``."""

    kernel_id: str
    msg_type: str
    body: str  # the record as JSON, without "seq": see record_json()


def record_body(
    kernel_id: str,
    msg_id: str,
    msg_type: str,
    parent_msg_id: str | None,
    time: str,
    content: dict[str, Any],
) -> str:
    return _dumps(
        {
            "kernel_id": kernel_id,
            "msg_id": msg_id,
            "msg_type": msg_type,
            "parent_msg_id": parent_msg_id,
            "time": time,
            "content": content,
        }
    )


def record_json(seq: int, body: str) -> str:
    """A stored record as sent to clients. Bodies are stored ready-made so replay only splices."""
    return f'{{"seq":{seq},{body[1:]}'


def records_frame(records: Sequence[str]) -> str:
    return "[" + ",".join(records) + "]"


def caught_up(last_seq: int) -> str:
    """Tells a viewer that everything up to ``last_seq`` was sent; what follows is live."""
    return _dumps({"type": "caught_up", "last_seq": last_seq})


def start_record(hello: Hello) -> NewRecord:
    content = {
        "session": hello.session,
        "notebook": hello.notebook,
        "hostname": hello.hostname,
        "pid": hello.pid,
        "started": hello.started,
    }
    body = record_body(hello.kernel_id, f"{hello.session}:start", START, None, now_iso(), content)
    return NewRecord(hello.kernel_id, START, body)


def plan_batch(hello: Hello, acked: int, outputs: Sequence[Output]) -> tuple[list[NewRecord], int]:
    """What to store for a batch, given that the session's messages up to ``acked`` are stored.

    Returns the records in order and the new ``acked``. Numbers at or below ``acked`` are
    duplicates (a resend after a reconnect) and are skipped; a jump in the numbering becomes
    one gap record in its place, so a loss is never silent.
    """
    records = []
    for out in outputs:
        if out.n <= acked:
            continue
        if out.n > acked + 1:
            first, last = acked + 1, out.n - 1
            content = {
                "dropped": last - first + 1,
                "first_n": first,
                "last_n": last,
                "session": hello.session,
            }
            body = record_body(
                hello.kernel_id, f"{hello.session}:gap:{first}", GAP, None, out.time, content
            )
            records.append(NewRecord(hello.kernel_id, GAP, body))
        body = record_body(
            hello.kernel_id, out.msg_id, out.msg_type, out.parent_msg_id, out.time, out.content
        )
        records.append(NewRecord(hello.kernel_id, out.msg_type, body))
        acked = out.n
    return records, acked
