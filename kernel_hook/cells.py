"""Which notebook cell each execution ran, told to the daemon with the cell's output.

JupyterLab and Notebook 7 put the cell's id in each execute request's metadata
(``cellId``), and IPython hands it to ``pre_run_cell`` callbacks as ``info.cell_id``. It
never reaches IOPub, so the tap cannot see it: before the cell runs, this puts a message of
the hook's own (``nbrelay.cell``) into the outbox, with the execute request as its parent,
as the cell's output has. It is numbered, buffered and delivered exactly once like them.

The message is made by the kernel's own Session, as ipykernel makes IOPub messages, so the
sender reads its header on its fast path. Without a cell id (other frontends, or
``silent`` executions, for which IPython does not fire the event) nothing is sent.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from ..protocol import CELL
from .tap import Sink

log = logging.getLogger("nbrelay.kernel_hook")

EVENT = "pre_run_cell"


class CellIds:
    def __init__(self, shell: Any, sink: Sink) -> None:
        self._shell = shell
        self._sink = sink
        self._failed = False

    def attach(self) -> None:
        self._shell.events.register(EVENT, self.before_cell)

    def detach(self) -> None:
        with contextlib.suppress(ValueError):  # not registered: someone removed it already
            self._shell.events.unregister(EVENT, self.before_cell)

    def before_cell(self, info: Any) -> None:
        """Runs on the kernel's main thread before each cell: it must never raise, as IPython
        would print the traceback into the cell."""
        cell_id = getattr(info, "cell_id", None)
        if not isinstance(cell_id, str) or not cell_id:
            return
        try:
            session = self._shell.kernel.session
            # The request the cell runs for: what ipykernel makes the parent of its output.
            msg = session.msg(CELL, {"cell_id": cell_id}, parent=self._shell.parent_header)
            pack = session.pack
            self._sink(pack(msg["header"]), pack(msg["parent_header"]), pack(msg["content"]))
        except Exception as exc:  # never into the kernel; said once
            if not self._failed:
                self._failed = True
                log.error("nbrelay: could not record a cell's id: %r", exc)
