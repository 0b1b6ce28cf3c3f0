"""Secure by default, checked against the real daemon on loopback: tokens, Host and Origin,
headers, the runtime file, limits and malformed input."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import FACTOR, HTTP, Daemon, Kernel, nbrelay, stream_batch, wait_for
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from nbrelay import protocol
from nbrelay.runtime import Endpoint


def raw_http(daemon: Daemon, request: bytes) -> bytes:
    """Send bytes as they are (no client library would send a broken Host) and read the answer."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10 * FACTOR) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def hello(kernel_id: str = "sec-kernel", session: str = "sec-session") -> protocol.Hello:
    return protocol.Hello(kernel_id, session, None, "h", 1, "t")


@pytest.fixture
def ingest(daemon: Daemon) -> Iterator[Any]:
    """An open, greeted ingest connection."""
    with daemon.ingest(hello()) as ws:
        yield ws


# -- tokens -------------------------------------------------------------------------------


def test_token_never_reaches_logs_error_pages_or_records(daemon: Daemon, ingest: Any) -> None:
    """Whichever way the token travels, also through a failing request, it is not written down."""
    ingest.send(stream_batch([1]))
    ingest.recv(10)
    token = daemon.token
    cookies = {"Cookie": f"token={token}; nbrelay={token}"}
    assert (
        HTTP.get(daemon.url + "api/kernels", params={"token": token}, headers=cookies).status_code
        == 200
    )
    assert daemon.get("api/messages", since=0).status_code == 200
    assert daemon.get("api/messages", token="guessed-token-123").status_code == 401
    with connect(daemon.ws_url(f"ws/view?token={token}"), proxy=None) as ws:
        ws.recv(10)
    with sqlite3.connect(daemon.db) as db:  # make the next request fail inside the daemon
        db.execute("DROP TABLE kernels")
    db.close()
    failed = HTTP.get(daemon.url + f"api/kernels?token={token}", headers=cookies)
    assert failed.status_code == 500
    assert token not in failed.text
    assert daemon.stop() == 0
    log = daemon.log()
    assert "Traceback" in log and "no such table: kernels" in log  # the failure was logged...
    assert token not in log and "guessed-token-123" not in log  # ...without any token
    assert "token=[redacted]" in log
    stored = b"".join(p.read_bytes() for p in daemon.workdir.glob("nbrelay.sqlite3*"))
    assert token.encode() not in stored


def encoded(token: str, every: bool = False) -> str:
    """``token`` with its fifth character (or all of them) percent-encoded: what a URL may
    carry, and what the daemon decodes to the same token."""
    chars = token if every else token[4]
    return "".join(f"%{ord(c):02X}" for c in chars) + ("" if every else token[5:])


