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
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from . import protocol
from .errors import START_HINT, NbrelayError, TokenRefused
from .runtime import Endpoint, connect_daemon, locate_daemon

TIMEOUT = 10.0  # seconds for one API request
PAGE = 1000  # records a page when reading history


class Client:
    def __init__(self, locate: Callable[[], Endpoint] = locate_daemon) -> None:
        self._locate = locate
        try:
            self.endpoint = locate()
        except NbrelayError as exc:  # what is stored stays in the database meanwhile
            raise NbrelayError(f"{exc}; {START_HINT}") from None

    def get(self, path: str, **params: object) -> dict[str, Any]:
        """GET an API path, as JSON; NbrelayError saying what went wrong."""
        answer: dict[str, Any] = loads(self._fetch(path, None, **params))
        return answer

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON to an API path; its JSON answer, or NbrelayError."""
        answer: dict[str, Any] = loads(self._fetch(path, json.dumps(body).encode()))
        return answer

    def _fetch(self, path: str, data: bytes | None = None, **params: Any) -> bytes:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = self.endpoint.url.rstrip("/") + "/" + path + (f"?{query}" if query else "")
        headers = {"Authorization": f"Bearer {self.endpoint.token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers)
        # The daemon is local or tunnelled: never through an HTTP proxy from the environment.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), _DaemonHandler(self.endpoint)
        )
        try:
            with opener.open(request, timeout=TIMEOUT) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise TokenRefused(self._refused()) from None
            raise NbrelayError(
                f"the daemon at {self.endpoint.url} answered HTTP {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NbrelayError(
                f"no nbrelay daemon answers at {self.endpoint.url} ({reason}); {START_HINT}"
            ) from None

    def _refused(self) -> str:
        return (
            f"the daemon at {self.endpoint.url} refused the token; "
            "check NBRELAY_TOKEN, or unset it to use the runtime file's"
        )

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

    def history(
        self, kernel_id: str, since: int = 0, types: Iterable[str] = ()
    ) -> Iterator[dict[str, Any]]:
        """A kernel's stored records after ``since`` (only those of ``types``, if given), with
        a gap notice (as a dict with ``"type": "gap"``) first if some were pruned.

        All of them come in one replay over ``/ws/view``, up to its ``caught_up`` notice: for
        100,000 records that is a third of the time of 100 pages of ``api/messages``, which
        are only read for ``types`` (the view has no filter)."""
        if not types:
            try:
                yield from self._view(kernel_id, since, live=False)
            except InvalidStatus as exc:
                if exc.response.status_code == 401:
                    raise TokenRefused(self._refused()) from None
                raise NbrelayError(f"the daemon at {self.endpoint.url} {_why(exc)}") from None
            except (OSError, WebSocketException) as exc:  # TimeoutError is an OSError
                raise NbrelayError(
                    f"the daemon at {self.endpoint.url} broke off the replay: {_why(exc)}"
                ) from None
            return
        only = {"types": ",".join(types)}
        while True:
            page = self.get("api/messages", kernel_id=kernel_id, since=since, limit=PAGE, **only)
            if page.get("gap"):
                yield {"type": "gap", **page["gap"]}
            records: list[dict[str, Any]] = page["messages"]
            yield from records
            if len(records) < PAGE:
                return
            since = records[-1]["seq"]

    def record_texts(self, kernel_id: str) -> Iterator[bytes]:
        """A kernel's stored records, each as the JSON text the daemon sent (``export
        .jsonl``): not parsed and encoded again, so nothing in them can change or fail."""
        since = 0
        while True:
            page = self._fetch("api/messages", kernel_id=kernel_id, since=since, limit=PAGE)
            try:
                _, records = split_first_array(page)
            except ValueError as exc:
                raise NbrelayError(f"the daemon sent a page nbrelay cannot read: {exc}") from None
            yield from records
            if len(records) < PAGE:
                return
            since = loads(records[-1])["seq"]

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

    def _view(self, kernel_id: str, since: int, live: bool = True) -> Iterator[dict[str, Any]]:
        """The records of ``/ws/view``, and its gap notices; without ``live``, up to its
        ``caught_up`` notice (what was stored when the replay reached the present)."""
        query = urllib.parse.urlencode({"since": since, "kernel_id": kernel_id})
        with connect(
            self.endpoint.ws_url(f"ws/view?{query}"),
            sock=connect_daemon(self.endpoint, TIMEOUT),
            additional_headers={"Authorization": f"Bearer {self.endpoint.token}"},
            proxy=None,
            max_size=None,
            open_timeout=TIMEOUT,
        ) as ws:
            # A replay of what is stored must not hang on a daemon that stopped answering.
            frames: Iterator[str | bytes] = (
                iter(ws) if live else iter(lambda: ws.recv(timeout=TIMEOUT), None)
            )
            for frame in frames:
                data = loads(frame)
                if isinstance(data, list):
                    yield from data
                elif data.get("type") == "gap":
                    yield data
                elif data.get("type") == "caught_up" and not live:
                    return
        raise ConnectionError("the daemon closed the connection")


def loads(data: bytes | str) -> Any:
    """The daemon's JSON: an API answer, a page of records or a view frame.

    orjson, as the daemon reads what kernels send, so that the CLI reads whatever the daemon
    took: nesting up to 1,024 levels (json gives up near 1,000). A record is as deep as the
    batch line the daemon parsed it from, but a page or a frame adds its own levels around
    it, so one as deep as the daemon allows makes the whole too deep: then the records are
    parsed one by one. Integers beyond 64 bits become floats, as in Jupyter's own frontend
    (JavaScript numbers); ``export .jsonl`` writes the records' own text instead.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        why = exc
    try:
        outer, items = split_first_array(data.encode() if isinstance(data, str) else data)
        value = orjson.loads(outer)
        records = value if isinstance(value, list) else value["messages"]
        records.extend(orjson.loads(item) for item in items)
    except (ValueError, KeyError, TypeError):  # broken, not deep: say what orjson said
        raise NbrelayError(f"the daemon sent JSON that nbrelay cannot read: {why}") from None
    return value


# A JSON string, or a character that opens, closes or separates a value.
_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')


def split_first_array(data: bytes) -> tuple[bytes, list[bytes]]:
    """``data`` (JSON) with its first array emptied, and the JSON text of each of its items,
    as they stand in ``data``: the records of a page (``"messages"``) or of a view frame."""
    depth = opened = inside = start = 0  # inside: the array's depth, once it is found
    items: list[bytes] = []
    for token in _STRUCTURE.finditer(data):
        at = token.start()
        char = data[at]
        if char in b"[{":
            depth += 1
            if not inside and char == ord("["):
                opened, inside, start = at, depth, token.end()
        elif char in b"]}":
            if inside and depth == inside:  # the array ends
                last = data[start:at].strip()
                return data[: opened + 1] + data[at:], [*items, last] if last else items
            depth -= 1
        elif char == ord(",") and inside and depth == inside:
            items.append(data[start:at].strip())
            start = token.end()
    if inside:
        raise ValueError("an array does not end")
    return data, items


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
