"""What protects the daemon from the browser it serves: Host and Origin checks, safe headers.

Any web page the user visits can try ``ws://127.0.0.1:<port>`` (cross-site WebSocket
hijacking) or reach the port under its own name through DNS rebinding. So, before anything
else runs:

* a Host header that is malformed gets 400; while the daemon listens on loopback, one that
  does not name a loopback address (or an ``--allow-host``) gets 403;
* a WebSocket handshake or a POST (a login) that carries an Origin must come from the
  daemon's own origin (or an ``--allow-origin``), exactly; anything else, ``null`` included,
  gets 403, token or cookie or not. Clients that send no Origin (the kernel hook, the CLI,
  the Jupyter server) are not browsers;
* every HTTP response says how the browser must treat it (CSP, no referrer, no sniffing).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from . import static
from .settings import Settings, is_loopback

#: The one inline script the page runs: frame.js, which the viewer puts into each sandboxed
#: HTML output (a sandboxed frame's own requests carry no cookie: behind a login, as through
#: jupyter-server-proxy, it could not load the file). Allowed by its hash, so kernel HTML that
#: holds other scripts still runs none.
_FRAME_SCRIPT = (Path(static.__file__).parent / "frame.js").read_bytes()
FRAME_SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_FRAME_SCRIPT).digest()).decode()

#: The viewer runs only its own scripts; kernel HTML goes into sandboxed iframes that
#: inherit this policy, so kernel scripts do not run at all.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src 'self' '{FRAME_SCRIPT_HASH}'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
    "object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header, lower-cased, or None if the header is malformed."""
    if not header or len(header) > 300:
        return None
    if header.startswith("["):  # [v6 address]:port
        host, sep, rest = header[1:].partition("]")
        if not sep or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        return host.lower()
    host, sep, port = header.partition(":")
    if sep and not port.isdigit():
        return None
    host = host.lower()
    return host if _HOSTNAME.fullmatch(host) else None


class Guard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.check_host = is_loopback(settings.host) or bool(settings.allow_hosts)
        self.allow_hosts = {h.lower() for h in settings.allow_hosts}
        self.allow_origins = set(settings.allow_origins)

    def _problem(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        raw_host = headers.get("host", "")
        host = host_name(raw_host)
        if host is None:
            return 400, "malformed Host header"
        if self.check_host and not (is_loopback(host) or host in self.allow_hosts):
            return (
                403,
                "Host not allowed: nbrelay answers to loopback names only (see --allow-host)",
            )
        origin = headers.get("origin")
        own = origin is None or origin == f"http://{raw_host}" or origin in self.allow_origins
        if scope["type"] == "websocket" and not own:
            return 403, "cross-origin WebSocket refused (see --allow-origin)"
        if scope.get("method") not in (None, "GET", "HEAD") and not own:
            return 403, "cross-origin request refused (see --allow-origin)"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is not None:
            status, message = problem
            response = JSONResponse({"error": message}, status_code=status)
            if scope["type"] == "websocket":
                await WebSocket(scope, receive, send).send_denial_response(response)
            else:
                await response(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
