"""The daemon's connections: how many it holds at once, and how long one may keep it waiting.

Every TCP connection costs a file descriptor before any token is checked, so without these
bounds anyone who can reach the port could run the daemon out of descriptors with idle
connections, and lock out the owner, the database and the log with them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import Settings

log = logging.getLogger("nbrelay")

#: Descriptors kept for the daemon itself: stdio, the database with its -wal and -shm for the
#: writer, the reader and checkpoints, the lock, the event loop, the listener (about 16 in use).
OWN_DESCRIPTORS = 64
#: asyncio accepts up to this many connections in one go, before the daemon sees any of
#: them, so their descriptors are kept on top of the limit. Also the listen backlog.
ACCEPT_BACKLOG = 64
#: Seconds between two log lines about the same flood.
LOG_INTERVAL = 5.0
ACCEPT_ERROR = "socket.accept() out of system resource"  # asyncio's words


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one, as far as the system lets; return the
    soft limit in force. The soft limit is often 1024, which idle connections alone reach."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        log.debug("descriptor limit: %d", soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # macOS refuses an unlimited hard limit as the soft one
        log.debug("descriptor limit left at %d (hard limit %d): %s", soft, hard, exc)
        return soft
    log.debug("descriptor limit raised from %d to %d", soft, hard)
    return hard


def connection_limit(max_connections: int, descriptors: int) -> int:
    """The connections that fit in ``descriptors`` next to the daemon's own and an accept
    burst: each holds its socket and, while a static file is sent on it, that file."""
    if descriptors == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, (descriptors - OWN_DESCRIPTORS - ACCEPT_BACKLOG) // 2))


class Throttle:
    """One log line per ``interval`` seconds for a flood of one event: the events in between
    are counted, and the next line says how many there were."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._quiet_until = float("-inf")
        self._held = 0

    def __call__(self) -> str | None:
        """None to stay quiet; else the end of the line to log ("" when nothing was held)."""
        now = time.monotonic()
        if now < self._quiet_until:
            self._held += 1
            return None
        self._quiet_until = now + self.interval
        held, self._held = self._held, 0
        return f" ({held} more since the last line like this)" if held else ""


class AcceptErrors(logging.Filter):
    """For the ``asyncio`` logger: one short line per LOG_INTERVAL for failed accepts.

    Out of descriptors, asyncio logs each failed accept with a traceback and retries every
    second; before python/cpython#151615 was fixed, it also went on trying the other
    ACCEPT_BACKLOG accepts of the attempt, logging and scheduling a retry for each: megabytes
    of log a second.
    """

    def __init__(self) -> None:
        super().__init__()
        self._throttle = Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(ACCEPT_ERROR):
            return True
        end = self._throttle()
        if end is None:
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg, record.args = f"{ACCEPT_ERROR}: %s{end}", (error,)
        record.exc_info = record.exc_text = None
        return True


class ConnectionGate:
    """At most ``limit`` connections at once, and ``request_timeout`` seconds for each to send
    a whole request, counted from its start or from its previous response.

    At the limit, a new connection takes the place of the one that has waited longest for a
    request (as nginx reuses idle keep-alive connections): idle connections cannot lock the
    owner out, since a real client sends its request as soon as it connects. Only when every
    connection is busy is the new one refused.
    """

    def __init__(self, limit: int, request_timeout: float) -> None:
        self.limit = limit
        self.request_timeout = request_timeout
        self.waiting: dict[GatedH11Protocol, None] = {}  # in the order they began to wait
        self._throttle = Throttle()

    @classmethod
    def for_settings(cls, settings: Settings) -> ConnectionGate:
        """The limit is ``--max-connections``, or less if the descriptor limit is lower."""
        descriptors = raise_descriptor_limit()
        limit = connection_limit(settings.max_connections, descriptors)
        log.debug("at most %d connections at once", limit)
        if limit <= settings.max_viewers + settings.max_kernels:
            log.warning(
                "the descriptor limit (%d) leaves room for %d connections, not more than "
                "--max-viewers plus --max-kernels: raise the hard limit (ulimit -Hn)",
                descriptors,
                limit,
            )
        return cls(limit, settings.request_timeout)

    def protocol(self) -> type[H11Protocol]:
        """The HTTP protocol class for ``uvicorn.Config(http=...)``, held to this gate."""

        class Gated(GatedH11Protocol):
            gate = self

        return Gated

    def admit(self, conn: GatedH11Protocol) -> None:
        """Make room for ``conn``, just counted, if it is one too many."""
        if len(conn.connections) <= self.limit:
            return
        oldest = next(iter(self.waiting), None)
        if oldest is None:
            conn.transport.abort()
        else:
            oldest.stop_waiting()
            oldest.transport.abort()  # the descriptor is needed now, not once it drained
        end = self._throttle()
        if end is not None:
            log.warning(
                "%d connections at once, the limit: closing the ones that waited longest "
                "for a request, or new ones while all are busy%s",
                self.limit,
                end,
            )


class GatedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, admitted by a :class:`ConnectionGate` and held to its deadline.

    uvicorn times out none of these (its keep-alive timeout starts after a response and
    stops at the first byte): a connection that sends nothing, part of a request line or
    headers, a WebSocket handshake that never ends, or a body it never finishes.
    """

    gate: ClassVar[ConnectionGate]
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.gate.admit(self)
        self._track()

    def handle_events(self) -> None:
        super().handle_events()
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_waiting()
        super().connection_lost(exc)

    def stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
            del self.gate.waiting[self]

    def _track(self) -> None:
        """The deadline runs while the client owes a request (or the rest of one) on a
        connection that is still HTTP and open."""
        waiting = (
            not self.transport.is_closing()
            and self.transport.get_protocol() is self  # not handed over to a WebSocket
            and self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        )
        if not waiting:
            self.stop_waiting()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(self.gate.request_timeout, self._expire)
            self.gate.waiting[self] = None

    def _expire(self) -> None:
        self.stop_waiting()
        # As uvicorn's keep-alive timeout does: the end of a large response still being read
        # is sent first.
        self.transport.close()
