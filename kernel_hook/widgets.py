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
        self._open: set[str] = _open_now()

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


def _open_now() -> set[str]:
    """The widget comms open in the kernel already: a bar shown before ``%unload_ext`` and
    ``%load_ext nbrelay`` goes on changing, and its ``comm_open`` was relayed then. (One made
    before nbrelay was ever loaded is known to no reader, which skip its updates.)"""
    try:
        from comm import get_comm_manager  # ipykernel's dependency, imported by it already

        comms = dict(get_comm_manager().comms)
    except Exception:  # no kernel's comm manager here: nothing is open
        return set()
    return {i for i, c in comms.items() if getattr(c, "target_name", None) == WIDGET_TARGET}
