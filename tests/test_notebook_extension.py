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
from playwright.sync_api import Browser, BrowserContext, Locator, expect
from support import (
    FACTOR,
    Blip,
    Daemon,
    JupyterServer,
    Notebook,
    shown_text,
    stream_text,
    wait_for,
)

from nbrelay.errors import START_HINT
from nbrelay.notebook import PRUNED
from nbrelay.restore import PAGE_LINES

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


def until_stopped(stop: str) -> str:
    """A cell that prints a line every 20 ms until the file ``stop`` exists (40 at least)."""
    return (
        "import os, time\n"
        "i = 0\n"
        f"while i < 40 or not os.path.exists({stop!r}):\n"
        "    print(f'line {i}', flush=True)\n"
        "    i += 1\n"
        "    time.sleep(0.02)\n"
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


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    """One browser profile for the module, as a user's: JupyterLab's scripts come from its
    cache after the first page, which takes seconds off each page opened."""
    context = browser.new_context()
    yield context
    context.close()


@pytest.fixture
def notebook(jupyter: tuple[JupyterServer, Daemon], context: BrowserContext) -> Iterator[Any]:
    server, _ = jupyter
    made: list[Notebook] = []

    def make(*sources: str) -> Notebook:
        nb = Notebook(server, context, list(sources))
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
    assert shown_text(cell).count("line 59") == 1
    expect(page.locator(".jp-toast-message, .jp-Notification-Toast-message").first).to_contain_text(
        "nbrelay restored"
    )
    assert not nb.errors


def test_a_cell_still_running_at_reopen_goes_on_live_in_notebook_7(notebook: Any) -> None:
    """Reopened in Notebook 7 while the cell still runs: it shows [*] and what it printed so
    far, receives the rest live, then its execution count; each line once. (In JupyterLab:
    the next test, which also holds the relay back.)"""
    stop = f"/tmp/nbrelay-stop-{uuid.uuid4().hex}"
    code = until_stopped(stop)
    nb = notebook(LOAD, code)
    nb.relaying("notebooks")
    nb.run(1)
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text("line 5")
    nb.close()

    nb.open("notebooks")
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


def test_what_the_relay_had_not_stored_when_the_page_asked_comes_back_while_the_cell_runs(
    notebook: Any, jupyter: tuple[JupyterServer, Daemon]
) -> None:
    """Reopened in JupyterLab while the cell still runs, and the relay is behind the kernel
    (what the hook sends is held up on its way to the daemon), and nothing comes live before
    the snapshot: the snapshot ends before the first line the page receives live. The lines
    in between are shown as soon as the relay has them, while the cell still runs, not only
    once it ends; then [2] and every line once."""
    _, daemon = jupyter
    relay = Blip(daemon.port)  # between the kernel's hook and the daemon
    files = {k: f"/tmp/nbrelay-{k}-{uuid.uuid4().hex}" for k in ("hold", "quiet", "go", "stop")}
    code = (
        "import os, time\n"
        "i = 0\n"
        f"while not os.path.exists({files['stop']!r}):\n"
        f"    if os.path.exists({files['hold']!r}) and not os.path.exists({files['go']!r}):\n"
        f"        open({files['quiet']!r}, 'w').close()\n"
        "        time.sleep(0.01)\n"
        "        continue\n"
        "    print(f'line {i}', flush=True)\n"
        "    i += 1\n"
        "    time.sleep(0.02)\n"
    )
    load = (
        f"%env NBRELAY_URL=http://127.0.0.1:{relay.port}\n"
        f"%env NBRELAY_TOKEN={daemon.token}\n" + LOAD
    )
    nb = notebook(load, code)
    try:
        nb.relaying()
        nb.run(1)
        expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text("line 5")
        nb.close()

        def lines(text: str) -> int:
            return sum(line.startswith("line ") for line in text.splitlines())

        def printed() -> int:
            return lines(stream_text(nb.received()))

        def stored() -> int:
            return lines(stream_text(daemon.messages(kernel_id=nb.kernel_id)))

        relay.hold()  # what the hook sends from now on waits in the proxy
        behind = printed()
        wait_for(lambda: printed() > behind + 10, 30, "the cell to print while the relay waits")
        Path(files["hold"]).touch()
        wait_for(lambda: Path(files["quiet"]).exists(), 30, "the cell to pause")
        kept = stored()
        assert kept < printed() - 10

        nb.open()  # the snapshot ends at line kept - 1; nothing comes live meanwhile
        cell = nb.cell(1)
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
        expect(cell.locator(".jp-OutputArea-output")).to_contain_text(f"line {kept - 1}")
        relay.release()
        wait_for(lambda: stored() >= printed(), 60, "the relay to store what waited")
        Path(files["go"]).touch()  # the cell prints again, live to the page
        resumed = printed()
        expect(cell.locator(".jp-OutputArea-output")).to_contain_text(f"line {resumed + 20}")

        def contiguous() -> bool:
            shown = [int(line.split()[1]) for line in shown_text(cell).splitlines()]
            return shown == list(range(len(shown)))

        wait_for(contiguous, 30, "every line, in order, while the cell runs")
        assert cell.locator(".jp-InputPrompt").inner_text() == "[*]:"
        Path(files["stop"]).touch()
        msgs = nb.execution(code)
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
        assert shown_text(cell) == stream_text(msgs).rstrip("\n")
        assert not nb.errors
    finally:
        relay.close()
        for path in files.values():
            Path(path).unlink(missing_ok=True)


def test_a_cell_that_shows_and_clears_big_outputs_does_not_fill_the_page(notebook: Any) -> None:
    """A loop that shows a 1 MB output and clears it, 60 times (an animation): the page
    keeps what JupyterLab keeps, the latest, not each one it saw for a restore to come."""
    code = (  # a representation Lab has no renderer for: it keeps it and shows the text
        "from IPython.display import display, clear_output\n"
        "for i in range(60):\n"
        "    clear_output(wait=True)\n"
        "    display({'text/plain': f'frame {i}', 'application/x-frame': 'x' * 2**20}, raw=True)\n"
    )
    nb = notebook(LOAD, code)
    page = nb.relaying(attach=False)
    cdp = page.context.new_cdp_session(page)

    def heap() -> int:
        cdp.send("HeapProfiler.collectGarbage")
        return int(cdp.send("Runtime.getHeapUsage")["usedSize"])

    before = heap()
    nb.run(1)
    expect(nb.cell(1).locator(".jp-InputPrompt")).to_have_text("[2]:", timeout=120_000 * FACTOR)
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_have_text("frame 59")
    grown = heap() - before
    assert grown < 40 * 2**20, f"the page's heap grew by {grown / 2**20:.0f} MiB"
    cdp.detach()
    assert not nb.errors


def test_cells_of_the_same_source_each_get_their_own_output_wherever_they_moved(
    notebook: Any, jupyter: tuple[JupyterServer, Daemon]
) -> None:
    """Two cells with the same source, run bottom first, each get back their own output by
    cell id (by source, the top one would take the first run); and again after the notebook
    on disk was edited meanwhile, the two cells swapped."""
    same = "n += 1\nprint(f'run {n}')"
    nb = notebook(LOAD + "\nn = 0", same, same)
    nb.relaying()
    nb.run(2)
    expect(nb.cell(2).locator(".jp-OutputArea-output")).to_have_text("run 1")
    nb.run(1)
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_have_text("run 2")
    nb.close()
    nb.execution(same)

    nb.open()
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_have_text("run 2")
    expect(nb.cell(2).locator(".jp-OutputArea-output")).to_have_text("run 1")
    nb.close()

    server, _ = jupyter
    path = server.workdir / nb.name
    saved = nbformat.read(path, as_version=4)
    saved.cells[1], saved.cells[2] = saved.cells[2], saved.cells[1]
    nbformat.write(saved, path)
    nb.open()
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_have_text("run 1")  # was cell 2
    expect(nb.cell(2).locator(".jp-OutputArea-output")).to_have_text("run 2")
    assert not nb.errors


def test_a_blip_between_browser_and_server_loses_and_repeats_nothing(
    notebook: Any, jupyter: tuple[JupyterServer, Daemon]
) -> None:
    """The route between the page and the Jupyter server goes dead while a cell prints, then
    its connections drop; once they are back, the cell shows every line once, in order, and
    goes on: those lost on the dead route too, and none that the server replays twice."""
    server, _ = jupyter
    blip = Blip(int(server.url.rsplit(":", 1)[1].rstrip("/")))
    stop = f"/tmp/nbrelay-stop-{uuid.uuid4().hex}"
    code = until_stopped(stop)
    nb = notebook(LOAD, code)
    nb.server_url = f"http://127.0.0.1:{blip.port}/"
    try:
        nb.relaying()
        nb.run(1)
        expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text("line 20")
        # The route goes dead: what the server sends is lost, and neither end notices. Then
        # the connections drop, and are let in again at once: JupyterLab's first reconnection
        # is immediate, and each one refused doubles the wait for the next. The Jupyter server
        # replays what it buffered once it saw the drop, not what went into the dead route.
        printed = len(stream_text(nb.received()).splitlines())
        blip.drop()
        wait_for(
            lambda: len(stream_text(nb.received()).splitlines()) > printed + 10,
            30,
            "the cell to print on while the route is dead",
        )
        blip.cut()
        blip.mend()
        expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text(
            f"line {printed + 20}", timeout=120_000 * FACTOR
        )
        Path(stop).touch()
        msgs = nb.execution(code)
        expected = stream_text(msgs).rstrip("\n")
        expect(nb.cell(1).locator(".jp-InputPrompt")).to_have_text("[2]:")
        expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text(
            expected.rsplit("\n", 1)[-1]
        )
        assert shown_text(nb.cell(1)) == expected
        assert blip.cuts and not nb.errors
    finally:
        nb.close()
        blip.close()


def test_after_a_kernel_restart_only_the_new_process_counts(
    notebook: Any, jupyter: tuple[JupyterServer, Daemon]
) -> None:
    """What the kernel's previous process printed is not put back after a restart, and the
    status says that the new process does not relay."""
    server, _ = jupyter
    nb = notebook(LOAD, "print('old process')")
    nb.relaying(attach=False)
    nb.run(1)
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_have_text("old process")
    nb.close()
    assert server.post(f"api/kernels/{nb.kernel_id}/restart", None).status_code == 200

    nb.open()
    expect(nb.status).to_have_attribute("data-state", "not-relaying")
    expect(nb.status).to_have_attribute("title", re.compile("current process has not loaded"))
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_have_count(0)
    assert not nb.errors


def test_the_viewer_link_opens_this_kernel_without_a_second_login(
    notebook: Any, jupyter: tuple[JupyterServer, Daemon]
) -> None:
    """The toolbar's viewer link opens the nbrelay viewer on the notebook's kernel, under the
    Jupyter server's login only: the daemon's token is nowhere in the page or its address."""
    _, daemon = jupyter
    nb = notebook(LOAD, "print('seen in the viewer')")
    page = nb.relaying(attach=False)
    nb.run(1)
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_have_text("seen in the viewer")
    with page.expect_popup() as opened:
        page.locator(".jp-nbrelay-viewer").click()
    viewer = opened.value
    expect(viewer.locator(".cell").filter(has_text="seen in the viewer")).to_have_count(1)
    assert f"kernel={nb.kernel_id}" in viewer.url
    assert daemon.token not in viewer.url + viewer.content() + page.content()
    viewer.close()


def test_a_widget_progress_bar_comes_back_at_its_final_state(notebook: Any) -> None:
    """A tqdm.auto bar (an ipywidgets one) that ran while the notebook was closed is back in
    its cell at 100 %, drawn by JupyterLab's widget manager from the kernel's live model."""
    code = (
        "import time\nfrom tqdm.auto import tqdm\n"
        "for i in tqdm(range(30), desc='train'):\n    time.sleep(0.05)"
    )
    nb = notebook(LOAD, code)
    nb.relaying(attach=False)
    nb.attach()
    nb.run(1)
    nb.close()
    nb.execution(code)
    nb.open()
    bar = nb.cell(1).locator(".widget-hprogress .progress-bar-success")
    expect(bar).to_have_count(1)
    expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text("30/30")
    assert not nb.errors


def test_a_running_widget_bar_reopened_is_not_asked_for_again_and_again(
    notebook: Any, tmp_path: Path
) -> None:
    """A tqdm.auto bar still running at reopen: its first message live is a widget update,
    which the relay keeps merged under a later id, so no snapshot ever holds it. The page
    must not take that for a relay behind the kernel, asking again (and redrawing the cell,
    with a notification each time) at each of its retries."""
    stop = tmp_path / "stop"
    code = (
        "import os, time\nfrom tqdm.auto import tqdm\n"
        "for i in tqdm(range(10**6)):\n    time.sleep(0.05)\n"
        f"    if i > 20 and os.path.exists({str(stop)!r}):\n        break\n"
    )
    nb = notebook(LOAD, code)
    nb.relaying(attach=False)
    nb.run(1)
    expect(nb.cell(1).locator(".widget-hprogress")).to_have_count(1)
    nb.close()
    page = nb.open(wait=False)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "api/nbrelay/restore" in r.url else None)
    cell = nb.cell(1)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
    # Restored (drawn as a bar once the busy kernel answers the widget manager).
    expect(cell.locator(".jp-OutputArea-output")).to_have_count(1)
    # The page's retries come 0.1, 0.3, 1 and 3 s apart: 4.5 s would see all four.
    page.wait_for_timeout(4500)  # the measurement itself: requests the page sends unasked
    stop.touch()
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
    assert len(asked) <= 3, f"{len(asked)} restore requests"  # the open, first live, the end
    assert not nb.errors


