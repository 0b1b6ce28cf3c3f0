"""The HTTP and WebSocket API: tokens, parameters, paging, the page itself."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from support import HTTP, Daemon, stream_batch, wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from nbrelay import protocol


def fill(daemon: Daemon, count: int) -> None:
    """Store ``count`` messages through the ingest socket."""
    with daemon.ingest(protocol.Hello("api-kernel", "api-session", None, "h", 1, "t")) as ws:
        ws.send(stream_batch(range(1, count + 1), "x\n"))
        assert json.loads(ws.recv(10))["acked"] == count


@pytest.mark.parametrize("path", ["api/kernels", "api/messages"])
@pytest.mark.parametrize("token", ["", "wrong"])
def test_http_api_needs_the_token(daemon: Daemon, path: str, token: str) -> None:
    """No token or a wrong one: 401 with a JSON error."""
    response = daemon.get(path, token=token)
    assert response.status_code == 401
    assert "token" in response.json()["error"]


def test_token_in_query_or_header(daemon: Daemon) -> None:
    """The token works as ?token= as well as Authorization: Bearer."""
    response = HTTP.get(daemon.url + "api/kernels", params={"token": daemon.token})
    assert response.status_code == 200
    assert response.json() == {"kernels": []}


@pytest.mark.parametrize("path", ["ws/view", "ws/ingest"])
@pytest.mark.parametrize("query", ["", "?token=wrong"])
def test_websockets_close_with_1008_without_the_token(
    daemon: Daemon, path: str, query: str
) -> None:
    """A WebSocket without the right token is closed with 1008 before anything is sent."""
    url = daemon.ws_url(path + query)
    with connect(url, proxy=None) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize(
    "params, problem",
    [
        ({"since": "-1"}, "since"),
        ({"since": "abc"}, "since"),
        ({"limit": str(10**12)}, "limit"),
        ({"limit": "0"}, "limit"),
    ],
)
def test_bad_parameters_get_400(daemon: Daemon, params: dict[str, str], problem: str) -> None:
    """Unusable parameters are a 400 with a JSON error naming the parameter, never a 500."""
    response = daemon.get("api/messages", **params)
    assert response.status_code == 400
    assert problem in response.json()["error"]


def test_messages_are_paged_in_seq_order(daemon: Daemon) -> None:
    """since/limit page forwards, before/limit backwards; last_seq is the newest stored seq."""
    fill(daemon, 25)
    page = daemon.get("api/messages", since=0, limit=10).json()
    assert [r["seq"] for r in page["messages"]] == list(range(1, 11))
    assert page["last_seq"] == 26  # the start record, then 25 messages
    rest = daemon.get("api/messages", since=20).json()["messages"]
    assert [r["seq"] for r in rest] == list(range(21, 27))
    assert set(rest[0]) == {
        "seq",
        "kernel_id",
        "msg_id",
        "msg_type",
        "parent_msg_id",
        "time",
        "content",
    }
    tail = daemon.get("api/messages", before=26, limit=3).json()["messages"]
    assert [r["seq"] for r in tail] == [23, 24, 25]  # the newest before 26, in order
    between = daemon.get("api/messages", since=2, before=6).json()["messages"]
    assert [r["seq"] for r in between] == [3, 4, 5]
    unknown = daemon.get("api/messages", kernel_id="no-such-kernel").json()
    assert unknown == {"messages": [], "last_seq": 0}


def test_kernels_list(daemon: Daemon) -> None:
    """A kernel that sent output is listed with its seq range; it is disconnected once gone."""
    fill(daemon, 3)
    (kernel,) = daemon.get("api/kernels").json()["kernels"]
    assert kernel["kernel_id"] == "api-kernel"
    assert (kernel["first_seq"], kernel["last_seq"], kernel["records"]) == (1, 4, 4)
    # The daemon learns of the close after fill() returns: under load, not at once.
    wait_for(lambda: daemon.kernel("api-kernel")["connected"] is False, 10, "the disconnect")


def test_a_database_from_before_record_counts_gets_them(tmp_path: Path) -> None:
    """A database whose kernels table has no record count is given one, counted, on start."""
    first = Daemon(tmp_path).start()
    fill(first, 3)
    first.stop()
    with closing(sqlite3.connect(first.db)) as db:
        db.execute("ALTER TABLE kernels DROP COLUMN records")  # as the table was made before
        db.commit()
    again = Daemon(tmp_path).start()
    try:
        (kernel,) = again.get("api/kernels").json()["kernels"]
        assert kernel["records"] == 4  # the start record and 3 outputs
    finally:
        again.stop()


def test_viewer_page_is_served_without_token(daemon: Daemon) -> None:
    """The page and its assets load without a token: they hold no data."""
    page = HTTP.get(daemon.url)
    assert page.status_code == 200 and "viewer.js" in page.text
    assert HTTP.get(daemon.url + "static/viewer.js").status_code == 200
