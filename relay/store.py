"""SQLite storage: one writer that commits in batches, one reader, and "new rows" wake-ups.

Every record gets a ``seq`` here. The writer task owns the only write connection and
assigns seqs itself, in commit order, so rows become visible strictly in seq order and a
reader that asks for ``seq > cursor`` can never skip one: viewers need no queue of their own.
``records.seq`` is AUTOINCREMENT, so SQLite never reuses a seq, even after rows are deleted.

The write connection lives on a thread of its own, and a whole transaction is one call to
it. aiosqlite, which the reader uses, hands each statement to its thread separately: a
commit is four statements, and each hand-over is two thread switches, which cost the
daemon a quarter of its CPU while kernels print (see docs/benchmarks.md, 2026-11-26).

Checkpoints (copying the WAL into the database file, with two fsyncs) run on a third thread,
while the writer goes on committing: SQLite would run them inside a commit, every 1000
pages, and for 10 kB messages they were half of a commit's time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from . import protocol
from .coalesce import Coalescer
from .datadir import open_private
from .errors import NbrelayError
from .protocol import Hello, Output, ProtocolError
from .retention import Retention, used_bytes

log = logging.getLogger("nbrelay.store")
T = TypeVar("T")

APPLICATION_ID = 0x6E627231  # "nbr1" in the SQLite header: this file is an nbrelay database
SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}  # --durability -> PRAGMA synchronous
CHECK_EVERY = 1.0  # seconds between retention checks while writes come in
CHECKPOINT_BYTES = 4 * 2**20  # committed between checkpoints: SQLite's own 1000 pages
WAL_LIMIT_PAGES = 8192  # 32 MiB: past it, the writer finishes a checkpoint (_run_checkpoint)
IDLE_PRUNE = 60.0  # seconds without writes after which retention runs anyway


def check_database(path: Path) -> None:
    """Refuse, without touching it, a file that is not an nbrelay database.

    Runs before the daemon opens the file for writing (which would switch it to WAL mode and
    add tables), read-only: a corrupt file or another program's database stays as it was.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            (app_id,) = db.execute("PRAGMA application_id").fetchone()
            (tables,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise NbrelayError(
            f"{path} is not a database nbrelay can use ({exc}); it was left "
            "untouched. Pass another file with --db."
        ) from None
    if app_id != APPLICATION_ID and (app_id or tables):
        raise NbrelayError(
            f"{path} is another program's SQLite database; it was left "
            "untouched. Pass another file with --db."
        )


SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kernel_id TEXT NOT NULL,
    msg_type TEXT NOT NULL,
    stored REAL NOT NULL,  -- unix time of the commit: what --max-age goes by
    body TEXT NOT NULL  -- the record as sent to clients, without "seq"
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,  -- pruned_through: the last seq removed by retention
    value INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_kernel ON records (kernel_id, seq);
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY,  -- one kernel process
    kernel_id TEXT NOT NULL,
    acked INTEGER NOT NULL     -- its messages 1..acked are stored
);
CREATE TABLE IF NOT EXISTS kernels (
    kernel_id TEXT PRIMARY KEY,
    notebook TEXT,
    hostname TEXT,
    pid INTEGER,
    started TEXT,
    first_seq INTEGER,
    last_seq INTEGER,
    last_time TEXT,
    execution_state TEXT,
    records INTEGER NOT NULL DEFAULT 0  -- how many of its records are stored now
);
CREATE TABLE IF NOT EXISTS pruned_heads (  -- see relay/retention.py
    kernel_id TEXT NOT NULL,
    msg_type TEXT NOT NULL,  -- one of retention.KEPT_TYPES
    seq INTEGER NOT NULL,  -- the latest pruned record of that type of that kernel
    body TEXT NOT NULL,
    PRIMARY KEY (kernel_id, msg_type)
);
"""

KERNEL_FIELDS = (
    "kernel_id",
    "notebook",
    "hostname",
    "pid",
    "started",
    "first_seq",
    "last_seq",
    "last_time",
    "execution_state",
    "records",
)


class StoreClosed(RuntimeError):
    """The store was closed while a caller was waiting on it."""


@dataclass
class _Write:
    """A unit of work for the writer: a hello (``outputs`` is None) or a batch."""

    hello: Hello
    outputs: Sequence[Output] | None
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _KernelUpdate:
    first_seq: int
    last_seq: int = 0
    last_time: str = ""
    execution_state: str | None = None
    records: int = 0


class Store:
    def __init__(
        self,
        path: Path,
        max_output_bytes: int,
        durability: str,
        retention: Retention,
    ) -> None:
        self.path = path
        self.retention = retention
        self.pruned_through = 0  # records up to here were removed by retention
        self.max_output_bytes = max_output_bytes
        self.synchronous = SYNCHRONOUS[durability]
        self.head = 0  # last committed seq
        self._kernel_heads: dict[str, int] = {}
        self._coalescer = Coalescer(max_output_bytes)
        # session -> (its kernel, acked), for sessions seen since start
        self._sessions: dict[str, tuple[str, int]] = {}
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._new_rows = asyncio.Event()
        self._closed = False
        self._stopping = False
        self.failure: str | None = None  # why the last commit failed, until one succeeds
        self._last_check = 0.0  # when retention last ran (monotonic)
        self._unchecked = False  # writes came in since
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="nbrelay-writer")
        self._writer: sqlite3.Connection | None = None  # used on _writer_thread only
        self._checkpoint_thread = ThreadPoolExecutor(1, thread_name_prefix="nbrelay-checkpoint")
        self._checkpointer: sqlite3.Connection | None = None  # on _checkpoint_thread only
        self._checkpoint: asyncio.Task[None] | None = None  # the one running, if any
        self._uncheckpointed = 0  # bytes of records committed since the last checkpoint began
        self._reader: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        # Everything the kernels printed is in here: a new database is the user's alone
        # (SQLite gives its -wal and -shm files the database file's mode). The folder and
        # the files SQLite opens were checked before (datadir.private_data_folder).
        os.close(open_private(self.path, os.O_CREAT | os.O_WRONLY))
        self._writer = await self._in_writer(self._open_writer)
        db = self._writer
        rows = await self._in_writer(
            _fetchall,
            db,
            "SELECT max(seq) FROM records UNION ALL "
            "SELECT seq FROM sqlite_sequence WHERE name = 'records'",
        )
        self.head = max((r[0] for r in rows if r[0] is not None), default=0)
        for kernel_id, last_seq in await self._in_writer(
            _fetchall, db, "SELECT kernel_id, last_seq FROM kernels"
        ):
            self._kernel_heads[kernel_id] = last_seq or 0
        for (value,) in await self._in_writer(
            _fetchall, db, "SELECT value FROM meta WHERE key = 'pruned_through'"
        ):
            self.pruned_through = value
        await self._prune()
        self._reader = await aiosqlite.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        self._checkpointer = await self._in_checkpointer(sqlite3.connect, self.path)
        self._task = asyncio.create_task(self._write_loop(), name="nbrelay-writer")

    async def _in_writer(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on the writer's thread, the only one that may use its connection."""
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, call, *args)

    async def _in_checkpointer(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on the checkpoint thread, the only one that may use its connection."""
        return await asyncio.get_running_loop().run_in_executor(
            self._checkpoint_thread, call, *args
        )

    def _open_writer(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)  # on the writer's thread: it stays there
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread's work
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.executescript(SCHEMA)
            _add_record_counts(db)
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        """Commit what is queued, then stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._checkpoint is not None:
            await self._checkpoint
        if self._checkpointer is not None:
            await self._in_checkpointer(self._checkpointer.close)
        self._checkpoint_thread.shutdown()
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await self._in_writer(self._writer.close)
        self._writer_thread.shutdown()

    # -- writing -------------------------------------------------------------------------

    async def open_session(self, hello: Hello) -> int:
        """Register a kernel process; returns how far its messages are already stored.

        Raises ProtocolError (1008) for a session that belongs to another kernel: session ids
        are in every start record, and a token holder must not file one kernel's numbering
        under another."""
        return await self._submit(_Write(hello, None))

    async def append(self, hello: Hello, outputs: Sequence[Output]) -> int:
        """Store a batch; returns the session's new ``acked`` once it is committed."""
        return await self._submit(_Write(hello, outputs))

    async def _submit(self, write: _Write) -> int:
        if self._closed:
            raise StoreClosed("the store is closed")
        self._queue.put_nowait(write)
        return await write.done

    async def _write_loop(self) -> None:
        while True:
            # Retention runs at most every CHECK_EVERY while writes come in, CHECK_EVERY after
            # the last write, and every IDLE_PRUNE when idle (records still age).
            timeout = CHECK_EVERY if self._unchecked else IDLE_PRUNE
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                await self._prune_logged(force=True)
                continue
            writes = [first]
            while not self._queue.empty():
                writes.append(self._queue.get_nowait())
            try:
                await self._commit(writes)
                if self.failure is not None:
                    log.warning("storage works again; kernels' buffered output is being stored")
                    self.failure = None
            except Exception as exc:  # a failed commit fails its writers, not the daemon
                if self.failure is None:  # said once per outage, not at every retry
                    log.error(
                        "storage is failing (%s): nothing is acknowledged until it works "
                        "again; kernels keep their output and retry",
                        exc,
                    )
                self.failure = str(exc)
                await self._rollback()
                for w in writes:
                    if not w.done.done():
                        w.done.set_exception(exc)
            finally:
                for _ in writes:
                    self._queue.task_done()
            await self._prune_logged()

    async def _prune_logged(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_check < CHECK_EVERY:
            self._unchecked = True
            return
        self._last_check, self._unchecked = now, False
        try:
            await self._prune()
        except sqlite3.Error as exc:  # retried at the next check; ingest goes on
            log.error("pruning failed: %s", exc)
            await self._rollback()

    async def _commit(self, writes: list[_Write]) -> None:
        """One transaction for everything queued: the group commit that makes ingest fast."""
        assert self._writer is not None
        db = self._writer
        acked: dict[str, int] = {}  # session -> acked once this commits
        owners: dict[str, str] = {}  # session -> its kernel
        results: list[int | ProtocolError] = []
        rows: list[tuple[int, str, str, float, str]] = []
        written = 0  # characters of record bodies: about the bytes the WAL grows by
        now = time.time()
        hellos: dict[str, Hello] = {}
        kernels: dict[str, _KernelUpdate] = {}
        seq = self.head
        widgets = self._coalescer.batch()

        for w in writes:
            hello = w.hello
            owner: str | None
            if hello.session in acked:
                owner, current = owners[hello.session], acked[hello.session]
            else:
                owner, current = await self._stored_session(hello.session)
            if owner is not None and owner != hello.kernel_id:
                results.append(
                    ProtocolError(
                        f"session {hello.session} belongs to another kernel",
                        protocol.CLOSE_POLICY,
                    )
                )
                continue
            owners[hello.session] = hello.kernel_id
            if w.outputs is None:
                hellos[hello.kernel_id] = hello
                records = [protocol.start_record(hello)] if current < 0 else []
                current = max(current, 0)
            else:
                assert current >= 0, "the ingest handler opens the session before any batch"
                records, current = protocol.plan_batch(
                    hello, current, w.outputs, self.max_output_bytes
                )
            acked[hello.session] = current
            results.append(current)
            if not records:
                continue
            update = kernels.setdefault(hello.kernel_id, _KernelUpdate(first_seq=seq + 1))
            update.records += len(records)
            for msg_type, body in records:
                seq += 1
                body = widgets.record(seq, hello.kernel_id, msg_type, body)
                rows.append((seq, hello.kernel_id, msg_type, now, body))
                written += len(body)
            update.last_seq = seq
            for out in w.outputs or ():
                update.last_time = out.time
                if out.msg_type == "status":
                    state = out.parsed_content().get("execution_state")
                    update.execution_state = state if isinstance(state, str) else None

        # Widget updates replaced by later ones (relay/coalesce.py): those of this commit are
        # not written, the others are removed in its transaction.
        replaced = {seq for _, seq in widgets.replaced}
        if replaced:
            rows = [row for row in rows if row[0] not in replaced]
            for kernel_id, _ in widgets.replaced:
                kernels[kernel_id].records -= 1  # the count of either kind goes down by one
        stored = [(k, s) for k, s in widgets.replaced if s <= self.head]
        await self._in_writer(
            _write,
            db,
            [(h.kernel_id, h.notebook, h.hostname, h.pid, h.started) for h in hellos.values()],
            rows,
            [
                (u.first_seq, u.last_seq, u.last_time, u.execution_state, u.records, kernel_id)
                for kernel_id, u in kernels.items()
            ],
            [(session, owners[session], n) for session, n in acked.items()],
            stored,
        )

        # Committed: publish. Nothing above may change in-memory state before this point.
        self.head = seq
        self._coalescer.publish(widgets)
        self._sessions.update((session, (owners[session], n)) for session, n in acked.items())
        for kernel_id, u in kernels.items():
            self._kernel_heads[kernel_id] = u.last_seq
        for w, result in zip(writes, results, strict=True):
            if isinstance(result, ProtocolError):
                w.done.set_exception(result)
            else:
                w.done.set_result(result)
        if rows:
            self._wake()
        self._uncheckpointed += written
        if self._uncheckpointed >= CHECKPOINT_BYTES and self._checkpoint is None:
            self._uncheckpointed = 0
            self._checkpoint = asyncio.create_task(self._run_checkpoint())

    async def kernel_left(self, kernel_id: str, state: str) -> None:
        """Show the kernel as ``state`` (protocol.LEFT_STATES): its hook said why it left."""
        if self._closed:  # the daemon is stopping too: its writer may be gone already
            return
        assert self._writer is not None
        try:
            await self._in_writer(_set_state, self._writer, kernel_id, state)
        except sqlite3.Error as exc:  # only the state shown is lost
            log.error("could not record that kernel %s %s: %s", kernel_id, state, exc)
            await self._rollback()

    async def _run_checkpoint(self) -> None:
        """Copy the WAL into the database on the checkpoint thread, beside the writer.

        The WAL only starts over at a commit after a checkpoint that copied all of it, and
        under sustained ingest the writer always adds more meanwhile. So past WAL_LIMIT_PAGES
        the writer, between two commits, finishes the job: it copies what came in during the
        checkpoint (a few milliseconds of ingest, not the whole WAL), and as RESTART, so that
        its next commit starts the WAL over even if a reader was in the way (it waits for
        readers, never for a writer: it is the writer). The checkpoint thread's RESTART held
        commits up for 20-40 ms each time (docs/benchmarks.md).
        """
        assert self._checkpointer is not None and self._writer is not None
        try:
            if await self._in_checkpointer(_checkpoint, self._checkpointer) > WAL_LIMIT_PAGES:
                await self._in_writer(_checkpoint, self._writer, "RESTART")
        except sqlite3.Error as exc:  # the WAL keeps everything; the next checkpoint retries
            log.error("checkpoint failed: %s", exc)
        finally:
            self._checkpoint = None

    async def _prune(self) -> None:
        """Apply retention. ``pruned_through`` moves before the rows go, so a viewer reading
        meanwhile is told about the gap rather than finding a hole."""
        assert self._writer is not None
        boundary = await self._in_writer(self.retention.boundary, self._writer)
        if boundary <= self.pruned_through:
            return
        self.pruned_through = boundary
        await self._in_writer(self.retention.prune, self._writer, boundary)
        for kernel_id, head in list(self._kernel_heads.items()):
            if head <= boundary:
                del self._kernel_heads[kernel_id]

    def gap(self, since: int) -> dict[str, int] | None:
        """What a reader asking for records after ``since`` will not get: pruned seqs."""
        if since >= self.pruned_through:
            return None
        return {
            "first_seq": since + 1,
            "last_seq": self.pruned_through,
            "records": self.pruned_through - since,
        }

    async def _rollback(self) -> None:
        """Undo a failed transaction; the writer must survive even if that fails too."""
        assert self._writer is not None
        try:
            await self._in_writer(self._writer.rollback)
        except Exception as exc:
            log.error("rollback failed too: %s", exc)

    async def _stored_session(self, session: str) -> tuple[str | None, int]:
        """The session's kernel and ``acked``; (None, -1) for a session never seen."""
        known = self._sessions.get(session)
        if known is not None:
            return known
        assert self._writer is not None
        rows = await self._in_writer(
            _fetchall,
            self._writer,
            "SELECT kernel_id, acked FROM sessions WHERE session = ?",
            session,
        )
        return (str(rows[0][0]), int(rows[0][1])) if rows else (None, -1)

    # -- reading -------------------------------------------------------------------------

    def _wake(self) -> None:
        event, self._new_rows = self._new_rows, asyncio.Event()
        event.set()

    async def wait_beyond(self, seq: int) -> None:
        """Return once a record with a seq above ``seq`` is committed."""
        while self.head <= seq:
            if self._closed or self._stopping:
                raise StoreClosed("the store is closed")
            await self._new_rows.wait()

    def stop_waiting(self) -> None:
        """Make every wait_beyond() raise StoreClosed: the daemon is stopping."""
        self._stopping = True
        self._wake()

    def kernel_head(self, kernel_id: str | None) -> int:
        """The last committed seq, overall or of one kernel."""
        return self.head if kernel_id is None else self._kernel_heads.get(kernel_id, 0)

    async def read(
        self,
        after: int,
        limit: int,
        kernel_id: str | None = None,
        before: int | None = None,
        msg_types: Sequence[str] = (),
    ) -> list[tuple[int, str]]:
        """Records with ``after < seq < before``, in order, as ``(seq, JSON text)``: the first
        ``limit`` of them, or with ``before`` the last ``limit`` (a viewer opens at the end);
        with ``msg_types``, only records of those types."""
        assert self._reader is not None
        where = "seq > ?"
        params: list[int | str] = [after]
        if before is not None:
            where, params = where + " AND seq < ?", [*params, before]
        if msg_types:
            marks = ", ".join("?" * len(msg_types))
            where, params = f"{where} AND msg_type IN ({marks})", [*params, *msg_types]
        if kernel_id is not None:
            where, params = "kernel_id = ? AND " + where, [kernel_id, *params]
        order = "DESC" if before is not None else "ASC"
        rows = list(
            await self._reader.execute_fetchall(
                f"SELECT seq, body FROM records WHERE {where} ORDER BY seq {order} LIMIT ?",
                (*params, limit),
            )
        )
        if before is not None:
            rows.reverse()
        return [(seq, protocol.record_json(seq, body)) for seq, body in rows]

    async def kept(self, kernel_id: str, since: int, msg_types: Sequence[str] = ()) -> list[str]:
        """The records of ``kernel_id`` after ``since`` that retention pruned but kept apart
        (relay/retention.py), in seq order, as JSON texts; with ``msg_types``, of those types.
        They go with a gap notice to readers of that kernel."""
        assert self._reader is not None
        rows = await self._reader.execute_fetchall(
            "SELECT seq, body, msg_type FROM pruned_heads WHERE kernel_id = ? AND seq > ? "
            "ORDER BY seq",
            (kernel_id, since),
        )
        return [
            protocol.record_json(seq, body)
            for seq, body, msg_type in rows
            if not msg_types or msg_type in msg_types
        ]

    async def used_bytes(self) -> int:
        assert self._writer is not None
        return await self._in_writer(used_bytes, self._writer)

    async def kernels(self) -> list[dict[str, Any]]:
        assert self._reader is not None
        rows = await self._reader.execute_fetchall(
            f"SELECT {', '.join(KERNEL_FIELDS)} FROM kernels ORDER BY last_seq DESC"
        )
        return [dict(zip(KERNEL_FIELDS, row, strict=True)) for row in rows]


# -- on the writer's thread -------------------------------------------------------------


def _fetchall(db: sqlite3.Connection, sql: str, *params: Any) -> list[Any]:
    return db.execute(sql, params).fetchall()


def _add_record_counts(db: sqlite3.Connection) -> None:
    """Databases made before kernels had a record count get one, counted once."""
    columns = db.execute("PRAGMA table_info(kernels)").fetchall()
    if "records" not in {c[1] for c in columns}:
        db.execute("ALTER TABLE kernels ADD COLUMN records INTEGER NOT NULL DEFAULT 0")
        db.execute(
            "UPDATE kernels SET records = (SELECT count(*) FROM records r "
            "WHERE r.kernel_id = kernels.kernel_id)"
        )


def _set_state(db: sqlite3.Connection, kernel_id: str, state: str) -> None:
    db.execute("UPDATE kernels SET execution_state = ? WHERE kernel_id = ?", (state, kernel_id))
    db.commit()


def _checkpoint(db: sqlite3.Connection, mode: str = "PASSIVE") -> int:
    """Copy the WAL into the database; returns the WAL's size in pages. PASSIVE waits for
    nobody; RESTART waits for readers to leave the WAL, so that the next commit starts it over."""
    _, wal_pages, _ = db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(wal_pages)


# Records go in ROWS_PER_INSERT at a time, as one statement, not through executemany: a
# statement needs the GIL only to bind its parameters and to return, where executemany takes
# it back for every row, and each time may wait up to a switch interval (5 ms) while the event
# loop decodes batches. Cheaper on its own too: 1.6-1.7 against 2.4-2.6 µs a 100 B row
# (docs/benchmarks.md). The rest of a commit goes through executemany, so that only two
# statements are ever prepared: preparing one of 199 rows takes 0.2 ms.
ROWS_PER_INSERT = 199  # 5 parameters a row: within SQLite's 999 before version 3.32
INSERT_RECORDS = "INSERT INTO records (seq, kernel_id, msg_type, stored, body) VALUES "
INSERT_ONE = INSERT_RECORDS + "(?, ?, ?, ?, ?)"
INSERT_MANY = INSERT_RECORDS + ", ".join(["(?, ?, ?, ?, ?)"] * ROWS_PER_INSERT)


def _write(
    db: sqlite3.Connection,
    hellos: list[tuple[str, str | None, str, int, str]],
    records: list[tuple[int, str, str, float, str]],
    kernels: list[tuple[int, int, str, str | None, int, str]],
    sessions: list[tuple[str, str, int]],
    replaced: list[tuple[str, int]],
) -> None:
    """One commit of the group: new kernel processes, records, and what they change; minus
    the widget update records ``replaced`` by newer ones, (kernel id, seq)."""
    if hellos:
        db.executemany(
            "INSERT INTO kernels (kernel_id, notebook, hostname, pid, started) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kernel_id) DO UPDATE SET "
            "notebook = excluded.notebook, hostname = excluded.hostname, "
            "pid = excluded.pid, started = excluded.started",
            hellos,
        )
    if records:
        whole = len(records) - len(records) % ROWS_PER_INSERT
        for first in range(0, whole, ROWS_PER_INSERT):
            chunk = records[first : first + ROWS_PER_INSERT]
            db.execute(INSERT_MANY, list(chain.from_iterable(chunk)))
        db.executemany(INSERT_ONE, records[whole:])
        db.executemany(
            "UPDATE kernels SET first_seq = coalesce(first_seq, ?), last_seq = ?, "
            "last_time = coalesce(nullif(?, ''), last_time), "
            "execution_state = coalesce(?, execution_state), records = records + ? "
            "WHERE kernel_id = ?",
            kernels,
        )
    for kernel_id, seq in replaced:
        # Pruned by retention already (then not counted), or there, and counted out above.
        if db.execute("DELETE FROM records WHERE seq = ?", (seq,)).rowcount == 0:
            db.execute("UPDATE kernels SET records = records + 1 WHERE kernel_id = ?", (kernel_id,))
    db.executemany(
        "INSERT INTO sessions (session, kernel_id, acked) VALUES (?, ?, ?) "
        "ON CONFLICT (session) DO UPDATE SET acked = excluded.acked",
        sessions,
    )
    db.commit()
