"""Records back into notebooks: a new one per kernel (``export``), or the user's own
(``recover``), with outputs built the way Jupyter builds them from the same messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.corpus.words import generate_corpus_id as random_cell_id  # new_code_cell's
from nbformat.v4 import nbformat as nbformat_v4
from nbformat.v4 import nbformat_minor, new_code_cell, new_notebook, new_output
from nbformat.validator import isvalid

from .protocol import CELL, COMM_TYPES
from .transcript import Line, cannot_render, of_type, overwrite
from .widgets import STATE_MIME, Widgets, shown_model

UNKNOWN_START = "# nbrelay: this cell started before its kernel loaded nbrelay\n"
#: The first output of an execution whose start retention pruned while later output of it was
#: kept: the user sees in the cell, and in the saved notebook, that there was more before.
PRUNED = "[nbrelay: earlier output of this cell was pruned by retention (--max-size, --max-age)]\n"


@dataclass
class Execution:
    """One execute request: its code and the outputs it left, as nbformat outputs."""

    request: str  # the execute_request's msg_id: the parent of every message it caused
    code: str | None  # None when its execute_input was not captured
    count: int | None
    cell_id: str | None = None  # the notebook cell it ran, when the frontend said (nbrelay.cell)
    outputs: list[NotebookNode] = field(default_factory=list)
    clear_on_next: bool = False  # clear_output(wait=True) seen
    #: The display_id each output shows, if any, beside ``outputs``: a page that takes the
    #: outputs over must know them, so that later update_display_data reach them.
    display_ids: list[str | None] = field(default_factory=list)
    #: The nbformat widget state (``{"version_major", "version_minor", "state"}``) of the
    #: widget models its outputs show, at their latest state; empty if they show none.
    widgets: dict[str, Any] = field(default_factory=dict)
    #: Its earlier records were pruned by retention: its first output says so (:data:`PRUNED`).
    pruned: bool = False
    #: The column of the cursor on the last line of its last output, if that is a stream
    #: and a ``\\r`` left the cursor inside the line; None at its end. The
    #: saved text does not say it, and a page that goes on with the execution needs it.
    cursor: int | None = None


#: Nesting a notebook can hold. nbformat builds, copies and checks outputs with recursive
#: Python, which runs out of stack near 490 levels (Python's recursion limit is 1,000); half
#: of that leaves room for the notebook's own levels and its callers. The daemon takes up to
#: 1,024: a record nested deeper than this is exported as a placeholder.
MAX_NESTING = 256


def nesting(value: Any) -> int:
    """How many levels of lists and objects ``value`` has, counted without recursion."""
    depth, level = 0, [value]
    while containers := [v for v in level if isinstance(v, dict | list)]:
        depth += 1
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return depth


def _output(msg_type: str, content: dict[str, Any]) -> NotebookNode | None:
    """The nbformat output of a message; TypeError, ValueError or nbformat's ValidationError
    (a ValueError) for one that no notebook can hold."""
    output: NotebookNode | None = None
    if msg_type == "stream":
        output = new_output(
            "stream",
            name=of_type(content.get("name", "stdout"), str, "name"),
            text=of_type(content.get("text", ""), str, "text"),
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
            traceback=[
                str(line) for line in of_type(content.get("traceback", []), list, "traceback")
            ],
        )
    return output


OUTPUT_TYPES = frozenset(
    {
        "execute_input",
        "stream",
        "display_data",
        "update_display_data",
        "execute_result",
        "error",
        "clear_output",
    }
)


def _display_id(content: dict[str, Any]) -> str | None:
    transient = of_type(content.get("transient") or {}, dict, "transient")
    display_id = transient.get("display_id")
    return display_id if isinstance(display_id, str) else None


class _Replay:
    """Executions rebuilt from one kernel's records, in seq order, as a notebook client
    builds its outputs from the same messages."""

    def __init__(self) -> None:
        self.by_request: dict[str, Execution] = {}
        self.order: list[Execution] = []
        self.displays: dict[str, list[NotebookNode]] = {}  # display_id -> outputs showing it
        # request -> notebook cell id. The hook records the id on the kernel's main thread and
        # execute_input comes through IOPub, so either can be first.
        self.cell_ids: dict[str, str] = {}
        # id() of a stream output -> the output and its text in parts, joined by text().
        # Holding the output keeps its id() from going to a new one after a clear_output.
        self.parts: dict[int, tuple[NotebookNode, list[str]]] = {}
        self.widgets = Widgets()
        # request -> its execute_input, pruned by retention and kept (relay/retention.py)
        self.pruned: dict[str, dict[str, Any]] = {}

    def run(self, request: str, new: bool = False) -> Execution:
        run = self.by_request.get(request)
        if run is None or new:
            run = Execution(request, None, None)
            started = None if new else self.pruned.pop(request, None)
            if started is not None:  # its first output kept after a retention gap
                self.start(run, of_type(started.get("content") or {}, dict, "content"))
                run.pruned = True
                run.outputs.append(new_output("stream", name="stderr", text=PRUNED))
            self.by_request[request] = run
            self.order.append(run)
        return run

    def start(self, run: Execution, content: dict[str, Any]) -> None:
        """The code and execution count of ``run``, from its execute_input's content."""
        code = of_type(content.get("code", ""), str, "code")
        count = new_code_cell(code, execution_count=content.get("execution_count"))
        run.code, run.count = code, count.execution_count

    def gap(self, notice: dict[str, Any]) -> None:
        """A retention gap (relay/app.py): of the records it kept apart, the notebook cell of
        an execution applies now, and its execute_input once output of it follows; then
        (:meth:`run`) its cell is found, and shows that earlier output is missing. A pruned
        execution none of whose output was kept stays out: it would only hide a cell's saved
        outputs."""
        for record in of_type(notice.get("kept") or [], list, "kept"):
            if record.get("msg_type") == "execute_input" and record.get("parent_msg_id"):
                self.pruned[record["parent_msg_id"]] = record
            elif record.get("msg_type") == CELL:
                self.apply(record)

    def apply(self, record: dict[str, Any]) -> None:
        """One record; it raises, and changes nothing, if no notebook can hold it."""
        if record.get("type") == "gap":
            self.gap(record)
            return
        msg_type, parent = record.get("msg_type"), record.get("parent_msg_id") or ""
        if msg_type == CELL:
            cell_id = (record.get("content") or {}).get("cell_id")
            if parent and isinstance(cell_id, str) and cell_id:
                self.cell_ids[parent] = cell_id
            return
        if msg_type in COMM_TYPES:
            self.widgets.apply(record)
            return
        if msg_type not in OUTPUT_TYPES or (not parent and msg_type != "update_display_data"):
            return
        content: dict[str, Any] = of_type(record.get("content") or {}, dict, "content")
        # Most records are lines of a stream: this path makes no output and only reads the
        # text, so the checks below, per record, are left to the others.
        if (
            msg_type == "stream"
            and self.widgets.capturing(parent) is None
            and self.append(self.run(parent), content)
        ):
            return
        depth = nesting(content)
        if depth > MAX_NESTING:
            raise ValueError(f"nested {depth} levels deep, more than a notebook holds")
        display_id = _display_id(content)
        if msg_type == "update_display_data":
            shown = self.displays.get(display_id, []) if display_id else []
            if shown:  # checked before anything changes
                data, metadata = content.get("data", {}), content.get("metadata", {})
                update = new_output("display_data", data=data, metadata=metadata)
                for node in shown:
                    node["data"], node["metadata"] = update.data, update.metadata
            return
        if msg_type == "execute_input":
            self.start(self.run(parent, new=True), content)
            return
        capturing = self.widgets.capturing(parent)
        if capturing is not None:  # as the frontend does: into the Output widget's state
            self.capture(capturing, msg_type, content)
            return
        run = self.run(parent)
        if msg_type == "clear_output":
            if content.get("wait"):
                run.clear_on_next = True
            else:
                run.outputs.clear()
            return
        output = _output(msg_type, content)
        if output is None:
            return
        self.add(run, output)
        if display_id:
            self.displays.setdefault(display_id, []).append(output)

    def append(self, run: Execution, content: dict[str, Any]) -> bool:
        """Add a stream message's text to the run's last output if that is the same stream, as
        Jupyter merges them; False if it is not. The common case, so it makes no new output:
        nbformat checks each one it builds against its schema, which costs far more."""
        last = run.outputs[-1] if run.outputs and not run.clear_on_next else None
        text, name = content.get("text"), content.get("name", "stdout")
        if last is None or last["output_type"] != "stream" or last["name"] != name:
            return False
        if not isinstance(text, str):
            return False  # _output says what is wrong with it
        self._more(last, text)
        return True

    def capture(self, widget: dict[str, Any], msg_type: str, content: dict[str, Any]) -> None:
        """An output of a ``with out:`` block, kept in the Output widget's own outputs."""
        outputs = widget.get("outputs")
        if not isinstance(outputs, list):
            widget["outputs"] = outputs = []
        if msg_type == "clear_output":
            outputs.clear()  # wait=True is as good as done: only the final state is kept
            return
        output = _output(msg_type, content)
        last = outputs[-1] if outputs else None
        if output is None:
            return
        if output.output_type == "stream" and isinstance(last, dict) and _same_stream(last, output):
            last["text"] = str(last.get("text", "")) + output.text
        else:
            outputs.append(output)

    def add(self, run: Execution, output: NotebookNode) -> None:
        if run.clear_on_next:
            run.outputs.clear()
            run.clear_on_next = False
        if not (output.output_type == "stream" and self.append(run, output)):
            run.outputs.append(output)

    def _more(self, output: NotebookNode, text: str) -> None:
        held = self.parts.get(id(output))
        if held is None:
            self.parts[id(output)] = (output, [output["text"], text])
        else:
            held[1].append(text)

    def text(self, output: NotebookNode) -> str:
        """A stream output's whole text: its parts are joined once, at the end, as adding
        them one by one to a growing string took quadratic time."""
        held = self.parts.get(id(output))
        return output.text if held is None else "".join(held[1])


