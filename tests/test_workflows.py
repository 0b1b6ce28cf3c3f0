"""The command-line workflows, as a user runs them: a real daemon, a real kernel, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from support import Daemon, Kernel, nbrelay, relayed, relaying_kernel, wait_for

CELLS = {
    "progress": "for p in (0, 50, 100):\n"
    '    print(f"\\rprogress {p}%", end="", flush=True)\n'
    "print()",
    "cleared": "from IPython.display import clear_output\n"
    'print("gone")\nclear_output()\nprint("kept")',
    "display": "from IPython.display import display\n"
    'h = display("v1", display_id=True)\nh.update("v2")',
    "error": "1 / 0",
    "result": "6 * 7",
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Kernel]]:
    """A daemon and a kernel that ran CELLS, every message of them stored."""
    with relaying_kernel(tmp_path_factory.mktemp("workflows")) as (daemon, kernel):
        for code in CELLS.values():
            relayed(daemon, kernel, kernel.run(code))
        yield daemon, kernel


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return nbrelay(*args, runtime=daemon.runtime_dir)


def test_ls_lists_the_kernel_with_its_notebook(ran: tuple[Daemon, Kernel]) -> None:
    daemon, kernel = ran
    result = cli(daemon, "ls")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:3] == ["KERNEL", "NOTEBOOK", "LINK"]
    assert row.split()[:3] == [kernel.kernel_id[:12], "work/analysis.ipynb", "connected"]
    assert row.split()[-1] == str(len(daemon.messages(kernel_id=kernel.kernel_id)))


@pytest.mark.parametrize("name", ["id", "prefix", "notebook"])
def test_tail_prints_a_kernels_output_as_a_log(ran: tuple[Daemon, Kernel], name: str) -> None:
    """Cell boundaries marked, progress lines collapsed, errors shown, ANSI gone when piped."""
    daemon, kernel = ran
    which = {"id": kernel.kernel_id, "prefix": kernel.kernel_id[:6], "notebook": "analysis"}
    result = cli(daemon, "tail", which[name], "--since", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "progress 100%" in lines  # one line, as the terminal finally showed it
    assert not any("progress 0%" in line for line in lines)
    assert any(line.startswith("─── In [") and "1 / 0" in line for line in lines)
    assert "ZeroDivisionError: division by zero" in lines
    assert "Out[" in result.stdout and "42" in result.stdout
    assert "\x1b[" not in result.stdout


def test_tail_starts_near_the_end(ran: tuple[Daemon, Kernel]) -> None:
    """-n counts what prints: the kernel's last records are statuses, which print nothing
    (with them counted, `-n 1` printed nothing)."""
    daemon, kernel = ran
    assert daemon.messages(kernel_id=kernel.kernel_id)[-1]["msg_type"] == "status"
    result = cli(daemon, "tail", "-n", "3")
    assert result.returncode == 0, result.stderr
    assert "42" in result.stdout and "progress" not in result.stdout
    last = cli(daemon, "tail", "-n", "1").stdout.strip()
    assert last.startswith("Out[") and last.endswith("]: 42"), last


def test_unknown_kernel_wrong_token_and_no_daemon_are_one_line_errors(
    ran: tuple[Daemon, Kernel], tmp_path: Path
) -> None:
    daemon, _ = ran
    unknown = cli(daemon, "tail", "no-such-kernel")
    assert unknown.returncode == 1
    assert (
        unknown.stderr
        == "nbrelay: error: no kernel matches 'no-such-kernel': `nbrelay ls` lists them\n"
    )
    env = {**os.environ, "NBRELAY_URL": daemon.url, "NBRELAY_TOKEN": "wrong-token-1234567"}
    wrong = subprocess.run(
        [sys.executable, "-m", "nbrelay", "ls"], capture_output=True, text=True, env=env
    )
    assert wrong.returncode == 1 and "refused the token" in wrong.stderr
    none = nbrelay("ls", runtime=tmp_path)
    assert none.returncode == 1 and "no nbrelay daemon is running" in none.stderr
    assert "start it with `nbrelay serve --detach` (or, with jupyter-server-proxy" in none.stderr


def test_export_txt_and_jsonl(ran: tuple[Daemon, Kernel], tmp_path: Path) -> None:
    daemon, kernel = ran
    assert cli(daemon, "export", kernel.kernel_id, "-o", str(tmp_path / "log.txt")).returncode == 0
    text = (tmp_path / "log.txt").read_text()
    assert "progress 100%\n" in text and "kept\n" in text and "ZeroDivisionError" in text
    assert cli(daemon, "export", "analysis", "-o", str(tmp_path / "r.jsonl")).returncode == 0
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert records == daemon.messages(kernel_id=kernel.kernel_id)
    bad = cli(daemon, "export", "analysis", "-o", str(tmp_path / "out.pdf"))
    assert bad.returncode == 1 and ".txt, .jsonl or .ipynb" in bad.stderr


def test_export_ipynb_is_a_valid_notebook_as_jupyter_would_save_it(
    ran: tuple[Daemon, Kernel], tmp_path: Path
) -> None:
    daemon, kernel = ran
    path = tmp_path / "out.ipynb"
    result = cli(daemon, "export", kernel.kernel_id, "-o", str(path))
    assert result.returncode == 0, result.stderr
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = {cell.source: cell for cell in notebook.cells}
    assert [o.text for o in cells[CELLS["progress"]].outputs] == ["progress 100%\n"]
    assert [o.text for o in cells[CELLS["cleared"]].outputs] == ["kept\n"]
    (shown,) = cells[CELLS["display"]].outputs
    assert shown.data["text/plain"] == "'v2'"
    (error,) = cells[CELLS["error"]].outputs
    assert (error.output_type, error.ename) == ("error", "ZeroDivisionError")
    (result_output,) = cells[CELLS["result"]].outputs
    assert result_output.data["text/plain"] == "42"
    assert result_output.execution_count == cells[CELLS["result"]].execution_count
    # %load_ext nbrelay's own cell began before capture: its output is kept, marked so.
    assert notebook.cells[0].source.startswith("# nbrelay: this cell started before")
    counts = [c.execution_count for c in notebook.cells[1:]]
    assert counts == sorted(counts) and len(counts) == len(CELLS)


def test_recover_fills_the_users_notebook(ran: tuple[Daemon, Kernel], tmp_path: Path) -> None:
    """The lost outputs come back into the user's own notebook, matched by source."""
    daemon, _ = ran
    original = new_notebook(
        cells=[
            new_markdown_cell("# Analysis"),
            new_code_cell(CELLS["result"]),
            new_code_cell(CELLS["error"]),
            new_code_cell("never_ran()"),
        ]
    )
    path = tmp_path / "analysis.ipynb"
    nbformat.write(original, path)
    result = cli(daemon, "recover", str(path))
    assert result.returncode == 0, result.stderr
    assert "filled 2 cells" in result.stdout
    recovered = nbformat.read(tmp_path / "analysis.recovered.ipynb", as_version=4)
    nbformat.validate(recovered)
    _, answer, error, never = recovered.cells
    assert answer.outputs[0].data["text/plain"] == "42" and answer.execution_count
    assert error.outputs[0].ename == "ZeroDivisionError"
    assert never.outputs == [] and never.execution_count is None
    assert nbformat.read(path, as_version=4) == original  # untouched without --in-place

    in_place = cli(daemon, "recover", str(path), "--in-place")
    assert in_place.returncode == 0, in_place.stderr
    assert nbformat.read(path, as_version=4).cells[1].outputs
    assert nbformat.read(tmp_path / "analysis.ipynb.bak", as_version=4) == original