def test_a_cell_whose_start_was_pruned_while_closed_says_so_then_shows_what_was_kept(
    notebook: Any, jupyter: tuple[JupyterServer, Daemon]
) -> None:
    """Retention (a small --max-size) prunes the start of a running cell while its notebook
    is closed: reopened after the cell ended, the cell says first that earlier output was
    pruned, then shows each line the relay kept once, with its execution count."""
    _, daemon = jupyter
    port = daemon.port
    stop = f"/tmp/nbrelay-stop-{uuid.uuid4().hex}"
    code = (
        "import os, time\n"
        "i = 0\n"
        f"while not os.path.exists({stop!r}):\n"
        "    print(f'line {i} ' + 'x' * 1000, flush=True)\n"
        "    i += 1\n"
        "    time.sleep(0.005)\n"
    )
    nb = notebook(LOAD, code)

    def of_the_cell() -> list[dict[str, Any]]:
        """The relay's records of the cell's execution."""
        requests = {
            m["parent_header"]["msg_id"]
            for m in nb.received()
            if m["msg_type"] == "execute_input" and m["content"]["code"] == code
        }
        return [
            r for r in daemon.messages(kernel_id=nb.kernel_id) if r["parent_msg_id"] in requests
        ]

    def start_pruned() -> bool:
        records = of_the_cell()
        return bool(records) and all(r["msg_type"] != "execute_input" for r in records)

    daemon.stop()
    daemon.start("--max-size", "300KB", port=port)
    try:
        nb.relaying()
        nb.run(1)
        expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text("line 5")
        nb.close()
        wait_for(start_pruned, 60, "retention to prune the cell's start")
        Path(stop).touch()
        msgs = nb.execution(code)
        daemon.stop()
        daemon.start(port=port)  # the other tests' daemon again: what was kept stays so
        idle = msgs[-1]["header"]["msg_id"]
        wait_for(lambda: any(r["msg_id"] == idle for r in of_the_cell()), 30, "the end stored")
        kept = "".join(r["content"]["text"] for r in of_the_cell() if r["msg_type"] == "stream")
        assert "line 0 " not in kept and kept.startswith("line ")

        nb.open()
        cell = nb.cell(1)
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
        outputs = cell.locator(".jp-OutputArea-output")
        expect(outputs.first).to_have_text(PRUNED.strip())
        expect(outputs.last).to_contain_text(kept.rstrip("\n").rsplit("\n", 1)[-1])
        assert shown_text(cell) == kept.rstrip("\n")
        assert not nb.errors
    finally:
        Path(stop).touch()
        if daemon.proc is not None and "--max-size" in daemon.proc.args:
            daemon.stop()
            daemon.start(port=port)
        Path(stop).unlink()