def _same_stream(last: dict[str, Any], output: NotebookNode) -> bool:
    return last.get("output_type") == "stream" and last.get("name") == output.name


def executions(records: Iterable[dict[str, Any]]) -> list[Execution]:
    """The executions in ``records`` (one kernel's, in seq order), with their outputs after
    clear_output and update_display_data, as a notebook client applies them. A record no
    notebook can hold (a hostile or broken kernel's) leaves a note on stderr in its place.
    ``records`` may hold the daemon's retention gap notice (``"type": "gap"``): an execution
    whose start it pruned, and kept (``"kept"``), begins with a :data:`PRUNED` note."""
    replay = _Replay()
    for record in records:
        try:
            replay.apply(record)
        except Exception as exc:  # any error, and only this record's
            note = new_output("stream", name="stderr", text=cannot_render(record, exc) + "\n")
            replay.add(replay.run(record.get("parent_msg_id") or ""), note)

    shown_as = {id(o): d for d, shown in replay.displays.items() for o in shown}
    for run in replay.order:
        run.display_ids = [shown_as.get(id(o)) for o in run.outputs]
        run.cell_id = replay.cell_ids.get(run.request)
        for output in run.outputs:
            run.cursor = None
            if output.output_type == "stream":  # as Jupyter saves it: \r and \b applied
                output.text, run.cursor = _shown(replay.text(output))
        _show_widgets(run, replay.widgets)
    return replay.order


