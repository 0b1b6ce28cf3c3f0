"""One checker for every fault test, in the spirit of Jepsen's queue checkers.

Given what the kernel client saw (the oracle), what the daemon stored, and what each viewer
received, it checks the whole contract at once: every message the kernel sent is stored
exactly once and in order; seqs strictly increase; every viewer received a contiguous,
duplicate-free, in-order run of the stored records after its ``since``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from support import CAPTURED

Record = dict[str, Any]


def check(
    sent: Sequence[dict[str, Any]],
    stored: Sequence[Record],
    viewers: Iterable[tuple[int, Sequence[Record]]] = (),
) -> None:
    """``sent``: IOPub messages as the client received them (the other types are ignored);
    ``stored``: every record the daemon holds, in seq order; ``viewers``: (since, received)."""
    seqs = [r["seq"] for r in stored]
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), "seq must strictly increase"

    expected = [m["header"]["msg_id"] for m in sent if m["msg_type"] in CAPTURED]
    wanted = set(expected)
    got = [r["msg_id"] for r in stored if r["msg_id"] in wanted]
    counts = Counter(got)
    lost = [m for m in expected if counts[m] == 0]
    doubled = [m for m, n in counts.items() if n > 1]
    assert not lost, f"{len(lost)} of {len(expected)} messages were lost, first {lost[:3]}"
    assert not doubled, f"{len(doubled)} messages were stored twice, first {doubled[:3]}"
    assert got == expected, "messages were stored out of order"
    by_id = {m["header"]["msg_id"]: m for m in sent}
    for record in stored:
        if record["msg_id"] in by_id:
            assert record["content"] == by_id[record["msg_id"]]["content"], record["msg_id"]

    for since, received in viewers:
        run = [r for r in stored if r["seq"] > since][: len(received)]
        assert list(received) == run, f"viewer since={since}: not the contiguous records after it"
