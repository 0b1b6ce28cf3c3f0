"""The daemon's web application: the HTTP API, the two WebSockets and the viewer page."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import protocol, static
from .guard import Guard
from .login import CODE_TTL, Login
from .protocol import Hello, ProtocolError
from .retention import Retention
from .settings import Settings
from .store import Store, StoreClosed

log = logging.getLogger("nbrelay.app")

STATIC_DIR = Path(static.__file__).parent
# Each ack wakes two threads in the kernel (websockets' reader and the hook's): under
# sustained output, thread wake-ups are most of what nbrelay costs the kernel, and the hook
# needs acks only to free its buffer. So a connection gets at most one ack per interval.
ACK_INTERVAL = 0.05
MAX_LOGIN_BYTES = 4096  # a login request holds a token or a code, nothing more
MAX_TYPES = 16  # message types one /api/messages query may name


class BadQuery(ValueError):
    """A query parameter that cannot be used; answered with 400 (HTTP) or 1008 (WebSocket)."""


def _int_param(conn: HTTPConnection, name: str, default: int, low: int, high: int) -> int:
    raw = conn.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be between {low} and {high}")
    return value


def _close_reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (RFC 6455)."""
    return text.encode()[:123].decode(errors="ignore")


class Relay:
    """State shared by the endpoints: the store, the token, which kernels are connected."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(
            settings.db,
            settings.max_output_bytes,
            settings.durability,
            Retention(settings.max_size, settings.max_age),
        )
        self.connected: Counter[str] = Counter()
        # session -> set when a newer connection takes the session over (_take_session)
        self.ingesting: dict[str, asyncio.Event] = {}
        self.sockets: Counter[str] = Counter()  # open WebSockets, by endpoint
        self.handlers: set[asyncio.Task[object]] = set()  # their tasks, for shutdown
        self.closing = asyncio.Event()
        self._token = settings.token.encode()
        self.login = Login(settings.token, settings.base_url)

    def holds_token(self, conn: HTTPConnection) -> bool:
        """The token, as ``Authorization: Bearer`` or ``?token=``, compared in constant time."""
        if self.settings.unsafe_no_token:
            return True
        supplied = conn.query_params.get("token")
        scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            supplied = credentials.strip()
        return supplied is not None and self._is_token(supplied)

    def _is_token(self, supplied: str) -> bool:
        return hmac.compare_digest(supplied.encode(), self._token)

    def authorized(self, conn: HTTPConnection) -> bool:
        """The token, or the cookie of a browser that logged in with it (nbrelay.login)."""
        return self.holds_token(conn) or self.login.cookie_ok(
            conn.cookies.get(self.login.cookie_name)
        )

    # -- HTTP ---------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    async def log_in(self, request: Request) -> Response:
        """``POST {"token"}`` or ``{"code"}`` (a login code): the login cookie, or 401."""
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_LOGIN_BYTES:
                return JSONResponse({"error": "request too large"}, status_code=413)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        fields = body if isinstance(body, dict) else {}
        token, code = fields.get("token"), fields.get("code")
        if not (
            self.settings.unsafe_no_token
            or (isinstance(token, str) and self._is_token(token))
            or (isinstance(code, str) and self.login.redeem(code))
        ):
            return JSONResponse({"error": "wrong or expired token or code"}, status_code=401)
        return Response(status_code=204, headers={"set-cookie": self.login.set_cookie()})

    async def login_codes(self, request: Request) -> Response:
        """``POST``, with the token itself (a logged-in browser's cookie is not enough): a
        login code for a page that must never see the token."""
        if not self.holds_token(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        return JSONResponse({"code": self.login.mint(), "expires_in": CODE_TTL})

    async def kernels(self, request: Request) -> Response:
        if not self.authorized(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        kernels = await self.store.kernels()
        for kernel in kernels:
            kernel["connected"] = self.connected[kernel["kernel_id"]] > 0
        return JSONResponse({"kernels": kernels})

    async def health(self, request: Request) -> Response:
        """Whether the daemon can store: "failing" (with why) while commits fail."""
        if not self.authorized(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        failure = self.store.failure
        return JSONResponse(
            {
                "storage": "ok" if failure is None else "failing",
                "error": failure,
                "last_seq": self.store.head,
                "pruned_through": self.store.pruned_through,
                "db_bytes": await self.store.used_bytes(),
            },
            status_code=200 if failure is None else 503,
        )

    async def messages(self, request: Request) -> Response:
        if not self.authorized(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        try:
            since = _int_param(request, "since", 0, 0, protocol.MAX_SEQ)
            before = _int_param(request, "before", protocol.MAX_SEQ, 1, protocol.MAX_SEQ)
            limit = _int_param(
                request, "limit", self.settings.page_records, 1, self.settings.page_records
            )
        except BadQuery as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        kernel_id = request.query_params.get("kernel_id")
        backwards = "before" in request.query_params
        # Only records of these types (comma-separated): tail finds the widgets shown before
        # where it starts without reading every record of the kernel (#22).
        types = request.query_params.get("types", "").split(",")[:MAX_TYPES]
        types = [t for t in types if t]
        gap = self.store.gap(since)
        gap_json = ""
        if gap is not None:
            kept = await self.store.kept(kernel_id, since, types) if kernel_id else []
            gap_json = f',"gap":{protocol.gap_json(gap, kept)}'
            since = gap["last_seq"]
        rows = await self.store.read(since, limit, kernel_id, before if backwards else None, types)
        last_seq = self.store.kernel_head(kernel_id)
        body = '{"messages":' + protocol.records_frame([r for _, r in rows])
        return Response(f'{body},"last_seq":{last_seq}{gap_json}}}', media_type="application/json")

    # -- WebSockets ---------------------------------------------------------------------

    @asynccontextmanager
    async def _admit(self, ws: WebSocket, endpoint: str, limit: int) -> AsyncIterator[bool]:
        """Accept, then close with a reason unless the token is right and there is room."""
        await ws.accept()
        if not self.authorized(ws):
            await ws.close(protocol.CLOSE_POLICY, "missing or wrong token")
            yield False
        elif self.sockets[endpoint] >= limit:
            await ws.close(
                protocol.CLOSE_TRY_AGAIN_LATER, f"too many {endpoint} connections (limit {limit})"
            )
            yield False
        else:
            self.sockets[endpoint] += 1
            task = asyncio.current_task()
            assert task is not None
            self.handlers.add(task)
            try:
                yield True
            finally:
                self.sockets[endpoint] -= 1
                self.handlers.discard(task)

    async def shutdown(self, grace: float) -> None:
        """Close every WebSocket with 1001, once kernels' batches in flight are committed and
        acknowledged; wait up to ``grace`` seconds for that."""
        self.closing.set()
        self.store.stop_waiting()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=grace)

    async def view(self, ws: WebSocket) -> None:
        """Every record after ``since``, then live ones: one cursor over the store, no queue."""
        async with self._admit(ws, "viewer", self.settings.max_viewers) as admitted:
            if admitted:
                await self._view(ws)

    async def _view(self, ws: WebSocket) -> None:
        try:
            since = _int_param(ws, "since", 0, 0, protocol.MAX_SEQ)
        except BadQuery as exc:
            await ws.close(protocol.CLOSE_POLICY, str(exc))
            return
        kernel_id = ws.query_params.get("kernel_id")
        # Starlette notices a disconnect only while receiving: race the sender against it.
        send = asyncio.create_task(self._send_records(ws, since, kernel_id))
        receive = asyncio.create_task(self._until_disconnect(ws))
        done, pending = await asyncio.wait({send, receive}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        error = send.exception() if send in done else None
        if isinstance(error, StoreClosed):
            await ws.close(protocol.CLOSE_GOING_AWAY, "nbrelay is shutting down")
        elif error is not None and not isinstance(error, WebSocketDisconnect | OSError):
            raise error  # a bug: let Starlette log it; a vanished client is not one

    async def _send_records(self, ws: WebSocket, cursor: int, kernel_id: str | None) -> None:
        page = self.settings.page_records
        caught_up = False
        while True:
            gap = self.store.gap(cursor)
            if gap is not None:  # pruned: say so before the first record that is left
                kept = [] if kernel_id is None else await self.store.kept(kernel_id, cursor)
                await ws.send_text(protocol.gap_notice(gap, kept))
                cursor = gap["last_seq"]
            # Everything committed up to `seen` is visible to the read that follows.
            seen = self.store.head
            rows = await self.store.read(cursor, page, kernel_id)
            if rows:
                for frame in protocol.record_frames([r for _, r in rows]):
                    await ws.send_text(frame)
                cursor = rows[-1][0]
                if len(rows) == page:
                    continue
            if not caught_up:
                await ws.send_text(protocol.caught_up(seen))
                caught_up = True
            await self.store.wait_beyond(seen)

    @staticmethod
    async def _until_disconnect(ws: WebSocket) -> None:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass

    async def ingest(self, ws: WebSocket) -> None:
        """One kernel process: hello, then batches, each acknowledged after its commit."""
        async with self._admit(ws, "kernel", self.settings.max_kernels) as admitted:
            if admitted:
                await self._ingest(ws)

    async def _ingest(self, ws: WebSocket) -> None:
        kernel_id = None
        hello: Hello | None = None
        taken_over = asyncio.Event()  # set by the connection that takes the session over
        try:
            hello = Hello.decode(await self._receive_frame(ws))
            acked = await self.store.open_session(hello)
            kernel_id = hello.kernel_id
            self.connected[kernel_id] += 1
            self._take_session(ws, hello, taken_over)
            welcome = protocol.Welcome(
                acked, self.settings.max_frame_bytes, self.settings.max_output_bytes
            )
            await ws.send_text(welcome.encode())
            await self._batches(ws, hello, acked, taken_over)
            if taken_over.is_set():
                await ws.close(protocol.CLOSE_POLICY, "another connection took over this session")
            else:
                await ws.close(protocol.CLOSE_GOING_AWAY, "nbrelay is shutting down")
        except WebSocketDisconnect as exc:
            # The hook says its kernel process is exiting, or the extension was unloaded. A
            # restarted kernel's new process may be connected already: that kernel is not.
            state = protocol.LEFT_STATES.get(exc.code)
            if state is not None and kernel_id is not None and self.connected[kernel_id] == 1:
                await self.store.kernel_left(kernel_id, state)
            if exc.code == protocol.CLOSE_POLICY and hello is not None:  # see kernel_hook.sender
                log.warning(
                    "the hook of kernel %r left session %r: %r",
                    hello.kernel_id,
                    hello.session,
                    exc.reason,
                )
        except ProtocolError as exc:
            log.warning("closing ingest connection from %s: %s", _peer(ws), exc.reason)
            await ws.close(exc.code, _close_reason(exc.reason))
        except StoreClosed:
            await ws.close(protocol.CLOSE_GOING_AWAY, "nbrelay is shutting down")
        except Exception as exc:  # storage failed: the hook keeps its buffer and retries
            log.error("ingest from %s failed: %s", _peer(ws), exc)
            await ws.close(protocol.CLOSE_INTERNAL_ERROR, _close_reason(f"storage error: {exc}"))
        finally:
            if kernel_id is not None:
                self.connected[kernel_id] -= 1
            if hello is not None and self.ingesting.get(hello.session) is taken_over:
                del self.ingesting[hello.session]

    def _take_session(self, ws: WebSocket, hello: Hello, taken_over: asyncio.Event) -> None:
        """Make this connection the session's only one: an older one still open gives way
        (relay.protocol says why not the other way round), and it is logged: session ids are
        in every start record, so the older one may be the kernel's and this another client."""
        previous = self.ingesting.get(hello.session)
        if previous is not None:
            log.warning(
                "kernel %r: a connection from %s takes over session %r from one still open "
                "(its hook reconnecting after a network failure, or another client)",
                hello.kernel_id,
                _peer(ws),
                hello.session,
            )
            previous.set()
        self.ingesting[hello.session] = taken_over

    async def _batches(
        self, ws: WebSocket, hello: Hello, acked: int, taken_over: asyncio.Event
    ) -> None:
        """Store each batch and acknowledge what is committed, at most every ACK_INTERVAL,
        until the daemon stops or another connection takes the session over (a frame already
        received still wins: it is committed and acknowledged before the connection closes).

        A hook never sends a number at or below the ``acked`` it was welcomed with, or one it
        sent before on the connection. Such messages are dropped as already stored, as always,
        and said once in the log: they come from a hook whose count another client pushed up,
        one from before #20 that does not check acks, and its output is being lost."""
        loop = asyncio.get_running_loop()
        receive: asyncio.Future[str | bytes] | None = None
        # One a connection, not a frame.
        stops = [
            asyncio.ensure_future(self.closing.wait()),
            asyncio.ensure_future(taken_over.wait()),
        ]
        unacked: int | None = None  # committed, not acknowledged yet
        last_ack = -math.inf
        floor, warned = acked, False  # the highest number stored or sent before this frame
        try:
            while True:
                receive = receive or asyncio.ensure_future(self._receive_frame(ws))
                wait = None if unacked is None else last_ack + ACK_INTERVAL - loop.time()
                if wait is None or wait > 0:
                    either: set[asyncio.Future[Any]] = {receive, *stops}
                    await asyncio.wait(either, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if receive.done():
                    frame, receive = receive.result(), None
                    outputs = protocol.decode_batch(frame)
                    if outputs[0].n <= floor and not warned:
                        warned = True
                        log.warning(
                            "kernel %r, session %r: a message numbered %d, at or below the %d "
                            "stored or sent before it, was dropped as a duplicate; hooks never "
                            "send those again, so another client may have used this session",
                            hello.kernel_id,
                            hello.session,
                            outputs[0].n,
                            floor,
                        )
                    floor = max(floor, outputs[-1].n)
                    unacked = await self.store.append(hello, outputs)
                elif self.closing.is_set() or taken_over.is_set():
                    break
                if unacked is not None and loop.time() - last_ack >= ACK_INTERVAL:
                    await ws.send_text(protocol.ack(unacked))
                    unacked, last_ack = None, loop.time()
        finally:
            for stop in stops:
                stop.cancel()
            if receive is not None:
                receive.cancel()
                await asyncio.gather(receive, return_exceptions=True)
        if unacked is not None:
            await ws.send_text(protocol.ack(unacked))

    @staticmethod
    async def _receive_frame(ws: WebSocket) -> str | bytes:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes = message["bytes"]
        return data


def _peer(conn: HTTPConnection) -> str:
    return f"{conn.client.host}:{conn.client.port}" if conn.client else "?"


def create_app(settings: Settings) -> Starlette:
    relay = Relay(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await relay.store.open()
        try:
            yield
        finally:
            await relay.store.close()

    routes = [
        Route("/", relay.index),
        Route("/api/login", relay.log_in, methods=["POST"]),
        Route("/api/login-codes", relay.login_codes, methods=["POST"]),
        Route("/api/kernels", relay.kernels),
        Route("/api/health", relay.health),
        Route("/api/messages", relay.messages),
        WebSocketRoute("/ws/view", relay.view),
        WebSocketRoute("/ws/ingest", relay.ingest),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    if settings.base_url != "/":  # every URL in the page is relative: it works under any prefix
        routes = [Mount(settings.base_url.rstrip("/"), routes=routes)]
    app = Starlette(
        middleware=[Middleware(Guard, settings=settings)], routes=routes, lifespan=lifespan
    )
    app.state.relay = relay
    return app