def outputs(cell: Locator) -> list[tuple[str | None, str]]:
    """What a cell's output area shows: each output's kind and text, in order."""
    shown = cell.locator(".jp-OutputArea-output")
    return [
        (shown.nth(i).get_attribute("data-mime-type"), shown.nth(i).inner_text().rstrip("\n"))
        for i in range(shown.count())
    ]


def test_clear_output_and_display_updates_come_back_as_jupyterlab_showed_them(
    notebook: Any,
) -> None:
    """clear_output, clear_output(wait=True) and update_display: a page reopened after the
    cell ended shows what a page that was open while it ran shows, output by output."""
    code = (
        "from IPython.display import clear_output, display\n"
        "print('cleared at once', flush=True)\n"
        "clear_output()\n"
        "print('then cleared on the next output', flush=True)\n"
        "gone = display('shown, then cleared', display_id=True)\n"
        "clear_output(wait=True)\n"
        "print('after the wait', flush=True)\n"
        "kept = display('v1', display_id=True)\n"
        "print('more', flush=True)\n"
        "gone.update('updated after it was cleared')\n"
        "kept.update('v2')\n"
        "kept.update('v3')"
    )
    nb = notebook(LOAD, code)
    live = nb.relaying()  # this page stays open: it shows the cell as JupyterLab does
    nb.run(1)
    nb.execution(code)
    witness = live.locator(".jp-Notebook .jp-Cell").nth(1)
    expect(witness.locator(".jp-InputPrompt")).to_have_text("[2]:")
    expect(witness.locator(".jp-OutputArea-output").last).to_have_text("more")
    expected = [
        ("application/vnd.jupyter.stdout", "after the wait"),
        ("text/plain", "'v3'"),
        ("application/vnd.jupyter.stdout", "more"),
    ]
    assert outputs(witness) == expected
    nb.page = None  # the notebook's saved file has no output: this page reopens it

    try:
        nb.open()
        cell = nb.cell(1)
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
        expect(cell.locator(".jp-OutputArea-output")).to_have_count(3)
        assert outputs(cell) == outputs(witness)
        assert not nb.errors
    finally:
        live.close()


