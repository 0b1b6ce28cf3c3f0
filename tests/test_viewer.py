"""The viewer page in a real Chromium, against a real daemon and kernel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from support import FACTOR, Daemon, Kernel, stream_batch

from nbrelay import protocol

expect.set_options(timeout=20_000 * FACTOR)


def test_page_groups_output_by_cell_and_resumes_after_a_crash(
    daemon: Daemon, kernel: Kernel, page: Page
) -> None:
    """Output shows live under its cell; after the daemon is killed and restarted the page
    reconnects, resumes after its last seq, and shows new output once."""
    page.goto(f"{daemon.url}#token={daemon.token}")
    assert "token" not in page.url  # taken from the address bar, kept for the session
    kernel.run_ok("print('first cell')")
    cells = page.locator(f'.kernel[data-kernel="{kernel.kernel_id}"] .cell')
    expect(cells.filter(has_text="first cell")).to_have_count(1)
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("nav li.selected")).to_contain_text("analysis.ipynb")

    port = daemon.port
    daemon.kill()
    expect(page.locator("#connection")).to_contain_text("reconnecting")
    daemon.start(port=port)
    kernel.run_ok("print('second cell')")
    expect(cells.filter(has_text="second cell")).to_have_count(1)
    expect(page.locator("#connection")).to_have_text("live")
    assert page.locator("pre.stdout .line", has_text="first cell").count() == 1  # shown once
    last_seq = int(page.locator("body").get_attribute("data-last-seq") or 0)
    assert last_seq == daemon.messages()[-1]["seq"]


PWN = "document.title='pwned'"
XSS = [
    ("stream", {"name": "stdout", "text": f'<script>{PWN}</script><img src=x onerror="{PWN}">\n'}),
    ("stream", {"name": "stderr", "text": f"\x1b[31m<script>{PWN}</script>\x1b[0m\n"}),
    (
        "stream",
        {"name": "stdout", "text": f"\x1b]8;;javascript:{PWN}\x1b\\osc link\x1b]8;;\x1b\\\n"},
    ),
    (
        "error",
        {
            "ename": '<img src=x onerror="' + PWN + '">',
            "evalue": "<script>" + PWN + "</script>",
            "traceback": [f'\x1b[31m<svg onload="{PWN}">\x1b[0m'],
        },
    ),
    (
        "display_data",
        {
            "metadata": {},
            "data": {
                "text/plain": "<b>plain</b>",
                "text/html": (
                    "<p id=inside>kernel html</p><script>parent.document.title='pwned';"
                    "top.document.body.dataset.pwned=1;parent.postMessage(sessionStorage.getItem('nbrelay.token'),'*')"
                    '</script><img src=x onerror="top.document.body.dataset.pwned=1">'
                    '<a id=jslink href="javascript:top.document.body.dataset.pwned=1">js link</a>'
                ),
            },
        },
    ),
    (
        "display_data",
        {
            "metadata": {},
            "data": {
                "image/svg+xml": f'<svg onload="top.{PWN}"><script>top.{PWN}</script></svg>',
            },
        },
    ),
    (
        "execute_result",
        {"execution_count": 1, "metadata": {}, "data": {"text/plain": f"<script>{PWN}</script>"}},
    ),
    ("stream", {"name": "stdout", "text": "the end\n"}),
]


def test_hostile_output_never_runs_in_the_viewer(daemon: Daemon, page: Page) -> None:
    """Script tags, event handlers, javascript: links, ANSI- and OSC 8-wrapped markup, kernel
    HTML and SVG: shown as text or sandboxed, never executed, and the token stays out of reach."""
    dialogs: list[str] = []
    messages: list[object] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.expose_function("reportMessage", lambda data: messages.append(data))
    page.add_init_script("window.addEventListener('message', e => window.reportMessage(e.data))")
    hostile_name = f'<img src=x onerror="{PWN}">.ipynb'
    with daemon.ingest(
        protocol.Hello("xss-kernel", "xss-session", hostile_name, "h", 1, "t")
    ) as ws:
        entries = [
            protocol.encode_output(n, f"m{n}", msg_type, "cell-1", "t", json.dumps(content))
            for n, (msg_type, content) in enumerate(XSS, start=1)
        ]
        ws.send(protocol.encode_batch(entries))
        ws.recv(10)

    page.goto(f"{daemon.url}#token={daemon.token}")
    expect(page.get_by_text("the end")).to_be_visible()
    expect(page.get_by_text("<script>document.title='pwned'</script>").first).to_be_visible()
    expect(page.locator("nav li.selected")).to_contain_text("<img src=x")  # a name, as text
    frame = page.locator("iframe")
    expect(frame).to_have_count(1)  # the HTML; the SVG is an <img>, which never runs scripts
    assert frame.get_attribute("sandbox") == "allow-scripts"
    expect(page.locator("img[src^='data:image/svg+xml']")).to_have_count(1)
    inside = page.frame_locator("iframe")
    expect(inside.locator("#inside")).to_have_text("kernel html")  # rendered, in the sandbox
    inside.locator("#jslink").click()
    page.locator("pre", has_text="osc link").click()

    assert page.title() == "nbrelay"
    assert page.evaluate("document.body.dataset.pwned") is None
    assert page.evaluate("document.scripts.length") == 1  # viewer.js only
    assert page.locator("img[onerror], svg[onload], a[href^='javascript']").count() == 0
    assert dialogs == []
    # The only messages from a sandbox are our own frame script's height reports.
    assert messages and all(set(m) == {"nbrelayHeight"} for m in messages), messages


TERMINAL_CASES = [
    ("plain\ntext\n", "plain\ntext\n"),
    ("10%\r20%\r100%\n", "100%\n"),
    ("long line\rshort\n", "shortline\n"),  # \r overwrites, as a terminal does
    ("abc\b\bX\n", "aXc\n"),
    ("progress 50%\x1b[K\rdone\x1b[K\n", "done\n"),
    ("bar 1\nbar 2\x1b[A\rBAR 1\n", "BAR 1\nbar 2"),
    (
        "\x1b]8;;javascript:alert(1)\x1b\\link\x1b]8;;\x1b\\ and \x1b]0;title\x07text\n",
        "link and text\n",
    ),
    ("split \x1b[3", "split "),  # an escape cut by a flush waits for its end
]


@pytest.mark.parametrize("written, shown", TERMINAL_CASES)
def test_terminal_model(daemon: Daemon, page: Page, written: str, shown: str) -> None:
    """Streams behave as in a terminal: \\r and \\b overwrite, erase and cursor-up work, OSC
    sequences (links, titles) leave only their text."""
    page.goto(daemon.url)
    text = page.evaluate(
        """async (written) => {
            const { Terminal } = await import("./static/terminal.js");
            const t = new Terminal();
            t.write(written);
            return t.text();
        }""",
        written,
    )
    assert text == shown


def test_terminal_colours(daemon: Daemon, page: Page) -> None:
    """16, 256 and 24-bit colours, bold and underline become styles, in pieces or whole."""
    page.goto(daemon.url)
    styles = page.evaluate(
        """async () => {
            const { Terminal } = await import("./static/terminal.js");
            const t = new Terminal();
            const parts = ["\\x1b[1;31mred", " bold\\x1b[0m \\x1b[38;5;", "208morange\\x1b[0m ",
                           "\\x1b[4;38;2;10;20;30mrgb\\x1b[0m"];
            for (const part of parts) t.write(part);
            return t.lines[0].map((s) => [s.text, JSON.stringify(s.style)]);
        }"""
    )
    assert styles == [
        ["red bold", '{"bold":true,"fg":{"name":"red"}}'],
        [" ", "{}"],
        ["orange", '{"fg":{"rgb":[255,135,0]}}'],
        [" ", "{}"],
        ["rgb", '{"underline":true,"fg":{"rgb":[10,20,30]}}'],
    ]


def test_errors_progress_bars_clears_and_updates_render_as_in_jupyter(
    daemon: Daemon, kernel: Kernel, page: Page
) -> None:
    """A traceback keeps its colours and names the exception; a \\r progress bar ends as one
    line; clear_output(wait=True) and update_display_data replace what they should."""
    page.goto(f"{daemon.url}#token={daemon.token}")
    kernel.run("for i in range(0, 101, 10): print(f'\\rtraining {i:3d}%', end='')\nprint()")
    kernel.run(
        "from IPython.display import clear_output, display, update_display\n"
        "h = display('version 1', display_id=True)\n"
        "update_display('version 2', display_id=h.display_id)\n"
        "print('before clear')\nclear_output(wait=True)\nprint('after clear')"
    )
    kernel.run("def f():\n    raise KeyError('missing column')\nf()")
    view = page.locator(f'.kernel[data-kernel="{kernel.kernel_id}"]')
    error = view.locator(".error")
    expect(error.locator(".ename")).to_have_text("KeyError: 'missing column'")
    expect(error.locator("span.ansi-fg-red, span.ansi-fg-bright-red").first).to_be_visible()
    bar = view.locator(".cell", has_text="training").locator("pre.stdout .line")
    expect(bar).to_have_count(1)
    expect(bar).to_have_text("training 100%")
    cleared = view.locator(".cell", has_text="update_display").locator(".outputs")
    expect(cleared).to_have_text("after clear")  # the display and the first print are gone
    kernel.run(
        "h2 = display('old', display_id='shared')\nprint('between')\n"
        "update_display('new', display_id='shared')"
    )
    updated = view.locator(".cell", has_text="between").locator(".display")
    expect(updated).to_have_text("'new'")


def test_reload_mid_stream_shows_each_line_once(daemon: Daemon, kernel: Kernel, page: Page) -> None:
    """Reloading the page while a cell prints gives the same transcript, nothing doubled."""
    page.goto(f"{daemon.url}#token={daemon.token}")
    expect(page.locator("#connection")).to_have_text("live")

    code = "import time\nfor i in range(300):\n    print(f'row {i}', flush=True); time.sleep(0.005)"
    running = kernel.kc.execute(code)  # the kernel works while the page reloads
    expect(page.get_by_text("row 50", exact=True)).to_be_visible()
    page.reload()
    kernel.collect(running)
    lines = page.locator(".cell", has_text="row 0").locator("pre.stdout .line")
    expect(lines).to_have_count(300)
    assert lines.all_inner_texts() == [f"row {i}" for i in range(300)]


def test_follow_search_and_download(daemon: Daemon, kernel: Kernel, page: Page) -> None:
    """The page follows new output until scrolled up, then offers a jump; search finds text;
    the transcript downloads as text."""
    page.set_viewport_size({"width": 800, "height": 400})
    page.goto(f"{daemon.url}#token={daemon.token}")
    kernel.run_ok("for i in range(200): print(f'line {i}')")
    expect(page.get_by_text("line 199", exact=True)).to_be_in_viewport()
    page.locator("#outputs").evaluate("el => el.scrollTo(0, 0)")
    expect(page.locator("#jump")).to_be_visible()
    page.locator("#jump").click()
    expect(page.get_by_text("line 199", exact=True)).to_be_in_viewport()
    page.locator("#search input").fill("line 42")
    page.locator("#search input").press("Enter")
    expect(page.locator(".hit")).to_have_text("line 42")
    expect(page.locator("#hits")).to_have_text("1 of 1")
    with page.expect_download() as download:
        page.locator("#download").click()
    text = Path(download.value.path()).read_text()
    assert "line 0\nline 1\n" in text and "line 199" in text
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator(".cell", has_text="line 199").get_by_role("button", name="copy output").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("line 0\nline 1\n") and copied.rstrip().endswith("line 199")


def test_kernel_list_shows_state_and_selection(
    daemon: Daemon, kernel_factory: Any, page: Page
) -> None:
    """Each kernel is listed with its notebook, host and state; the URL names the selection;
    a kernel that went away is shown as disconnected, one that shut down as exited, one that
    unloaded the extension as unloaded."""
    first, second = kernel_factory(), kernel_factory()
    third = kernel_factory(JPY_SESSION_NAME="side.ipynb")
    for k in (first, second, third):
        k.run_ok("%load_ext nbrelay")
    page.goto(f"{daemon.url}?kernel={first.kernel_id}#token={daemon.token}")
    items = page.locator("nav li")
    expect(items).to_have_count(3)
    third.run_ok("%unload_ext nbrelay")
    expect(page.locator("nav li:has-text('side.ipynb') .badge")).to_have_text("unloaded")
    expect(page.locator("nav li.selected")).to_contain_text("analysis.ipynb")
    expect(page.locator("nav li.selected .badge")).to_have_text("idle")
    page.locator("nav li:not(.selected):has-text('analysis') button").click()
    expect(page).to_have_url(re.compile(f"kernel={second.kernel_id}"))
    second.shutdown()
    expect(page.locator("nav li.selected .badge")).to_have_text("disconnected")
    first.shutdown(now=False)
    expect(page.locator("nav li:not(.selected):has-text('analysis') .badge")).to_have_text("exited")


def test_viewer_under_a_path_prefix(tmp_path: Path, page: Page) -> None:
    """Served under --base-url, the page, its assets, the API and the WebSocket all work."""
    daemon = Daemon(tmp_path).start("--base-url", "/user/alice/proxy/8765/")
    kernel = Kernel(daemon.runtime_dir)
    try:
        assert daemon.url.endswith("/user/alice/proxy/8765/")
        page.goto(f"{daemon.url}#token={daemon.token}")
        kernel.run_ok("%load_ext nbrelay")
        kernel.run_ok("print('behind a prefix')")
        expect(page.get_by_text("behind a prefix", exact=True)).to_be_visible()
        expect(page.locator("#connection")).to_have_text("live")
    finally:
        kernel.shutdown()
        daemon.stop()


def test_rich_outputs(daemon: Daemon, kernel: Kernel, page: Page) -> None:
    """PNG images, markdown (rendered, sandboxed), JSON and plain text fallbacks show."""
    page.goto(f"{daemon.url}#token={daemon.token}")
    png = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
        "rkJggg=="
    )
    kernel.run_ok(
        "from IPython.display import Image, Markdown, JSON, display\nimport base64\n"
        f"display(Image(data=base64.b64decode('{png}'), format='png'))\n"
        "display(Markdown('# Results\\n\\n**bold** and `code`'))\n"
        "display(JSON({'answer': 42}))\n"
        "class Thing:\n    def __repr__(self): return 'a plain thing'\nThing()"
    )
    view = page.locator(f'.kernel[data-kernel="{kernel.kernel_id}"]')
    expect(view.locator(f"img[src='data:image/png;base64,{png}']")).to_have_count(1)
    markdown = page.frame_locator("iframe.html")
    expect(markdown.locator("h1")).to_have_text("Results")
    expect(markdown.locator("strong")).to_have_text("bold")
    expect(view.locator("pre.json")).to_contain_text('"answer": 42')
    expect(view.get_by_text("Out[2]:")).to_be_visible()
    expect(view.get_by_text("a plain thing", exact=True)).to_be_visible()


def send_lines(ws: Any, first: int, last: int) -> None:
    """Messages ``first``..``last`` of an ingest connection, each one line ``line {n}``."""
    for start in range(first, last + 1, 2000):
        numbers = range(start, min(start + 2000, last + 1))
        ws.send(stream_batch(numbers, lambda n: f"line {n}\n"))
        assert json.loads(ws.recv(10 * FACTOR))["acked"] == numbers[-1]


def test_a_followed_view_stays_bounded_and_loads_earlier_output(daemon: Daemon, page: Page) -> None:
    """A page left open on a chatty kernel does not keep every record: while following, the
    view starts over from its latest output, and "load earlier output" brings back, without
    a hole, what came before."""
    kept = 20_000  # static/viewer.js KEPT
    with daemon.ingest(protocol.Hello("chatty", "chatty-1", None, "h", 1, "t")) as ws:
        send_lines(ws, 1, 10)
        page.goto(f"{daemon.url}?kernel=chatty#token={daemon.token}")
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.get_by_text("line 1", exact=True)).to_be_visible()
        expect(page.locator("#earlier")).to_be_hidden()
        last = kept + 500
        send_lines(ws, 11, last)
    expect(page.get_by_text(f"line {last}", exact=True)).to_be_visible()
    expect(page.locator("#earlier")).to_be_visible()
    shown = page.locator(".cell pre.stdout .line")
    expect(page.get_by_text("line 1", exact=True)).to_have_count(0)
    first = int(shown.first.inner_text().split()[1])
    assert shown.count() == last - first + 1 < kept  # every line from there on, and no more

    page.locator("#earlier").click()
    expect(page.get_by_text(f"line {first - 1}", exact=True)).to_be_visible()
    expect(page.get_by_text(f"line {last}", exact=True)).to_have_count(1)


def test_earlier_output_arriving_after_a_switch_leaves_the_other_kernel_shown(
    daemon: Daemon, page: Page
) -> None:
    """A click on "load earlier output", then another kernel opened before the answer came:
    the answer is dropped, not drawn in place of the kernel now selected."""
    for kernel_id, count in (("long", 1500), ("short", 3)):
        with daemon.ingest(protocol.Hello(kernel_id, f"{kernel_id}-1", None, "h", 1, "t")) as ws:
            send_lines(ws, 1, count)
    page.goto(f"{daemon.url}?kernel=long#token={daemon.token}")
    expect(page.locator("#earlier")).to_be_visible()

    def earlier(url: str) -> bool:
        return "before=" in url and f"before={2**53 - 1}" not in url  # not a kernel's opening

    held: list[Any] = []
    page.route(earlier, lambda route: held.append(route))
    with page.expect_request(lambda request: earlier(request.url)):
        page.locator("#earlier").click()
    page.locator("nav li:not(.selected) button").click()
    expect(page.locator('.kernel[data-kernel="short"]')).to_be_visible()
    with page.expect_event("requestfinished", lambda request: earlier(request.url)):
        held[0].continue_()  # the answer, read to its end by the page
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => setTimeout(done)))")
    expect(page.locator('#view .kernel[data-kernel="short"] .line')).to_have_text(
        ["line 1", "line 2", "line 3"]
    )


def test_a_cell_run_from_jupyterlab_shows_only_its_own_output(
    daemon: Daemon, kernel: Kernel, page: Page
) -> None:
    """The hook's record of a cell's id (nbrelay.cell) adds nothing to the page: the cell
    shows its code and its one output, as one run without a cell id does."""
    page.goto(f"{daemon.url}#token={daemon.token}")
    kernel.run_ok("print('run from lab')", cell_id="lab-cell-1")
    kernel.run_ok("print('run elsewhere')")
    view = page.locator(f'.kernel[data-kernel="{kernel.kernel_id}"]')
    for text in ("run from lab", "run elsewhere"):
        cell = view.locator(".cell", has_text=text)
        expect(cell).to_have_count(1)
        expect(cell.locator(".outputs > *")).to_have_count(1)
        expect(cell.locator(".outputs")).to_have_text(text)


def test_the_kernel_list_shows_notebook_names_with_the_path_on_hover(
    daemon: Daemon, kernel: Kernel, page: Page
) -> None:
    """A kernel is listed by its notebook's name, whole; its path shows on hover."""
    page.goto(f"{daemon.url}#token={daemon.token}")
    button = page.locator("nav li button")
    expect(button.locator(".name")).to_have_text("analysis.ipynb")
    expect(button).to_have_attribute("title", "work/analysis.ipynb")


def test_the_page_loads_without_a_failed_request(
    daemon: Daemon, kernel: Kernel, page: Page
) -> None:
    """Every request of the page succeeds (its icon too): no error in the browser's console."""
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.on("console", lambda m: failed.append(m.text) if m.type == "error" else None)
    page.goto(f"{daemon.url}#token={daemon.token}")
    expect(page.locator("#connection")).to_have_text("live")
    icon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href).then(r => r.status)")
    assert icon == 200 and failed == []
