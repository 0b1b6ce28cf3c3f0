"""Running the daemon: bind the port, announce it in the runtime file, serve, clean up."""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from websockets.frames import Frame

from . import __version__, connections
from .app import Relay, create_app
from .datadir import private_data_folder
from .errors import NbrelayError
from .lock import DatabaseLock
from .runtime import login_url, remove_runtime_file, write_runtime_file
from .settings import Settings
from .store import check_database

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SHUTDOWN_GRACE = 5.0  # seconds for in-flight batches to commit when stopping


def _any_spelling(text: str) -> str:
    """A pattern for ``text`` with any of its characters percent-encoded, as a URL may carry
    it (``tok%65n``, ``abc%2Ddef``); matched ignoring case, so ``%2d`` too."""
    return "".join(f"(?:{re.escape(c)}|{''.join(f'%{b:02x}' for b in c.encode())})" for c in text)


class RedactingFormatter(logging.Formatter):
    """Keeps tokens out of every log line, tracebacks included: the daemon's token wherever and
    however encoded it appears; and, whatever they hold (a guess, an old token), the values of
    ``token=`` in a logged URL, of the headers that may carry credentials, which websockets'
    debug log prints (``< authorization: Bearer ...``), and of a ``Bearer`` or ``Basic``
    credential wherever else it is quoted (``invalid HTTP header value: Bearer ...``)."""

    # To the end of the line: a cookie's value may hold quotes, and a repr of headers may
    # follow, which is then lost too (as a repr, the header is "authorization', b'...").
    _header = re.compile(
        r"\b([\w-]*(?:authorization|cookie|token)[\w-]*)(['\"]?\s*[:,])[^\r\n]*", re.I
    )
    _scheme = re.compile(r"\b((?:bearer|basic)\s+)[^\s'\"]+", re.I)
    _query = re.compile(rf"({_any_spelling('token')}(?:=|%3d))[^&\s\"'#]*", re.I)

    def __init__(self, token: str) -> None:
        super().__init__("[%(asctime)s %(levelname)s %(name)s] %(message)s")
        self._token = re.compile(_any_spelling(token), re.I)

    def format(self, record: logging.LogRecord) -> str:
        text = self._token.sub("[redacted]", super().format(record))
        text = self._header.sub(r"\1\2 [redacted]", text)
        text = self._scheme.sub(r"\1[redacted]", text)
        return self._query.sub(r"\1[redacted]", text)


def _not_a_frame(record: logging.LogRecord) -> bool:
    """False for websockets' debug line of a frame sent or received (``< TEXT '...'``): frames
    carry kernel output, secrets included, which must not reach a log file."""
    return not (isinstance(record.args, tuple) and any(isinstance(a, Frame) for a in record.args))


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(settings.token))
    handler.addFilter(_not_a_frame)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


def bind(host: str, port: int) -> socket.socket:
    """Listen before serving, so that a busy port is a one-line error and port 0 is resolved."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise NbrelayError(
                f"port {port} on {host} is already in use: pick another with --port "
                "(or --port 0 for any free port)"
            ) from None
        raise NbrelayError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Connections inherit this. asyncio sets it only on sockets made with proto=IPPROTO_TCP,
    # which create_server's are not; without it, Nagle's algorithm meets the viewer's delayed
    # ACK and a live record can wait 40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server, with nbrelay's way of stopping.

    On SIGINT or SIGTERM it stops accepting, lets each kernel's batch in flight commit and
    be acknowledged, closes every WebSocket with 1001 (going away), then lets uvicorn finish
    and the lifespan close the store.
    """

    def __init__(self, config: uvicorn.Config, relay: Relay) -> None:
        super().__init__(config)
        self.relay = relay

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting first
        await self.relay.shutdown(SHUTDOWN_GRACE)
        await super().shutdown(sockets)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the signals to serve(), which installs the handlers before it announces the
        daemon. uvicorn's would also re-raise the signal after shutting down, killing the
        process before our cleanup (the runtime file) runs; a daemon asked to stop exits 0."""
        yield


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(settings: Settings) -> None:
    """Run the daemon in the foreground until SIGINT or SIGTERM."""
    configure_logging(settings)
    private_data_folder(settings.db)
    check_database(settings.db)
    lock = DatabaseLock(settings.db)
    try:
        _serve(settings, lock)
    finally:
        lock.release()


def _serve(settings: Settings, lock: DatabaseLock) -> None:
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    url = url_of(settings.host, port) + settings.base_url.lstrip("/")
    lock.announce(url)
    app = create_app(settings)
    logging.getLogger("asyncio").addFilter(connections.AcceptErrors())
    config = uvicorn.Config(
        app,
        log_config=None,  # ours, above: one format and the token filter for every logger
        access_log=False,
        # h11, whatever else is installed: the gate bounds connections and times out those
        # that keep the daemon waiting for a request.
        http=connections.ConnectionGate.for_settings(settings).protocol(),
        backlog=connections.ACCEPT_BACKLOG,
        # Set deliberately: this implementation stops reading a connection until the app
        # takes its last message, so a connection holds at most about one frame.
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=False,  # nothing to decompress, so no compression bombs
        lifespan="on",
    )
    server = Server(config, app.state.relay)
    # From here on, a stop request is a clean stop, even before uvicorn is up: the runtime
    # file written next is then always removed.
    with stop_signals(server.handle_exit), sock:
        _announce(settings, url, port)
        try:
            server.run(sockets=[sock])
        finally:
            remove_runtime_file(os.getpid())
    if not server.started:
        raise NbrelayError("the daemon could not start: see the log above")


@contextmanager
def stop_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``handler`` within the block; the old handlers come back after."""
    original = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in original.items():
            signal.signal(sig, old)


def _announce(settings: Settings, url: str, port: int) -> None:
    """Write the runtime file, print the viewer URL, warn if there is no token.

    The URL carries the token only to a terminal: printed into a file (the detached daemon's
    log, a service manager's journal), it would outlive the daemon and reach whoever reads
    logs. ``serve --detach`` prints the whole URL itself, from the runtime file.
    """
    pid = os.getpid()
    token = "" if settings.unsafe_no_token else settings.token
    write_runtime_file(
        {
            "url": url,
            "host": settings.host,
            "port": port,
            "token": token,
            "pid": pid,
            "db": str(settings.db),
            "version": __version__,
        }
    )
    viewer = login_url(url, token, sys.stdout.isatty())
    print(
        f"nbrelay {__version__} is storing kernel output in {settings.db}\n"
        f"    Viewer: {viewer}\n"
        "    In a notebook: %load_ext nbrelay",
        flush=True,
    )
    if settings.unsafe_no_token:
        logging.getLogger("nbrelay").warning(
            "running WITHOUT A TOKEN (--unsafe-no-token): every local user and program can "
            "read your kernels' output"
        )
