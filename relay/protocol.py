"""The wire formats of nbrelay: frames and records, encoded, decoded and checked, with no I/O.

Two conversations use them.

Ingest, kernel hook -> daemon (``/ws/ingest``)::

    hook:   {"type": "hello", "protocol": 2, "kernel_id", "session", "notebook", "hostname",
             "pid", "started"}
    daemon: {"type": "welcome", "acked": N}
    hook:   {"type": "batch"}                      (a batch frame: this line, then
            {"n", "msg_id", "msg_type", "parent_msg_id", "time", "content"}  one message
            ...                                     a line, in this key order)
    daemon: {"type": "ack", "acked": N}            (after the SQLite commit; at most
                                                    one every 50 ms, for the latest N)
    hook:   close 1001 "kernel exiting"            (the kernel process ends; 1000: the
                                                    extension was unloaded; any other
                                                    close leaves the kernel's state as is)
    daemon: close 1008 "another connection took over this session"
    hook:   close 1008 "told that more is stored than was sent: ..."   (see below)

A batch holds one JSON object per line (JSON text never holds a raw newline), so the daemon
can parse each message to check it and still store the very text it received, spliced into
the record, instead of encoding the content a second time: that is most of ingest's cost.

``protocol`` is :data:`INGEST_PROTOCOL`: the kernel hook runs from the kernel's environment
and the daemon from its own, so the two can be different nbrelay versions; a daemon refuses a
hook that speaks a version it does not know with a reason that says so, rather than a parse
error. Version 2 added the hook's own ``nbrelay.cell`` message, which a daemon of version 1
refuses; a daemon of version 2 still takes hooks of version 1 (:data:`ACCEPTED_PROTOCOLS`),
which never send it. Version 3 added the comm messages of widgets (:data:`COMM_TYPES`), which
a daemon of version 2 refuses as unknown types; a daemon of version 3 takes all three.

A message's ``msg_type`` is one of :data:`CAPTURED_TYPES` or :data:`COMM_TYPES`, as
ipykernel sent it on IOPub, or :data:`CELL`: the notebook cell an execute request ran
(``content``: ``{"cell_id"}``, the ``cellId`` JupyterLab and Notebook 7 put in the request's
metadata), with that request as its parent, made by the hook before the cell runs.

``session`` names one kernel process; ``n`` numbers that process's messages 1, 2, 3...
``acked`` is cumulative: every message of the session up to ``N`` is stored. The hook
resends whatever is above ``acked`` after a reconnect, so the daemon drops numbers it has
already stored, and turns a jump in the numbering (the hook's buffer overflowed) into an
explicit gap record. Exactly-once storage follows from those two rules alone.

Sessions are told apart by their id alone, and every start record shows it to token
holders, so three rules keep a client that reuses one from making the daemon drop a kernel's
output unseen (#20). A session belongs to the kernel of its first hello: a hello for it with
another ``kernel_id`` is refused (1008). It has one connection at a time: a newer hello takes
it over, and the daemon closes the older connection with 1008 (refusing the newer one would
lock out a hook that reconnects after a network failure until the daemon's pings find its
old connection dead). A hook checks every ``acked`` against the highest number it has sent
in the session: one above it means another client pushed the count up, and everything the
hook sends at or below it would be dropped as already stored; the hook closes with 1008 and
goes on under a new session, numbering what is not acknowledged from 1 again. The daemon
logs each of these, and a message numbered at or below the ``acked`` its connection was
welcomed with, which a hook never sends.

None of that changed a frame, so :data:`INGEST_PROTOCOL` stayed 1: a hook and a daemon from
before these rules work with the current ones, without the protections the other side adds.

View, daemon -> viewer (``/ws/view``): a JSON array of records per text frame; anything
else is a JSON object with a ``"type"`` and no ``"seq"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from json.encoder import encode_basestring
from typing import Any, NamedTuple

import orjson

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
#: The comm messages of Jupyter widgets (#22): a tqdm.auto bar's progress travels only in
#: them. The hook passes on those of comms opened with :data:`WIDGET_TARGET` alone; their
#: binary buffers are not kept (see kernel_hook/widgets.py).
COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
WIDGET_TARGET = "jupyter.widget"

#: The message type the hook makes itself, dotted like the daemon's own so that it can never
#: collide with Jupyter's: which notebook cell an execute request ran.
CELL = "nbrelay.cell"
#: What a hook may send.
INGEST_TYPES = CAPTURED_TYPES | COMM_TYPES | {CELL}

#: Record types the daemon writes itself. Dotted, so they can never collide with Jupyter's.
START = "nbrelay.start"  # a kernel process connected for the first time (start or restart)
GAP = "nbrelay.gap"  # the hook had to drop messages: how many, and which numbers

#: WebSocket close codes (RFC 6455).
CLOSE_NORMAL = 1000  # from a hook: the extension was unloaded, the kernel goes on
CLOSE_GOING_AWAY = 1001  # the daemon is shutting down; from a hook: its kernel process exits
CLOSE_INVALID_DATA = 1007  # a malformed frame
CLOSE_POLICY = 1008  # missing or wrong token, unusable parameters, a session misused
CLOSE_INTERNAL_ERROR = 1011  # storage failed: retry later; from a hook: it failed, and retries
CLOSE_TRY_AGAIN_LATER = 1013  # too many connections

#: The kernel's state once its hook has closed with this code: its last status no longer
#: says what it is doing (after a shutdown request or an unload, that status is "busy").
LEFT_STATES = {CLOSE_GOING_AWAY: "exited", CLOSE_NORMAL: "unloaded"}

MAX_SEQ = 2**63 - 1  # SQLite's largest INTEGER: the bound of every number on the wire

#: The version of the ingest conversation, in every hello. Raise it with any change to the
#: frames a hook sends that a daemon of the previous version would misread.
INGEST_PROTOCOL = 3
#: The versions a daemon takes: version 1 is version 2 without ``nbrelay.cell`` messages, and
#: version 2 is version 3 without widget comm messages, so a daemon reads each as it is and
#: old hooks keep working.
ACCEPTED_PROTOCOLS = frozenset({1, 2, 3})


class ProtocolError(ValueError):
    """A frame that breaks the protocol; the connection that sent it is closed with ``code``."""

    def __init__(self, reason: str, code: int = CLOSE_INVALID_DATA) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def now_iso() -> str:
    """The current time in the format Jupyter puts in message headers."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(obj: object) -> str:
    return _ENCODER.encode(obj)  # one encoder for all: json.dumps() builds one per call


