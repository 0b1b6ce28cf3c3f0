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
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.serverapp import ServerApp
from jupyter_server.utils import url_path_join
from tornado import web

from .client import PAGE, Client
from .errors import NbrelayError, TokenRefused
from .protocol import MAX_SEQ, START
from .restore import current_process, plan

#: Largest request body: the page sends each code cell's source. A notebook of many MB of
#: code is refused, not read.
MAX_BODY_BYTES = 32 * 2**20

HINTS = {
    "no-daemon": "start the daemon with `nbrelay` in a terminal (or `nbrelay serve --detach`)",
    "refused": "the Jupyter server's NBRELAY_TOKEN is not the daemon's: fix it, or unset it to "
    "use the daemon's runtime file",
    "not-relaying": "run `%load_ext nbrelay` in this notebook, or `nbrelay enable` once for "
    "every new kernel",
}


def _state(state: str, why: str) -> dict[str, Any]:
    return {"state": state, "message": f"{why}: {HINTS[state]}" if state in HINTS else why}


def _records(client: Client, kernel_id: str) -> tuple[list[dict[str, Any]], bool]:
    """The kernel's records back to its latest process start, oldest first, and whether
    retention pruned that start away (then all that is left of the kernel is returned)."""
    pages: list[list[dict[str, Any]]] = []
    before = MAX_SEQ
    while True:
        page = client.get("api/messages", kernel_id=kernel_id, before=before, limit=PAGE)
        messages: list[dict[str, Any]] = page["messages"]
        if not messages:
            return [r for p in reversed(pages) for r in p], bool(page.get("gap"))
        pages.append(messages)
        if any(r.get("msg_type") == START for r in messages):
            return [r for p in reversed(pages) for r in p], False
        before = messages[0]["seq"]


def answer(kernel_id: str, cells: list[dict[str, Any]], pid: int | None) -> dict[str, Any]:
    """What the page needs for kernel ``kernel_id`` whose process is ``pid`` (None: unknown,
    e.g. a remote kernel): the relay's state, and the outputs to put back. Blocking."""
    try:
        client = Client()
        kernels = client.kernels()
    except TokenRefused as exc:
        return _state("refused", str(exc).split("; check")[0])
    except NbrelayError as exc:
        return _state("no-daemon", str(exc).split("; start")[0])
    known = next((k for k in kernels if k["kernel_id"] == kernel_id), None)
    if known is None:
        return _state("not-relaying", "this kernel has sent nothing to nbrelay")
    if pid is not None and known.get("pid") != pid:
        return _state("not-relaying", "this kernel's current process has not loaded nbrelay")
    try:
        records, pruned = _records(client, kernel_id)
    except NbrelayError as exc:
        return _state("no-daemon", str(exc).split("; start")[0])
    if known.get("execution_state") == "unloaded":
        state = _state("not-relaying", "nbrelay was unloaded in this kernel")
    else:
        state = {"state": "relaying", "message": f"relaying to {client.endpoint.url}"}
    # Outputs kept before an unload still come back.
    process = records if pruned else current_process(records)
    return {**state, "pruned": pruned, "cells": plan(process, cells)}


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


def _load_jupyter_server_extension(server: ServerApp) -> None:
    base = server.web_app.settings["base_url"]
    handlers = [(url_path_join(base, "api/nbrelay/restore"), RestoreHandler)]
    server.web_app.add_handlers(".*$", handlers)  # type: ignore[no-untyped-call]