def test_a_progress_line_redrawn_with_cr_goes_on_in_place_after_a_reopen(notebook: Any) -> None:
    """A running cell redraws one line with print(..., end='\\r'): reopened meanwhile, the
    page goes on redrawing it in place, as the page that ran it does, not after the line the
    restore brought back."""
    files = {k: f"/tmp/nbrelay-{k}-{uuid.uuid4().hex}" for k in ("reopened", "quiet", "stop")}
    code = (
        "import os, time\n"
        "i = 0\n"
        f"while i < 40 or not os.path.exists({files['reopened']!r}):\n"
        "    print(f'step {i}', end='\\r', flush=True)\n"
        "    i += 1\n"
        "    time.sleep(0.02)\n"
        "for i in range(i, i + 30):\n"
        "    print(f'step {i}', end='\\r', flush=True)\n"
        "    time.sleep(0.02)\n"
        f"open({files['quiet']!r}, 'w').write(str(i))\n"
        f"while not os.path.exists({files['stop']!r}):\n"
        "    time.sleep(0.02)\n"
    )
    nb = notebook(LOAD, code)
    live = nb.relaying()  # this page stays open: it shows the cell as JupyterLab does
    try:
        nb.run(1)
        witness = live.locator(".jp-Notebook .jp-Cell").nth(1)
        expect(witness.locator(".jp-OutputArea-output")).to_have_text(re.compile(r"step \d+"))
        nb.page = None

        nb.open()
        cell = nb.cell(1)
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
        expect(cell.locator(".jp-OutputArea-output")).to_have_text(re.compile(r"step \d+"))
        Path(files["reopened"]).touch()  # 30 more redraws, live to both pages
        last = wait_for(lambda: Path(files["quiet"]).exists() and Path(files["quiet"]).read_text())
        wait_for(
            lambda: stream_text(nb.received()).endswith(f"step {last}\r"),
            30,
            "the oracle to receive the last redraw",
        )
        expect(witness.locator(".jp-OutputArea-output")).to_have_text(f"step {last}")
        expect(cell.locator(".jp-OutputArea-output")).to_have_text(f"step {last}")
        assert cell.locator(".jp-InputPrompt").inner_text() == "[*]:"
        Path(files["stop"]).touch()  # the cell ends: a busy kernel is slow to shut down
        nb.execution(code)
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
        expect(cell.locator(".jp-OutputArea-output")).to_have_text(f"step {last}")
        assert not nb.errors
    finally:
        live.close()
        for path in files.values():
            Path(path).unlink(missing_ok=True)