def _text_of(data: str | bytes) -> str:
    try:
        return data if isinstance(data, str) else data.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None


def loads_object(data: str | bytes) -> dict[str, Any]:
    """A JSON object the daemon can store and send on as it is, or ProtocolError.

    orjson, not json: it parses a 10 kB line in about half the time, and in the same pass it
    refuses what SQLite, browsers or other clients would choke on later: lone surrogates,
    NaN and Infinity, nesting deeper than 1,024 (json needed a scan of its own for
    surrogates, and a hook for the constants).
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
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
    if not minimum <= value <= MAX_SEQ:
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
        return _dumps({"type": "hello", "protocol": INGEST_PROTOCOL, **self.__dict__})

    @classmethod
    def decode(cls, data: str | bytes) -> Hello:
        obj = loads_object(data)
        if obj.get("type") != "hello":
            raise ProtocolError("expected a hello frame first")
        spoken = obj.get("protocol")
        if type(spoken) is not int or spoken not in ACCEPTED_PROTOCOLS:
            version = spoken if type(spoken) is int else "none"
            raise ProtocolError(
                f"hook speaks ingest protocol {version}, daemon {INGEST_PROTOCOL}: "
                "install the same nbrelay version in the kernel's environment",
                CLOSE_POLICY,
            )
        return cls(
            kernel_id=_text(obj, "kernel_id", "hello"),
            session=_text(obj, "session", "hello"),
            notebook=_text(obj, "notebook", "hello", optional=True),
            hostname=_text(obj, "hostname", "hello"),
            pid=_count(obj, "pid", "hello"),
            started=_text(obj, "started", "hello"),
        )


class Output(NamedTuple):  # a tuple: one is made per message, and ingest speed depends on it
    """One captured IOPub message, as the daemon receives it."""

    n: int
    msg_id: str
    msg_type: str
    parent_msg_id: str | None
    time: str
    #: None when the entry is stored as received (``tail``) and is not a status, whose state
    #: the store reads: until its commit, a batch's parsed contents would be most of the
    #: daemon's memory, and nothing else reads them (docs/benchmarks.md, ingest memory).
    content: dict[str, Any] | None
    #: The entry's text after its "n" field (``"msg_id":...}``) when the hook sent it in
    #: :func:`encode_output`'s form, so it is stored as received; None means encode again.
    tail: str | None = None

    def parsed_content(self) -> dict[str, Any]:
        """The content, parsed again from ``tail`` if it was not kept: rarely needed."""
        if self.content is not None:
            return self.content
        assert self.tail is not None, "content is only dropped where the entry has a tail"
        # json, not orjson: content parsed here is encoded again, and orjson turns integers
        # beyond 64 bits into floats.
        content: dict[str, Any] = json.loads("{" + self.tail)["content"]
        return content


def encode_output(
    n: int, msg_id: str, msg_type: str, parent_msg_id: str | None, time: str, content_json: str
) -> str:
    """One batch entry. ``content_json`` goes in as ipykernel serialised it: no second encode,
    unless it holds a newline (whitespace from an indenting serialiser): entries are lines."""
    quote = encode_basestring  # a string's JSON, in C: a dict's _dumps costs far more
    parent = "null" if parent_msg_id is None else quote(parent_msg_id)
    return output_line(n, quote(msg_id), quote(msg_type), parent, quote(time), content_json)


def output_line(
    n: int, msg_id: str, msg_type: str, parent_msg_id: str, time: str, content_json: str
) -> str:
    """:func:`encode_output` from fields already in JSON (a quoted string, "null" for no
    parent): the hook takes them from ipykernel's header as they are, not parsed and quoted
    again."""
    if "\n" in content_json:
        content_json = _dumps(json.loads(content_json))
    return (
        f'{{"n":{n},"msg_id":{msg_id},"msg_type":{msg_type},'
        f'"parent_msg_id":{parent_msg_id},"time":{time},"content":{content_json}}}'
    )


BATCH = '{"type":"batch"}'


def encode_batch(entries: Iterable[str]) -> str:
    """A batch frame from entries made by :func:`encode_output`."""
    return "\n".join([BATCH, *entries])


def decode_batch(data: str | bytes) -> list[Output]:
    text = _text_of(data)
    newline = text.find("\n")
    header = text if newline < 0 else text[:newline]
    if header != BATCH and loads_object(header).get("type") != "batch":
        raise ProtocolError("expected a batch frame")
    start, size = newline + 1, len(text)
    if not 0 < start < size:
        raise ProtocolError("batch: no messages (one JSON object a line after the first)")
    outputs = []
    previous = 0
    while start <= size:
        end = text.find("\n", start)
        end = size if end < 0 else end
        line = text[start:end]
        raw = loads_object(line)
        output = _fast_output(raw, previous, line)
        if output is None:  # something is wrong with it: find what, to say so
            output = _checked_output(raw, previous)
        if output.tail is None:  # to be encoded again: as json reads it (see parsed_content)
            output = output._replace(content=json.loads(line)["content"])
        previous = output.n
        outputs.append(output)
        start = end + 1
    return outputs


def _fast_output(raw: dict[str, Any], previous: int, line: str) -> Output | None:
    """The common case, checked in one expression: ingest speed depends on it."""
    try:
        n, msg_id, msg_type = raw["n"], raw["msg_id"], raw["msg_type"]
        parent, time, content = raw["parent_msg_id"], raw["time"], raw["content"]
    except KeyError:
        return None
    if (
        type(n) is int
        and previous < n <= MAX_SEQ
        and type(msg_id) is str
        and msg_id
        and type(msg_type) is str  # before the set: a list or an object is unhashable
        and msg_type in INGEST_TYPES
        and (parent is None or type(parent) is str)
        and type(time) is str
        and time
        and type(content) is dict
    ):
        # Stored as received only in encode_output's form and with no other key: a stray
        # "seq" or "kernel_id" in the text would contradict the record's own.
        head = f'{{"n":{n},'
        canonical = (
            len(raw) == 6 and line.startswith(head) and line.startswith('"msg_id":', len(head))
        )
        tail = line[len(head) :] if canonical else None
        keep = tail is None or msg_type == "status"
        return Output(n, msg_id, msg_type, parent, time, content if keep else None, tail)
    return None


def _checked_output(raw: dict[str, Any], previous: int) -> Output:
    """The slow path: field by field, raising ProtocolError with what is wrong."""
    msg_type = _text(raw, "msg_type", "message")
    if msg_type not in INGEST_TYPES:
        raise ProtocolError(f"message: unknown msg_type {msg_type[:40]!r}")
    n = _count(raw, "n", "message", minimum=1)
    if n <= previous:
        raise ProtocolError("batch: message numbers must increase")
    return Output(
        n=n,
        msg_id=_text(raw, "msg_id", "message"),
        msg_type=msg_type,
        parent_msg_id=_text(raw, "parent_msg_id", "message", optional=True),
        time=_text(raw, "time", "message"),
        content=_field(raw, "content", dict, "message"),
    )


@dataclass(frozen=True)
class Welcome:
    """The answer to hello: what is stored already, and the daemon's size limits."""

    acked: int
    max_frame_bytes: int  # no frame may be larger
    max_output_bytes: int  # content above this is stored cut (fit_content)

    def encode(self) -> str:
        return _dumps({"type": "welcome", **self.__dict__})

    @classmethod
    def decode(cls, data: str | bytes) -> Welcome:
        obj = loads_object(data)
        if obj.get("type") != "welcome":
            raise ProtocolError("expected a welcome frame")
        return cls(
            acked=_count(obj, "acked", "welcome"),
            max_frame_bytes=_count(obj, "max_frame_bytes", "welcome", minimum=1),
            max_output_bytes=_count(obj, "max_output_bytes", "welcome", minimum=1),
        )