def test_debug_log_holds_no_token_in_any_form(tmp_path: Path) -> None:
    """At debug level, where websockets logs every request line and header, neither the token
    nor a wrong one is written down: not as a bearer, a cookie or another header, a plain,
    percent-encoded or percent-named ?token=, over HTTP or WebSocket, nor quoted in the
    traceback of a handshake that websockets refuses."""
    daemon = Daemon(tmp_path).start("--log-level", "debug")
    wrong = "wrong-guess-" + uuid.uuid4().hex
    try:
        for token in (daemon.token, wrong):
            headers = {
                "Authorization": f"Bearer {token}",
                "Cookie": f'token={token}; q="{token}"',
                "X-Api-Token": token,  # not nbrelay's, but a client may send it
            }
            queries = [f"token={token}", f"token={encoded(token)}", f"tok%65n={token}"]
            queries.append(f"token={encoded(token, every=True)}")
            for query in queries:
                HTTP.get(f"{daemon.url}api/kernels?{query}", headers=headers)
                for path in ("ws/view", "ws/ingest"):  # logged at the handshake
                    url = daemon.ws_url(f"{path}?{query}")
                    with connect(url, additional_headers=headers, proxy=None):
                        pass
            # A handshake websockets refuses, quoting the header's value in its traceback.
            upgrade = (
                "GET /ws/view HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            )
            raw_http(daemon, f"{upgrade}Authorization: Bearer {token}\x01\r\n\r\n".encode())
    finally:
        assert daemon.stop() == 0
    log = daemon.log()
    for token in (daemon.token, wrong):
        for form in (token, token[5:], encoded(token, every=True)):
            assert form.lower() not in log.lower(), form
    assert "< authorization: [redacted]" in log  # the headers were logged, at debug level


def test_debug_log_holds_no_kernel_output(tmp_path: Path) -> None:
    """At debug level websockets logs every frame it sends and receives: a kernel's output,
    secrets included, would reach the log, on the way in and out to a viewer."""
    daemon = Daemon(tmp_path).start("--log-level", "debug")
    secret = "pw" + uuid.uuid4().hex[:8]  # websockets logs a long frame's ends only
    try:
        hello = protocol.Hello("k-log", "k-log-1", "log.ipynb", "host", 1, "t")
        with daemon.ingest(hello) as ws:
            ws.send(stream_batch([1], secret))
            wait_for(lambda: json.loads(ws.recv(10 * FACTOR))["acked"] == 1, 10, "the ack")
        with daemon.viewer(kernel_id="k-log") as view:
            view.until(lambda v: any(r["content"].get("text") == secret for r in v.records))
    finally:
        assert daemon.stop() == 0
    log = daemon.log()
    assert "< GET /ws/view" in log  # websockets logged at debug level
    assert secret not in log


def test_a_token_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """`--token` would be in every user's `ps`, and the detached daemon's for its life: it is
    refused with a pointer to --token-file and NBRELAY_TOKEN, and nothing starts."""
    runtime = tmp_path / "runtime"
    args = ("--port", "0", "--db", str(tmp_path / "db.sqlite3"), "--token", "x" * 32)
    try:
        for detach in ((), ("--detach",)):
            out = nbrelay("serve", *detach, *args, runtime=runtime)
            assert out.returncode == 1, out.stdout
            assert out.stderr.startswith("nbrelay: error: --token would show the token to every")
            assert "--token-file FILE" in out.stderr and "NBRELAY_TOKEN" in out.stderr
            assert not (runtime / "nbrelay.json").exists()
    finally:
        if (runtime / "nbrelay.json").exists():  # before the fix, a detached daemon started
            nbrelay("stop", runtime=runtime)


@pytest.mark.parametrize("how", ["--token-file", "NBRELAY_TOKEN_FILE", "NBRELAY_TOKEN"])
def test_detached_daemon_keeps_the_token_out_of_argv_and_its_log(tmp_path: Path, how: str) -> None:
    """`serve --detach` hands the token on in the environment or as a file, never in argv: no
    other user sees it in `ps` or in the daemon's environment, and its log (with debug lines
    of an authenticated viewer) holds no token; the terminal gets the whole viewer URL."""
    runtime, db = tmp_path / "runtime", tmp_path / "data" / "nbrelay.sqlite3"
    token = "file-token-" + uuid.uuid4().hex
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    args = ["--port", "0", "--db", str(db), "--log-level", "debug"]
    env = {"NBRELAY_TOKEN": token}
    if how == "--token-file":
        args += ["--token-file", str(token_file)]
        env = {}
    elif how == "NBRELAY_TOKEN_FILE":
        env = {"NBRELAY_TOKEN_FILE": str(token_file)}
    started = nbrelay("serve", "--detach", *args, runtime=runtime, env=env)
    assert started.returncode == 0, started.stderr
    try:
        assert f"#token={token}\n" in started.stdout  # the whole URL, on the user's terminal
        info = json.loads((runtime / "nbrelay.json").read_text())
        assert info["token"] == token
        viewer = Endpoint(info["url"], token).ws_url(f"ws/view?token={token}")
        with connect(viewer, proxy=None) as ws:
            ws.recv(10 * FACTOR)
        if os.geteuid() == 0:  # as another user, as CI can
            other = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
            seen = subprocess.run(
                [*other, "ps", "-ww", "-eo", "args"], capture_output=True, text=True
            )
            assert f"serve --port 0 --db {db}" in seen.stdout  # the daemon is listed...
            assert token not in seen.stdout  # ...without the token
            environ = subprocess.run([*other, "cat", f"/proc/{info['pid']}/environ"])
            assert environ.returncode != 0  # the environment is the owner's alone
        assert token.encode() not in Path(f"/proc/{info['pid']}/cmdline").read_bytes()
    finally:
        assert nbrelay("stop", runtime=runtime).returncode == 0
    log = db.with_name(db.name + ".log").read_text()
    assert "< GET /ws/view?token=[redacted]" in log and "#token=..." in log
    assert token not in log


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """A token file that other users can read has already given the token away: refused."""
    token_file = tmp_path / "token"
    token_file.write_text("t" * 32)
    token_file.chmod(0o644)
    db = str(tmp_path / "db.sqlite3")
    out = nbrelay("--token-file", str(token_file), "--port", "0", "--db", db, runtime=tmp_path)
    assert out.returncode == 1
    assert out.stderr == (
        f"nbrelay: error: the token file {token_file} is open to other users (mode 644): "
        f"make it yours alone (chmod 600 {token_file})\n"
    )


def test_unsafe_no_token_only_on_loopback(tmp_path: Path) -> None:
    """Without a token the daemon refuses a non-loopback address, and says why."""
    db = str(tmp_path / "db.sqlite3")
    out = nbrelay(
        "--host", "0.0.0.0", "--unsafe-no-token", "--port", "0", "--db", db, runtime=tmp_path
    )
    assert out.returncode == 1
    assert "refusing to listen on 0.0.0.0 without a token" in out.stderr


def test_unsafe_no_token_on_loopback_works_and_warns(tmp_path: Path) -> None:
    """The loudly named flag turns auth off on loopback, with a warning in the log."""
    daemon = Daemon(tmp_path).start("--unsafe-no-token")
    try:
        assert daemon.get("api/kernels", token="").status_code == 200
        assert "WITHOUT A TOKEN" in daemon.log()
        assert json.loads(daemon.runtime_file.read_text())["token"] == ""
    finally:
        daemon.stop()


# -- Host and Origin ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.nip.io", "localhost6", "10.0.0.1:80"])
@pytest.mark.parametrize("path", ["", "static/viewer.js", "api/kernels"])
def test_foreign_host_is_refused(daemon: Daemon, host: str, path: str) -> None:
    """DNS rebinding: a non-loopback Host gets 403 on every path, token or not."""
    response = HTTP.get(
        daemon.url + path, headers={"Host": host, "Authorization": f"Bearer {daemon.token}"}
    )
    assert response.status_code == 403
    assert "Host" in response.json()["error"]


def test_foreign_host_websocket_is_refused(daemon: Daemon) -> None:
    """The same goes for a WebSocket upgrade."""
    answer = raw_http(
        daemon,
        f"GET /ws/view?token={daemon.token} HTTP/1.1\r\nHost: evil.example\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 403")


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "127.1.2.3"]
)
def test_loopback_hosts_pass(daemon: Daemon, host: str) -> None:
    """Loopback names and addresses, IPv6 included, are the daemon's own."""
    headers = {"Host": host.format(port=daemon.port), "Authorization": f"Bearer {daemon.token}"}
    response = HTTP.get(daemon.url + "api/kernels", headers=headers)
    assert response.status_code == 200


