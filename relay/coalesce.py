"""Widget updates stored coalesced: each model keeps one update record, its latest (#22).

tqdm sends about ten updates a second per bar; ten bars for a day would be millions of
records, which retention would make room for by pruning the stream output users keep
nbrelay for, and which every replay would read. A widget's state is what matters, not the
way it got there: so when an update (``comm_msg`` with method ``update``) of a model is
stored, the previous update record of that model is removed and the new one holds both
updates' traits merged. A model then costs its ``comm_open``, one update and its
``comm_close``, however long it runs, and replaying it is as fast as replaying any record.

A viewer that was watching saw every update live; one that replays sees the merged one,
at the place of the latest: the same final state. The merged record keeps the latest
message's msg_id and time. Updates of another kind (custom messages, buffers) are kept as
sent, and so are those that begin or end an Output widget's capture (its ``msg_id``): the
outputs between them belong to it. No I/O here: the store applies a :class:`Batch` in its
transaction, and publishes it only once that committed.
"""

from __future__ import annotations

import json
from typing import Any

from .protocol import fit_content, record_body

#: Models whose latest update is remembered; past this, the longest unchanged one is
#: forgotten, and its next update is stored without replacing the one before it.
MAX_MODELS = 10_000

Key = tuple[str, str]  # kernel id, comm id
Latest = tuple[int, dict[str, Any]]  # seq of a model's update record, its state


class Coalescer:
    """Which update record each widget model has stored, across commits."""

    def __init__(self, max_output_bytes: int) -> None:
        self.max_output_bytes = max_output_bytes
        self._latest: dict[Key, Latest] = {}

    def batch(self) -> Batch:
        return Batch(self)

    def publish(self, batch: Batch) -> None:
        """Take in what ``batch`` stored, once it is committed."""
        for key, latest in batch.changes.items():
            self._latest.pop(key, None)  # re-inserted last: the dict's order is recency
            if latest is not None:
                self._latest[key] = latest
        while len(self._latest) > MAX_MODELS:
            del self._latest[next(iter(self._latest))]


class Batch:
    """The records of one commit, with the update records they replace."""

    def __init__(self, coalescer: Coalescer) -> None:
        self._coalescer = coalescer
        self.changes: dict[Key, Latest | None] = {}
        self.replaced: list[tuple[str, int]] = []  # (kernel id, seq) of records to remove

    def _latest(self, key: Key) -> Latest | None:
        if key in self.changes:
            return self.changes[key]
        return self._coalescer._latest.get(key)

    def record(self, seq: int, kernel_id: str, msg_type: str, body: str) -> str:
        """The body to store for a new record (``body`` itself, or the merged update)."""
        if msg_type not in ("comm_open", "comm_msg", "comm_close"):
            return body
        record = json.loads(body)
        content = record.get("content")
        comm_id = content.get("comm_id") if isinstance(content, dict) else None
        if not isinstance(comm_id, str):
            return body
        key = (kernel_id, comm_id)
        data = content.get("data")
        if msg_type != "comm_msg":  # a model begins or ends: nothing to merge with
            self.changes[key] = None
            return body
        if not (
            isinstance(data, dict)
            and data.get("method") == "update"
            and isinstance(data.get("state"), dict)
            and not data.get("buffer_paths")
        ):
            return body
        if "msg_id" in data["state"]:  # an Output widget's `with out:` begins or ends: what
            self.changes[key] = None  # it captures depends on where, so it stays in place
            return body
        previous = self._latest(key)
        if previous is None:
            self.changes[key] = (seq, data["state"])
            return body
        before, state = previous
        merged = {**state, **data["state"]}
        self.replaced.append((kernel_id, before))
        self.changes[key] = (seq, merged)
        content = fit_content(
            {**content, "data": {**data, "state": merged}}, self._coalescer.max_output_bytes
        )
        head = (record["msg_id"], msg_type, record["parent_msg_id"], record["time"])
        return record_body(kernel_id, *head, content)
