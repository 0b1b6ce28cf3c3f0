"""Which comm messages the hook passes on: those of Jupyter widgets, and no other comm's.

A tqdm.auto progress bar is an ipywidgets HBox whose progress travels only as comm messages
(#22). Other comms (the debugger's, plotting libraries' own channels) are no output, and
may carry much more, so a comm is followed from its ``comm_open`` with the widget target
until its ``comm_close``. Runs on the IOPub thread, for comm messages only; their content
is small JSON (a widget's changed state), so parsing it costs the user's loop little.

Binary buffers (``buffers`` beside the content) are not kept: the tap takes the header,
parent and content frames only. Progress widgets have none; a widget that puts a trait in a
buffer (an Image's bytes, a numpy array) is stored without it, and shows its text fallback.
"""

from __future__ import annotations

import json

from ..protocol import WIDGET_TARGET


class WidgetComms:
    """The comm ids of open widget comms, as seen in the messages the kernel sent."""

    def __init__(self) -> None:
        self._open: set[str] = set()

    def wanted(self, msg_type: bytes, content: bytes) -> bool:
        """Whether a comm message of ``msg_type`` is a widget's, to be captured."""
        body = json.loads(content)
        comm_id = body.get("comm_id") if isinstance(body, dict) else None
        if not isinstance(comm_id, str):
            return False
        if msg_type == b"comm_open":
            if body.get("target_name") != WIDGET_TARGET:
                return False
            self._open.add(comm_id)
            return True
        if comm_id not in self._open:
            return False
        if msg_type == b"comm_close":
            self._open.discard(comm_id)
        return True