def test_nbrelay_magic_says_where_output_goes(ran: tuple[Daemon, Kernel]) -> None:
    daemon, kernel = ran
    msgs = kernel.run_ok("%nbrelay")
    text = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    assert f"connected to {daemon.url}" in text
    assert "0 dropped" in text
    assert f"viewer: {daemon.url}?kernel={kernel.kernel_id}\n" in text


def test_tail_follow_survives_a_daemon_restart(tmp_path: Path) -> None:
    """-f prints live output, and after the daemon restarts (new port, new token) it goes on
    from the last record it printed: nothing twice, nothing skipped."""
    daemon = Daemon(tmp_path).start()
    kernel = Kernel(daemon.runtime_dir)
    follower = None
    try:
        kernel.run_ok("%load_ext nbrelay")
        relayed(daemon, kernel, kernel.run_ok('print("before restart")'))
        follower = subprocess.Popen(
            [sys.executable, "-m", "nbrelay", "tail", kernel.kernel_id, "-f", "--since", "0"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(daemon.runtime_dir)},
        )
        assert follower.stdout is not None
        lines: list[str] = []

        def printed(text: str) -> bool:
            while text not in lines:
                line = follower.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    return False
                lines.append(line.rstrip("\n"))
            return True

        assert printed("before restart")
        daemon.stop()
        daemon.token = "test-token-restarted-0123456789"
        daemon.start()
        kernel.run_ok('print("after restart")')
        assert wait_for(lambda: printed("after restart"), 30, "the follower to print it")
        assert lines.count("before restart") == 1
    finally:
        if follower is not None:
            follower.kill()
            follower.communicate()
        kernel.shutdown()
        daemon.stop()