def test_allowed_host_passes(tmp_path: Path) -> None:
    """--allow-host admits a proxy's public name, and only that."""
    daemon = Daemon(tmp_path).start("--allow-host", "hub.example.com")
    try:
        auth = {"Authorization": f"Bearer {daemon.token}"}
        ok = HTTP.get(daemon.url + "api/kernels", headers={"Host": "hub.example.com", **auth})
        other = HTTP.get(daemon.url + "api/kernels", headers={"Host": "other.example.com", **auth})
        assert (ok.status_code, other.status_code) == (200, 403)
    finally:
        daemon.stop()


@pytest.mark.parametrize("host", [b"", b"a:b:c", b"x" * 8192, b"[::1", b"127.0.0.1:port"])
def test_malformed_host_gets_400_and_the_daemon_survives(daemon: Daemon, host: bytes) -> None:
    """A broken Host header is a 400, and the next request is served as usual."""
    answer = raw_http(
        daemon, b"GET /api/kernels HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400")
    assert daemon.get("api/kernels").status_code == 200


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1", "https://127.0.0.1:{port}"]
)
@pytest.mark.parametrize("path", ["ws/view", "ws/ingest"])
def test_cross_origin_websocket_is_refused_even_with_the_token(
    daemon: Daemon, origin: str, path: str
) -> None:
    """Cross-site WebSocket hijacking: another origin gets 403 whatever token it holds."""
    headers = {"Origin": origin.format(port=daemon.port), "Authorization": f"Bearer {daemon.token}"}
    with pytest.raises(InvalidStatus) as refused:
        connect(daemon.ws_url(path), additional_headers=headers, proxy=None).close()
    assert refused.value.response.status_code == 403


