"""One daemon per database: an exclusive lock on ``<db>.lock``, which names its holder.

Two daemons on one file would each believe they own the sequence numbers. The lock is an
``flock`` on a file beside the database, so the operating system releases it when the
holder dies, even by SIGKILL: a crashed daemon never blocks the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from .datadir import open_private
from .errors import NbrelayError


class DatabaseLock:
    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + ".lock")
        # Held for the daemon's life; private like the database beside it.
        self._file: IO[str] = os.fdopen(open_private(self.path, os.O_CREAT | os.O_RDWR), "r+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._read()
            self._file.close()
            where = f" (pid {holder.get('pid')}, {holder.get('url')})" if holder else ""
            raise NbrelayError(
                f"another nbrelay daemon{where} is already using {db}; stop it first, "
                "or pass another file with --db"
            ) from None

    def _read(self) -> dict[str, Any]:
        try:
            holder = json.loads(self._file.read())
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def announce(self, url: str) -> None:
        """Say who holds the lock, for the message a second daemon prints."""
        self._file.seek(0)
        self._file.truncate()
        json.dump({"pid": os.getpid(), "url": url}, self._file)
        self._file.flush()

    def release(self) -> None:
        self._file.close()  # closing the file releases the flock
