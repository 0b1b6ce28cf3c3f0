"""JupyterLab and JupyterHub: the viewer through a real Jupyter server and jupyter-server-proxy,
under the Jupyter server's own URL and login, with no tunnel and no nbrelay token in sight."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from support import JUPYTER_TOKEN, Daemon, JupyterServer, Kernel, wait_for
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """One Jupyter server for the tests that do not care what ran on it before; the first
    visit to its proxy starts the daemon that the others then find."""
    server = JupyterServer(tmp_path_factory.mktemp("proxy"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_jupyter(tmp_path: Path) -> Iterator[JupyterServer]:
    """A Jupyter server of the test's own: no daemon yet, no kernel seen before."""
    server = JupyterServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_the_viewer_opens_from_the_launcher_behind_jupyters_login(jupyter: JupyterServer) -> None:
    info = jupyter.get("server-proxy/servers-info").json()
    (entry,) = [s for s in info["server_processes"] if s["name"] == "nbrelay"]
    assert entry["launcher_entry"]["enabled"] and entry["launcher_entry"]["path_info"] == "nbrelay/"
    assert jupyter.get("server-proxy/icon/nbrelay").status_code == 200

    page = jupyter.get("nbrelay/")  # the first visit starts the daemon
    assert page.status_code == 200 and "<title>nbrelay" in page.text
    assert jupyter.get("nbrelay/api/kernels", token=False).status_code in (302, 403)


def test_output_reaches_the_viewer_through_the_jupyter_server(jupyter: JupyterServer) -> None:
    """A kernel finds the daemon the proxy started; the API and the live view work through
    the Jupyter server with only Jupyter's token, and not at all without it."""
    assert jupyter.get("nbrelay/").status_code == 200
    kernel = Kernel(jupyter.runtime_dir)
    try:
        kernel.run_ok("%load_ext nbrelay")
        kernel.run_ok('print("through the proxy")')
        page = wait_for(
            lambda: [
                r
                for r in jupyter.get(f"nbrelay/api/messages?kernel_id={kernel.kernel_id}").json()[
                    "messages"
                ]
                if r["msg_type"] == "stream"
            ],
            30,
            "the output to be stored",
        )
        assert page[-1]["content"]["text"] == "through the proxy\n"
        ws_url = (
            jupyter.url.replace("http://", "ws://")
            + f"nbrelay/ws/view?since=0&kernel_id={kernel.kernel_id}"
        )
        auth = {"Authorization": f"token {JUPYTER_TOKEN}"}
        origin = jupyter.url.rstrip("/")
        with connect(ws_url, additional_headers={**auth, "Origin": origin}, proxy=None) as ws:
            records = json.loads(ws.recv(10))
        assert page[-1] in records
        with pytest.raises(InvalidStatus) as refused:  # no Jupyter login: no view
            connect(ws_url, additional_headers={"Origin": origin}, proxy=None)
        assert refused.value.response.status_code in (302, 403)
    finally:
        kernel.shutdown()


def test_the_viewer_works_in_a_browser_logged_in_to_jupyter(
    jupyter: JupyterServer, page: Page
) -> None:
    """The JupyterHub user's path: logged in to the Jupyter server (its cookie), open
    <server>/nbrelay/ from the launcher; the page lists the kernel and shows its output live,
    with no nbrelay token anywhere in the browser."""
    page.goto(f"{jupyter.url}api/status?token={JUPYTER_TOKEN}")  # Jupyter's login cookie
    assert jupyter.get("nbrelay/").status_code == 200  # the launcher starts the daemon
    kernel = Kernel(jupyter.runtime_dir)
    try:
        kernel.run_ok("%load_ext nbrelay")
        page.goto(f"{jupyter.url}nbrelay/")
        kernel.run_ok('print("seen in the browser")')
        expect(page.locator(".cell").filter(has_text="seen in the browser")).to_have_count(1)
        expect(page.locator("#connection")).to_have_text("live")
        stored = page.evaluate("JSON.stringify(sessionStorage)")
        assert "nbrelay.token" not in stored or json.loads(stored)["nbrelay.token"] == ""
    finally:
        kernel.shutdown()


def test_html_outputs_fit_their_content_through_the_proxy(
    jupyter: JupyterServer, page: Page
) -> None:
    """A tall HTML output gets its full height through the proxy too: its frame's sizing
    script must not need the login cookie that a sandboxed frame does not send."""
    page.goto(f"{jupyter.url}api/status?token={JUPYTER_TOKEN}")
    assert jupyter.get("nbrelay/").status_code == 200
    kernel = Kernel(jupyter.runtime_dir)
    try:
        kernel.run_ok("%load_ext nbrelay")
        page.goto(f"{jupyter.url}nbrelay/")
        kernel.run_ok(
            "from IPython.display import HTML, display\n"
            "display(HTML('<div style=\"height: 700px\">tall</div>'))"
        )
        frame = page.locator("iframe.html")
        expect(frame).to_have_count(1)
        wait_for(lambda: frame.bounding_box()["height"] > 700, 20, "the frame to fit")
    finally:
        kernel.shutdown()


