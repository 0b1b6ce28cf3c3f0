"""The data folder is yours alone: made private, and refused, untouched, when another user owns
it or one of the database's files, could write to them, or planted a symbolic link there."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FACTOR, wait_for

SUFFIXES = ("", "-wal", "-shm", ".log", ".lock")  # the database's files, the log, the lock
NOBODY = pwd.getpwnam("nobody")
as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="acts as a second user (nobody), which needs root; CI is root"
)


def serve(tmp_path: Path, *args: str, umask: int = 0o022, **env: str) -> subprocess.Popen[str]:
    """`nbrelay serve --port 0 ARGS` with ``env`` (``""`` unsets), its runtime folder in
    ``tmp_path``."""
    full = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), **env}
    full = {k: v for k, v in full.items() if v and not k.startswith("NBRELAY_")}
    return subprocess.Popen(
        [sys.executable, "-m", "nbrelay", "serve", "--port", "0", *args],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        umask=umask,
    )


def outcome(proc: subprocess.Popen[str], tmp_path: Path) -> tuple[int, str]:
    """Wait until ``proc`` exits or serves (then stop it); its exit code and stderr."""
    runtime = tmp_path / "runtime" / "nbrelay.json"
    try:
        wait_for(lambda: proc.poll() is not None or runtime.exists(), 30, "refusal or serving")
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=15 * FACTOR)
    return proc.returncode, err


def refusal(tmp_path: Path, db: Path, *args: str) -> str:
    """`nbrelay serve --db DB` is refused: its one-line error (the daemon must not serve)."""
    code, err = outcome(serve(tmp_path, "--db", str(db), *args), tmp_path)
    assert code == 1, f"the daemon served instead of refusing: {err}"
    assert err.startswith("nbrelay: error: refusing ") and err.count("\n") == 1, err
    return err


def snapshot(*roots: Path) -> dict[str, tuple[object, ...]]:
    """What is in ``roots``, as ``lstat`` sees it (symbolic links not followed) and each
    file's content: to show that a refusal changed nothing."""
    entries = [p for root in roots for p in (root, *root.rglob("*"))]
    state: dict[str, tuple[object, ...]] = {}
    for path in entries:
        st = path.lstat()
        link = os.readlink(path) if path.is_symlink() else None
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        state[str(path)] = (st.st_mode, st.st_uid, st.st_mtime_ns, link, data)
    return state


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user can write to, like /tmp (sticky), that ``nobody`` can reach: the
    test's own tmp_path is in root's private pytest folder."""
    top = Path(tempfile.mkdtemp(prefix="nbrelay-shared-"))
    top.chmod(0o711)
    folder = top / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(top)


def as_nobody(*command: str) -> None:
    subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command])


def test_missing_parents_of_the_data_folder_are_made_private_under_umask_000(
    tmp_path: Path,
) -> None:
    """On a fresh account under umask 000, ~/.local and ~/.local/share, made for the default
    database, are 0700 like its own folder, not 0777."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    proc = serve(tmp_path, umask=0, HOME=str(home), XDG_DATA_HOME="")
    code, err = outcome(proc, tmp_path)
    assert code == 0, err
    folders = [home / ".local", home / ".local" / "share", home / ".local" / "share" / "nbrelay"]
    assert [oct(stat.S_IMODE(f.stat().st_mode)) for f in folders] == ["0o700"] * 3
    assert stat.S_IMODE((folders[-1] / "nbrelay.sqlite3").stat().st_mode) == 0o600


