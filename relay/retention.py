"""Bounded storage: the oldest records go first once the database is too big or too old.

Pruning removes a prefix of the log (every record up to some seq), in small transactions run
by the store's writer on its thread between commits, so ingest never waits long. What was
removed is remembered as ``pruned_through``: a viewer asking for older records gets a gap
notice saying which seqs are gone and how many records that is, never a silent hole. Seqs
are never reused (``records.seq`` is AUTOINCREMENT). A kernel whose whole history was pruned
leaves the list; the kernels used longest ago therefore go first.

A kernel's executions run one after another, so the boundary can cut into one execution of
each kernel at most: the one running there, whose start (``execute_input``, ``nbrelay.cell``,
perhaps its process's ``nbrelay.start``) is pruned while later output of it is kept. Without
its start that output belongs to no notebook cell, so the latest pruned record of each of
those types (:data:`KEPT_TYPES`) is kept apart, in ``pruned_heads``: at most three small rows
a kernel, until the kernel leaves the list. A reader of that kernel gets them with the gap
notice (relay/app.py), and the notebook rules mark the cell (relay/notebook.py). They are
kept chunk by chunk, in the transaction that deletes them: a reader that meets the gap while
a prune is under way may get only those of the chunks deleted so far, and then shows the
execution as it did before they were kept (matched to no cell), never twice.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from .protocol import CELL, START

log = logging.getLogger("nbrelay.retention")

CHUNK = 5000  # records deleted per transaction
LOW_WATER = 0.9  # prune down to this share of --max-size, so it does not run at every commit
# Ages are checked at most this often (and every 1 % of --max-age, if that is shorter): once
# records age out, every check finds some, and finding the boundary takes ~20 reads, during
# which commits, and so every viewer's live output, wait.
AGE_CHECK_EVERY = 60.0
#: Records kept apart when pruned, the latest of each type per kernel (see above).
KEPT_TYPES = (START, "execute_input", CELL)
CHUNK_SEQS = "SELECT seq FROM records WHERE seq <= ? ORDER BY seq LIMIT ?"


class Retention:
    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes  # 0: no limit
        self.max_age = max_age  # seconds; 0: no limit
        self._age_checked = float("-inf")  # when (monotonic) _too_old last looked

    def boundary(self, db: sqlite3.Connection) -> int:
        """The seq to prune through to be within the limits, or 0 if nothing is over."""
        return max(self._too_old(db), self._too_big(db))

    def prune(self, db: sqlite3.Connection, boundary: int) -> None:
        """Delete every record up to ``boundary``, chunk by chunk, each its own transaction."""
        deleted = 0
        while True:
            _keep_heads(db, boundary)  # in the chunk's transaction: never one without the other
            cursor = db.execute(
                f"DELETE FROM records WHERE seq IN ({CHUNK_SEQS})", (boundary, CHUNK)
            )
            db.commit()
            deleted += cursor.rowcount
            if cursor.rowcount < CHUNK:
                break
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('pruned_through', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            (boundary,),
        )
        db.execute(
            "DELETE FROM pruned_heads WHERE kernel_id IN "
            "(SELECT kernel_id FROM kernels WHERE last_seq <= ?)",
            (boundary,),
        )
        db.execute("DELETE FROM kernels WHERE last_seq <= ?", (boundary,))
        db.execute(
            "UPDATE kernels SET first_seq = (SELECT min(seq) FROM records r "
            "WHERE r.kernel_id = kernels.kernel_id), records = (SELECT count(*) FROM records r "
            "WHERE r.kernel_id = kernels.kernel_id) WHERE first_seq <= ?",
            (boundary,),
        )
        db.commit()
        log.info("pruned %d records, through seq %d", deleted, boundary)

    def _too_old(self, db: sqlite3.Connection) -> int:
        """The last seq stored before the age limit (records are stored in time order)."""
        now = time.monotonic()
        if not self.max_age or now - self._age_checked < min(AGE_CHECK_EVERY, self.max_age / 100):
            return 0
        self._age_checked = now
        cutoff = time.time() - self.max_age
        rows = db.execute(
            "SELECT seq, stored, (SELECT max(seq) FROM records) FROM records ORDER BY seq LIMIT 1"
        ).fetchall()
        if not rows or rows[0][1] >= cutoff:  # the oldest is young enough: nothing to search
            return 0
        low, _, high = rows[0]
        boundary = 0
        while low <= high:  # binary search: seq order is storing order
            mid = (low + high) // 2
            found = db.execute(
                "SELECT seq, stored FROM records WHERE seq >= ? ORDER BY seq LIMIT 1", (mid,)
            ).fetchall()
            if not found:
                break
            seq, stored = found[0]
            if stored < cutoff:
                boundary, low = seq, seq + 1
            else:
                high = mid - 1
        return boundary

    def _too_big(self, db: sqlite3.Connection) -> int:
        """The seq to prune through to bring the database under LOW_WATER of the limit."""
        if not self.max_bytes:
            return 0
        used = used_bytes(db)
        if used <= self.max_bytes:
            return 0
        low, high, count = db.execute("SELECT min(seq), max(seq), count(*) FROM records").fetchone()
        if not count:
            return 0
        share = 1 - (self.max_bytes * LOW_WATER) / used  # of the records, oldest first
        return int(low + (high - low) * share) + 1


def _keep_heads(db: sqlite3.Connection, boundary: int) -> None:
    """Keep apart the latest record of each of KEPT_TYPES per kernel among the next chunk to
    be pruned, unless a later one is kept already. SQLite takes ``body`` from the row whose
    seq is the max()."""
    marks = ", ".join("?" * len(KEPT_TYPES))
    db.execute(
        "INSERT INTO pruned_heads (kernel_id, msg_type, seq, body) "
        "SELECT kernel_id, msg_type, max(seq), body FROM records "
        f"WHERE seq IN ({CHUNK_SEQS}) AND msg_type IN ({marks}) GROUP BY kernel_id, msg_type "
        "ON CONFLICT (kernel_id, msg_type) DO UPDATE SET seq = excluded.seq, "
        "body = excluded.body WHERE excluded.seq > pruned_heads.seq",
        (boundary, CHUNK, *KEPT_TYPES),
    )


def used_bytes(db: sqlite3.Connection) -> int:
    """Bytes the database uses, not counting free pages (the file keeps its size and reuses
    them, so this is what stays under --max-size)."""
    (used,) = db.execute(
        "SELECT (page_count - freelist_count) * page_size "
        "FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
    ).fetchone()
    return int(used)
