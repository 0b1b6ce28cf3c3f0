"""Widget progress bars (#22): a real kernel runs tqdm.auto and tqdm.notebook loops with
ipywidgets installed; the relay keeps their comm messages and every reader shows the end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from playwright.sync_api import Page, expect
from support import (
    FACTOR,
    JUPYTER_TOKEN,
    WIDGET_COMMS,
    Daemon,
    JupyterServer,
    Kernel,
    nbrelay,
    relayed,
    relaying_kernel,
)

from nbrelay import protocol
from nbrelay.notebook import executions
from nbrelay.widgets import STATE_MIME, VIEW_MIME

CELLS = {
    "auto": "from tqdm.auto import tqdm\nfor i in tqdm(range(30), desc='train'):\n    pass",
    "notebook": "from tqdm.notebook import tqdm as bar\nfor i in bar(range(7), desc='eval'):\n"
    "    pass\nprint('evaluated')",
    "kinds": "import ipywidgets as w\nout = w.Output()\n"
    "bar = w.IntProgress(value=1, max=4, bar_style='danger', description='loss')\n"
    "display(w.VBox([w.Label('a label'), bar, w.HTML('<b>bold</b> &amp; text'), out]))\n"
    "with out:\n    print('captured line')\nbar.value = 2",
    "slider": "import ipywidgets\nipywidgets.IntSlider(value=4)",
    "other": "import comm\nc = comm.create_comm(target_name='not.a.widget', data={'x': 1})\n"
    "c.send({'y': 2})\nc.close()",
}
expect.set_options(timeout=20_000 * FACTOR)
TRAIN = "train: 100%|██████████| 30/30 ["
EVAL = "eval: 100%|██████████| 7/7 ["


@pytest.fixture(scope="module")
def ran(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Daemon, Kernel, dict[str, Any]]]:
    """A daemon and a kernel that ran CELLS; every message of them stored. Also the IOPub
    messages of each cell, as the client saw them."""
    with relaying_kernel(tmp_path_factory.mktemp("widgets")) as (daemon, kernel):
        seen = {}
        for name, code in CELLS.items():
            # Its idle status is stored: so is every widget message before it, coalesced.
            relayed(daemon, kernel, seen.setdefault(name, kernel.run_ok(code)))
        yield daemon, kernel, seen


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    result = nbrelay(*args, runtime=daemon.runtime_dir)
    assert result.returncode == 0, result.stderr
    return result


def test_widget_comms_are_kept_coalesced_and_other_comms_are_not(
    ran: tuple[Daemon, Kernel, Any],
) -> None:
    """The bar's widgets are stored as opened, and each model's updates as one record with
    their traits merged, at the place of the latest; another comm's messages are not."""
    daemon, kernel, seen = ran
    records = daemon.messages(kernel_id=kernel.kernel_id)
    for name in ("auto", "notebook"):
        sent = [m for m in seen[name] if m["msg_type"] in WIDGET_COMMS]
        parent = sent[0]["parent_header"]["msg_id"]
        kept = [r for r in records if r["parent_msg_id"] == parent]
        opened = [m["content"] for m in sent if m["msg_type"] == "comm_open"]
        assert [r["content"] for r in kept if r["msg_type"] == "comm_open"] == opened
        updates: dict[str, list[dict[str, Any]]] = {}
        for m in sent:
            if m["msg_type"] == "comm_msg":
                updates.setdefault(m["content"]["comm_id"], []).append(m)
        updated = [r for r in kept if r["msg_type"] == "comm_msg"]
        assert len(updated) == len(updates) < sum(map(len, updates.values()))
        for record in updated:
            ours = updates[record["content"]["comm_id"]]
            merged = {k: v for m in ours for k, v in m["content"]["data"]["state"].items()}
            assert record["msg_id"] == ours[-1]["header"]["msg_id"]
            assert record["content"]["data"]["state"] == merged
    other = {m["parent_header"]["msg_id"] for m in seen["other"]}
    assert not [r for r in records if r["parent_msg_id"] in other and r["msg_type"] in WIDGET_COMMS]


