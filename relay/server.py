"""Running the daemon: bind the port, announce it in the runtime file, serve, clean up."""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from . import __version__
from .app import Relay, create_app
from .errors import NbrelayError
from .lock import DatabaseLock
from .runtime import remove_runtime_file, write_runtime_file
from .settings import Settings
from .store import check_database

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SHUTDOWN_GRACE = 5.0  # seconds for in-flight batches to commit when stopping


class RedactingFormatter(logging.Formatter):
    """Keeps tokens out of every log line, tracebacks included: the daemon's token wherever it
    appears, and any ``token=`` value (a guess, an old token) in a logged URL."""

    _query = re.compile(r"(token=)[^&\s\"']+")

    def __init__(self, token: str) -> None:
        super().__init__("[%(asctime)s %(levelname)s %(name)s] %(message)s")
        self._token = token

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace(self._token, "[redacted]")
        return self._query.sub(r"\1[redacted]", text)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(settings.token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


def bind(host: str, port: int) -> socket.socket:
    """Listen before serving, so that a busy port is a one-line error and port 0 is resolved."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise NbrelayError(
                f"port {port} on {host} is already in use: pick another with --port "
                "(or --port 0 for any free port)"
            ) from None
        raise NbrelayError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class Server(uvicorn.Server):
    """uvicorn's server, with nbrelay's way of stopping.

    On SIGINT or SIGTERM it stops accepting, lets each kernel's batch in flight commit and
    be acknowledged, closes every WebSocket with 1001 (going away), then lets uvicorn finish
    and the lifespan close the store. uvicorn would then re-raise the signal, killing the
    process before our cleanup (the runtime file) runs; a daemon asked to stop exits with 0.
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
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(settings: Settings) -> None:
    """Run the daemon in the foreground until SIGINT or SIGTERM."""
    configure_logging(settings)
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
    config = uvicorn.Config(
        app,
        log_config=None,  # ours, above: one format and the token filter for every logger
        access_log=False,
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
    for sig in STOP_SIGNALS:
        signal.signal(sig, server.handle_exit)
    pid = os.getpid()
    write_runtime_file(
        {
            "url": url,
            "host": settings.host,
            "port": port,
            "token": "" if settings.unsafe_no_token else settings.token,
            "pid": pid,
            "db": str(settings.db),
            "version": __version__,
        }
    )
    viewer = url if settings.unsafe_no_token else f"{url}#token={settings.token}"
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
    try:
        server.run(sockets=[sock])
    finally:
        remove_runtime_file(pid)
        sock.close()
        for sig in STOP_SIGNALS:
            signal.signal(
                sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler
            )
    if not server.started:
        raise NbrelayError("the daemon could not start: see the log above")
