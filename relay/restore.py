"""What the notebook extension puts back into the user's open notebook: no I/O.

The page sends its code cells (id, source, execution count); the records of the notebook's
current kernel process say what each execution printed. Cells are matched to executions as
``nbrelay recover`` matches them, and outputs are rebuilt by the same rules
(:mod:`nbrelay.notebook`): one set of Jupyter's output rules, in Python. What arrives live
after the restore is left to JupyterLab's own output area.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from nbformat.v4 import new_code_cell

from .notebook import Execution, executions, pair
from .protocol import START

#: A restored stream longer than this is cut to its end for the page, behind a line that says
#: how much is left out: JupyterLab lays out a stream's whole text at once and scans all of it
#: for links, and 10 MB blocked the page for 3 s. The viewer and ``export`` have all of it.
PAGE_LINES = 10_000
PAGE_CHARS = 2**20

#: msg_ids of a running execution's latest records sent with its snapshot, so that the page
#: drops a message it received live that the snapshot holds too. The page puts its latest 2,000
#: messages on top of the snapshot: one that is in both but older than this tail would mean
#: that the relay had stored 8,000 more of that cell's messages than the page had received.
TAIL_IDS = 10_000


def current_process(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the kernel's latest process: from its last ``nbrelay.start`` on.

    A start that retention pruned is among the records the gap notice kept (relay/app.py):
    then the notice, with the kept records from that start on, and what follows it. A gap
    that kept no start (a database from before they were kept) leaves all that is left."""
    for i in range(len(records) - 1, -1, -1):
        record = records[i]
        if record.get("msg_type") == START:
            return list(records[i:])
        if record.get("type") == "gap":
            kept = record.get("kept") or []
            starts = [j for j, r in enumerate(kept) if r.get("msg_type") == START]
            gap = {**record, "kept": kept[starts[-1] :]} if starts else record
            return [gap, *records[i + 1 :]]
    return []


def _message(output: dict[str, Any], display_id: str | None) -> dict[str, Any]:
    """An nbformat output as the IOPub message content that makes it, for Lab's output area."""
    content = {k: v for k, v in output.items() if k != "output_type"}
    if display_id is not None:
        content["transient"] = {"display_id": display_id}
    return {"msg_type": output["output_type"], "content": content}


def plan(
    records: Sequence[dict[str, Any]], cells: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """For each code cell that ran in ``records`` (one process's, in seq order), its latest
    execution as the page applies it: outputs as IOPub contents, the execution count, whether
    it still runs, and the msg_ids the page may also receive live.
    """
    runs = executions(records)
    finished = {
        r.get("parent_msg_id")
        for r in records
        if r.get("msg_type") == "status"
        and (r.get("content") or {}).get("execution_state") == "idle"
    }
    tails = {r.request: deque[str](maxlen=TAIL_IDS) for r in runs if r.request not in finished}
    for r in records:
        tail = tails.get(r.get("parent_msg_id") or "")
        if tail is not None and r.get("msg_id"):
            tail.append(r["msg_id"])
    notebook_cells = [
        new_code_cell(source=c.get("source", ""), execution_count=c.get("execution_count"))
        for c in cells
    ]
    ids = [str(c.get("id", "")) for c in cells]
    for cell, cell_id in zip(notebook_cells, ids, strict=True):
        cell.id = cell_id
    planned = []
    pairs, _ = pair(notebook_cells, runs)
    for cell, run in pairs:
        planned.append(_cell_plan(cell.id, run, run.request not in finished, tails))
    return planned


def trim(text: str) -> str | None:
    """A stream's ``text`` cut to its last ``PAGE_LINES`` lines and ``PAGE_CHARS`` characters,
    behind a line saying what is left out; None if it is not longer than that."""
    cut = len(text) - 1  # the newline that ends the last line, if it has one
    for _ in range(PAGE_LINES):
        cut = text.rfind("\n", 0, cut)
        if cut < 0:
            break
    start = max(cut + 1, len(text) - PAGE_CHARS)
    if start == 0:
        return None
    if start > cut + 1:  # too many characters: from a line's start, if one is in reach
        newline = text.find("\n", start - 1, len(text) - 1)
        start = newline + 1 if newline >= 0 else start
    lines = text.count("\n", 0, start)
    what, count = ("line", lines) if lines else ("character", start)
    left_out = f"{count:,} {what}{'s' * (count != 1)}"
    note = (
        f"[nbrelay: not shown here, the first {left_out} of this output; the nbrelay viewer "
        "and `nbrelay export` have every line]\n"
    )
    return note + text[start:]


def _cell_plan(
    cell_id: str, run: Execution, running: bool, tails: dict[str, deque[str]]
) -> dict[str, Any]:
    messages = [_message(o, d) for o, d in zip(run.outputs, run.display_ids, strict=True)]
    trimmed = False
    for message in messages:
        content = message["content"]
        cut = trim(content["text"]) if message["msg_type"] == "stream" else None
        if cut is not None:
            content["text"], trimmed = cut, True
    if running and run.cursor is not None:
        # Lab's output area keeps where a stream's cursor stands apart from its text: give it
        # the \r that put it there, so that a line the execution goes on redrawing (a progress
        # loop's end="\r") is redrawn in place, not after the text restored.
        content = messages[-1]["content"]
        line = content["text"].rsplit("\n", 1)[-1]
        lost = len(run.outputs[-1].text.rsplit("\n", 1)[-1]) - len(line)  # to trim, if any
        content["text"] += "\r" + line[: max(0, run.cursor - lost)]
    if running and run.clear_on_next:
        # clear_output(wait=True) waits for the next output: the page's output area clears
        # then too, instead of adding that output to what the restore shows.
        messages.append({"msg_type": "clear_output", "content": {"wait": True}})
    return {
        "cell_id": cell_id,
        "request": run.request,
        "execution_count": run.count,
        "running": running,
        "outputs": messages,
        "trimmed": trimmed,
        "tail_ids": list(tails.get(run.request, ())) if running else [],
    }
