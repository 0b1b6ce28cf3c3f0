"""The data folder: the database, its ``-wal`` and ``-shm``, the log and the lock, yours alone.

Everything the kernels printed, secrets included, is in these files, and the log sits beside
them. Another user who could write to the folder could swap the database or plant a symbolic
link where SQLite will create its ``-wal`` and read what the kernels print next. So the folder
and each of these files must be this user's and closed to others' writing, as the runtime
folder must be (:func:`nbrelay.runtime.private_runtime_dir`); once the folder is checked,
nobody else can add anything to it. The files nbrelay opens itself are opened without
following symbolic links; SQLite follows them, hence the check before it opens anything.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import NbrelayError
from .runtime import _foreign

#: The files a database brings: itself, SQLite's two, the detached daemon's log, the lock.
SUFFIXES = ("", "-wal", "-shm", ".log", ".lock")
OTHERS_WRITE = 0o022  # the mode bits that let others change a file or a folder's entries


def private_data_folder(db: Path) -> None:
    """Make the database's folder if it is missing, and refuse it, or one of the database's
    files, if another user owns it or could have changed it. Nothing is touched then."""
    folder = db.parent
    _make_folders(folder)
    problem = _foreign(folder.stat(), mask=OTHERS_WRITE)
    if problem:
        raise NbrelayError(
            f"refusing the data folder {folder}: it is {problem}, so another user could read "
            f"or replace what your kernels print. Make it yours alone (chmod 700 {folder}), or "
            "pass a --db in a folder that is"
        )
    for path in (db.with_name(db.name + suffix) for suffix in SUFFIXES):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            problem = "a symbolic link"
        elif not stat.S_ISREG(st.st_mode):
            problem = "not a regular file"
        else:
            problem = _foreign(st, mask=OTHERS_WRITE)
        if problem:
            raise _refused(path, problem)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` a file of the data folder: created 0600 whatever the umask, never through a
    symbolic link, and refused if it is another user's or others can write to it."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "a symbolic link") from None
        raise NbrelayError(f"cannot open {path}: {exc.strerror or exc}") from None
    problem = _foreign(os.fstat(fd), mask=OTHERS_WRITE)
    if problem:
        os.close(fd)
        raise _refused(path, problem)
    return fd


def _refused(path: Path, problem: str) -> NbrelayError:
    return NbrelayError(
        f"refusing {path}: it is {problem}, and nbrelay keeps your kernels' output only in "
        "files that you alone can change. Remove it if it is not yours, or pass another --db"
    )


def _make_folders(folder: Path) -> None:
    """``mkdir -p`` with every new folder 0700: ``Path.mkdir(parents=True, mode=...)`` gives
    the mode to the last one only, and the parents (``~/.local``, ``~/.local/share`` on a
    fresh account) get 0777 less the umask, all of it under umask 000."""
    missing = []
    for level in (folder, *folder.parents):
        if level.is_dir():
            break
        missing.append(level)
    try:
        for level in reversed(missing):
            level.mkdir(mode=0o700, exist_ok=True)  # mode & ~umask: never more than 0700
    except OSError as exc:
        raise NbrelayError(f"cannot make the data folder {folder}: {exc}") from None
