"""Property-based tests against the real daemon: random frames and parameters never crash it,
never touch what is stored, and valid content of any shape comes back exactly."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import HTTP, Daemon
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from nbrelay import protocol

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for all examples, holding one record that nothing may change."""
    d = Daemon(Path(tmp_path_factory.mktemp("fuzz"))).start()
    with ingest(d, "sentinel") as ws:
        ws.send(
            protocol.encode_batch(
                [protocol.encode_output(1, "keep", "stream", None, "t", '{"text":"keep"}')]
            )
        )
        ws.recv(10)
    yield d
    assert d.stop() == 0


def ingest(daemon: Daemon, kernel_id: str) -> Any:
    """An ingest connection past its hello, as a new kernel process."""
    return daemon.ingest(protocol.Hello(kernel_id, uuid.uuid4().hex, None, "h", 1, "t"))


def assert_sentinel_untouched(daemon: Daemon) -> None:
    records = daemon.messages(kernel_id="sentinel")
    assert [(r["msg_id"], r["content"]) for r in records[1:]] == [("keep", {"text": "keep"})]


FRAMES = st.one_of(
    st.binary(max_size=500),
    st.text(max_size=500),
    JSON.map(json.dumps),
    st.lists(
        st.dictionaries(
            st.sampled_from(["n", "msg_id", "msg_type", "parent_msg_id", "time", "content"]),
            JSON,
        ),
        max_size=3,
    ).map(lambda messages: "\n".join([protocol.BATCH, *map(json.dumps, messages)])),
)


@FUZZ
@given(frame=FRAMES)
def test_random_ingest_frames_are_acked_or_refused_cleanly(
    daemon: Daemon, frame: str | bytes
) -> None:
    """Any frame after hello gets an ack or a 1007 close with a reason; never a crash."""
    with ingest(daemon, "fuzz") as ws:
        ws.send(frame)
        try:
            reply = json.loads(ws.recv(10))
            assert reply["type"] == "ack"
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1007 and closed.rcvd.reason
    assert_sentinel_untouched(daemon)


@FUZZ
@given(
    content=st.dictionaries(st.text(), JSON, max_size=6),
    msg_type=st.sampled_from(sorted(protocol.CAPTURED_TYPES)),
)
def test_valid_content_of_any_shape_comes_back_exactly(
    daemon: Daemon, content: dict[str, Any], msg_type: str
) -> None:
    """Whatever JSON a kernel puts in content, the relay returns the same value."""
    msg_id = uuid.uuid4().hex
    with ingest(daemon, "shapes") as ws:
        ws.send(
            protocol.encode_batch(
                [protocol.encode_output(1, msg_id, msg_type, None, "t", json.dumps(content))]
            )
        )
        assert json.loads(ws.recv(10))["acked"] == 1
    last = daemon.messages(kernel_id="shapes")[-1]
    assert (last["msg_id"], last["content"]) == (msg_id, content)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["since", "limit", "kernel_id", "token"]), st.text(max_size=30)
    )
)
def test_random_query_parameters_never_cause_a_500(daemon: Daemon, params: dict[str, str]) -> None:
    """/api/messages answers 200, 400 or 401 with JSON, whatever the parameters."""
    response = HTTP.get(
        daemon.url + "api/messages",
        params=params,
        headers={"Authorization": f"Bearer {daemon.token}"},
    )
    assert response.status_code in (200, 400, 401)
    assert isinstance(response.json(), dict)


@FUZZ
@given(since=st.text(max_size=25) | st.integers(-(2**70), 2**70).map(str))
def test_random_view_parameters_are_served_or_refused(daemon: Daemon, since: str) -> None:
    """/ws/view with any since either replays from it or closes with 1008 and a reason."""
    url = daemon.ws_url("ws/view")
    params = httpx.QueryParams({"since": since, "token": daemon.token})
    with connect(f"{url}?{params}", proxy=None, max_size=None) as ws:
        try:
            data = json.loads(ws.recv(10))
            assert isinstance(data, list) or data["type"] == "caught_up"
        except ConnectionClosed as closed:
            assert (
                closed.rcvd is not None
                and closed.rcvd.code == 1008
                and "since" in closed.rcvd.reason
            )