@as_root
def test_a_data_folder_another_user_made_is_refused_untouched(tmp_path: Path, shared: Path) -> None:
    """Another user made the data folder first (here in a shared folder) and planted a link
    where SQLite puts its -wal: the daemon refuses the folder and touches nothing in it."""
    folder = shared / "nbrelay"
    as_nobody("mkdir", "-m", "700", str(folder))
    as_nobody("ln", "-s", str(shared / "loot"), str(folder / "nbrelay.sqlite3-wal"))
    before = snapshot(shared)
    err = refusal(tmp_path, folder / "nbrelay.sqlite3")
    assert f"the data folder {folder}: it is owned by user id {NOBODY.pw_uid}" in err
    assert snapshot(shared) == before


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
def test_a_data_folder_others_can_write_to_is_refused_untouched(tmp_path: Path, mode: int) -> None:
    """A data folder that other users (or the group) can write to is refused, sticky or not,
    as the runtime folder is; nothing is created in it."""
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(mode)
    before = snapshot(folder)
    err = refusal(tmp_path, folder / "db.sqlite3")
    assert f"open to other users (mode {mode:o})" in err and f"chmod 700 {folder}" in err
    assert snapshot(folder) == before


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("how", ["owned by nobody", "writable by others"])
def test_a_database_file_another_user_owns_or_can_write_is_refused_untouched(
    tmp_path: Path, suffix: str, how: str
) -> None:
    """The database, its -wal or -shm, the log or the lock, if another user owns it or can
    write to it, is refused with a one-line reason, and left as it was."""
    if how == "owned by nobody" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root; CI is root")
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    path = folder / f"db.sqlite3{suffix}"
    path.write_bytes(b"")
    if how == "owned by nobody":
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
        path.chmod(0o600)
        problem = f"owned by user id {NOBODY.pw_uid}"
    else:
        path.chmod(0o666)
        problem = "open to other users (mode 666)"
    before = snapshot(folder)
    err = refusal(tmp_path, folder / "db.sqlite3")
    assert f"refusing {path}: it is {problem}" in err
    assert snapshot(folder) == before


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_symbolic_link_planted_for_a_database_file_is_refused(
    tmp_path: Path, suffix: str
) -> None:
    """A symbolic link in place of the database, its -wal or -shm, the log or the lock is
    refused, and nothing is written where it points."""
    folder, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    folder.mkdir(mode=0o700)
    elsewhere.mkdir(mode=0o700)
    path = folder / f"db.sqlite3{suffix}"
    path.symlink_to(elsewhere / "target")
    before = snapshot(folder, elsewhere)
    err = refusal(tmp_path, folder / "db.sqlite3")
    assert f"refusing {path}: it is a symbolic link" in err
    assert snapshot(folder, elsewhere) == before


def test_detach_refuses_a_planted_log_link_before_writing_to_it(tmp_path: Path) -> None:
    """`serve --detach` writes its log beside the database: a link planted there is refused
    in the terminal, and the file it points to stays as it was."""
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    target = tmp_path / "precious.txt"
    target.write_text("mine\n")
    (folder / "db.sqlite3.log").symlink_to(target)
    code, err = outcome(serve(tmp_path, "--detach", "--db", str(folder / "db.sqlite3")), tmp_path)
    assert code == 1, err
    log = folder / "db.sqlite3.log"
    assert err.startswith(f"nbrelay: error: refusing {log}: it is a symbolic link")
    assert err.count("\n") == 1, err
    assert target.read_text() == "mine\n"
    assert sorted(p.name for p in folder.iterdir()) == ["db.sqlite3.log"]


def test_a_second_detached_start_says_why_without_the_running_daemons_log(
    tmp_path: Path,
) -> None:
    """`serve --detach` on a database a daemon already serves fails with the reason; the log
    lines it shows are the failed start's, not those the running daemon wrote there."""
    db = str(tmp_path / "data" / "db.sqlite3")
    first = serve(tmp_path, "--detach", "--db", db)
    _, err = first.communicate(timeout=60 * FACTOR)
    assert first.returncode == 0, err
    try:
        second = serve(tmp_path, "--detach", "--db", db)
        _, err = second.communicate(timeout=60 * FACTOR)
        assert second.returncode == 1, err
        assert "another nbrelay daemon" in err and "is already using" in err
        assert "Started server process" not in err, err
    finally:
        subprocess.run(
            [sys.executable, "-m", "nbrelay", "stop"],
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
            check=True,
            capture_output=True,
            timeout=60 * FACTOR,
        )