def test_a_clear_output_waiting_at_reopen_clears_at_the_next_output(
    notebook: Any, jupyter: tuple[JupyterServer, Daemon], tmp_path: Path
) -> None:
    """Reopened between clear_output(wait=True) and the next output of a running cell: that
    output replaces what the cell showed, as in the page that ran it, and is not added to it
    (a loop that clears, computes, then prints is there at almost every reopen). A display
    update comes live first: it is no output, so the clear still waits."""
    _, daemon = jupyter
    files = {k: str(tmp_path / k) for k in ("update", "next", "stop")}

    def until(name: str) -> str:
        return f"while not os.path.exists({files[name]!r}):\n    time.sleep(0.02)\n"

    code = (
        "import os, time\nfrom IPython.display import clear_output, display\n"
        "shown = display('frame 0', display_id=True)\n"
        "clear_output(wait=True)\n"
        + until("update")
        + "shown.update('frame 0, updated')\n"
        + until("next")
        + "print('frame 1', flush=True)\n"
        + until("stop")
    )
    nb = notebook(LOAD, code)
    nb.relaying(attach=False)
    try:
        nb.run(1)
        expect(nb.cell(1).locator(".jp-OutputArea-output")).to_have_text("'frame 0'")
        nb.close()
        wait_for(
            lambda: any(
                r["msg_type"] == "clear_output" for r in daemon.messages(kernel_id=nb.kernel_id)
            ),
            30,
            "the relay to hold the clear",
        )
        nb.open()
        cell = nb.cell(1)
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
        expect(cell.locator(".jp-OutputArea-output")).to_have_text("'frame 0'")
        Path(files["update"]).touch()
        expect(cell.locator(".jp-OutputArea-output")).to_have_text("'frame 0, updated'")
        Path(files["next"]).touch()
        expect(cell.locator(".jp-OutputArea-output")).to_have_text(["frame 1"])
        assert cell.locator(".jp-InputPrompt").inner_text() == "[*]:"  # before the end's check
        Path(files["stop"]).touch()
        expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
        expect(cell.locator(".jp-OutputArea-output")).to_have_text(["frame 1"])
        assert not nb.errors
    finally:
        for path in files.values():
            Path(path).touch()  # a kernel left busy is slow to shut down


