"""The command line's side of the daemon: find it, ask its API, follow its view.

Every CLI command goes through :class:`Client`, so that they all find the daemon the same way
(``NBRELAY_URL``/``NBRELAY_TOKEN``, else the runtime file) and fail with the same clear
sentences: no daemon, a wrong token, an unknown kernel.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from . import protocol
from .errors import NbrelayError
from .runtime import Endpoint, connect_daemon, locate_daemon

TIMEOUT = 10.0  # seconds for one API request
PAGE = 1000  # records a page when reading history


class Client:
    def __init__(self, locate: Callable[[], Endpoint] = locate_daemon) -> None:
        self._locate = locate
        try:
            self.endpoint = locate()
        except NbrelayError as exc:  # what is stored stays in the database meanwhile
            raise NbrelayError(f"{exc}; start it with `nbrelay serve --detach`") from None

    def get(self, path: str, **params: object) -> dict[str, Any]:
        """GET an API path, as JSON; NbrelayError saying what went wrong."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = self.endpoint.url.rstrip("/") + "/" + path + (f"?{query}" if query else "")
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self.endpoint.token}"}
        )
        # The daemon is local or tunnelled: never through an HTTP proxy from the environment.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), _DaemonHandler(self.endpoint)
        )
        try:
            with opener.open(request, timeout=TIMEOUT) as response:
                answer: dict[str, Any] = json.load(response)
                return answer
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise NbrelayError(
                    f"the daemon at {self.endpoint.url} refused the token; "
                    "check NBRELAY_TOKEN, or unset it to use the runtime file's"
                ) from None
            raise NbrelayError(
                f"the daemon at {self.endpoint.url} answered HTTP {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NbrelayError(
                f"no nbrelay daemon answers at {self.endpoint.url} ({reason}); "
                "start one with `nbrelay serve --detach`"
            ) from None

    def kernels(self) -> list[dict[str, Any]]:
        kernels: list[dict[str, Any]] = self.get("api/kernels")["kernels"]
        return kernels

    def kernel(self, name: str | None) -> dict[str, Any]:
        """The kernel ``name`` stands for: an id, a unique id prefix or a notebook name; with
        no name, the one that was active last."""
        kernels = self.kernels()  # most recently active first
        if not kernels:
            raise NbrelayError("the daemon has no kernel output yet: run %load_ext nbrelay")
        if name is None:
            return kernels[0]
        for match in (
            lambda k: k["kernel_id"] == name,
            lambda k: k["kernel_id"].startswith(name),
            lambda k: _notebook_matches(k.get("notebook"), name),
        ):
            found = [k for k in kernels if match(k)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                ids = ", ".join(k["kernel_id"][:8] for k in found)
                raise NbrelayError(f"{name!r} matches several kernels ({ids}): say which")
        raise NbrelayError(f"no kernel matches {name!r}: `nbrelay ls` lists them")

    def history(self, kernel_id: str, since: int = 0) -> Iterator[dict[str, Any]]:
        """A kernel's stored records after ``since``, page by page, then a gap notice (as a
        dict with ``"type": "gap"``) first if some were pruned."""
        while True:
            page = self.get("api/messages", kernel_id=kernel_id, since=since, limit=PAGE)
            if page.get("gap"):
                yield {"type": "gap", **page["gap"]}
            records: list[dict[str, Any]] = page["messages"]
            yield from records
            if len(records) < PAGE:
                return
            since = records[-1]["seq"]

    def follow(self, kernel_id: str, since: int = 0) -> Iterator[dict[str, Any]]:
        """A kernel's records after ``since``, then live ones, forever. Survives daemon restarts:
        it finds the daemon anew (a new port or token) and resumes after the last seq seen."""
        delay = 0.1
        reported = False
        while True:
            try:
                for item in self._view(kernel_id, since):
                    delay, reported = 0.1, False
                    if "seq" in item:
                        since = item["seq"]
                    elif item.get("type") == "gap":  # pruned: said once, not at each reconnect
                        since = max(since, item["last_seq"])
                    yield item
            except (OSError, TimeoutError, WebSocketException, NbrelayError) as exc:
                if not reported:
                    yield {"type": "disconnected", "reason": _why(exc)}
                    reported = True
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)
            with contextlib.suppress(NbrelayError):  # not back yet: try the last one again
                self.endpoint = self._locate()

    def _view(self, kernel_id: str, since: int) -> Iterator[dict[str, Any]]:
        query = urllib.parse.urlencode({"since": since, "kernel_id": kernel_id})
        with connect(
            self.endpoint.ws_url(f"ws/view?{query}"),
            sock=connect_daemon(self.endpoint, TIMEOUT),
            additional_headers={"Authorization": f"Bearer {self.endpoint.token}"},
            proxy=None,
            max_size=None,
            open_timeout=TIMEOUT,
        ) as ws:
            for frame in ws:
                data = json.loads(frame)
                if isinstance(data, list):
                    yield from data
                elif data.get("type") == "gap":
                    yield data
        raise ConnectionError("the daemon closed the connection")


class _DaemonConnection(http.client.HTTPConnection):
    """Plain HTTP over :func:`connect_daemon`'s connection, checked before the request (and
    its token) goes out."""

    def __init__(self, host: str, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.endpoint = endpoint

    def connect(self) -> None:
        sock = connect_daemon(self.endpoint, self.timeout)
        assert sock is not None  # None is for https, which this class is not
        sock.settimeout(self.timeout)
        self.sock = sock


class _DaemonHandler(urllib.request.HTTPHandler):
    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__()
        self.endpoint = endpoint

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        def connection(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            return _DaemonConnection(host, self.endpoint, **kwargs)

        return self.do_open(connection, req)


def _notebook_matches(notebook: str | None, name: str) -> bool:
    if not notebook:
        return False
    stem = notebook.rsplit("/", 1)[-1]
    return name in (notebook, stem, stem.removesuffix(".ipynb"))


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        if exc.rcvd.code == protocol.CLOSE_POLICY:
            return f"refused: {exc.rcvd.reason}"
        return exc.rcvd.reason or f"closed ({exc.rcvd.code})"
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    return str(exc) or type(exc).__name__