def test_a_widget_opened_before_the_extension_was_reloaded_is_still_followed(
    daemon: Daemon, kernel: Kernel
) -> None:
    """`%unload_ext` then `%load_ext nbrelay`: a bar shown before goes on being relayed (the
    hook used to know only the widget comms it had seen open)."""
    kernel.run_ok("import ipywidgets\nbar = ipywidgets.IntProgress(value=1, max=10)\nbar")
    kernel.run_ok("%unload_ext nbrelay")
    kernel.run_ok("%load_ext nbrelay")
    relayed(daemon, kernel, kernel.run_ok("bar.value = 7"))
    states = [
        r["content"]["data"]["state"]
        for r in daemon.messages(kernel_id=kernel.kernel_id)
        if r["msg_type"] == "comm_msg"
    ]
    assert {"value": 7} in states


def comm_batch(n: int, msg_type: str, content: dict[str, Any]) -> str:
    """A batch of one comm message of comm "c1", numbered ``n``, as a hook sends it."""
    entry = protocol.encode_output(n, f"m{n}", msg_type, "run", "t", json.dumps(content))
    return protocol.encode_batch([entry])


def test_updates_stored_in_earlier_commits_are_replaced(daemon: Daemon) -> None:
    """An update of a model already committed replaces that model's stored update: one
    update record holds the merged state, and the kernel's record count says so."""
    opened = {"comm_id": "c1", "target_name": "jupyter.widget", "data": {"state": {"a": 0}}}
    updates = [{"a": 1, "b": 1}, {"b": 2}, {"c": 3}]
    hello = protocol.Hello("coalesced", "coalesced-session", None, "h", 1, "t")
    with daemon.ingest(hello) as ws:
        ws.send(comm_batch(1, "comm_open", opened))
        assert json.loads(ws.recv(10 * FACTOR))["acked"] == 1
        for n, state in enumerate(updates, start=2):
            data = {"method": "update", "state": state, "buffer_paths": []}
            ws.send(comm_batch(n, "comm_msg", {"comm_id": "c1", "data": data}))
            assert json.loads(ws.recv(10 * FACTOR))["acked"] == n  # each in its own commit
    records = daemon.messages(kernel_id="coalesced")
    assert [r["msg_id"] for r in records] == ["coalesced-session:start", "m1", "m4"]
    assert records[-1]["content"]["data"]["state"] == {"a": 1, "b": 2, "c": 3}
    assert daemon.kernel("coalesced")["records"] == 3


def test_tail_and_export_txt_show_the_final_line(
    ran: tuple[Daemon, Kernel, Any], tmp_path: Path
) -> None:
    """`tail` and `export .txt` end each bar as tqdm's terminal line, at 100 % and n/total."""
    daemon, kernel, _ = ran
    tail = cli(daemon, "tail", kernel.kernel_id, "--records", "50").stdout
    cli(daemon, "export", kernel.kernel_id, "-o", str(tmp_path / "log.txt"))
    for text in (tail, (tmp_path / "log.txt").read_text()):
        lines = text.splitlines()
        assert [line for line in lines if "train:" in line][-1].startswith(TRAIN), text
        assert [line for line in lines if "eval:" in line][-1].startswith(EVAL), text
        assert "evaluated" in lines and " 0%|" not in text, text  # no stale bar


def test_tail_starting_after_a_bar_was_shown_still_shows_its_end(
    ran: tuple[Daemon, Kernel, Any],
) -> None:
    """`tail --since` just after a bar's display: its later updates show its final line."""
    daemon, kernel, seen = ran
    display = next(m for m in seen["auto"] if m["msg_type"] == "display_data")
    records = daemon.messages(kernel_id=kernel.kernel_id)
    since = next(r["seq"] for r in records if r["msg_id"] == display["header"]["msg_id"])
    tail = cli(daemon, "tail", kernel.kernel_id, "--since", str(since)).stdout
    assert any(line.startswith(TRAIN) for line in tail.splitlines()), tail


