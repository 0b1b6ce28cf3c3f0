"""Where a running daemon says how to reach it, and how clients find it.

The daemon writes ``nbrelay.json`` into Jupyter's runtime directory (``jupyter --runtime-dir``,
``JUPYTER_RUNTIME_DIR`` moves it), the way Jupyter servers write theirs; kernels and the CLI
read it. ``NBRELAY_URL`` and ``NBRELAY_TOKEN`` take precedence, for a daemon elsewhere.

Standard library and jupyter_core only: the kernel hook imports this module.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_runtime_dir, secure_write

from .errors import NbrelayError
from .sockets import listeners

RUNTIME_FILE = "nbrelay.json"


@dataclass(frozen=True)
class Endpoint:
    """How to reach a daemon."""

    url: str  # http://host:port/ (with a trailing slash; a base path may follow the port)
    token: str
    source: str = "given in NBRELAY_URL"  # where the URL came from, for messages

    def ws_url(self, path: str) -> str:
        """The WebSocket URL of ``path`` (relative, e.g. ``ws/ingest``) on this daemon."""
        base = self.url if self.url.endswith("/") else self.url + "/"
        if base.startswith("https://"):
            base = "wss://" + base[len("https://") :]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://") :]
        return base + path


def runtime_file() -> Path:
    return Path(jupyter_runtime_dir()) / RUNTIME_FILE


def _foreign(st: os.stat_result, mask: int = 0o077) -> str | None:
    """Why a file or folder is not private to this user (``mask``: the bits others must not
    have), or None if it is."""
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"owned by user id {st.st_uid}"
    if os.name == "posix" and st.st_mode & mask:
        return f"open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def private_runtime_dir() -> Path:
    """Jupyter's runtime folder, made if missing; NbrelayError if others could write to it
    (they could swap our files for ones that point clients at a daemon of theirs)."""
    folder = Path(jupyter_runtime_dir())
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    problem = _foreign(folder.stat(), mask=0o022)
    if problem:
        raise NbrelayError(
            f"the runtime folder {folder} is {problem}: make it private "
            f"(chmod 700 {folder}) or point JUPYTER_RUNTIME_DIR at a private folder"
        )
    if _foreign(folder.stat()):  # ours, only readable by others: Jupyter's is 0700 too
        folder.chmod(0o700)
    return folder


def write_runtime_file(info: dict[str, Any]) -> Path:
    """Write the runtime file (it holds the token) where only this user can read or replace it.

    Like jupyter_core's ``secure_write`` (which does the writing): mode 0600, checked after
    writing, whatever the umask; and the folder must be private too.
    """
    path = private_runtime_dir() / RUNTIME_FILE
    with secure_write(str(path)) as f:
        json.dump(info, f, indent=1)
    problem = _foreign(path.stat())
    if problem:
        path.unlink()
        raise NbrelayError(f"could not write {path} privately: it came out {problem}")
    return path


def read_runtime_file() -> dict[str, Any]:
    """The runtime file's content; NbrelayError if there is none, or if it is not to be trusted
    (only this user may have written it)."""
    path = runtime_file()
    try:
        problem = _foreign(path.stat())
        info = None if problem else json.loads(path.read_text())
    except FileNotFoundError:
        raise NbrelayError(f"no nbrelay daemon is running (there is no {path})") from None
    except (OSError, ValueError) as exc:
        raise NbrelayError(f"cannot read {path}: {exc}") from None
    if problem:
        raise NbrelayError(f"ignoring {path}: it is {problem}")
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        raise NbrelayError(f"{path} is not an nbrelay runtime file")
    return info


def login_url(url: str, token: str, terminal: bool, where: str | None = None) -> str:
    """The viewer URL that logs a browser in (``#token=``), to print: with the token only on
    a terminal. Printed into a file (a detached daemon's log, a journal, a pipe), the token
    would outlive the daemon and reach whoever reads it: the URL says ``where`` it is instead
    (by default, the runtime file)."""
    if not token:
        return url
    if terminal:
        return f"{url}#token={token}"
    where = where or str(runtime_file())
    return f"{url}#token=... (the token is in {where}: it is never written to a log)"


def remove_runtime_file(pid: int) -> None:
    """Remove the runtime file if it is still ours: a newer daemon may have replaced it."""
    try:
        if read_runtime_file().get("pid") == pid:
            runtime_file().unlink(missing_ok=True)
    except NbrelayError:
        pass  # gone already, or not ours to remove


def locate_daemon() -> Endpoint:
    """The daemon to talk to: ``NBRELAY_URL``/``NBRELAY_TOKEN`` first, else the runtime file.

    Read anew at every connection attempt, because a restarted daemon may have a new port
    and token. NbrelayError says why no daemon was found.
    """
    url = os.environ.get("NBRELAY_URL")
    if url:
        return Endpoint(url=url, token=os.environ.get("NBRELAY_TOKEN", ""))
    info = read_runtime_file()
    return Endpoint(
        url=info["url"], token=str(info.get("token", "")), source=f"recorded in {runtime_file()}"
    )


def connect_daemon(endpoint: Endpoint, timeout: float | None) -> socket.socket | None:
    """A TCP connection to the daemon, checked before anything (the token first) is sent.

    A loopback port is the daemon's only while it runs: after a crash any local user can
    listen there, and would be sent the token and the output. So the listener must be this
    user's, as ``/proc/net/tcp`` says; NbrelayError if another user's holds the port. Not
    checked, and trusted as configured: a daemon on another machine (only NBRELAY_URL leads
    there), and any address where there is no /proc (systems other than Linux).

    None for an https (or wss) URL: its certificate says who answers, and the caller's
    library connects. Blocking once connected: callers set their own timeouts.
    """
    parts = urllib.parse.urlsplit(endpoint.url)
    if parts.scheme in ("https", "wss"):
        return None
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError:  # a port that is not a number
        host, port = None, 0
    if parts.scheme not in ("http", "ws") or not host:
        raise NbrelayError(
            f"the URL {endpoint.url!r} {endpoint.source} is not like http://127.0.0.1:8765/"
        )
    sock = socket.create_connection((host, port), timeout)
    try:
        _check_listener(sock, endpoint)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def _check_listener(sock: socket.socket, endpoint: Endpoint) -> None:
    """NbrelayError unless this user's process listens where ``sock`` is connected to.

    Checked once connected, on the address actually reached: a connection already made stays
    with the listener it reached, whoever binds the port later.
    """
    host, port = sock.getpeername()[:2]
    if not hasattr(os, "getuid") or not ipaddress.ip_address(host).is_loopback:
        return
    try:
        found = listeners(host, port)
    except FileNotFoundError:  # no /proc/net: other systems
        return
    where = f"the port {port} {endpoint.source}"
    if not found:
        raise NbrelayError(f"nothing listens on {where} any more: start the daemon again")
    for listener in found:
        if listener.uid != os.getuid():
            raise NbrelayError(
                f"{where} is held by another user (uid {listener.uid}), not by your daemon; "
                "it probably crashed: start it again"
            )
