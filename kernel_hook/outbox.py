"""Captured messages waiting for the daemon: numbered, bounded in bytes, shared by threads.

The capture path (the kernel's IOPub thread, and its main thread for a cell's id) only
appends here; the sender thread takes batches and removes what the daemon acknowledged.
Messages stay until acknowledged, so after a reconnect everything the daemon did not commit
is sent again.

Entries keep the number they were given for the life of the process; the daemon sees them
numbered within the current session (:meth:`Outbox.number`), which starts over at 1 when the
sender has to move to a new session (:meth:`Outbox.new_session`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

# What an entry costs beyond its frames, in the budget: the objects holding them.
ENTRY_OVERHEAD = 100
BURST = 256  # messages that end a sender's wait for its next frame at once


@dataclass(slots=True)  # not frozen: a frozen dataclass is built several times slower
class Entry:
    """One message as ipykernel serialised it: parsed by the sender, not on the IOPub thread.

    Header and parent are kept as one joined copy, so that ipykernel's own small objects for
    the message are freed at once, as without nbrelay (see docs/benchmarks.md, 2026-11-26);
    the content, which can be large, is not copied."""

    n: int
    headers: bytes  # header and parent, joined
    header_end: int
    content: bytes
    size: int  # what it counts against the buffer

    @property
    def header(self) -> bytes:
        return self.headers[: self.header_end]

    @property
    def parent(self) -> bytes:
        return self.headers[self.header_end :]


class Outbox:
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._lock = lock = threading.Lock()
        self._cond = threading.Condition(lock)  # take() waits here for output to send
        self._drained = threading.Condition(lock)  # wait_acked() waits here for acks
        self._unsent: deque[Entry] = deque()
        self._inflight: deque[Entry] = deque()  # sent on the current connection, not yet acked
        self._bytes = 0
        self._next_n = 1
        self._woken = False
        self._idle = False  # take() waits for the first message after a quiet spell
        self._last_take = float("-inf")  # when the last non-empty batch was taken
        self.acked = 0
        self.dropped = 0  # messages dropped because the buffer was full, ever
        self._base = 0  # messages up to here went in earlier sessions (new_session)
        self._taken = 0  # the highest number taken to send

    def put(self, header: bytes, parent: bytes, content: bytes) -> None:
        """Number and keep one message. Never blocks: when full, the oldest messages go."""
        with self._lock:  # not the Condition's own __enter__, a Python call: this is hot
            headers = header + parent
            size = len(headers) + len(content) + ENTRY_OVERHEAD
            self._unsent.append(Entry(self._next_n, headers, len(header), content, size))
            self._next_n += 1
            self._bytes += size
            while self._bytes > self.limit_bytes:
                # The daemon sees the hole in the numbering and stores a gap record there.
                oldest = self._inflight.popleft() if self._inflight else self._unsent.popleft()
                self._bytes -= oldest.size
                self.dropped += 1
            # Wake take() only for what it waits for: see its docstring.
            if len(self._unsent) == BURST or (self._idle and len(self._unsent) == 1):
                self._cond.notify()

    def take(self, max_bytes: int, timeout: float, spacing: float = 0.0) -> list[Entry]:
        """Unsent entries in order, up to ``max_bytes`` (at least one).

        Batches are taken at most every ``spacing`` seconds unless :data:`BURST` messages
        wait: while output is sustained, one frame for many messages costs the kernel's own
        threads far less (in the GIL) than one frame per message, and no message waits longer
        than ``spacing``. Once the spacing is up and nothing waits, it waits up to ``timeout``
        for the next message, which then goes at once; returns [] on timeout or wake().

        The spacing is waited out whatever arrives meanwhile, so that put() need not wake
        this thread for each message: every wake is a thread switch in the kernel's process.
        """
        with self._cond:
            deadline = self._last_take + spacing
            while (
                not self._woken
                and len(self._unsent) < BURST
                and (left := deadline - time.monotonic()) > 0
            ):
                self._cond.wait(left)
            if not self._unsent and not self._woken:
                self._idle = True
                self._cond.wait(timeout)
                self._idle = False
            self._woken = False
            batch: list[Entry] = []
            size = 0
            while self._unsent and (not batch or size + self._unsent[0].size <= max_bytes):
                entry = self._unsent.popleft()
                size += entry.size
                batch.append(entry)
            self._inflight.extend(batch)
            if batch:
                self._last_take = time.monotonic()
                self._taken = max(self._taken, batch[-1].n)
            return batch

    def number(self, entry: Entry) -> int:
        """The entry's number in the current session: what the daemon knows it by."""
        return entry.n - self._base

    @property
    def sent(self) -> int:
        """The highest number of the current session taken to send: the daemon cannot have
        stored more."""
        with self._lock:
            return self._taken - self._base

    def new_session(self) -> None:
        """Number what is not acknowledged from 1 again, for a new session."""
        with self._cond:
            self._base = self._taken = self.acked

    def ack(self, acked: int) -> None:
        """Forget everything up to the current session's ``acked``: the daemon committed it."""
        with self._cond:
            acked += self._base
            self.acked = max(self.acked, acked)
            for queue in (self._inflight, self._unsent):
                while queue and queue[0].n <= acked:
                    self._bytes -= queue.popleft().size
            if not self._inflight:  # only wait_acked() cares; take() sleeps on
                self._drained.notify_all()

    def forget(self, entry: Entry) -> None:
        """Drop a taken entry the sender could not send: no ack will ever cover it when it is
        the last in flight, and close() waits for acks."""
        with self._cond:
            try:
                self._inflight.remove(entry)
            except ValueError:  # gone already: dropped for room, or acked after a later one
                return
            self._bytes -= entry.size
            if not self._inflight:
                self._drained.notify_all()

    def rewind(self, acked: int) -> None:
        """A new connection: what was in flight and not acked goes out again, in order."""
        self.ack(acked)
        with self._cond:
            self._unsent.extendleft(reversed(self._inflight))
            self._inflight.clear()

    def wake(self) -> None:
        """Make a waiting take() or wait_acked() return now."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()
            self._drained.notify_all()

    def wait_acked(self, timeout: float) -> bool:
        """Wait until nothing is in flight; True if so."""
        with self._cond:
            return self._drained.wait_for(lambda: not self._inflight or self._woken, timeout) and (
                not self._inflight
            )

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "captured": self._next_n - 1,
                "acked": self.acked,
                "pending": len(self._unsent) + len(self._inflight),
                "pending_bytes": self._bytes,
                "dropped": self.dropped,
            }
