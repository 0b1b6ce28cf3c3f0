"""The one background thread that owns the connection to the daemon.

It connects (finding the daemon anew each time), says hello, learns what is already stored,
then sends the outbox in batches while a reader thread applies the daemon's acks. Any
failure ends the connection; the thread retries with exponential backoff and jitter, and
the outbox keeps everything unacknowledged meanwhile. Problems are logged once per kind,
never raised: the kernel must not notice.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from .. import protocol
from ..errors import START_HINT, NbrelayError
from ..protocol import Hello, ProtocolError
from ..runtime import Endpoint, connect_daemon, locate_daemon
from .outbox import Entry, Outbox

log = logging.getLogger("nbrelay.kernel_hook")

BATCH_BYTES = 1 << 20  # batches are cut at about this size; one larger message goes alone
BATCH_FRAMING = 100  # what a batch frame adds around its messages, rounded up
FIRST_DELAY = 0.05
MAX_DELAY = 5.0
OPEN_TIMEOUT = 5.0
IDLE_CHECK = 1.0  # how often a waiting sender re-checks its connection and close request
SPACING = 0.010  # while output is sustained, a frame goes at most this often (Outbox.take)


# ipykernel's header as jupyter_client serialises it (json or orjson): msg_id, msg_type,
# username, session, date, in this order. Anchored at the "{", the pattern can only match
# keys, as no value it skips can hold an unescaped quote; the three values it takes are JSON
# strings the daemon accepts as they are (no escape, no control character, not empty). Any
# other header is parsed.
HEADER = re.compile(
    rb'\{\s*"msg_id"\s*:\s*("[^"\\\x00-\x1f]+")\s*,\s*"msg_type"\s*:\s*("[^"\\\x00-\x1f]+")'
    rb'\s*,\s*"username"\s*:\s*"[^"\\]*"\s*,\s*"session"\s*:\s*"[^"\\]*"\s*,'
    rb'\s*"date"\s*:\s*("[^"\\\x00-\x1f]+")'
)
QUOTED_TYPES = frozenset(json.dumps(t).encode() for t in protocol.INGEST_TYPES)


class SessionTaken(ProtocolError):
    """The daemon counts more of the session's messages as stored than the hook ever sent.

    Another client used the session (its id is in every start record) and pushed the count
    up: at or below it, this kernel's output would be dropped as already stored. So the
    sender goes on under a new session, and what is not acknowledged is sent again there."""

    CLOSE_REASON = "told that more is stored than was sent: another client has used this session"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, protocol.CLOSE_POLICY)


@functools.lru_cache(maxsize=64)
def _parent_json(parent: bytes) -> str:
    """The msg_id in a parent header, as JSON ("null" if none): one parse per cell, as a
    cell's messages share it."""
    try:
        msg_id = protocol.loads_object(parent).get("msg_id") if parent else None
    except ProtocolError:
        return "null"
    return json.dumps(msg_id) if isinstance(msg_id, str) and msg_id else "null"


def _header(entry: Entry) -> tuple[str, str, str] | None:
    """msg_id, msg_type and date from the header, as JSON: found here, not on the IOPub thread."""
    found = HEADER.match(entry.headers, 0, entry.header_end)
    if found is not None and found[2] in QUOTED_TYPES:
        msg_id, msg_type, date = found.group(1, 2, 3)
        return msg_id.decode("utf-8", "replace"), msg_type.decode(), date.decode("utf-8", "replace")
    try:
        header = protocol.loads_object(entry.header)
        fields = header["msg_id"], header["msg_type"], header["date"]
    except (ProtocolError, KeyError):
        return None
    msg_id, msg_type, date = fields
    if (
        isinstance(msg_id, str)
        and msg_id
        and isinstance(msg_type, str)  # before the set: a list or an object is unhashable
        and msg_type in protocol.INGEST_TYPES
        and isinstance(date, str)
        and date
    ):
        return json.dumps(msg_id), json.dumps(msg_type), json.dumps(date)
    return None


