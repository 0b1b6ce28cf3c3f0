"""The kernel side: ``%load_ext nbrelay`` taps IOPub and relays it to the daemon.

The capture path only appends to a bounded outbox; one background thread sends. State is
per process: the session id and the message numbering survive ``%unload_ext`` and a later
``%load_ext``, so the daemon sees one unbroken, deduplicated stream per kernel process.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from ..errors import START_HINT, NbrelayError
from ..protocol import Hello, now_iso
from ..runtime import locate_daemon
from .cells import CellIds
from .outbox import Outbox
from .sender import Sender
from .tap import IOPubTap

log = logging.getLogger("nbrelay")

DEFAULT_BUFFER_BYTES = 64 * 2**20
FLUSH_TIMEOUT = 5.0  # how long %unload_ext waits for the daemon to acknowledge what is pending
EXIT_FLUSH_TIMEOUT = 2.0


class _Process:
    """What this kernel process keeps across loads of the extension."""

    def __init__(self, hello: Hello, outbox: Outbox) -> None:
        self.hello = hello
        self.outbox = outbox
        self.tap: IOPubTap | None = None
        self.cells: CellIds | None = None
        self.sender: Sender | None = None


_process: _Process | None = None


def _kernel_id() -> str:
    """Jupyter names connection files ``kernel-<kernel id>.json``."""
    try:
        from ipykernel.connect import get_connection_file

        stem = Path(get_connection_file()).stem
    except Exception:  # not started by a Jupyter app: still relay, under a made-up id
        return f"pid-{os.getpid()}@{socket.gethostname()}"
    return stem.removeprefix("kernel-")


def _buffer_bytes() -> int:
    raw = os.environ.get("NBRELAY_BUFFER_BYTES")
    try:
        return int(raw) if raw else DEFAULT_BUFFER_BYTES
    except ValueError:
        log.warning(
            "nbrelay: NBRELAY_BUFFER_BYTES=%r is not a number of bytes; using %d",
            raw,
            DEFAULT_BUFFER_BYTES,
        )
        return DEFAULT_BUFFER_BYTES


def _setup_logging() -> None:
    """Our warnings go to the kernel's own stderr (the Jupyter server's log), never into a cell.

    ipykernel redirects file descriptor 2 into the notebook too; it keeps a copy of the
    original descriptor, and that is where a kernel's log belongs.
    """
    if log.handlers:
        return
    original = getattr(sys.stderr, "_original_stdstream_copy", None)
    stream = os.fdopen(os.dup(original), "w", buffering=1) if isinstance(original, int) else None
    handler = logging.StreamHandler(stream or sys.__stderr__)
    handler.setFormatter(logging.Formatter("[%(levelname)s %(name)s] %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)


def _flush_at_exit() -> None:
    if _process is not None and _process.sender is not None:
        _process.sender.close(EXIT_FLUSH_TIMEOUT, exiting=True)


def load_ipython_extension(ipython: Any) -> None:
    global _process
    iopub = getattr(getattr(ipython, "kernel", None), "iopub_thread", None)
    if iopub is None:
        print(
            "nbrelay: this IPython is not a Jupyter kernel; there is nothing to relay.",
            file=sys.stderr,
        )
        return
    if _process is not None and _process.tap is not None:
        return  # loaded already
    _setup_logging()
    if _process is None:
        hello = Hello(
            kernel_id=_kernel_id(),
            session=uuid.uuid4().hex,
            notebook=os.environ.get("JPY_SESSION_NAME") or None,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started=now_iso(),
        )
        _process = _Process(hello, Outbox(_buffer_bytes()))
        atexit.register(_flush_at_exit)
    _process.sender = Sender(_process.outbox, _process.hello)
    _process.sender.start()
    _process.tap = IOPubTap(iopub, _process.outbox.put)
    _process.tap.attach()
    _process.cells = CellIds(ipython, _process.outbox.put)
    _process.cells.attach()
    ipython.register_magic_function(_magic, "line", "nbrelay")
    kernel_id = _process.hello.kernel_id
    try:
        print(f"nbrelay: relaying kernel {kernel_id}; viewer: {_viewer_url(locate_daemon().url)}")
    except NbrelayError:
        print(
            f"nbrelay: relaying kernel {kernel_id}; no daemon runs yet, so its output is kept "
            f"here until one does ({START_HINT})"
        )


def _viewer_url(daemon_url: str) -> str:
    """This kernel's page in the viewer, without the token: this is printed into the notebook,
    which is saved and shared. A browser logs in once (``nbrelay status`` prints how)."""
    assert _process is not None
    return f"{daemon_url}?kernel={urllib.parse.quote(_process.hello.kernel_id)}"


def status() -> str:
    """What ``%nbrelay`` prints: the link to the daemon, the buffer, this kernel's viewer URL."""
    if _process is None or _process.sender is None:
        return "nbrelay is not loaded in this kernel: %load_ext nbrelay"
    sender, stats = _process.sender, _process.outbox.stats()
    kernel_id = _process.hello.kernel_id
    # The viewer's URL only for the daemon the sender reached: the port in a runtime file
    # left by a crash may be another user's, whose page would be taken for ours.
    endpoint = sender.endpoint if sender.connected else None
    if endpoint is not None:
        link = f"connected to {endpoint.url}"
    else:
        link = f"not connected: {sender.problem or 'connecting'}"
    lines = [
        f"nbrelay: kernel {kernel_id}, {link}",
        f"    messages: {stats['captured']} captured, {stats['acked']} stored, "
        f"{stats['pending']} queued ({stats['pending_bytes'] / 2**20:.1f} of "
        f"{_process.outbox.limit_bytes / 2**20:.0f} MiB), {stats['dropped']} dropped",
    ]
    if endpoint is not None:
        lines.append(f"    viewer: {_viewer_url(endpoint.url)}")
    return "\n".join(lines)


def _magic(line: str) -> None:
    print(status())


def unload_ipython_extension(ipython: Any) -> None:
    """Restore the kernel as it was, then deliver what is pending."""
    if _process is None or _process.tap is None:
        return
    if _process.cells is not None:
        _process.cells.detach()
        _process.cells = None
    _process.tap.detach()
    _process.tap = None
    if _process.sender is not None:
        if not _process.sender.close(FLUSH_TIMEOUT):
            log.warning(
                "nbrelay: unloaded with %d messages not yet delivered; they are sent "
                "if the extension is loaded again",
                _process.outbox.stats()["pending"],
            )
        _process.hello = _process.sender.hello  # a new session, if it had to move to one
        _process.sender = None