def test_detach_status_stop(tmp_path: Path) -> None:
    """The daemon runs in the background, says where, refuses a second one on the same
    database by naming the first, and stops cleanly."""
    runtime, db = tmp_path / "runtime", tmp_path / "data" / "nbrelay.sqlite3"
    args = ("--port", "0", "--db", str(db))
    started = nbrelay("serve", "--detach", *args, runtime=runtime)
    assert started.returncode == 0, started.stderr
    assert "running in the background" in started.stdout and "#token=" in started.stdout
    try:
        status = nbrelay("status", "--json", runtime=runtime)
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["storage"] == "ok" and info["db"] == str(db)
        second = nbrelay("serve", "--detach", *args, runtime=runtime)
        assert second.returncode == 1
        assert f"another nbrelay daemon (pid {info['pid']}" in second.stderr
    finally:
        stopped = nbrelay("stop", runtime=runtime)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (pid {info['pid']})" in stopped.stdout
    after = nbrelay("status", runtime=runtime)
    assert after.returncode == 1 and "no nbrelay daemon is running" in after.stderr
    assert (db.parent / "nbrelay.sqlite3.log").stat().st_mode & 0o077 == 0


def test_enable_loads_nbrelay_in_new_kernels_and_disable_undoes_it(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path).start()
    ipython_dir = tmp_path / "ipython"
    env = {**os.environ, "IPYTHONDIR": str(ipython_dir)}
    config = ipython_dir / "profile_default" / "ipython_kernel_config.py"
    config.parent.mkdir(parents=True)
    config.write_text("c.InteractiveShell.colors = 'nocolor'\n")  # the user's own config
    try:
        for _ in range(2):  # idempotent
            result = subprocess.run(
                [sys.executable, "-m", "nbrelay", "enable"], capture_output=True, text=True, env=env
            )
            assert result.returncode == 0, result.stderr
        kernel = Kernel(daemon.runtime_dir, env={"IPYTHONDIR": str(ipython_dir)})
        try:
            msgs = kernel.run_ok('print("relayed without %load_ext")')
            relayed(daemon, kernel, msgs)
        finally:
            kernel.shutdown()
        result = subprocess.run(
            [sys.executable, "-m", "nbrelay", "disable"], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        assert config.read_text() == "c.InteractiveShell.colors = 'nocolor'\n"
        plain = Kernel(daemon.runtime_dir, env={"IPYTHONDIR": str(ipython_dir)})
        try:
            msgs = plain.run_ok('import sys; print("nbrelay.kernel_hook" in sys.modules)')
            assert [m["content"]["text"] for m in msgs if m["msg_type"] == "stream"] == ["False\n"]
        finally:
            plain.shutdown()
    finally:
        daemon.stop()


def test_recover_needs_the_notebooks_exact_name(ran: tuple[Daemon, Kernel], tmp_path: Path) -> None:
    """The kernel ran work/analysis.ipynb; a notebook called lysis.ipynb is not that one."""
    daemon, _ = ran
    path = tmp_path / "lysis.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(CELLS["result"])]), path)
    result = cli(daemon, "recover", str(path))
    assert result.returncode == 1
    assert "no kernel ran a notebook named lysis.ipynb" in result.stderr


# Cells run as JupyterLab runs them, with their cell ids: two cells of one source, run a, b,
# then a again; two of another source, run a then b; one without an id (another frontend);
# one with an id nbformat does not allow.
TWIN = "twins = globals().get('twins', 0) + 1\nprint('twin', twins)"
MOVED = "moves = globals().get('moves', 0) + 1\nprint('move', moves)"
LAB_RUNS = [
    ("lab-twin-a", TWIN),
    ("lab-twin-b", TWIN),
    ("lab-twin-a", TWIN),
    ("lab-move-a", MOVED),
    ("lab-move-b", MOVED),
    (None, "print('no id')"),
    ("lab odd id!", "print('odd id')"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Kernel]]:
    """A daemon and a kernel that ran LAB_RUNS, every message of them stored."""
    with relaying_kernel(tmp_path_factory.mktemp("lab")) as (daemon, kernel):
        for cell_id, code in LAB_RUNS:
            relayed(daemon, kernel, kernel.run_ok(code, cell_id=cell_id))
        cells = len([c for c, _ in LAB_RUNS if c is not None])

        def recorded() -> bool:
            records = daemon.messages(kernel_id=kernel.kernel_id)
            return sum(r["msg_type"] == "nbrelay.cell" for r in records) == cells

        wait_for(recorded, 10, "every cell id stored")
        yield daemon, kernel


def recovered(daemon: Daemon, tmp_path: Path, *cells: NotebookNode) -> list[NotebookNode]:
    """The cells of a notebook named analysis.ipynb, as `nbrelay recover` fills them."""
    path = tmp_path / "analysis.ipynb"
    nbformat.write(new_notebook(cells=list(cells)), path)
    result = cli(daemon, "recover", str(path))
    assert result.returncode == 0, result.stderr
    notebook = nbformat.read(tmp_path / "analysis.recovered.ipynb", as_version=4)
    nbformat.validate(notebook)
    cells_out: list[NotebookNode] = notebook.cells
    return cells_out


def stdout_of(cell: NotebookNode) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream")


def test_recover_gives_cells_of_the_same_source_each_their_own_output(
    lab: tuple[Daemon, Kernel], tmp_path: Path
) -> None:
    """Two cells with one source, run a, b, a: each gets its own latest output, found by its
    cell id (by source alone, the latest two runs went to them top to bottom, crossed); a
    cell whose run had no cell id is still found by its source."""
    daemon, _ = lab
    twin_a, twin_b, plain = recovered(
        daemon,
        tmp_path,
        new_code_cell(TWIN, id="lab-twin-a"),
        new_code_cell(TWIN, id="lab-twin-b"),
        new_code_cell("print('no id')"),
    )
    assert stdout_of(twin_a) == "twin 3\n" and stdout_of(twin_b) == "twin 2\n"
    assert twin_a.execution_count > twin_b.execution_count
    assert stdout_of(plain) == "no id\n"


def test_recover_finds_a_cell_that_was_moved_since_it_ran(
    lab: tuple[Daemon, Kernel], tmp_path: Path
) -> None:
    """Cell b ran after cell a, with the same source, then was moved above it: each still
    gets its own output (by source alone, the top cell took the earlier run)."""
    daemon, _ = lab
    move_b, _, move_a = recovered(
        daemon,
        tmp_path,
        new_code_cell(MOVED, id="lab-move-b"),
        new_markdown_cell("moved up"),
        new_code_cell(MOVED, id="lab-move-a"),
    )
    assert stdout_of(move_a) == "move 1\n" and stdout_of(move_b) == "move 2\n"


def test_export_ipynb_keeps_the_cell_ids(lab: tuple[Daemon, Kernel], tmp_path: Path) -> None:
    """An exported cell has the id of the notebook cell it ran (a cell run twice: its latest
    run), so recover finds it; others (no id, one nbformat does not allow, an earlier run)
    get new ids, all unique. The id records print nothing in tail or a .txt export."""
    daemon, kernel = lab
    path = tmp_path / "lab.ipynb"
    result = cli(daemon, "export", kernel.kernel_id, "-o", str(path))
    assert result.returncode == 0, result.stderr
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    ids = [cell.id for cell in notebook.cells]
    assert len(set(ids)) == len(ids)
    cells = {cell.id: stdout_of(cell) for cell in notebook.cells}
    assert cells["lab-twin-a"] == "twin 3\n" and cells["lab-twin-b"] == "twin 2\n"
    assert cells["lab-move-a"] == "move 1\n" and cells["lab-move-b"] == "move 2\n"
    others = [stdout_of(c) for c in notebook.cells if not c.id.startswith("lab-")]
    assert others[1:] == ["twin 1\n", "no id\n", "odd id\n"]  # the first: %load_ext's cell

    tail = cli(daemon, "tail", kernel.kernel_id, "--since", "0")
    assert cli(daemon, "export", kernel.kernel_id, "-o", str(tmp_path / "lab.txt")).returncode == 0
    for text in (tail.stdout, (tmp_path / "lab.txt").read_text()):
        assert "twin 3" in text and "lab-" not in text and "nbrelay.cell" not in text


def test_recover_upgrades_a_notebook_with_cell_ids_in_an_older_format(
    ran: tuple[Daemon, Kernel], tmp_path: Path
) -> None:
    """A 4.0 notebook whose cells have ids (nbformat calls it invalid; some tools write such
    files) is recovered as 4.5, its ids kept; and the count of cells filled reads well."""
    daemon, _ = ran
    path = tmp_path / "analysis.ipynb"
    cell = {"cell_type": "code", "id": "kept-id", "source": CELLS["result"], "metadata": {}}
    notebook = {"nbformat": 4, "nbformat_minor": 0, "metadata": {}, "cells": [cell]}
    path.write_text(
        json.dumps({**notebook, "cells": [{**cell, "outputs": [], "execution_count": None}]})
    )
    result = cli(daemon, "recover", str(path))
    assert result.returncode == 0, result.stderr
    assert "filled 1 cell from" in result.stdout
    recovered = nbformat.read(tmp_path / "analysis.recovered.ipynb", as_version=4)
    nbformat.validate(recovered)
    assert recovered.nbformat_minor == 5 and recovered.cells[0].id == "kept-id"
    assert recovered.cells[0].outputs[0].data["text/plain"] == "42"


def test_recover_refuses_an_invalid_notebook_in_one_line(
    ran: tuple[Daemon, Kernel], tmp_path: Path
) -> None:
    """A notebook invalid in another way is left alone, with one line saying why."""
    daemon, _ = ran
    path = tmp_path / "analysis.ipynb"
    cell = {"cell_type": "code", "source": "1", "metadata": {}, "outputs": []}
    path.write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [{**cell, "id": "a", "execution_count": "x"}],
            }
        )
    )
    result = cli(daemon, "recover", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"nbrelay: error: {path} is not a valid notebook")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "analysis.recovered.ipynb").exists()
