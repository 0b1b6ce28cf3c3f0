"""Logging a browser in, as Jupyter does: the token URL once, then a cookie; login codes for
a token holder that must not hand the token to a page; links in notebooks without the token."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from support import FACTOR, Daemon, Kernel, nbrelay, stream_text, wait_for
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

expect.set_options(timeout=20_000 * FACTOR)


def _nbrelay_cookies(page: Page) -> list[dict[str, object]]:
    return [dict(c) for c in page.context.cookies() if c["name"].startswith("nbrelay")]


def test_the_token_url_logs_a_browser_in_once_with_a_cookie(
    daemon: Daemon, kernel: Kernel, page: Page
) -> None:
    """Opened once, the token URL leaves an HttpOnly, SameSite=Strict cookie under the base URL
    that is not the token, and the token nowhere in the page; plain links work after that."""
    page.goto(f"{daemon.url}#token={daemon.token}")
    expect(page.locator("#connection")).to_have_text("live")
    (cookie,) = _nbrelay_cookies(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert daemon.token not in str(cookie["value"])
    stored = page.evaluate("JSON.stringify([sessionStorage, localStorage, document.cookie])")
    assert daemon.token not in stored + page.url

    page.goto(f"{daemon.url}?kernel={kernel.kernel_id}")  # a link printed in a notebook
    kernel.run_ok("print('seen through the cookie')")
    expect(page.get_by_text("seen through the cookie", exact=True)).to_be_visible()
    expect(page.locator("#connection")).to_have_text("live")


def test_a_browser_not_logged_in_is_told_how(daemon: Daemon, page: Page) -> None:
    """Without the token or its cookie, the page says how to log in, instead of an error."""
    page.goto(daemon.url)
    expect(page.locator("#login")).to_contain_text("nbrelay status")
    expect(page.locator("#connection")).to_have_text("not logged in")


def test_nbrelay_status_prints_the_login_url(daemon: Daemon) -> None:
    """`nbrelay status` says how to log a browser in; into a pipe, without the token itself."""
    out = nbrelay("status", runtime=daemon.runtime_dir)
    assert out.returncode == 0, out.stderr
    assert f"log a browser in (once): {daemon.url}#token=... (the token is in" in out.stdout
    assert daemon.token not in out.stdout


def test_a_login_code_logs_a_browser_in_once(daemon: Daemon, browser: Browser) -> None:
    """A token holder mints a code; a page opened with #code= gets the cookie, never the
    token; the code works once; a browser's cookie cannot mint codes."""
    minted = httpx.post(
        daemon.url + "api/login-codes", headers={"Authorization": f"Bearer {daemon.token}"}
    )
    assert minted.status_code == 200 and minted.json()["expires_in"] > 0
    code = minted.json()["code"]
    first, second = browser.new_context(), browser.new_context()
    try:
        page = first.new_page()
        page.goto(f"{daemon.url}#code={code}")
        expect(page.locator("#connection")).to_have_text("live")
        assert code not in page.url
        (cookie,) = _nbrelay_cookies(page)
        again = second.new_page()
        again.goto(f"{daemon.url}#code={code}")  # used up
        expect(again.locator("#login")).to_contain_text("nbrelay status")
        with_cookie = {"Cookie": f"{cookie['name']}={cookie['value']}"}
        assert httpx.get(daemon.url + "api/kernels", headers=with_cookie).status_code == 200
        assert httpx.post(daemon.url + "api/login-codes", headers=with_cookie).status_code == 401
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("body", ['{"token": "wrong-token-0123456789"}', '{"code": "x"}', "[]"])
def test_wrong_logins_get_no_cookie(daemon: Daemon, body: str) -> None:
    """A wrong token, an unknown code or a malformed body: 401 and no cookie."""
    answer = httpx.post(daemon.url + "api/login", content=body)
    assert answer.status_code == 401 and "set-cookie" not in answer.headers


def test_the_cookie_opens_the_websocket_from_the_daemons_own_origin_only(daemon: Daemon) -> None:
    """The cookie stands for the token on /ws/view, and the Origin check still applies, to
    the WebSocket and to a login posted from another site."""
    login = httpx.post(daemon.url + "api/login", content=json.dumps({"token": daemon.token}))
    assert login.status_code == 204
    name, _, value = login.headers["set-cookie"].split(";")[0].partition("=")
    headers = {"Cookie": f"{name}={value}", "Origin": daemon.url.rstrip("/")}
    with connect(daemon.ws_url("ws/view?since=0"), additional_headers=headers, proxy=None) as ws:
        assert json.loads(ws.recv(10 * FACTOR))["type"] == "caught_up"
    with pytest.raises(InvalidStatus) as refused:
        connect(
            daemon.ws_url("ws/view?since=0"),
            additional_headers={**headers, "Origin": "http://evil.example"},
            proxy=None,
        )
    assert refused.value.response.status_code == 403
    foreign = httpx.post(
        daemon.url + "api/login",
        content=json.dumps({"token": daemon.token}),
        headers={"Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers


def test_links_printed_in_the_notebook_carry_no_token(
    daemon: Daemon, kernel_factory: type[Kernel]
) -> None:
    """`%load_ext nbrelay` and `%nbrelay` print the viewer's link to this kernel, which the
    notebook saves: without the token."""
    kernel = kernel_factory()
    loaded = stream_text(kernel.run_ok("%load_ext nbrelay"))

    def connected() -> str:
        text = stream_text(kernel.run_ok("%nbrelay"))
        return text if "viewer:" in text else ""

    magic = wait_for(connected, 10, "%nbrelay to show the viewer")
    link = f"{daemon.url}?kernel={kernel.kernel_id}"
    assert f"viewer: {link}\n" in loaded and f"viewer: {link}\n" in magic
    assert daemon.token not in loaded + magic


def test_login_codes_are_bounded(daemon: Daemon) -> None:
    """At most 64 login codes are outstanding: minting more drops the oldest."""
    auth = {"Authorization": f"Bearer {daemon.token}"}
    codes = [
        httpx.post(daemon.url + "api/login-codes", headers=auth).json()["code"] for _ in range(65)
    ]
    log_in = [httpx.post(daemon.url + "api/login", json={"code": c}) for c in codes[:2]]
    assert [r.status_code for r in log_in] == [401, 204]