def test_export_ipynb_holds_the_widget_state_and_the_final_text(
    ran: tuple[Daemon, Kernel, Any], tmp_path: Path
) -> None:
    """The exported notebook's metadata holds the bars' final widget state, as JupyterLab
    saves it; each bar's text fallback is its final line."""
    daemon, kernel, _ = ran
    path = tmp_path / "out.ipynb"
    cli(daemon, "export", kernel.kernel_id, "-o", str(path))
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    state = notebook.metadata.widgets[STATE_MIME]["state"]
    cells = {cell.source: cell for cell in notebook.cells}
    for name, text, total in (("auto", TRAIN, 30), ("notebook", EVAL, 7)):
        shown = [o for o in cells[CELLS[name]].outputs if o.output_type == "display_data"]
        (bar,) = shown
        assert bar.data["text/plain"].startswith(text)
        box = state[bar.data[VIEW_MIME]["model_id"]]
        assert box["model_name"] == "HBoxModel"
        children = [state[c.removeprefix("IPY_MODEL_")] for c in box["state"]["children"]]
        (progress,) = [c for c in children if c["model_name"].endswith("ProgressModel")]
        assert progress["state"]["value"] == total == progress["state"]["max"]
        assert progress["state"]["bar_style"] == "success"


def test_export_ipynb_keeps_an_output_widgets_captured_outputs_in_its_state(
    ran: tuple[Daemon, Kernel, Any], tmp_path: Path
) -> None:
    """What a `with out:` block printed is in the Output widget's state, not in the cell."""
    daemon, kernel, _ = ran
    path = tmp_path / "out.ipynb"
    cli(daemon, "export", kernel.kernel_id, "-o", str(path))
    notebook = nbformat.read(path, as_version=4)
    (cell,) = [c for c in notebook.cells if c.source == CELLS["kinds"]]
    assert [o.output_type for o in cell.outputs] == ["display_data"]
    state = notebook.metadata.widgets[STATE_MIME]["state"]
    (out,) = [m["state"] for m in state.values() if m["model_name"] == "OutputModel"]
    assert out["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "captured line\n"}
    ]


def test_recover_puts_the_widget_state_in_the_users_notebook(
    ran: tuple[Daemon, Kernel, Any], tmp_path: Path
) -> None:
    """`recover` fills the bar's cell and the notebook's widget state, so Lab shows the bar."""
    daemon, _, _ = ran
    path = tmp_path / "analysis.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(CELLS["auto"])]), path)
    cli(daemon, "recover", str(path))
    recovered = nbformat.read(tmp_path / "analysis.recovered.ipynb", as_version=4)
    nbformat.validate(recovered)
    (bar,) = recovered.cells[0].outputs
    assert bar.data["text/plain"].startswith(TRAIN)
    assert bar.data[VIEW_MIME]["model_id"] in recovered.metadata.widgets[STATE_MIME]["state"]


def test_a_recovered_notebook_shows_the_final_bar_in_jupyterlab(
    ran: tuple[Daemon, Kernel, Any], tmp_path: Path, page: Page
) -> None:
    """Opened in a real JupyterLab once the user trusts it, the recovered notebook shows
    the bar from its saved widget state: full, green, at n/total."""
    daemon, _, _ = ran
    server = JupyterServer(tmp_path)
    try:
        original = new_notebook(cells=[new_code_cell(CELLS["auto"])])
        original.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nbformat.write(original, tmp_path / "analysis.ipynb")
        cli(daemon, "recover", str(tmp_path / "analysis.ipynb"), "--in-place")
        # Lab renders widgets only in trusted notebooks; recover does not sign (README).
        trust = Path(sys.executable).with_name("jupyter-trust")
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}  # as server
        subprocess.run([trust, tmp_path / "analysis.ipynb"], check=True, env=env)
        page.goto(f"{server.url}lab/tree/analysis.ipynb?token={JUPYTER_TOKEN}&reset")
        output = page.locator(".jp-OutputArea-output").first
        expect(output.locator(".widget-html-content").first).to_contain_text("train: 100%")
        expect(output.locator(".widget-html-content").last).to_contain_text("30/30 [")
        bar = output.locator(".progress-bar")
        expect(bar).to_have_class(re.compile("progress-bar-success"))
        assert bar.evaluate("e => e.style.width") == "100%"
    finally:
        server.stop()


