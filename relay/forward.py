"""What listens on the port jupyter-server-proxy gives nbrelay when the user runs a daemon of
their own: a TCP forwarder to it, or a page that says what is wrong.

Each connection is forwarded to the daemon that the runtime file (or ``NBRELAY_URL``) names at
that moment, so a daemon restarted on another port is followed; the proxy reads the token the
same way (:mod:`nbrelay.server_proxy`). The daemon is reached through
:func:`~nbrelay.runtime.connect_daemon`, which sends nothing to a port another user holds.
Bytes pass through untouched: the proxy has already put in the daemon's token, Host and Origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import socket
from collections.abc import Callable

from .errors import NbrelayError
from .runtime import connect_daemon, locate_daemon

CONNECT_TIMEOUT = 5.0  # seconds to reach the daemon
REQUEST_HEAD_TIMEOUT = 10.0  # seconds for a request's head, before an error page is sent
MAX_REQUEST_HEAD = 64 * 1024
BUFFER = 64 * 1024


def reach_daemon() -> socket.socket:
    """A connection to the user's daemon, checked as its own; NbrelayError or OSError if
    none answers (or one that the proxy cannot forward to: https)."""
    endpoint = locate_daemon()
    sock = connect_daemon(endpoint, CONNECT_TIMEOUT)
    if sock is None:
        raise NbrelayError(f"jupyter-server-proxy cannot forward to {endpoint.url}: not http://")
    return sock


def error_page(title: str, advice: str) -> bytes:
    """A whole HTTP response: 503 and a page that says what is wrong and what to do."""
    body = (
        "<!doctype html><meta charset=utf-8><title>nbrelay</title>"
        f"<h1>nbrelay: {html.escape(title)}</h1><p>{html.escape(advice)}</p>"
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        "Content-Security-Policy: default-src 'none'\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # either side went away: the other is closed below
    finally:
        writer.close()


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, page: bytes) -> None:
    """Answer with ``page`` once the request's head has arrived (a client that is still
    sending it may not read an early answer)."""
    with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.LimitOverrunError):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_HEAD_TIMEOUT)
    with contextlib.suppress(OSError):
        writer.write(page)
        await writer.drain()
    writer.close()


Target = Callable[[], "socket.socket | bytes"]


def to_daemon(problem: str | None, advice: str) -> Target:
    """Each connection goes to the user's daemon; while none answers, to a page that says
    ``problem`` (or why none answers) and ``advice``."""

    def target() -> socket.socket | bytes:
        try:
            return reach_daemon()
        except (NbrelayError, OSError) as exc:
            return error_page(problem or f"no daemon answers ({exc})", advice)

    return target


async def _connection(
    target: Target, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    upstream = await asyncio.to_thread(target)
    if isinstance(upstream, bytes):
        await _refuse(reader, writer, upstream)
        return
    up_reader, up_writer = await asyncio.open_connection(sock=upstream, limit=BUFFER)
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


def serve(port: int, target: Target) -> None:
    """Listen on loopback ``port`` until killed; each connection goes where ``target`` says:
    a socket to forward to, or a response to answer with."""

    async def run() -> None:
        server = await asyncio.start_server(
            lambda r, w: _connection(target, r, w), "127.0.0.1", port, limit=MAX_REQUEST_HEAD
        )
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