def _encode(entry: Entry, n: int, max_output_bytes: int) -> str | None:
    """The entry's batch line; None for a header the daemon would refuse (never from Jupyter)."""
    fields = _header(entry)
    if fields is None:
        return None
    msg_id, msg_type, date = fields
    # ipykernel's JSON, as is; "replace" only matters for invalid UTF-8, which JSON can't carry.
    content = entry.content.decode("utf-8", "replace")
    if len(entry.content) > max_output_bytes:  # cut here what could not be stored whole
        content = json.dumps(protocol.fit_content(json.loads(content), max_output_bytes))
    parent = _parent_json(entry.parent)
    return protocol.output_line(n, msg_id, msg_type, parent, date, content)


class Sender:
    def __init__(
        self,
        outbox: Outbox,
        hello: Hello,
        locate: Callable[[], Endpoint] = locate_daemon,
    ) -> None:
        self.outbox = outbox
        self.hello = hello
        self._locate = locate
        self._closing = threading.Event()
        self._exiting = False  # the kernel process is exiting: say so when closing
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="nbrelay-sender", daemon=True)
        self._problem: str | None = None
        self._handshakes = 0
        self._skip_logged = False  # a message with an unreadable header was skipped
        self._reader_error: Exception | None = None  # why the ack reader stopped
        self.endpoint: Endpoint | None = None
        self.connected = False

    @property
    def problem(self) -> str | None:
        """Why the daemon cannot be reached right now, or None."""
        return self._problem

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float, exiting: bool = False) -> bool:
        """Deliver what is pending within ``timeout`` seconds, then stop. True if all was acked.

        The daemon is told why, and shows the kernel as exited (``exiting``: the kernel
        process is ending) or unloaded, not in its last state, which is then "busy"."""
        self._deadline = time.monotonic() + timeout
        self._exiting = exiting
        self._closing.set()
        self.outbox.wake()
        self._thread.join(timeout + 1)
        return self.outbox.stats()["pending"] == 0

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        delay = FIRST_DELAY
        while True:
            closing = self._closing.is_set()
            try:
                endpoint = self._locate()
            except NbrelayError as exc:
                self._report(f"{exc}; buffering output until one runs ({START_HINT})")
            else:
                handshakes = self._handshakes
                try:
                    self._deliver(endpoint)
                    return  # a delivery only ends cleanly when closing
                except NbrelayError as exc:  # not the user's daemon: it was sent nothing
                    self._report(f"{exc}; buffering output")
                except (OSError, TimeoutError, WebSocketException, ProtocolError) as exc:
                    if self._handshakes > handshakes:
                        delay = FIRST_DELAY  # it worked until now: retry soon
                    if isinstance(exc, SessionTaken):
                        self._new_session(exc)  # which says why
                    else:
                        self._report(self._describe(endpoint, exc))
                finally:
                    self.connected = False
            if closing:
                return  # one last attempt was made
            self._closing.wait(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, MAX_DELAY)

    def _deliver(self, endpoint: Endpoint) -> None:
        timeout = min(OPEN_TIMEOUT, max(0.1, self._deadline - time.monotonic()))
        with connect(
            endpoint.ws_url("ws/ingest"),
            sock=connect_daemon(endpoint, timeout),
            additional_headers={"Authorization": f"Bearer {endpoint.token}"},
            proxy=None,  # the daemon is local or tunnelled: never through an HTTP proxy
            compression=None,
            open_timeout=timeout,
            close_timeout=2,
        ) as ws:
            ws.send(self.hello.encode())
            welcome = protocol.Welcome.decode(ws.recv(timeout=timeout))
            try:
                self.outbox.rewind(self._checked(welcome.acked))
            except SessionTaken:
                ws.close(protocol.CLOSE_POLICY, SessionTaken.CLOSE_REASON)
                raise
            self._handshakes += 1
            self.endpoint, self.connected = endpoint, True
            if self._problem is not None:  # said why it was not connected: now it is
                again = " again" if self._handshakes > 1 else ""
                log.warning(
                    "nbrelay: connected to %s%s; sending what was buffered", endpoint.url, again
                )
                self._problem = None
            self._reader_error = None
            reader = threading.Thread(
                target=self._read_acks, args=(ws,), name="nbrelay-acks", daemon=True
            )
            reader.start()
            try:
                self._send_batches(ws, welcome)
            except SessionTaken:  # an ack's, from the reader thread (close() below: no-op)
                ws.close(protocol.CLOSE_POLICY, SessionTaken.CLOSE_REASON)
                raise
            finally:
                if self._exiting:
                    ws.close(protocol.CLOSE_GOING_AWAY, "kernel exiting")
                elif self._closing.is_set():
                    ws.close(protocol.CLOSE_NORMAL, "extension unloaded")
                else:  # a failure: the sender connects again
                    ws.close(protocol.CLOSE_INTERNAL_ERROR)
                reader.join()

    def _send_batches(self, ws: Connection, welcome: protocol.Welcome) -> None:
        """Send the outbox: many messages per frame, never a frame above the daemon's limit.

        Content is cut to the daemon's ``max_output_bytes`` before sending, which the daemon
        keeps well below its frame limit, so every message fits in a frame of its own.
        """
        limit = welcome.max_frame_bytes - BATCH_FRAMING
        while True:
            closing = self._closing.is_set()  # then send what is there, without waiting
            idle, spacing = (0.0, 0.0) if closing else (IDLE_CHECK, SPACING)
            batch = self.outbox.take(min(BATCH_BYTES, limit), idle, spacing)
            frame: list[str] = []
            size = 0
            for entry in batch:
                text = _encode(entry, self.outbox.number(entry), welcome.max_output_bytes)
                if text is None:  # the daemon stores a gap record for its number
                    self.outbox.forget(entry)
                    if not self._skip_logged:
                        self._skip_logged = True
                        log.error("nbrelay: skipped a message with an unreadable header")
                    continue
                length = len(text) if text.isascii() else len(text.encode())
                if frame and size + length > limit:
                    ws.send(protocol.encode_batch(frame))
                    frame, size = [], 0
                frame.append(text)
                size += length + 1
            if frame:
                ws.send(protocol.encode_batch(frame))
            if not self.connected:
                raise self._reader_error or ConnectionError("the daemon closed the connection")
            if closing and not batch:
                remaining = self._deadline - time.monotonic()
                if self.outbox.wait_acked(max(0.0, remaining)) or remaining <= 0:
                    return

    def _read_acks(self, ws: Connection) -> None:
        try:
            for frame in ws:
                self.outbox.ack(self._checked(protocol.decode_ack(frame)))
        except (WebSocketException, ProtocolError) as exc:
            self._reader_error = exc  # the sender thread reports it
        finally:
            self.connected = False
            self.outbox.wake()

    def _checked(self, acked: int) -> int:
        """``acked``, unless it is more than was sent in the session: SessionTaken."""
        sent = self.outbox.sent
        if acked > sent:
            raise SessionTaken(
                f"the daemon counts {acked} messages of session {self.hello.session} as "
                f"stored, but this kernel sent {sent}: another client has used its session"
            )
        return acked

    def _new_session(self, taken: SessionTaken) -> None:
        """Go on under a new session, so that the output is stored, not dropped."""
        self.hello = dataclasses.replace(self.hello, session=uuid.uuid4().hex)
        self.outbox.new_session()
        log.error(
            "nbrelay: %s; going on as session %s, from the last message it stored",
            taken.reason,
            self.hello.session,
        )

    # -- reporting -----------------------------------------------------------------------

    def _describe(self, endpoint: Endpoint, exc: BaseException) -> str:
        if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
            if exc.rcvd.code == protocol.CLOSE_POLICY:
                return (
                    f"the daemon at {endpoint.url} refused us ({exc.rcvd.reason}); buffering output"
                )
            return (
                f"the daemon at {endpoint.url} closed the connection ({exc.rcvd.code} "
                f"{exc.rcvd.reason}); buffering output"
            )
        if isinstance(exc, InvalidStatus):
            return (
                f"the daemon at {endpoint.url} answered HTTP "
                f"{exc.response.status_code}; buffering output"
            )
        if isinstance(exc, OSError | TimeoutError):
            return f"cannot reach the daemon at {endpoint.url} ({exc}); buffering output"
        return f"lost the connection to {endpoint.url} ({exc}); buffering output"

    def _report(self, problem: str) -> None:
        """Log a problem once; the same problem again stays quiet until things recover."""
        if problem != self._problem:
            self._problem = problem
            log.warning("nbrelay: %s", problem)
