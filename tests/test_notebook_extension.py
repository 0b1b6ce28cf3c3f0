"""The notebook extension in a real JupyterLab and Notebook 7, with a real daemon and kernels:
outputs nbrelay kept come back into the user's own notebook.

The oracle is what a jupyter_client attached to the notebook's kernel received. One Jupyter
server and one daemon serve every test here (each test has a notebook and a kernel of its own).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking import BlockingKernelClient
from nbformat.v4 import new_code_cell, new_notebook
from playwright.sync_api import Browser, Error, Locator, Page, expect
from support import FACTOR, JUPYTER_TOKEN, Daemon, JupyterServer, wait_for

pytestmark = pytest.mark.xdist_group("jupyter")  # one Jupyter server for the module
expect.set_options(timeout=30_000 * FACTOR)

LOAD = "%load_ext nbrelay"


def printing(lines: int, then: str = "") -> str:
    return (
        "import time\n"
        f"for i in range({lines}):\n"
        "    print(f'line {i}', flush=True)\n"
        "    time.sleep(0.05)\n" + then
    )


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JupyterServer, Daemon]]:
    workdir = tmp_path_factory.mktemp("jupyter")
    daemon = Daemon(workdir).start()
    server = JupyterServer(workdir, runtime_dir=daemon.runtime_dir)
    try:
        yield server, daemon
    finally:
        server.stop()
        daemon.stop()


class Notebook:
    """A notebook of the test's own on the server, and what a browser and a kernel client
    attached to its kernel see."""

    def __init__(self, server: JupyterServer, browser: Browser, sources: list[str]) -> None:
        self.server = server
        self.browser = browser
        self.name = f"nb-{uuid.uuid4().hex[:8]}.ipynb"
        notebook = new_notebook(cells=[new_code_cell(s) for s in sources])
        notebook.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(notebook, server.workdir / self.name)
        self.page: Page | None = None
        self.oracle: BlockingKernelClient | None = None
        self.errors: list[str] = []  # uncaught exceptions in the page

    def open(self, app: str = "lab/tree") -> Page:
        """Open the notebook in a new tab, logged in to Jupyter; wait until nbrelay has said
        what it knows of the kernel."""
        self.page = self.browser.new_page()
        self.page.set_default_timeout(30_000 * FACTOR)
        self.page.on("pageerror", self._error)
        reset = "&reset" if app.startswith("lab") else ""  # not the tabs of other tests
        self.page.goto(f"{self.server.url}{app}/{self.name}?token={JUPYTER_TOKEN}{reset}")
        expect(self.status).to_have_attribute("data-state", re.compile("relaying|no-daemon"))
        return self.page

    def _error(self, error: Error) -> None:
        """Keep uncaught exceptions thrown in nbrelay's code (Notebook 7 has one of its own)."""
        if "/extensions/nbrelay/" in (error.stack or ""):
            self.errors.append(error.stack or error.message)

    @property
    def status(self) -> Locator:
        assert self.page is not None
        return self.page.locator(".jp-nbrelay-button")

    def cell(self, index: int) -> Locator:
        assert self.page is not None
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def run(self, index: int) -> None:
        """Run a cell as a user does: click into it, Shift+Enter."""
        assert self.page is not None
        self.cell(index).locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")

    @property
    def kernel_id(self) -> str:
        def listed() -> str | None:
            sessions = self.server.get("api/sessions").json()
            return next((s["kernel"]["id"] for s in sessions if s["path"] == self.name), None)

        return wait_for(listed, 30, "the notebook's session")

    def attach(self) -> None:
        """A jupyter_client on the notebook's kernel: it receives every IOPub message."""
        client = BlockingKernelClient(
            connection_file=str(self.server.runtime_dir / f"kernel-{self.kernel_id}.json")
        )
        client.load_connection_file()
        client.start_channels()
        wait_for(lambda: client.iopub_channel.is_alive(), 10, "the oracle's channels")
        self.oracle = client
        self.seen: list[dict[str, Any]] = []

    def received(self) -> list[dict[str, Any]]:
        """Every IOPub message the oracle has received so far."""
        assert self.oracle is not None
        while self.oracle.iopub_channel.msg_ready():
            self.seen.append(self.oracle.get_iopub_msg(timeout=1))
        return self.seen

    def execution(self, code: str) -> list[dict[str, Any]]:
        """The oracle's messages of the (last) execution of ``code``, once it is idle."""

        def done() -> list[dict[str, Any]] | None:
            msgs = self.received()
            inputs = [
                m for m in msgs if m["msg_type"] == "execute_input" and m["content"]["code"] == code
            ]
            if not inputs:
                return None
            parent = inputs[-1]["parent_header"]["msg_id"]
            mine = [m for m in msgs if m["parent_header"].get("msg_id") == parent]
            idle = any(
                m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                for m in mine
            )
            return mine if idle else None

        return wait_for(done, 60, "the execution to end")

    def close(self) -> None:
        if self.page is not None:
            self.page.close()
            self.page = None


