"""The viewer page in a real Chromium, against a real daemon and kernel."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from support import FACTOR, Daemon, Kernel
from websockets.sync.client import connect

from nbrelay import protocol

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


expect.set_options(timeout=20_000 * FACTOR)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page()
    page.set_default_timeout(15_000 * FACTOR)
    yield page
    page.close()


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
    expect(page.locator("nav li.selected")).to_contain_text("work/analysis.ipynb")

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
    auth = {"Authorization": f"Bearer {daemon.token}"}
    with connect(
        daemon.url.replace("http://", "ws://") + "ws/ingest", additional_headers=auth, proxy=None
    ) as ws:
        hostile_name = f'<img src=x onerror="{PWN}">.ipynb'
        ws.send(protocol.Hello("xss-kernel", "xss-session", hostile_name, "h", 1, "t").encode())
        ws.recv(10)
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