def ack(acked: int) -> str:
    return _dumps({"type": "ack", "acked": acked})


def decode_ack(data: str | bytes) -> int:
    """The cumulative ``acked`` of an ack frame (the hook's side)."""
    obj = loads_object(data)
    if obj.get("type") != "ack":
        raise ProtocolError("expected an ack frame")
    return _count(obj, "acked", "ack")


TRUNCATED = "nbrelay_truncated"  # the content key that says an output was stored cut


def _size(obj: object) -> int:
    text = _dumps(obj)
    return len(text) if text.isascii() else len(text.encode())


def _largest(obj: Any, path: tuple[Any, ...] = ()) -> tuple[int, tuple[Any, ...]]:
    """(JSON size, path) of the largest string or list inside ``obj`` (never ``obj`` itself)."""
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    best = (0, path)
    for key, value in items:
        if isinstance(value, str | list):
            best = max(best, (_size(value), (*path, key)))
        if isinstance(value, dict | list):
            best = max(best, _largest(value, (*path, key)))
    return best


def _cut_middle(value: str | list[Any], excess: int) -> str | list[Any] | None:
    """``value`` less at least ``excess`` bytes taken from its middle, marked; None if too small."""
    if isinstance(value, list):
        if len(value) < 3:
            return None
        sizes = [_size(v) + 1 for v in value]
        excess += 40  # the marker item
        first, last, removed = len(value) // 2, len(value) // 2, 0
        while removed < excess and (first > 1 or last < len(value) - 1):
            if first > 1:
                first -= 1
                removed += sizes[first]
            if removed < excess and last < len(value) - 1:
                removed += sizes[last]
                last += 1
        return [*value[:first], f"[nbrelay: {last - first} items cut]", *value[last:]]
    data = value.encode()
    if len(data) < 400:
        return None
    # Keep the share of the string that fits, measured as JSON (escapes can be 6 bytes a byte).
    share = max(0.0, 1 - (excess + 100) / _size(value))
    keep = int(len(data) * share) // 2
    head = data[:keep].decode(errors="ignore")
    tail = data[len(data) - keep :].decode(errors="ignore")
    return f"{head}\n[nbrelay: {len(data) - 2 * keep} bytes cut]\n{tail}"