def _shown(text: str) -> tuple[str, int | None]:
    """A stream's text with ``\\r`` and backspaces applied, and the column of the cursor on
    its last line if it is not at the end (see :attr:`Execution.cursor`)."""
    if "\r" not in text and "\b" not in text:
        return text, None
    *lines, last = text.split("\n")
    line = Line()
    line.write(last)
    shown = line.text()
    return "\n".join([*map(overwrite, lines), shown]), (
        line.cursor if line.cursor < len(shown) else None
    )


def _show_widgets(run: Execution, widgets: Widgets) -> None:
    """Give ``run`` the state of the widgets its outputs show, and their displays the latest
    text line of a progress bar as text fallback, for readers that cannot show widgets."""
    models = []
    for output in run.outputs:
        model = (
            shown_model(output)
            if output.output_type in ("display_data", "execute_result")
            else None
        )
        if model is None:
            continue
        models.append(model)
        line = widgets.line(model)
        if line is not None:
            output.data["text/plain"] = line
    if models and widgets.closure(models):
        run.widgets = widgets.state(models)


def _add_widget_state(notebook: NotebookNode, runs: Iterable[Execution]) -> None:
    """Put the widget state of ``runs`` in the notebook's metadata, as JupyterLab's "save
    widget state" does, so that JupyterLab shows the widgets as they were last."""
    models: dict[str, Any] = {}
    for run in runs:
        models.update(run.widgets.get("state", {}))
    if not models:
        return
    saved = notebook.metadata.setdefault("widgets", {})
    state = saved.setdefault(STATE_MIME, {"version_major": 2, "version_minor": 0, "state": {}})
    state.setdefault("state", {}).update(models)