def test_own_and_allowed_origins_pass(tmp_path: Path) -> None:
    """The daemon's own origin, exactly, and --allow-origin entries are accepted."""
    daemon = Daemon(tmp_path).start("--allow-origin", "https://hub.example.com")
    try:
        for origin in (f"http://127.0.0.1:{daemon.port}", "https://hub.example.com"):
            with connect(
                daemon.ws_url(f"ws/view?token={daemon.token}"),
                origin=origin,
                proxy=None,  # type: ignore[arg-type]
            ) as ws:
                assert json.loads(ws.recv(10))["type"] == "caught_up"
    finally:
        daemon.stop()


def test_page_headers(daemon: Daemon) -> None:
    """The page forbids foreign scripts and plugins, referrers and sniffing."""
    headers = HTTP.get(daemon.url).headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp and "default-src 'none'" in csp
    assert "http" not in csp  # no foreign origin anywhere
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"


# -- the runtime file ------------------------------------------------------------------------


def test_runtime_file_and_database_are_private_even_under_umask_000(tmp_path: Path) -> None:
    """With umask 000 the runtime folder and a new database's folder are still 0700, and the
    runtime file and the database files (everything the kernels printed) 0600."""
    runtime = tmp_path / "fresh" / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; os.umask(0); from nbrelay.cli import main; sys.exit(main())",
            "--port",
            "0",
            "--db",
            str(tmp_path / "data" / "db.sqlite3"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        path = wait_for(
            lambda: runtime / "nbrelay.json" if (runtime / "nbrelay.json").exists() else None,
            15,
            "the runtime file",
        )
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
        data = tmp_path / "data"
        wait_for(lambda: (data / "db.sqlite3-wal").exists(), 15, "the database to open")
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for name in ("db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm", "db.sqlite3.lock"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    finally:
        proc.terminate()
        proc.wait(15)


def test_runtime_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    """A runtime folder others can write to could get a planted file: the daemon will not use it."""
    runtime = tmp_path / "shared"
    runtime.mkdir()
    runtime.chmod(0o777)
    out = nbrelay("--port", "0", "--db", str(tmp_path / "db.sqlite3"), runtime=runtime)
    assert out.returncode == 1
    assert "open to other users (mode 777)" in out.stderr and "chmod 700" in out.stderr


def test_kernels_ignore_a_runtime_file_others_could_have_written(tmp_path: Path) -> None:
    """A runtime file readable by others is not trusted: the hook says so and sends nothing."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    planted = runtime / "nbrelay.json"
    planted.write_text(json.dumps({"url": "http://127.0.0.1:9/", "token": "x", "pid": 1}))
    planted.chmod(0o644)
    kernel = Kernel(runtime)
    try:
        kernel.run_ok("%load_ext nbrelay")
        wait_for(
            lambda: "open to other users (mode 644)" in kernel.log_path.read_text(),
            15,
            "the hook to refuse the file",
        )
    finally:
        kernel.shutdown()


# -- limits and malformed input ---------------------------------------------------------------

MALFORMED = [
    ("not json", "{nope", 1007),
    ("invalid UTF-8", b"\xff\xfe\xfd", 1007),
    ("not an object", "[1, 2]", 1007),
    ("no messages", '{"type": "batch"}', 1007),
    ("wrong type", '{"type": "batch"}\n{"n": "1"}', 1007),
    ("a message over two lines", '{"type": "batch"}\n{"n": 1,\n"msg_id": "m"}', 1007),
    (
        "unknown msg_type",
        protocol.encode_batch([protocol.encode_output(1, "m", "shutdown_reply", None, "t", "{}")]),
        1007,
    ),
    (
        "negative n",
        protocol.encode_batch([protocol.encode_output(-1, "m", "stream", None, "t", "{}")]),
        1007,
    ),
    (
        "huge n",
        protocol.encode_batch([protocol.encode_output(2**70, "m", "stream", None, "t", "{}")]),
        1007,
    ),
    (
        "NaN",
        protocol.encode_batch([protocol.encode_output(1, "m", "stream", None, "t", '{"x": NaN}')]),
        1007,
    ),
    (
        "lone surrogate",
        protocol.encode_batch(
            [protocol.encode_output(1, "m", "stream", None, "t", '{"text": "\\udc00"}')]
        ),
        1007,
    ),
    ("deep nesting", "[" * 50_000 + "]" * 50_000, 1007),
    *[
        (
            f"msg_type {kind}",
            protocol.encode_batch(
                [protocol.encode_output(1, "m", "stream", None, "t", "{}")]
            ).replace('"stream"', value),
            1007,
        )
        for kind, value in [("a list", '["stream"]'), ("an object", '{"a": 1}'), ("a number", "7")]
    ],
]


@pytest.mark.parametrize("name, frame, code", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames_close_only_their_connection(
    daemon: Daemon, ingest: Any, name: str, frame: str | bytes, code: int
) -> None:
    """A bad frame closes its connection with a code and a reason; stored data and other
    kernels are untouched, and the daemon keeps serving."""
    with daemon.ingest(hello("other-kernel", "other-session")) as other:
        ingest.send(stream_batch([1], "kept"))
        assert json.loads(ingest.recv(10))["acked"] == 1
        before = daemon.messages()
        ingest.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            ingest.recv(10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        assert closed.value.rcvd.reason
        other.send(stream_batch([1], "still fine"))
        assert json.loads(other.recv(10))["acked"] == 1
    after = daemon.messages()
    assert after[: len(before)] == before
    assert [r["content"]["text"] for r in after[len(before) :]] == ["still fine"]
    assert "closing ingest connection" in daemon.log()


def test_a_hook_of_another_protocol_version_is_refused_saying_so(daemon: Daemon) -> None:
    """The kernel's nbrelay may be another version than the daemon's: a hello in another
    ingest protocol closes with 1008 and a reason naming both versions; nothing is stored."""
    other = protocol.INGEST_PROTOCOL + 1
    with daemon.ingest() as ws:
        ws.send(json.dumps(json.loads(hello("old-kernel").encode()) | {"protocol": other}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert f"ingest protocol {other}, daemon {protocol.INGEST_PROTOCOL}" in closed.value.rcvd.reason
    assert daemon.get("api/kernels").json()["kernels"] == []


def test_hooks_of_protocol_1_and_2_are_both_taken(daemon: Daemon) -> None:
    """A kernel whose nbrelay is older (ingest protocol 1) is still welcomed and stored; one
    of the current protocol (2) can also send the hook's own nbrelay.cell messages."""
    old, new = hello("old-kernel", "old-session"), hello("new-kernel", "new-session")
    cell = json.dumps({"cell_id": "cell-1"})
    with daemon.ingest() as ws_old, daemon.ingest() as ws_new:
        ws_old.send(json.dumps(json.loads(old.encode()) | {"protocol": 1}))
        ws_new.send(new.encode())
        for ws in (ws_old, ws_new):
            assert json.loads(ws.recv(10))["type"] == "welcome"
        ws_old.send(stream_batch([1], "from an old hook"))
        entry = protocol.encode_output(1, "c1", "nbrelay.cell", "request-1", "t", cell)
        ws_new.send(protocol.encode_batch([entry]))
        for ws in (ws_old, ws_new):
            assert json.loads(ws.recv(10)) == {"type": "ack", "acked": 1}
    stored = {r["kernel_id"]: r for r in daemon.messages() if r["msg_type"] != "nbrelay.start"}
    assert stored["old-kernel"]["content"]["text"] == "from an old hook"
    assert stored["new-kernel"]["msg_type"] == "nbrelay.cell"
    assert stored["new-kernel"]["parent_msg_id"] == "request-1"
    assert stored["new-kernel"]["content"] == {"cell_id": "cell-1"}


def test_oversized_frame_is_refused_with_1009(tmp_path: Path) -> None:
    """A frame above --max-frame-bytes closes the connection with 1009; the daemon goes on."""
    daemon = Daemon(tmp_path).start("--max-frame-bytes", "128KiB", "--max-output-bytes", "64KiB")
    try:
        with daemon.ingest() as ws:
            ws.send(hello().encode())
            welcome = protocol.Welcome.decode(ws.recv(10))
            assert (welcome.max_frame_bytes, welcome.max_output_bytes) == (128 * 1024, 64 * 1024)
            ws.send(stream_batch([1], "z" * 200_000))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert daemon.get("api/kernels").status_code == 200
        with daemon.ingest(hello()) as ws:
            ws.send(stream_batch([1], "z" * 100_000))  # fits the frame, not the output limit
            assert json.loads(ws.recv(10))["acked"] == 1
        (stored,) = [r for r in daemon.messages() if r["msg_type"] == "stream"]
        assert "bytes cut]" in stored["content"]["text"]
        assert stored["content"]["nbrelay_truncated"]["original_bytes"] > 100_000
    finally:
        daemon.stop()


def test_connection_limits(tmp_path: Path) -> None:
    """Past --max-viewers / --max-kernels, new connections are closed with 1013 and a reason."""
    daemon = Daemon(tmp_path).start("--max-viewers", "2", "--max-kernels", "1")
    try:
        view = daemon.ws_url(f"ws/view?token={daemon.token}")
        with connect(view, proxy=None) as a, connect(view, proxy=None) as b:
            a.recv(10), b.recv(10)
            with connect(view, proxy=None) as c, pytest.raises(ConnectionClosed) as closed:
                c.recv(10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            assert "too many viewer connections" in closed.value.rcvd.reason
        with daemon.ingest(hello()):
            with daemon.ingest() as k2, pytest.raises(ConnectionClosed) as closed:
                k2.recv(10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        with connect(view, proxy=None) as again:  # slots come back when connections end
            assert isinstance(json.loads(again.recv(10)), list)  # records, not a close
    finally:
        daemon.stop()


def test_no_websocket_compression_is_negotiated(daemon: Daemon) -> None:
    """A client offering permessage-deflate gets none: there is nothing to decompress."""
    with connect(
        daemon.ws_url(f"ws/view?token={daemon.token}"), proxy=None, compression="deflate"
    ) as ws:
        assert ws.response is not None
        assert "sec-websocket-extensions" not in ws.response.headers