def fit_content(content: dict[str, Any], limit: int) -> dict[str, Any]:
    """``content`` if its JSON fits in ``limit`` bytes; else a copy cut down to fit, saying so.

    Rich outputs lose their largest non-text representations first (a cut image is no
    image); then the largest strings and lists are cut in the middle, keeping their start
    and end (a log's first and latest lines, a traceback's last frames), with a marker in
    the text itself so that plain readers see it too.
    """
    original = _size(content)
    if original <= limit:
        return content
    target = limit - 200  # room for the TRUNCATED note
    cut: dict[str, Any] = json.loads(_dumps(content))
    removed: list[str] = []
    data = cut.get("data")
    if isinstance(data, dict):
        for mime in sorted(data, key=lambda m: _size(data[m]), reverse=True):
            if _size(cut) <= target:
                break
            if not mime.startswith("text/"):
                removed.append(mime)
                del data[mime]
    while (size := _size(cut)) > target:
        _, path = _largest(cut)
        *parents, key = path or (None,)
        holder: Any = cut
        for step in parents:
            holder = holder[step]
        smaller = _cut_middle(holder[key], size - target) if path else None
        if smaller is None or _size(smaller) >= _size(holder[key]):
            cut = {}  # nothing left worth keeping: say only that it was cut
            break
        holder[key] = smaller
    cut[TRUNCATED] = {"original_bytes": original, "removed": removed}
    return cut