def stream_text(msgs: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")


def shown_text(cell: Locator) -> str:
    """The cell's stdout as the page shows it."""
    stdout = cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")
    return "".join(stdout.all_inner_texts()).rstrip("\n")


@pytest.fixture
def notebook(jupyter: tuple[JupyterServer, Daemon], browser: Browser) -> Iterator[Any]:
    server, _ = jupyter
    made: list[Notebook] = []

    def make(*sources: str) -> Notebook:
        nb = Notebook(server, browser, list(sources))
        made.append(nb)
        return nb

    yield make
    for nb in made:
        nb.close()
        if nb.oracle is not None:
            nb.oracle.stop_channels()
        for session in server.get("api/sessions").json():
            if session["path"] == nb.name:  # shuts its kernel down
                server.delete(f"api/sessions/{session['id']}")


def test_a_reopened_notebook_shows_what_ran_while_it_was_closed(notebook: Any) -> None:
    """Closed mid-run, reopened after the cell ended: every line once, in order, the traceback
    and the execution count are back in the user's own notebook."""
    code = printing(60, "raise ValueError('the end')")
    nb = notebook(LOAD, code)
    nb.open()
    expect(nb.status).to_have_attribute("data-state", "not-relaying")
    nb.attach()
    nb.run(0)
    expect(nb.status).to_have_attribute("data-state", "relaying")
    nb.run(1)
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text("line 5")
    nb.close()
    msgs = nb.execution(code)

    page = nb.open()
    cell = nb.cell(1)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
    expected = stream_text(msgs).rstrip("\n")
    expect(cell.locator(".jp-OutputArea-output").last).to_contain_text("ValueError")
    assert shown_text(cell) == expected
    assert expected.count("line 59") == 1
    expect(page.locator(".jp-toast-message, .jp-Notification-Toast-message").first).to_contain_text(
        "nbrelay restored"
    )
    assert not nb.errors


@pytest.mark.parametrize("app", ["lab/tree", "notebooks"])
def test_a_cell_still_running_at_reopen_goes_on_live(notebook: Any, app: str) -> None:
    """Reopened while the cell still runs (JupyterLab, and Notebook 7): it shows [*] and what
    it printed so far, receives the rest live, then its execution count; each line once."""
    stop = f"/tmp/nbrelay-stop-{uuid.uuid4().hex}"
    code = (
        "import os, time\n"
        "i = 0\n"
        f"while i < 40 or not os.path.exists({stop!r}):\n"
        "    print(f'line {i}', flush=True)\n"
        "    i += 1\n"
        "    time.sleep(0.02)\n"
    )
    nb = notebook(LOAD, code)
    nb.open(app)
    nb.attach()
    nb.run(0)
    expect(nb.status).to_have_attribute("data-state", "relaying")
    nb.run(1)
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text("line 5")
    nb.close()

    nb.open(app)
    cell = nb.cell(1)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text("line 40")
    Path(stop).touch()  # the cell ends
    msgs = nb.execution(code)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
    expected = stream_text(msgs).rstrip("\n")
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text(expected.rsplit("\n", 1)[-1])
    assert shown_text(cell) == expected
    assert not nb.errors
