"""The viewer page in a real Chromium, against a real daemon and kernel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from support import FACTOR, Daemon, Kernel

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
    expect(page.get_by_text("first cell", exact=False)).to_have_count(2)  # code and output, once
    assert page.locator("pre.stdout", has_text="first cell").count() == 1
    last_seq = int(page.locator("body").get_attribute("data-last-seq") or 0)
    assert last_seq == daemon.messages()[-1]["seq"]