def test_a_daemon_restarted_on_another_port_is_found_again_by_the_page_and_the_kernel(
    notebook: Any, jupyter: tuple[JupyterServer, Daemon]
) -> None:
    """The daemon stops, and starts again on another port (a new runtime file): the status
    says "no-daemon" and how to start one, then "relaying" at the next click; the kernel's
    hook finds the new port and delivers what it buffered, which the click puts into the
    notebook, once; later output is relayed too."""
    _, daemon = jupyter
    nb = notebook(LOAD, "print('kept while the daemon moved')", "print('after the move')")
    nb.relaying(attach=False)

    def moved() -> Locator:  # in the page open now
        return nb.cell(1).locator(".jp-OutputArea-output")

    old = daemon.port
    daemon.stop()
    try:
        nb.run(1)
        expect(moved()).to_have_text("kept while the daemon moved")
        nb.close()
        nb.open()
        expect(nb.status).to_have_attribute("data-state", "no-daemon")
        expect(nb.status).to_have_attribute("title", re.compile(re.escape(START_HINT)))
        expect(moved()).to_have_count(0)
    finally:
        daemon.start()  # on a free port: the other tests use the daemon too
    assert daemon.port != old

    def stored(text: str) -> bool:
        return any(
            r["msg_type"] == "stream" and text in r["content"]["text"]
            for r in daemon.messages(kernel_id=nb.kernel_id)
        )

    wait_for(lambda: stored("daemon moved"), 30, "the hook to deliver to the new port")
    nb.status.click()
    expect(nb.status).to_have_attribute("data-state", "relaying")
    expect(moved()).to_have_text("kept while the daemon moved")
    expect(nb.cell(1).locator(".jp-InputPrompt")).to_have_text("[2]:")
    nb.run(2)
    expect(nb.cell(2).locator(".jp-OutputArea-output")).to_have_text("after the move")
    wait_for(lambda: stored("after the move"), 30, "the relay to hold the later output")
    assert not nb.errors


def test_a_huge_output_comes_back_cut_to_its_end_and_the_notebook_still_responds(
    notebook: Any,
) -> None:
    """200,000 lines printed while the notebook was closed come back as their last
    PAGE_LINES, each once and in order, behind a line saying how many are left out; the page
    has no error and runs the next cell."""
    count = 200_000
    code = f"for i in range({count}):\n    print(f'line {{i}}')"
    nb = notebook(LOAD, code, "print('still responds')")
    nb.relaying()
    nb.run(1)
    expect(nb.cell(1).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\*\]|\[2\]"))
    nb.close()
    msgs = nb.execution(code)
    printed = stream_text(msgs).rstrip("\n").split("\n")
    assert printed == [f"line {i}" for i in range(count)]  # the oracle's

    nb.open()
    cell = nb.cell(1)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[2]:")
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text(f"line {count - 1}")
    note, *shown = shown_text(cell).split("\n")
    left_out = count - PAGE_LINES
    assert note.startswith(f"[nbrelay: not shown here, the first {left_out:,} lines")
    assert shown == printed[left_out:]  # each once, in order, to the last
    nb.run(2)
    expect(nb.cell(2).locator(".jp-OutputArea-output")).to_have_text("still responds")
    assert not nb.errors
