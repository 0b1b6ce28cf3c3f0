"""Records back into notebooks: a new one per kernel (``export``), or the user's own
(``recover``), with outputs built the way Jupyter builds them from the same messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook, new_output

from .transcript import overwrite

UNKNOWN_START = "# nbrelay: this cell started before its kernel loaded nbrelay\n"


@dataclass
class Execution:
    """One execute request: its code and the outputs it left, as nbformat outputs."""

    request: str  # the execute_request's msg_id: the parent of every message it caused
    code: str | None  # None when its execute_input was not captured
    count: int | None
    outputs: list[NotebookNode] = field(default_factory=list)
    clear_on_next: bool = False  # clear_output(wait=True) seen
    #: The display_id each output shows, if any, beside ``outputs``: a page that takes the
    #: outputs over must know them, so that later update_display_data reach them.
    display_ids: list[str | None] = field(default_factory=list)


def _output(msg_type: str, content: dict[str, Any]) -> NotebookNode | None:
    output: NotebookNode | None = None
    if msg_type == "stream":
        output = new_output(
            "stream", name=content.get("name", "stdout"), text=content.get("text", "")
        )
    elif msg_type in ("display_data", "execute_result"):
        extra = {"execution_count": content.get("execution_count")}
        output = new_output(
            msg_type,
            data=content.get("data", {}),
            metadata=content.get("metadata", {}),
            **(extra if msg_type == "execute_result" else {}),
        )
    elif msg_type == "error":
        output = new_output(
            "error",
            ename=str(content.get("ename", "")),
            evalue=str(content.get("evalue", "")),
            traceback=[str(line) for line in content.get("traceback", [])],
        )
    return output


def executions(records: Iterable[dict[str, Any]]) -> list[Execution]:
    """The executions in ``records`` (one kernel's, in seq order), with their outputs after
    clear_output and update_display_data, as a notebook client applies them."""
    by_request: dict[str, Execution] = {}
    order: list[Execution] = []
    displays: dict[str, list[NotebookNode]] = {}  # display_id -> outputs showing it

    for record in records:
        msg_type, content = record.get("msg_type"), record.get("content") or {}
        parent = record.get("parent_msg_id")
        if msg_type == "update_display_data":
            display_id = (content.get("transient") or {}).get("display_id")
            for shown in displays.get(display_id, []) if isinstance(display_id, str) else []:
                shown["data"] = content.get("data", {})
                shown["metadata"] = content.get("metadata", {})
            continue
        if not parent or msg_type not in (
            "execute_input",
            "stream",
            "display_data",
            "execute_result",
            "error",
            "clear_output",
        ):
            continue
        run = by_request.get(parent)
        if run is None or msg_type == "execute_input":
            run = Execution(parent, None, None)
            by_request[parent] = run
            order.append(run)
        if msg_type == "execute_input":
            run.code, run.count = str(content.get("code", "")), content.get("execution_count")
            continue
        if msg_type == "clear_output":
            if content.get("wait"):
                run.clear_on_next = True
            else:
                run.outputs.clear()
            continue
        output = _output(msg_type, content)
        if output is None:
            continue
        if run.clear_on_next:
            run.outputs.clear()
            run.clear_on_next = False
        last = run.outputs[-1] if run.outputs else None
        if (
            output.output_type == "stream"
            and last is not None
            and last.output_type == "stream"
            and last.name == output.name
        ):
            last.text += output.text  # Jupyter merges consecutive output of one stream
        else:
            run.outputs.append(output)
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            displays.setdefault(display_id, []).append(output)

    shown_as = {id(o): display_id for display_id, shown in displays.items() for o in shown}
    for run in order:
        run.display_ids = [shown_as.get(id(o)) for o in run.outputs]
        for output in run.outputs:
            if output.output_type == "stream":  # as Jupyter saves it: \r and \b applied
                output.text = "\n".join(overwrite(line) for line in output.text.split("\n"))
    return order


def export_notebook(records: Iterable[dict[str, Any]], kernel: dict[str, Any]) -> NotebookNode:
    """A new notebook: one code cell per execution, in order."""
    cells = [
        new_code_cell(
            source=UNKNOWN_START if run.code is None else run.code,
            execution_count=run.count,
            outputs=run.outputs,
        )
        for run in executions(records)
    ]
    notebook: NotebookNode = new_notebook(cells=cells)
    notebook.metadata["nbrelay"] = {
        "kernel_id": kernel["kernel_id"],
        "notebook": kernel.get("notebook"),
    }
    nbformat.validate(notebook)
    return notebook


@dataclass
class Recovery:
    notebook: NotebookNode
    filled: int  # cells whose outputs came back
    unmatched: int  # executions no cell has the source of


def _source(text: str | list[str]) -> str:
    return ("".join(text) if isinstance(text, list) else text).strip()


def pair(cells: Iterable[NotebookNode], runs: Iterable[Execution]) -> list[tuple[Any, Execution]]:
    """Each code cell with the latest execution that ran it, as ``recover`` and the notebook
    extension match them.

    A cell matches the executions of exactly its source. When several cells share a source,
    a cell whose saved execution count is one of theirs takes that one; the rest go in
    order, the latest executions to the cells, top to bottom: a notebook run from the top.
    """
    by_source: dict[str, list[Execution]] = {}
    for run in runs:
        if run.code is not None:
            by_source.setdefault(_source(run.code), []).append(run)
    by_cell_source: dict[str, list[NotebookNode]] = {}
    for cell in cells:
        if cell.cell_type == "code":
            by_cell_source.setdefault(_source(cell.source), []).append(cell)

    pairs: list[tuple[Any, Execution]] = []
    for source, candidates in by_source.items():
        targets = by_cell_source.get(source, [])
        if not targets:
            continue
        free = list(candidates)
        matched = []
        for cell in targets:  # a saved execution count names its run exactly
            exact = [r for r in free if r.count is not None and r.count == cell.execution_count]
            if exact:
                matched.append((cell, exact[-1]))
                free.remove(exact[-1])
        rest = [c for c in targets if all(c is not p[0] for p in matched)]
        matched += zip(rest, free[-len(rest) :] if rest else [], strict=False)
        pairs += matched
    return pairs


def recover(notebook: NotebookNode, records: Iterable[dict[str, Any]]) -> Recovery:
    """``notebook`` with the outputs and execution counts of its cells' latest recorded
    executions (matched by :func:`pair`)."""
    runs = executions(records)
    pairs = pair(notebook.cells, runs)
    for cell, run in pairs:
        cell.outputs = run.outputs
        cell.execution_count = run.count
    sources = {_source(c.source) for c in notebook.cells if c.cell_type == "code"}
    unmatched = sum(1 for r in runs if r.code is not None and _source(r.code) not in sources)
    nbformat.validate(notebook)
    return Recovery(notebook, len(pairs), unmatched)


def read(path: Path) -> NotebookNode:
    notebook: NotebookNode = nbformat.read(path, as_version=4)
    return notebook


def write(notebook: NotebookNode, path: Path) -> None:
    nbformat.write(notebook, path)