def test_the_proxy_uses_the_daemon_the_user_already_runs(tmp_path: Path) -> None:
    """With the user's own daemon running on the proxy's database (README step 1),
    <server>/nbrelay/ uses it at once, follows it across a restart (new port, new token), and
    while it is stopped says at once, in the page, how to start it."""
    daemon = Daemon(tmp_path)
    daemon.db = tmp_path / "db.sqlite3"  # the database a daemon of the proxy's would use
    daemon.start()
    jupyter = JupyterServer(tmp_path)
    kernel = Kernel(jupyter.runtime_dir)
    try:
        assert jupyter.get("nbrelay/").status_code == 200
        kernel.run_ok("%load_ext nbrelay")
        kernel.run_ok('print("kept by your own daemon")')

        def stored() -> bool:
            page = jupyter.get(f"nbrelay/api/messages?kernel_id={kernel.kernel_id}").json()
            return any(
                r["content"].get("text") == "kept by your own daemon\n" for r in page["messages"]
            )

        wait_for(stored, 30, "the output, through the proxy")
        daemon.stop()
        stopped = jupyter.get("nbrelay/")
        assert stopped.status_code == 503 and "nbrelay serve --detach" in stopped.text
        daemon.token = "another-token-" + "1" * 16
        daemon.start()
        assert jupyter.get("nbrelay/api/kernels").status_code == 200
        wait_for(stored, 30, "the output, after the restart")
    finally:
        kernel.shutdown()
        daemon.stop()
        jupyter.stop()


def test_a_daemon_the_proxy_cannot_start_is_explained_in_the_page(tmp_path: Path) -> None:
    """A daemon the proxy cannot find (its runtime file elsewhere) holds the database: the
    page says at once why nbrelay could not start, instead of a 500 after 30 s."""
    daemon = Daemon(tmp_path)
    daemon.db, daemon.runtime_dir = tmp_path / "db.sqlite3", tmp_path / "elsewhere"
    daemon.start()
    jupyter = JupyterServer(tmp_path)
    try:
        page = jupyter.get("nbrelay/")
        assert page.status_code == 503 and "could not start" in page.text
        assert f"pid {daemon.proc.pid}" in page.text  # the lock names the daemon holding it
    finally:
        jupyter.stop()
        daemon.stop()


def test_the_launcher_tile_shows_the_icon(jupyter: JupyterServer, page: Page) -> None:
    """JupyterLab's launcher shows the nbrelay tile with its icon, loaded."""
    page.goto(f"{jupyter.url}lab?token={JUPYTER_TOKEN}")
    card = page.locator(".jp-LauncherCard", has_text="nbrelay")
    expect(card).to_have_count(1, timeout=60_000)
    icon = card.locator("img")
    expect(icon).to_have_attribute("src", re.compile(r"server-proxy/icon/nbrelay$"))
    wait_for(lambda: icon.evaluate("img => img.complete && img.naturalWidth > 0"), 20, "the icon")


def test_the_first_visit_shows_the_live_kernel_newest_first(
    fresh_jupyter: JupyterServer, page: Page
) -> None:
    """Until the user picks a kernel, the page shows the newest connected one: a live kernel
    that speaks after the page opened goes to the top of the list and is shown, not an exited
    one that was there first."""
    page.goto(f"{fresh_jupyter.url}api/status?token={JUPYTER_TOKEN}")
    assert fresh_jupyter.get("nbrelay/").status_code == 200
    exited = Kernel(fresh_jupyter.runtime_dir, {"JPY_SESSION_NAME": "old.ipynb"})
    exited.run_ok("%load_ext nbrelay")
    exited.run_ok('print("old output")')
    exited.shutdown(now=False)
    page.goto(f"{fresh_jupyter.url}nbrelay/")
    expect(page.locator("nav li.selected")).to_contain_text("old.ipynb")
    live = Kernel(fresh_jupyter.runtime_dir, {"JPY_SESSION_NAME": "live.ipynb"})
    try:
        live.run_ok("%load_ext nbrelay")
        live.run_ok('print("live output")')
        expect(page.locator("nav li").first).to_contain_text("live.ipynb")
        expect(page.locator("nav li.selected")).to_contain_text("live.ipynb")
        expect(page.get_by_text("live output", exact=True)).to_be_visible()
    finally:
        live.shutdown()


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not: nobody may reap an orphan here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _proxied_process(parent: int) -> int | None:
    """The pid of the process jupyter-server-proxy started for nbrelay under ``parent``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"nbrelay.server_proxy" in cmdline:
            return int(stat.parent.name)
    return None


@pytest.mark.parametrize("own_daemon", [False, True], ids=["forwarding", "its-own-daemon"])
def test_the_proxied_process_stops_with_the_jupyter_server(
    tmp_path: Path, own_daemon: bool
) -> None:
    """A Jupyter server killed (or stopped by a second Ctrl-C) leaves jupyter-server-proxy's
    processes behind: the forwarder to the user's daemon stops then too, and the proxy's own
    daemon stops cleanly."""
    daemon = None if own_daemon else Daemon(tmp_path).start()
    jupyter = JupyterServer(tmp_path)
    try:
        assert jupyter.get("nbrelay/").status_code == 200
        child = _proxied_process(jupyter.proc.pid)
        assert child is not None
        jupyter.proc.kill()
        jupyter.proc.wait(30)
        wait_for(lambda: not _running(child), 10, "nbrelay's process to stop")
        if own_daemon:  # a clean stop: it removed its runtime file
            assert not (jupyter.runtime_dir / "nbrelay.json").exists()
    finally:
        jupyter.stop()
        if daemon is not None:
            daemon.stop()
