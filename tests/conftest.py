from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from playwright.sync_api import Browser, Page, sync_playwright
from support import FACTOR, Daemon, Kernel

# Hypothesis's per-example deadline is a timing assertion: on a loaded 2-core machine a
# first example took 252 ms against its 200 ms and failed a test that checks no time.
settings.register_profile("nbrelay", deadline=None)
settings.load_profile("nbrelay")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A running daemon; stopped (and checked to stop cleanly) afterwards."""
    d = Daemon(tmp_path).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


@pytest.fixture
def kernel_factory(daemon: Daemon) -> Iterator[type[Kernel]]:
    """Start kernels that find ``daemon`` through its runtime file; shut them down afterwards."""
    kernels: list[Kernel] = []

    def start(**env: str) -> Kernel:
        k = Kernel(daemon.runtime_dir, env)
        kernels.append(k)
        return k

    yield start  # type: ignore[misc]
    for k in kernels:
        k.shutdown()


@pytest.fixture
def kernel(kernel_factory: type[Kernel]) -> Kernel:
    """A kernel with nbrelay loaded."""
    k = kernel_factory()
    k.run_ok("%load_ext nbrelay")
    return k


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, one per test process."""
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
