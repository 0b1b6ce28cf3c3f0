"""What the Jupyter server tells the notebook extension (nbrelay.jupyter_extension.answer),
against a real daemon and a real kernel: the relay's state with how to fix it, and the
outputs to put back, rebuilt with recover's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from playwright.sync_api import Page, expect
from support import Daemon, Kernel, nbrelay, relayed, run_cell, wait_for

from nbrelay.errors import START_HINT
from nbrelay.jupyter_extension import answer, viewer_url
from nbrelay.notebook import PRUNED
from nbrelay.restore import PAGE_CHARS, PAGE_LINES, plan, trim

CELL_ID = "c0ffee00-0000-4000-8000-000000000001"
CODE = (
    "from IPython.display import display, clear_output\n"
    "print('gone', flush=True)\n"
    "clear_output(wait=True)\n"
    "h = display('v1', display_id=True)\n"
    "print('a\\rb', flush=True)\n"
    "h.update('v2')"
)


def test_each_state_says_how_to_fix_it(
    daemon: Daemon, kernel: Kernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No daemon, a refused token, an unknown kernel and a restarted process each give their
    state and a hint; nothing is restored for them."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "empty"))
    no_daemon = answer(kernel.kernel_id, [], None)
    assert no_daemon["state"] == "no-daemon" and START_HINT in no_daemon["message"]

    monkeypatch.setenv("NBRELAY_URL", daemon.url)
    monkeypatch.setenv("NBRELAY_TOKEN", "not-the-token-0123456789")
    refused = answer(kernel.kernel_id, [], None)
    assert refused["state"] == "refused" and "NBRELAY_TOKEN" in refused["message"]

    monkeypatch.delenv("NBRELAY_URL")
    monkeypatch.delenv("NBRELAY_TOKEN")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(daemon.runtime_dir))
    unknown = answer("no-such-kernel", [], None)
    assert unknown["state"] == "not-relaying" and "%load_ext nbrelay" in unknown["message"]

    relayed(daemon, kernel, kernel.run_ok("pass"))  # its hook has reached the daemon
    pid = kernel.km.provisioner.pid
    assert answer(kernel.kernel_id, [], pid)["state"] == "relaying"
    restarted = answer(kernel.kernel_id, [], pid + 1)
    assert restarted["state"] == "not-relaying" and "cells" not in restarted


def test_a_cell_gets_its_latest_execution_as_jupyter_shows_it(
    daemon: Daemon, kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cell with the recorded id gets the outputs left after clear_output(wait=True), \\r
    and update_display_data, with the display's id kept for later updates; a cell that did
    not run in this process gets nothing."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(daemon.runtime_dir))
    kernel.run_ok(CODE, cell_id=CELL_ID)
    relayed(daemon, kernel, kernel.run_ok("1", cell_id="other-cell"))
    cells = [
        {"id": CELL_ID, "source": "edited since: the id still finds it", "execution_count": None},
        {"id": "never-ran", "source": "print('x')", "execution_count": None},
    ]
    reply = answer(kernel.kernel_id, cells, kernel.km.provisioner.pid)
    assert reply["state"] == "relaying"
    (cell,) = reply["cells"]
    assert cell["cell_id"] == CELL_ID and cell["execution_count"] == 2 and not cell["running"]
    display, stream = cell["outputs"]
    assert display["msg_type"] == "display_data"
    assert display["content"]["data"]["text/plain"] == "'v2'"
    assert display["content"]["transient"]["display_id"]
    assert stream == {"msg_type": "stream", "content": {"name": "stdout", "text": "b\n"}}


def test_a_huge_stream_comes_to_the_page_cut_to_its_end_behind_a_line_saying_so(
    daemon: Daemon, kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream of more than PAGE_LINES lines is sent cut to its last PAGE_LINES lines, each
    once and in order, behind a line that says how many are left out and where they are."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(daemon.runtime_dir))
    lines = PAGE_LINES + 2500
    code = f"for i in range({lines}):\n    print(f'line {{i}}')"
    relayed(daemon, kernel, kernel.run_ok(code, cell_id=CELL_ID))
    cells = [{"id": CELL_ID, "source": code, "execution_count": None}]
    (cell,) = answer(kernel.kernel_id, cells, kernel.km.provisioner.pid)["cells"]
    (stream,) = cell["outputs"]
    note, *kept = stream["content"]["text"].splitlines()
    assert note.startswith("[nbrelay: not shown here, the first 2,500 lines of this output")
    assert kept == [f"line {i}" for i in range(2500, lines)]
    assert cell["trimmed"]
    assert trim("x" * (PAGE_CHARS - 1) + "\n") is None and trim("\n" * PAGE_LINES) is None
    assert trim("x" * (PAGE_CHARS + 1)) == (
        "[nbrelay: not shown here, the first 1 character of this output; the nbrelay viewer "
        "and `nbrelay export` have every line]\n" + "x" * PAGE_CHARS
    )


def test_the_viewer_url_logs_a_browser_in_once_without_the_token(
    daemon: Daemon, kernel: Kernel, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without jupyter-server-proxy, the link goes to the daemon with a one-time code: the
    page shows the kernel, the token is not in the URL, and the code does not work twice."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(daemon.runtime_dir))
    relayed(daemon, kernel, kernel.run_ok("print('through a login code')"))
    url = viewer_url(kernel.kernel_id)
    assert daemon.token not in url and "#code=" in url
    page.goto(url)
    expect(page.locator(".cell").filter(has_text="through a login code")).to_have_count(1)
    other = page.context.browser.new_page()  # type: ignore[union-attr]
    other.goto(url)  # the same code again, in a browser that has no cookie
    expect(other.get_by_text("nbrelay status")).to_be_visible()
    other.close()


def test_a_cell_whose_start_was_pruned_says_so_then_shows_what_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention pruned the start of a cell and kept its later lines: the restore, recover and
    export give that cell a first output saying that earlier output was pruned, then each
    kept line once, with its execution count. A cell that shows that execution already (its
    saved count is the execution's) is left as it is: it holds more than what was kept."""
    daemon = Daemon(tmp_path).start("--max-size", "300KB")
    run_cell(daemon, "k", 2000)
    wait_for(lambda: daemon.get("api/health").json()["pruned_through"] > 10, 20, "pruning")
    daemon.stop()
    daemon.start()  # no more pruning: what was kept stays as it is
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(daemon.runtime_dir))
    try:
        kept = "".join(
            r["content"]["text"]
            for r in daemon.messages(kernel_id="k")
            if r["msg_type"] == "stream"
        )
        assert kept.startswith("line ") and "line 3 " not in kept and "line 2002 " in kept
        note = {"msg_type": "stream", "content": {"name": "stderr", "text": PRUNED}}
        lines = {"msg_type": "stream", "content": {"name": "stdout", "text": kept}}

        fresh = {"id": "cell-a", "source": "train()", "execution_count": None}
        (cell,) = answer("k", [fresh], 1)["cells"]
        assert cell["outputs"] == [note, lines] and cell["execution_count"] == 3
        assert not cell["running"]
        assert answer("k", [{**fresh, "execution_count": 3}], 1)["cells"] == []

        def recovered(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
            cell.id = "cell-a"
            path, out = tmp_path / "nb.ipynb", tmp_path / "out.ipynb"
            nbformat.write(new_notebook(cells=[cell]), path)
            result = nbrelay("recover", str(path), "-o", str(out), runtime=daemon.runtime_dir)
            assert result.returncode == 0, result.stderr
            (cell,) = nbformat.read(out, as_version=4).cells
            return cell

        empty = recovered(new_code_cell("train()"))
        assert [(o.name, o.text) for o in empty.outputs] == [("stderr", PRUNED), ("stdout", kept)]
        assert empty.execution_count == 3
        line = nbformat.v4.new_output("stream", name="stdout", text="line 3\n")
        shown = recovered(new_code_cell("train()", execution_count=3, outputs=[line]))
        assert shown.outputs == [line]

        exported = tmp_path / "export.ipynb"
        assert (
            nbrelay("export", "k", "-o", str(exported), runtime=daemon.runtime_dir).returncode == 0
        )
        (cell,) = nbformat.read(exported, as_version=4).cells
        assert (cell.source, cell.execution_count, cell.id) == ("train()", 3, "cell-a")
        assert [(o.name, o.text) for o in cell.outputs] == [("stderr", PRUNED), ("stdout", kept)]
    finally:
        daemon.stop()


def test_a_running_stream_keeps_its_cursor_where_the_kernel_left_it() -> None:
    """A running execution's last stream ends with the \\r that put its cursor inside the
    line, so that the page goes on redrawing in place; a finished one has the text as saved."""

    def records(*texts: str, idle: bool) -> list[dict[str, Any]]:
        made = [{"msg_type": "execute_input", "content": {"code": "x", "execution_count": 1}}]
        made += [{"msg_type": "stream", "content": {"name": "stdout", "text": t}} for t in texts]
        if idle:
            made.append({"msg_type": "status", "content": {"execution_state": "idle"}})
        return [{**r, "msg_id": f"m{i}", "parent_msg_id": "req"} for i, r in enumerate(made)]

    def text(*texts: str, idle: bool = False) -> str:
        cells = [{"id": "c", "source": "x", "execution_count": None}]
        (cell,) = plan(records(*texts, idle=idle), cells)
        assert cell["running"] is not idle
        (output,) = cell["outputs"]
        return str(output["content"]["text"])

    assert text("done\n", "step 1\r", "step 2\r") == "done\nstep 2\r"
    assert text("a long line\rshort") == "shortg line\rshort"
    assert text("abc\b") == "ab"  # at the end: nothing to say
    assert text("step 1\r", "step 2\r", idle=True) == "step 2"