def export_notebook(records: Iterable[dict[str, Any]], kernel: dict[str, Any]) -> NotebookNode:
    """A new notebook: one code cell per execution, in order.

    A cell keeps the id of the notebook cell its execution ran, so that ``recover`` and
    tools that follow cells by id find it; a cell run several times has one id, which goes
    to its latest execution, as ``recover`` gives that one to the cell. Any other cell (no
    id recorded, one nbformat does not allow, or one taken) gets a new id as usual.
    """
    runs = executions(records)
    kept: list[str | None] = [None] * len(runs)  # the recorded id each cell keeps
    taken: set[str] = set()
    for i in reversed(range(len(runs))):
        cell_id = runs[i].cell_id
        if cell_id is not None and cell_id not in taken and _allowed_id(cell_id):
            kept[i] = cell_id
            taken.add(cell_id)
    cells = []
    for run, cell_id in zip(runs, kept, strict=True):
        cell = new_code_cell(
            source=UNKNOWN_START if run.code is None else run.code,
            execution_count=run.count,
            outputs=run.outputs,
        )
        if cell_id is not None:
            cell.id = cell_id
        else:  # a new id, unlike any other: random ones can meet too, in a long history
            while cell.id in taken:
                cell.id = random_cell_id()
            taken.add(cell.id)
        cells.append(cell)
    notebook: NotebookNode = new_notebook(cells=cells)
    notebook.metadata["nbrelay"] = {
        "kernel_id": kernel["kernel_id"],
        "notebook": kernel.get("notebook"),
    }
    _add_widget_state(notebook, runs)
    nbformat.validate(notebook)
    return notebook


def _allowed_id(cell_id: str) -> bool:
    """Whether nbformat allows ``cell_id`` as a cell's id in the notebooks we write."""
    return bool(isvalid(cell_id, ref="cell_id", version=nbformat_v4, version_minor=nbformat_minor))


@dataclass
class Recovery:
    notebook: NotebookNode
    filled: int  # cells whose outputs came back
    unmatched: int  # executions no cell has the id or source of


def _source(text: str | list[str]) -> str:
    return ("".join(text) if isinstance(text, list) else text).strip()


Pairs = list[tuple[NotebookNode, Execution]]


