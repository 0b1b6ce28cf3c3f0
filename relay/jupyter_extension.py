"""The Jupyter server's side of the notebook extension: outputs nbrelay kept, for the page.

The page asks its own Jupyter server, under the server's own login; this module finds the
user's daemon as the CLI does (``NBRELAY_URL``/``NBRELAY_TOKEN``, else the runtime file), reads
the records of the notebook's current kernel process, and answers with what to put back
(:mod:`nbrelay.restore`). The daemon's token stays in this process: it never reaches the page.

Loaded by jupyter_server through ``_jupyter_server_extension_points`` in ``nbrelay``, and
enabled by the ``jupyter_server_config.d`` file that the wheel installs.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.serverapp import ServerApp
from jupyter_server.utils import url_path_join
from tornado import web

from .client import Client
from .errors import START_HINT, NbrelayError, TokenRefused
from .protocol import MAX_SEQ, START
from .restore import current_process, plan

#: Largest request body: the page sends each code cell's source. Tornado has read a body
#: before the handler runs; a larger one is refused before it is parsed.
MAX_BODY_BYTES = 32 * 2**20

HINTS = {
    "no-daemon": START_HINT,
    "refused": "the Jupyter server's NBRELAY_TOKEN is not the daemon's: fix it, or unset it to "
    "use the daemon's runtime file",
    "not-relaying": "run `%load_ext nbrelay` in this notebook, or `nbrelay enable` once for "
    "every new kernel",
}


def _state(state: str, why: str) -> dict[str, Any]:
    return {"state": state, "message": f"{why}: {HINTS[state]}"}


def _why(exc: NbrelayError) -> str:
    """The client's message without its own hint: the page gives the hint of the state."""
    return str(exc).split("; ", 1)[0]


def _records(client: Client, kernel_id: str) -> list[dict[str, Any]]:
    """The kernel's records from its latest process start on; if retention pruned that start,
    all that is left of the kernel, after the gap notice (with what the daemon kept of that
    start: see :func:`nbrelay.restore.current_process`)."""
    starts = client.get("api/messages", kernel_id=kernel_id, before=MAX_SEQ, limit=1, types=START)[
        "messages"
    ]
    since = starts[0]["seq"] - 1 if starts else 0
    return list(client.history(kernel_id, since))


def answer(kernel_id: str, cells: list[dict[str, Any]], pid: int | None) -> dict[str, Any]:
    """What the page needs for kernel ``kernel_id`` whose process is ``pid`` (None: unknown,
    e.g. a remote kernel): the relay's state, and the outputs to put back. Blocking."""
    try:
        client = Client()
        kernels = client.kernels()
    except TokenRefused as exc:
        return _state("refused", _why(exc))
    except NbrelayError as exc:
        return _state("no-daemon", _why(exc))
    known = next((k for k in kernels if k["kernel_id"] == kernel_id), None)
    if known is None:
        return _state("not-relaying", "this kernel has sent nothing to nbrelay")
    if pid is not None and known.get("pid") != pid:
        return _state("not-relaying", "this kernel's current process has not loaded nbrelay")
    try:
        records = _records(client, kernel_id)
    except NbrelayError as exc:
        return _state("no-daemon", _why(exc))
    if known.get("execution_state") == "unloaded":
        state = _state("not-relaying", "nbrelay was unloaded in this kernel")
    else:
        state = {"state": "relaying", "message": f"relaying to {client.endpoint.url}"}
    # Outputs kept before an unload still come back.
    return {**state, "cells": plan(current_process(records), cells)}


def _cells(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """The kernel id and cells of a request body, or HTTP 400 saying what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("kernel_id"), str):
        raise web.HTTPError(400, "expected {kernel_id, cells}")
    cells = body.get("cells", [])
    if not isinstance(cells, list) or not all(
        isinstance(c, dict)
        and isinstance(c.get("id"), str)
        and isinstance(c.get("source"), str)
        and (c.get("execution_count") is None or type(c.get("execution_count")) is int)
        for c in cells
    ):
        raise web.HTTPError(400, "cells: a list of {id, source, execution_count}")
    return body["kernel_id"], cells


class RestoreHandler(APIHandler):
    """``POST {kernel_id, cells}``: the relay's state for the kernel, and what to restore."""

    @web.authenticated
    async def post(self) -> None:
        if len(self.request.body) > MAX_BODY_BYTES:
            raise web.HTTPError(413, "notebook too large to restore")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        kernel_id, cells = _cells(body)
        reply = await asyncio.to_thread(answer, kernel_id, cells, self._pid(kernel_id))
        self.finish(json.dumps(reply))

    def _pid(self, kernel_id: str) -> int | None:
        """The kernel's process id, where this server started it: a restart makes a new one,
        and only its executions apply."""
        try:
            manager = self.kernel_manager.get_kernel(kernel_id)
        except KeyError:
            return None
        pid = getattr(getattr(manager, "provisioner", None), "pid", None)
        return pid if isinstance(pid, int) else None


def _viewer_query(kernel_id: str) -> str:
    """The viewer's query that opens ``kernel_id`` ("" for none), with its "?"."""
    return "?" + urllib.parse.urlencode({"kernel": kernel_id}) if kernel_id else ""


def viewer_url(kernel_id: str) -> str:
    """The daemon's viewer on ``kernel_id``, with a one-time login code for the browser: the
    page trades it for the daemon's cookie, and the token itself never leaves this process.
    Blocking; NbrelayError if the daemon cannot be asked."""
    client = Client()
    code = client.post("api/login-codes", {})["code"]
    return f"{client.endpoint.url}{_viewer_query(kernel_id)}#code={code}"


class ViewerHandler(APIHandler):
    """``GET ?kernel_id=K``: to the nbrelay viewer on that kernel, with no second login.

    Through jupyter-server-proxy where it runs (``<server>/nbrelay/``, under the Jupyter
    server's own login, and it reaches a daemon on this machine from any browser); else
    straight to the daemon, logged in by a one-time code.
    """

    @web.authenticated
    async def get(self) -> None:
        kernel_id = self.get_query_argument("kernel_id", "")
        if self._proxied():
            self.redirect(url_path_join(self.base_url, "nbrelay/") + _viewer_query(kernel_id))
            return
        try:
            url = await asyncio.to_thread(viewer_url, kernel_id)
        except NbrelayError as exc:
            raise web.HTTPError(503, reason=_why(exc)) from None
        self.redirect(url)

    def _proxied(self) -> bool:
        server = self.serverapp
        proxy = server.extension_manager.extensions.get("jupyter_server_proxy") if server else None
        return bool(proxy is not None and proxy.enabled)


def _load_jupyter_server_extension(server: ServerApp) -> None:
    base = server.web_app.settings["base_url"]
    handlers = [
        (url_path_join(base, "api/nbrelay/restore"), RestoreHandler),
        (url_path_join(base, "api/nbrelay/viewer"), ViewerHandler),
    ]
    server.web_app.add_handlers(".*$", handlers)  # type: ignore[no-untyped-call]
