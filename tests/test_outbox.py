"""The hook's outbox: numbering, batches, acks, rewinds and the byte bound."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from support import header, wait_for

from nbrelay.kernel_hook.outbox import BURST, ENTRY_OVERHEAD, Entry, Outbox

HEADER = header("m")


def put(box: Outbox, count: int, size: int = 100) -> None:
    for _ in range(count):
        box.put(HEADER, b"{}", b"x" * size)


def test_numbers_batches_and_acks() -> None:
    """Messages are numbered from 1, taken in order within the byte budget, forgotten once acked."""
    box = Outbox(limit_bytes=10**6)
    put(box, 5)
    entry_size = len(HEADER) + 2 + 100 + ENTRY_OVERHEAD
    first = box.take(max_bytes=2 * entry_size, timeout=0)
    assert [e.n for e in first] == [1, 2]
    assert [e.n for e in box.take(max_bytes=10**6, timeout=0)] == [3, 4, 5]
    box.ack(4)
    assert box.stats()["pending"] == 1
    assert box.take(max_bytes=10**6, timeout=0) == []


def test_rewind_resends_what_was_not_acked_in_order() -> None:
    """After a reconnect, in-flight messages above the daemon's acked go out again first."""
    box = Outbox(limit_bytes=10**6)
    put(box, 3)
    box.take(max_bytes=10**6, timeout=0)
    put(box, 2)
    box.rewind(1)
    assert [e.n for e in box.take(max_bytes=10**6, timeout=0)] == [2, 3, 4, 5]


def test_a_new_session_numbers_what_is_not_acked_from_one() -> None:
    """After new_session() the daemon sees the unacknowledged messages numbered 1, 2... (in
    flight ones first), acks count in that numbering, and the totals stay the process's."""
    box = Outbox(limit_bytes=10**6)
    put(box, 4)
    box.take(max_bytes=10**6, timeout=0)
    box.ack(2)
    assert box.sent == 4
    box.new_session()
    put(box, 1)
    assert box.sent == 0
    box.rewind(0)
    batch = box.take(max_bytes=10**6, timeout=0)
    assert [box.number(e) for e in batch] == [1, 2, 3] and box.sent == 3
    box.ack(2)
    assert box.stats() | {"pending_bytes": 0} == {
        "captured": 5,
        "acked": 4,
        "pending": 1,
        "pending_bytes": 0,
        "dropped": 0,
    }


def test_overflow_drops_oldest_and_counts() -> None:
    """A full outbox never blocks the kernel: the oldest messages go, and are counted."""
    entry_size = len(HEADER) + 2 + 1000 + ENTRY_OVERHEAD
    box = Outbox(limit_bytes=10 * entry_size)
    put(box, 25, size=1000)
    stats = box.stats()
    assert stats["dropped"] == 15
    assert stats["pending_bytes"] <= box.limit_bytes
    assert [e.n for e in box.take(max_bytes=10**6, timeout=0)] == list(range(16, 26))


def test_take_returns_when_woken() -> None:
    """A sender waiting for output wakes up for wake(), e.g. when asked to close."""
    box = Outbox(limit_bytes=10**6)
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(box.take(1000, timeout=30)))
    waiter.start()
    box.wake()
    waiter.join(10)
    assert result == [[]]


def test_after_a_quiet_spell_the_first_message_goes_at_once() -> None:
    """No frame was sent lately, so a lone message is not held back for company."""
    box = Outbox(limit_bytes=10**6)
    put(box, 1)
    result: list[list[Entry]] = []
    taker = threading.Thread(target=lambda: result.append(box.take(1000, timeout=0, spacing=60)))
    taker.start()
    taker.join(10)  # a minute's spacing applied here would leave the thread waiting
    assert [[e.n for e in batch] for batch in result] == [[1]]


def test_sustained_output_waits_for_the_spacing_or_a_burst() -> None:
    """Right after a frame, the next one waits: here until BURST messages have gathered."""
    box = Outbox(limit_bytes=10**8)
    put(box, 1)
    assert len(box.take(1000, timeout=0)) == 1
    result: list[int] = []
    taker = threading.Thread(
        target=lambda: result.append(len(box.take(10**8, timeout=30, spacing=60)))
    )
    taker.start()
    put(box, BURST)  # the taker sees the first of them and waits for the rest
    taker.join(10)
    assert result == [BURST]


@contextmanager
def sender_asleep(box: Outbox, spacing: float) -> Iterator[list[list[int]]]:
    """A thread in ``box.take``, asleep; asserts that nothing in the block woke it.

    threading.Condition.notify() removes the lock a waiter sleeps on from ``_waiters`` there
    and then, and a waiter that wakes and waits again sleeps on a new one: the same lock
    before and after the block means the thread slept through it.
    """
    taken: list[list[int]] = []
    taker = threading.Thread(
        target=lambda: taken.append([e.n for e in box.take(10**6, timeout=30, spacing=spacing)])
    )
    taker.start()
    waiters = box._cond._waiters  # type: ignore[attr-defined]
    try:
        (sleeping,) = wait_for(lambda: list(waiters), what="the sender to wait")
        yield taken
        assert list(waiters) == [sleeping], "the sender was woken"
    finally:
        box.wake()
        taker.join(10)


def test_output_during_the_spacing_does_not_wake_the_sender() -> None:
    """Each wake is a thread switch in the kernel: a sender waiting out the spacing sleeps on."""
    box = Outbox(limit_bytes=10**8)
    put(box, 1)
    box.take(1000, timeout=0)
    with sender_asleep(box, spacing=60):
        put(box, BURST - 1)


def test_an_ack_does_not_wake_a_sender_waiting_for_output() -> None:
    """Acks matter to wait_acked() only; a sender with nothing to send sleeps through them."""
    box = Outbox(limit_bytes=10**6)
    put(box, 1)
    box.take(1000, timeout=0)
    with sender_asleep(box, spacing=0):
        box.ack(1)
    assert box.stats()["pending"] == 0
