"""Seeing every IOPub message the kernel publishes, in the order it publishes them.

ipykernel funnels all of IOPub through ``IOPubThread._really_send``, run on its IOPub
thread: streams, displays, errors, status, and the messages that forked children pipe back
to the parent. Wrapping that one method on the instance therefore sees exactly what the
notebook client receives, in the same order, already serialised, and costs the user's own
threads nothing. Removing the instance attribute restores the class's method exactly.

Every ``print(..., flush=True)`` waits for the IOPub thread, so what runs there runs in the
user's loop: the tap only finds the message type and hands over ipykernel's bytes; the
sender thread parses the rest.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..protocol import CAPTURED_TYPES, COMM_TYPES
from .widgets import WidgetComms

log = logging.getLogger("nbrelay.kernel_hook")

DELIM = b"<IDS|MSG>"
Sink = Callable[[bytes, bytes, bytes], None]  # header, parent, content, as serialised
# A key can only be a key here: a quote inside a JSON string is escaped. An escaped value
# does not match, and the header is then parsed (see tapped).
MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"([^"\\]*)"')
CAPTURED = frozenset(t.encode() for t in CAPTURED_TYPES)
COMMS = frozenset(t.encode() for t in COMM_TYPES)


class IOPubTap:
    def __init__(self, iopub_thread: Any, sink: Sink) -> None:
        self._iopub = iopub_thread
        self._sink = sink
        self._pid = os.getpid()
        self._failed = False
        self._original = iopub_thread._really_send
        self._tapped = self._make_tapped()

    def _make_tapped(self) -> Callable[..., Any]:
        """The wrapper, one function: it runs for every message, on the IOPub thread, where
        each Python call costs the user's loop (see docs/benchmarks.md, 2026-11-26)."""
        original, sink, pid, search = self._original, self._sink, self._pid, MSG_TYPE.search
        widgets = WidgetComms()  # comm messages: only widgets', checked after the common case

        def tapped(msg: list[Any], *args: Any, **kwargs: Any) -> Any:
            # A forked child pipes its messages to the parent, which taps them there.
            if os.getpid() == pid:
                try:
                    # [idents..., DELIM, HMAC, header, parent, metadata, content, buffers...]
                    i = msg.index(DELIM)
                    header, parent, content = msg[i + 2], msg[i + 3], msg[i + 5]
                    if not type(header) is type(parent) is type(content) is bytes:
                        header, parent, content = bytes(header), bytes(parent), bytes(content)
                    found = search(header)
                    if found is not None:
                        msg_type = found[1]
                    else:  # e.g. an escape in the value: rare, so parse
                        msg_type = str(json.loads(header).get("msg_type")).encode()
                    captured = msg_type in CAPTURED
                    if not captured and msg_type in COMMS:
                        captured = widgets.wanted(msg_type, content)
                    if captured:
                        sink(header, parent, content)
                except Exception as exc:  # never into the kernel; said once
                    if not self._failed:
                        self._failed = True
                        log.error("nbrelay: could not capture an IOPub message: %r", exc)
            return original(msg, *args, **kwargs)

        return tapped

    def attach(self) -> None:
        self._iopub._really_send = self._tapped

    def detach(self, timeout: float = 2.0) -> None:
        """Restore the kernel, unless something wrapped the method after us.

        Output written before this call is still tapped: the streams are flushed, then we
        wait until the IOPub thread has run every send queued so far.
        """
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sent = threading.Event()
        self._iopub.schedule(sent.set)
        sent.wait(timeout)
        if vars(self._iopub).get("_really_send") is self._tapped:
            del self._iopub._really_send
        else:
            log.warning("nbrelay: IOPub was re-wrapped after nbrelay; leaving it in place")