def pair(cells: Iterable[NotebookNode], runs: list[Execution]) -> tuple[Pairs, int]:
    """Each code cell with the latest execution that ran it, as ``recover`` and the notebook
    extension match them, and how many executions no cell has the id or source of.

    An execution that recorded its notebook cell's id (JupyterLab and Notebook 7 send it)
    belongs to the code cell with that id, wherever that cell is now and whatever other cell
    has the same source; the cell takes the latest of them. The other cells and executions
    (other frontends, a notebook saved without ids) are matched by source (:func:`_by_source`).

    A cell whose saved execution count is that of its execution, when retention pruned the
    start of that execution, is left out: it shows that execution already, saved before the
    pruning, so with more of its output than the note and the kept rest would.
    """
    code = [cell for cell in cells if cell.cell_type == "code"]
    by_id: dict[str, NotebookNode] = {}
    for cell in code:
        cell_id = cell.get("id")
        if isinstance(cell_id, str) and cell_id:  # none before nbformat 4.5
            by_id[cell_id] = cell
    latest: dict[str, Execution] = {}  # cell id -> its latest execution
    rest: list[Execution] = []
    for run in runs:
        if run.cell_id is not None and run.cell_id in by_id:
            latest[run.cell_id] = run
        else:
            rest.append(run)
    pairs: Pairs = [(by_id[cell_id], run) for cell_id, run in latest.items()]
    taken = {id(cell) for cell, _ in pairs}
    by_source, unmatched = _by_source([c for c in code if id(c) not in taken], rest)
    return [(c, r) for c, r in pairs + by_source if not _shown_fuller(c, r)], unmatched


def _shown_fuller(cell: NotebookNode, run: Execution) -> bool:
    """Whether ``cell`` shows ``run``, a partly pruned execution, from before the pruning."""
    return run.pruned and run.count is not None and cell.get("execution_count") == run.count


def recover(notebook: NotebookNode, records: Iterable[dict[str, Any]]) -> Recovery:
    """``notebook`` with the outputs and execution counts of its cells' latest recorded
    executions, matched by :func:`pair`."""
    pairs, unmatched = pair(notebook.cells, executions(records))
    for cell, run in pairs:
        cell.outputs = run.outputs
        cell.execution_count = run.count
    _add_widget_state(notebook, (run for _, run in pairs))
    nbformat.validate(notebook)
    return Recovery(notebook, len(pairs), unmatched)


def _by_source(code: list[NotebookNode], runs: list[Execution]) -> tuple[Pairs, int]:
    """Cells paired with executions of exactly their source, and how many executions no cell
    has the source of.

    When several cells share a source, a cell whose saved execution count is one of theirs
    takes that one; the rest go in order, the latest executions to the cells, top to bottom:
    a notebook run from the top.
    """
    candidates: dict[str, list[Execution]] = {}
    for run in runs:
        if run.code is not None:
            candidates.setdefault(_source(run.code), []).append(run)
    cells: dict[str, list[NotebookNode]] = {}
    for cell in code:
        cells.setdefault(_source(cell.source), []).append(cell)
    pairs: Pairs = []
    for source, free in candidates.items():
        targets = cells.get(source, [])
        if not targets:
            continue
        found: Pairs = []
        for cell in targets:  # a saved execution count names its run exactly
            exact = [r for r in free if r.count is not None and r.count == cell.execution_count]
            if exact:
                found.append((cell, exact[-1]))
                free.remove(exact[-1])
        rest = [c for c in targets if all(c is not p[0] for p in found)]
        found += zip(rest, free[-len(rest) :] if rest else [], strict=False)
        pairs += found
    unmatched = sum(len(r) for s, r in candidates.items() if s not in cells)
    return pairs, unmatched


def read(path: Path) -> NotebookNode:
    """The notebook at ``path``, as nbformat 4. One whose cells have ids in a 4.0 to 4.4 file
    (nbformat allows ids from 4.5 on, but some tools write them into older files) is upgraded
    to 4.5 as Jupyter upgrades notebooks: its cells keep their ids, the others get one."""
    notebook: NotebookNode = nbformat.read(path, as_version=4)
    if notebook.nbformat_minor < 5 and any("id" in cell for cell in notebook.cells):
        for cell in notebook.cells:
            cell.setdefault("id", random_cell_id())
        notebook.nbformat_minor = 5
    return notebook


def write(notebook: NotebookNode, path: Path) -> None:
    nbformat.write(notebook, path)