def test_each_execution_has_the_state_of_the_widgets_it_shows(
    ran: tuple[Daemon, Kernel, Any],
) -> None:
    """A rebuilt execution carries the widget state its outputs need, and only that."""
    daemon, kernel, _ = ran
    runs = {run.code: run for run in executions(daemon.messages(kernel_id=kernel.kernel_id))}
    auto, other = runs[CELLS["auto"]], runs[CELLS["other"]]
    (bar,) = [o for o in auto.outputs if o.output_type == "display_data"]
    models = auto.widgets["state"]
    # The box, its three children, their three styles and the four layouts.
    assert bar.data[VIEW_MIME]["model_id"] in models and len(models) == 11
    notebook_models = runs[CELLS["notebook"]].widgets["state"]
    assert not set(models) & set(notebook_models)
    assert other.widgets == {}


def test_viewer_shows_the_bars_final_state(ran: tuple[Daemon, Kernel, Any], page: Page) -> None:
    """The viewer draws each bar from its latest state: full, green, at n/total; a widget
    it cannot draw shows its text fallback and says it is interactive."""
    daemon, kernel, _ = ran
    page.goto(f"{daemon.url}?kernel={kernel.kernel_id}#token={daemon.token}")
    for text, total in (("train", 30), ("eval", 7)):
        cell = page.locator(".cell", has_text=f"desc='{text}'")
        bar = cell.locator(".widget-progress")
        expect(bar).to_have_attribute("aria-valuenow", str(total))
        expect(bar).to_have_attribute("aria-valuemax", str(total))
        expect(bar).to_have_attribute("data-bar-style", "success")
        expect(cell.locator(".widget-hbox")).to_contain_text(f"{text}: 100%")
        expect(cell.locator(".widget-hbox")).to_contain_text(f"{total}/{total} [")
        width = bar.locator(".widget-progress-fill").evaluate("e => e.style.width")
        assert width == "100%"
    kinds = page.locator(".cell", has_text="a label").locator(".widget-vbox")
    expect(kinds.locator(".widget-progress")).to_have_attribute("aria-valuenow", "2")
    expect(kinds.locator(".widget-progress")).to_have_attribute("data-bar-style", "danger")
    expect(kinds).to_contain_text("loss")
    expect(kinds.locator(".widget-text", has_text="bold & text")).to_have_count(1)
    expect(kinds.locator(".widget-output")).to_contain_text("captured line")
    slider = page.locator(".cell", has_text="IntSlider(value=4)")
    expect(slider.locator(".display")).to_contain_text("an interactive widget: shown as text")


def test_viewer_follows_a_bar_live(daemon: Daemon, kernel: Kernel, page: Page) -> None:
    """An open viewer redraws a bar as its kernel updates it, without a reload."""
    page.goto(f"{daemon.url}?kernel={kernel.kernel_id}#token={daemon.token}")
    kernel.run_ok("import ipywidgets as w\nbar = w.FloatProgress(max=4.0)\ndisplay(bar)")
    shown = page.locator(".widget-progress")
    expect(shown).to_have_attribute("aria-valuenow", "0")
    kernel.run_ok("bar.value = 3.0\nbar.bar_style = 'info'")
    expect(shown).to_have_attribute("aria-valuenow", "3")
    expect(shown).to_have_attribute("data-bar-style", "info")
    assert shown.locator(".widget-progress-fill").evaluate("e => e.style.width") == "75%"