#: A record about to be stored for the session's kernel, ``(msg_type, body)``: the body is
#: the record as JSON without "seq" (see record_json()), which the store gives it. A plain
#: tuple: one is made per message, and a NamedTuple costs ten times as much to make.
NewRecord = tuple[str, str]


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


#: Replay frames hold records up to about this many bytes (a larger record goes alone), so
#: clients with a 1 MiB message limit, the websockets default, can read them.
VIEW_FRAME_BYTES = 2**20


def records_frame(records: Sequence[str]) -> str:
    return "[" + ",".join(records) + "]"


def record_frames(records: Sequence[str]) -> Iterator[str]:
    """``records`` as JSON arrays of at most about :data:`VIEW_FRAME_BYTES` each."""
    start, size = 0, 0
    for i, record in enumerate(records):
        if size and size + len(record) > VIEW_FRAME_BYTES:
            yield records_frame(records[start:i])
            start, size = i, 0
        size += len(record) + 1
    if start < len(records):
        yield records_frame(records[start:])


def gap_json(gap: dict[str, Any], kept: Sequence[str] = ()) -> str:
    """``gap`` as JSON, with ``kept``, records (JSON texts) that retention pruned but kept
    apart, as its ``"kept"`` array when there are any: the start of the execution whose later
    output is the first that a reader of one kernel gets after the gap."""
    text = _dumps(gap)
    return f'{text[:-1]},"kept":{records_frame(kept)}}}' if kept else text


def gap_notice(gap: dict[str, int], kept: Sequence[str] = ()) -> str:
    """Tells a viewer that records ``first_seq..last_seq`` were pruned, and how many; and,
    for a viewer of one kernel, what of them was kept (:func:`gap_json`)."""
    return gap_json({"type": "gap", "reason": "pruned", **gap}, kept)


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
    return START, body


def plan_batch(
    hello: Hello, acked: int, outputs: Sequence[Output], max_output_bytes: int
) -> tuple[list[NewRecord], int]:
    """What to store for a batch, given that the session's messages up to ``acked`` are stored.

    Returns the records in order and the new ``acked``. Numbers at or below ``acked`` are
    duplicates (a resend after a reconnect) and are skipped; a jump in the numbering becomes
    one gap record in its place, so a loss is never silent. Content above
    ``max_output_bytes`` is stored cut (:func:`fit_content`).
    """
    records = []
    kernel = _dumps(hello.kernel_id)
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
            records.append((GAP, body))
        head = (hello.kernel_id, out.msg_id, out.msg_type, out.parent_msg_id, out.time)
        if out.tail is None:
            body = record_body(*head, out.parsed_content())
        else:
            body = f'{{"kernel_id":{kernel},{out.tail}'
        if len(body) > max_output_bytes // 4:  # perhaps above the limit: measure the content
            content = out.parsed_content()
            if _size(content) > max_output_bytes:
                body = record_body(*head, fit_content(content, max_output_bytes))
        records.append((out.msg_type, body))
        acked = out.n
    return records, acked
