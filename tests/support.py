"""Real parts for the tests: the daemon as a process, a real ipykernel, a real WebSocket viewer.

Every wait is on a condition with a deadline. NBRELAY_TEST_TIMEOUT_FACTOR stretches the
deadlines on slow machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nbformat
import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager
from nbformat.v4 import new_code_cell, new_notebook
from playwright.sync_api import Browser, BrowserContext, Error, Locator, Page, expect
from websockets.sync.client import ClientConnection, connect

from nbrelay import protocol
from nbrelay.protocol import Hello

T = TypeVar("T")
FACTOR = float(os.environ.get("NBRELAY_TEST_TIMEOUT_FACTOR", "1"))
# One client for the whole run: making one costs ~40 ms (its TLS context). No keep-alive,
# so a request never lands on a connection to a daemon that was killed.
HTTP = httpx.Client(timeout=10 * FACTOR, limits=httpx.Limits(max_keepalive_connections=0))
# The list of what the hook captures, kept apart from nbrelay.protocol.CAPTURED_TYPES
# on purpose: the tests check the product against it.
CAPTURED = {
    "stream",
    "error",
    "display_data",
    "update_display_data",
    "execute_result",
    "clear_output",
    "execute_input",
    "status",
}
# And #22's: the comm messages of widgets (of comms opened with the jupyter.widget target).
WIDGET_COMMS = {"comm_open", "comm_msg", "comm_close"}


def header(msg_id: str, msg_type: str = "stream", date: str | None = None) -> bytes:
    """A message header as jupyter_client serialises it: what an Outbox is given."""
    fields = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "username": "test",
        "session": "test",
        "date": date or protocol.now_iso(),
        "version": "5.4",
    }
    return json.dumps(fields).encode()


def wait_for(condition: Callable[[], T], timeout: float = 10, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout * FACTOR
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * FACTOR:.0f} s waiting for {what}")
        time.sleep(0.02)


# A cell that prints ``count`` lines over a few seconds, one IOPub message each.
STREAM = """
import time
for i in range({count}):
    print(f"line {{i}} " + "x" * {width}, flush=True)
    if i % 50 == 0:
        time.sleep(0.05)  # spread the output over a few seconds
"""


def stream(count: int, width: int = 0) -> str:
    return STREAM.format(count=count, width=width)


def stream_batch(
    numbers: Iterable[int], text: str | Callable[[int], str] = "x", prefix: str = "m"
) -> str:
    """A batch frame of stdout messages numbered ``numbers``, with msg_ids ``{prefix}{n}``;
    ``text`` is every message's text, or makes message ``n``'s."""

    def content(n: int) -> str:
        return json.dumps({"name": "stdout", "text": text(n) if callable(text) else text})

    return protocol.encode_batch(
        protocol.encode_output(n, f"{prefix}{n}", "stream", "p", "t", content(n)) for n in numbers
    )


def run_cell(daemon: Daemon, kernel_id: str, lines: int, size: int = 1000) -> None:
    """One kernel process (pid 1) running one notebook cell to its end, as its hook sends it:
    cell ``cell-a``, request ``req-a``, code ``train()``, execution count 3, printing
    ``lines`` lines of ``size`` bytes (``line 3 xxx``, ``line 4 xxx``...)."""
    hello = Hello(kernel_id, kernel_id + "-s", "nb.ipynb", "h", 1, "t")

    def entry(n: int, msg_type: str, content: dict[str, Any]) -> str:
        return protocol.encode_output(n, f"m{n}", msg_type, "req-a", "t", json.dumps(content))

    entries = [
        entry(1, "nbrelay.cell", {"cell_id": "cell-a"}),
        entry(2, "execute_input", {"code": "train()", "execution_count": 3}),
        *(
            entry(n, "stream", {"name": "stdout", "text": f"line {n} {'x' * size}\n"})
            for n in range(3, lines + 3)
        ),
        entry(lines + 3, "status", {"execution_state": "idle"}),
    ]
    with daemon.ingest(hello) as ws:
        for first in range(0, len(entries), 500):
            ws.send(protocol.encode_batch(entries[first : first + 500]))
            assert json.loads(ws.recv(10 * FACTOR))["acked"] == min(first + 500, len(entries))


# Another local user, for attacks between users: root becomes nobody (CI runs as root). Its
# Python must be one that nobody may run, not this one, which may live in root's home.
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NOBODYS_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
HAS_SECOND_USER = os.geteuid() == 0 and bool(shutil.which("setpriv")) and bool(NOBODYS_PYTHON)

# What the other user runs: it listens on a loopback port and writes all it is sent to stdout.
LISTENER = """
import socket, sys, threading
out, lock = sys.stdout.buffer, threading.Lock()
def keep(conn):
    with conn:
        while data := conn.recv(65536):
            with lock:
                out.write(data)
                out.flush()
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
out.write(b"listening\\n")
out.flush()
while True:
    threading.Thread(target=keep, args=(server.accept()[0],), daemon=True).start()
"""


@contextmanager
def listening_as_nobody(port: int, workdir: Path) -> Iterator[Path]:
    """User nobody listening on loopback ``port``, as another user may once our process that
    held it is gone; yields the file of everything it was sent (after a first line)."""
    received = workdir / f"received-by-nobody-{port}"
    with received.open("wb") as out:
        assert NOBODYS_PYTHON is not None
        proc = subprocess.Popen(
            [*AS_NOBODY, NOBODYS_PYTHON, "-c", LISTENER, str(port)],
            stdout=out,
            stderr=subprocess.PIPE,
        )
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise AssertionError(f"nobody's listener exited: {proc.stderr.read().decode()}")
            return received.read_bytes().startswith(b"listening\n")

        wait_for(listening, 10, f"nobody to listen on port {port}")
        yield received
    finally:
        proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def nbrelay(
    *args: str, runtime: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``nbrelay`` command to completion (in ``runtime`` as Jupyter's runtime dir)."""
    env = {
        **os.environ,
        **({"JUPYTER_RUNTIME_DIR": str(runtime)} if runtime else {}),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "nbrelay", *args],
        capture_output=True,
        text=True,
        timeout=60 * FACTOR,
        env=env,
    )


class Daemon:
    """``nbrelay serve`` in its own process, on a free loopback port, with a temp database."""

    def __init__(self, workdir: Path, token: str = "test-token-" + uuid.uuid4().hex) -> None:
        self.workdir = workdir
        self.db = workdir / "nbrelay.sqlite3"
        self.token = token
        self.runtime_dir = workdir / "runtime"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBRELAY_")}
        env["JUPYTER_RUNTIME_DIR"] = str(self.runtime_dir)
        return env

    @property
    def runtime_file(self) -> Path:
        return self.runtime_dir / "nbrelay.json"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].rstrip("/"))

    def start(self, *extra: str, port: int = 0, prefix: Sequence[str] = ()) -> Daemon:
        """Start (or restart) the daemon; ``port`` 0 picks a free one. ``prefix`` is a command
        that execs the daemon's, e.g. ``("prlimit", "--nofile=256:256")``."""
        self.starts += 1
        out_path = self.workdir / f"daemon-{self.starts}.out"  # what it prints for the user
        log_path = self.workdir / f"daemon-{self.starts}.log"  # its log
        with out_path.open("wb") as out, log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "nbrelay",
                    "serve",
                    "--port",
                    str(port),
                    "--db",
                    str(self.db),
                    *extra,
                ],
                env={**self.env, "NBRELAY_TOKEN": self.token},  # never in argv, where ps shows it
                stdout=out,
                stderr=log,
            )
        pid = self.proc.pid

        def announced() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                info = json.loads(self.runtime_file.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == pid else None

        info = wait_for(announced, 15, "the daemon's runtime file")
        self.url = info["url"]
        wait_for(self._answers, 15, "the daemon to answer")
        return self

    def _answers(self) -> bool:
        try:
            return self.get("api/kernels").status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        """Everything the daemon logged (stderr), over all its starts."""
        return self._read("log")

    def printed(self) -> str:
        """What the daemon printed for the user (stdout): the viewer URL."""
        return self._read("out")

    def _read(self, suffix: str) -> str:
        files = sorted(self.workdir.glob(f"daemon-*.{suffix}"))
        return "\n".join(p.read_text(errors="replace") for p in files)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15 * FACTOR)

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return HTTP.get(self.url + path, params=params, headers=headers)

    def kernel(self, kernel_id: str) -> dict[str, Any]:
        """The kernel's entry in /api/kernels (StopIteration if it is not listed)."""
        kernels = self.get("api/kernels").json()["kernels"]
        return next(k for k in kernels if k["kernel_id"] == kernel_id)

    def messages(self, since: int = 0, kernel_id: str | None = None) -> list[dict[str, Any]]:
        """Every stored record after ``since``, following the API's pages."""
        records: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"since": since}
            if kernel_id:
                params["kernel_id"] = kernel_id
            response = self.get("api/messages", **params)
            response.raise_for_status()
            page = response.json()["messages"]
            if not page:
                return records
            records.extend(page)
            since = page[-1]["seq"]

    def ws_url(self, path: str) -> str:
        return self.url.replace("http://", "ws://") + path

    def head(self, kernel_id: str | None = None) -> int:
        """The last seq stored (of ``kernel_id``), cheaply: one small API call."""
        params = {"kernel_id": kernel_id} if kernel_id else {}
        return int(self.get("api/messages", limit=1, **params).json()["last_seq"])

    @contextmanager
    def ingest(self, hello: Hello | None = None) -> Iterator[ClientConnection]:
        """An ingest connection as the kernel hook opens it; past its hello if one is given."""
        auth = {"Authorization": f"Bearer {self.token}"}
        with connect(
            self.ws_url("ws/ingest"), additional_headers=auth, proxy=None, max_size=None
        ) as ws:
            if hello is not None:
                ws.send(hello.encode())
                ws.recv(10 * FACTOR)
            yield ws

    @contextmanager
    def viewer(self, since: int = 0, kernel_id: str | None = None) -> Iterator[Viewer]:
        query = f"since={since}&token={self.token}"
        if kernel_id:
            query += f"&kernel_id={kernel_id}"
        with connect(self.ws_url("ws/view?" + query), proxy=None, max_size=None) as ws:
            yield Viewer(ws)


class Viewer:
    """A /ws/view client that keeps everything it received, records and notices apart."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.records: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []

    def receive(self, timeout: float = 10) -> None:
        data = json.loads(self.ws.recv(timeout=timeout * FACTOR))
        if isinstance(data, list):
            self.records.extend(data)
        else:
            assert "seq" not in data and "type" in data, data
            self.notices.append(data)

    def until(self, condition: Callable[[Viewer], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout * FACTOR
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("viewer: timed out")
            self.receive(remaining / FACTOR)

    def caught_up(self) -> None:
        self.until(lambda v: any(n["type"] == "caught_up" for n in v.notices))


class Kernel:
    """A real ipykernel started through jupyter_client, as Jupyter server starts one."""

    START_ATTEMPTS = 3

    def __init__(self, runtime_dir: Path, env: dict[str, str] | None = None) -> None:
        self.kernel_id = str(uuid.uuid4())
        runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # as Jupyter makes it
        connection_file = runtime_dir / f"kernel-{self.kernel_id}.json"
        # ipykernel stops capturing file-descriptor output when it sees PYTEST_CURRENT_TEST.
        kernel_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("NBRELAY_") and k != "PYTEST_CURRENT_TEST"
        }
        kernel_env.update(
            JUPYTER_RUNTIME_DIR=str(runtime_dir), JPY_SESSION_NAME="work/analysis.ipynb"
        )
        kernel_env.update(env or {})
        self.log_path = runtime_dir / f"kernel-{self.kernel_id}.log"
        # The kernel's own stderr (the server's log); open for its life: restarts reuse it.
        self._log = self.log_path.open("wb")
        for attempt in range(1, self.START_ATTEMPTS + 1):
            self.km = KernelManager(kernel_name="python3", connection_file=str(connection_file))
            self.km.start_kernel(env=kernel_env, stdout=self._log, stderr=self._log)
            self.kc = self.km.client()
            # The oracle must see every IOPub message: a SUB socket drops past its high-water
            # mark (1000 messages) when this process is slow to read, e.g. on a busy machine.
            self.kc.context.setsockopt(zmq.RCVHWM, 0)
            self.kc.start_channels()
            try:
                self.kc.wait_for_ready(timeout=60 * FACTOR)
                return
            except RuntimeError:
                self.kc.stop_channels()  # or their sockets fail a later test, unclosed
                self.km.shutdown_kernel(now=True)
                # jupyter_client picks free ports and the kernel binds them later: any other
                # process can take one in between (jupyter/jupyter_client#154), as tests that
                # open many connections do. Only that is retried, with new ports.
                lost_race = b"Address already in use" in self.log_path.read_bytes()
                if not lost_race or attempt == self.START_ATTEMPTS:
                    self._log.close()
                    raise

    def run(
        self,
        code: str,
        timeout: float = 60,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
        cell_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Execute ``code``; return the IOPub messages of that execution, as the client saw them.

        Output written at the file-descriptor level can reach IOPub after the kernel went
        idle (a thread forwards the pipe); ``until`` keeps reading until it has arrived.
        """
        return self.collect(self.execute(code, cell_id), timeout, until)

    def execute(self, code: str, cell_id: str | None = None) -> str:
        """Send an execute request; its msg_id. With ``cell_id``, as JupyterLab and Notebook 7
        send a notebook cell's (in the metadata), which jupyter_client's execute() cannot."""
        if cell_id is None:
            return self.kc.execute(code)
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
        self.kc.shell_channel.send(msg)
        msg_id: str = msg["header"]["msg_id"]
        return msg_id

    def collect(
        self,
        msg_id: str,
        timeout: float = 60,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """The IOPub messages of the execution ``msg_id`` (from :meth:`execute`), until idle."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout * FACTOR
        idle = False
        while not (idle and (until is None or until(seen))):
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                # Skip stale replies: wait_for_ready may have sent several kernel_info requests.
                while (
                    self.kc.get_shell_msg(timeout=timeout * FACTOR)["parent_header"].get("msg_id")
                    != msg_id
                ):
                    pass
                idle = True
        return seen

    def run_ok(
        self,
        code: str,
        timeout: float = 60,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
        cell_id: str | None = None,
    ) -> list[dict[str, Any]]:
        msgs = self.run(code, timeout, until, cell_id)
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        assert not errors, errors
        return msgs

    def shutdown(self, now: bool = True) -> None:
        """Kill the kernel, or with ``now=False`` ask it to shut down, as Jupyter's menu does."""
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=now)
        self._log.close()


@contextmanager
def relaying_kernel(workdir: Path) -> Iterator[tuple[Daemon, Kernel]]:
    """A daemon, and a kernel that has loaded nbrelay and finds it: a module's shared pair.
    Both are stopped afterwards."""
    daemon = Daemon(workdir).start()
    kernel = Kernel(daemon.runtime_dir)
    try:
        kernel.run_ok("%load_ext nbrelay")
        yield daemon, kernel
    finally:
        kernel.shutdown()
        daemon.stop()


def relayed(daemon: Daemon, kernel: Kernel, msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The relay's records for the executions of ``msgs``, once every captured one arrived."""
    parents = {m["parent_header"]["msg_id"] for m in msgs}
    wanted = {m["header"]["msg_id"] for m in msgs if m["msg_type"] in CAPTURED}

    def arrived() -> list[dict[str, Any]] | None:
        records = [
            r for r in daemon.messages(kernel_id=kernel.kernel_id) if r["parent_msg_id"] in parents
        ]
        return records if wanted <= {r["msg_id"] for r in records} else None

    return wait_for(arrived, 30, "the relay to hold every message")


def assert_relayed(daemon: Daemon, kernel: Kernel, msgs: list[dict[str, Any]]) -> None:
    """The relay holds exactly the captured messages of ``msgs``: same content, same order."""
    expected = [as_record(m) for m in msgs if m["msg_type"] in CAPTURED]
    assert [comparable(r) for r in relayed(daemon, kernel, msgs)] == expected


def stream_text(msgs: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")


def as_record(msg: dict[str, Any]) -> dict[str, Any]:
    """What the relay should hold for an IOPub message the client received."""
    return {
        "msg_id": msg["header"]["msg_id"],
        "msg_type": msg["msg_type"],
        "parent_msg_id": msg["parent_header"].get("msg_id"),
        "content": msg["content"],
    }


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("msg_id", "msg_type", "parent_msg_id", "content")}


JUPYTER_TOKEN = "jupyter-token-" + "0" * 16


class JupyterServer:
    """A real Jupyter server (JupyterLab and Notebook 7 included, with every extension the
    environment enables, nbrelay's too), as a user runs it, in folders of its own."""

    def __init__(self, workdir: Path, runtime_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.runtime_dir = runtime_dir or workdir / "runtime"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NBRELAY_", "JUPYTER"))}
        env.update(
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
            JUPYTER_CONFIG_DIR=str(workdir / "config"),  # no user settings, no workspaces
            IPYTHONDIR=str(workdir / "ipython"),
            NBRELAY_DB=str(workdir / "db.sqlite3"),
        )
        env.pop("PYTEST_CURRENT_TEST", None)  # ipykernel stops capturing fd output with it
        # No "would you like to get notified about Jupyter news?" over the notebook.
        news = workdir / "config/lab/user-settings/@jupyterlab/apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        self.log = (workdir / "jupyter.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--allow-root", "--ServerApp.ip=127.0.0.1"]
            + ["--ServerApp.port=0", "--ServerApp.open_browser=False"]
            + [f"--ServerApp.token={JUPYTER_TOKEN}", f"--ServerApp.root_dir={workdir}"],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        info = wait_for(self._info, 60, "the Jupyter server to start")
        self.url = f"http://127.0.0.1:{info['port']}/"

    def _info(self) -> dict[str, int] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the Jupyter server exited with {self.proc.returncode}")
        found = list(self.runtime_dir.glob(f"jpserver-{self.proc.pid}.json"))
        try:
            return json.loads(found[0].read_text()) if found else None
        except ValueError:  # being written: the server does not write it atomically
            return None

    def get(self, path: str, token: bool = True) -> httpx.Response:
        """A GET as a new visitor (no cookie jar), with Jupyter's token or without it."""
        headers = {"Authorization": f"token {JUPYTER_TOKEN}"} if token else {}
        return httpx.get(self.url + path, headers=headers, timeout=30 * FACTOR)

    def post(self, path: str, body: Any, token: bool = True) -> httpx.Response:
        headers = {"Authorization": f"token {JUPYTER_TOKEN}"} if token else {}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30 * FACTOR)

    def delete(self, path: str) -> httpx.Response:
        headers = {"Authorization": f"token {JUPYTER_TOKEN}"}
        return httpx.delete(self.url + path, headers=headers, timeout=30 * FACTOR)

    def stop(self) -> None:
        daemon = self.runtime_dir / "nbrelay.json"
        pid = json.loads(daemon.read_text())["pid"] if daemon.exists() else None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        self.log.close()
        if pid is not None and pid != os.getpid():  # the proxy's child, if the server left it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


class Blip:
    """A TCP proxy on loopback whose connections a test can cut, and keep cut: a network blip
    between a browser and a server (Playwright's offline switch leaves open WebSockets alone);
    or lose what goes through; or hold it up, and let go."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open = True
        self._flowing = threading.Event()
        self._flowing.set()
        self._dropping = False
        self._sockets: set[socket.socket] = set()
        self.cuts = 0  # connections cut or refused
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if not self._open:
                    self.cuts += 1
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self._target))
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                if not self._dropping:
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut(self) -> None:
        """Drop every connection, and refuse new ones until :meth:`mend`."""
        with self._lock:
            self._open = False
            self._dropping = False
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    self.cuts += 1
            self._sockets.clear()  # their pumps close them

    def mend(self) -> None:
        with self._lock:
            self._open = True
            self._dropping = False

    def drop(self) -> None:
        """Lose what goes through, connections kept, until :meth:`cut`: a route gone dead
        under a connection that both ends still think is up."""
        self._dropping = True

    def hold(self) -> None:
        """Keep the connections open, and what goes through them in the proxy, until
        :meth:`release`: a peer that is slow to read, not gone."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self.cut()
        self.release()
        self._listener.close()


class Notebook:
    """A notebook of the test's own on a Jupyter server, opened in JupyterLab or Notebook 7
    as a user does, and a kernel client on its kernel: the oracle of what it published."""

    def __init__(
        self,
        server: JupyterServer,
        browser: Browser | BrowserContext,
        sources: list[str],
        init_script: str = "",
    ) -> None:
        self.server = server
        self.init_script = init_script  # run in every page before the app's scripts
        self.browser = browser
        self.name = f"nb-{uuid.uuid4().hex[:8]}.ipynb"
        notebook = new_notebook(cells=[new_code_cell(s) for s in sources])
        notebook.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(notebook, server.workdir / self.name)
        self.server_url = server.url  # where the browser reaches the server
        self.page: Page | None = None
        self.oracle: BlockingKernelClient | None = None
        self.errors: list[str] = []  # uncaught exceptions in the page

    def open(self, app: str = "lab/tree", wait: bool = True) -> Page:
        """Open the notebook in a new tab, logged in to Jupyter; with ``wait``, until nbrelay
        has said what it knows of the kernel."""
        self.page = self.browser.new_page()
        self.page.set_default_timeout(30_000 * FACTOR)
        self.page.on("pageerror", self._error)
        if self.init_script:
            self.page.add_init_script(self.init_script)
        reset = "&reset" if app.startswith("lab") else ""  # not the tabs of other tests
        self.page.goto(f"{self.server_url}{app}/{self.name}?token={JUPYTER_TOKEN}{reset}")
        if wait:
            expect(self.status).to_have_attribute("data-state", re.compile("relaying|no-daemon"))
        return self.page

    def relaying(self, app: str = "lab/tree", attach: bool = True) -> Page:
        """Open the notebook, attach the oracle, run its first cell (it loads nbrelay) and
        wait until the toolbar says the kernel relays."""
        page = self.open(app)
        if attach:
            self.attach()
        self.run(0)
        expect(self.status).to_have_attribute("data-state", "relaying")
        return page

    def _error(self, error: Error) -> None:
        """Keep uncaught exceptions thrown in nbrelay's code (Notebook 7 has one of its own)."""
        if "/extensions/nbrelay/" in (error.stack or ""):
            self.errors.append(error.stack or error.message)

    @property
    def status(self) -> Locator:
        assert self.page is not None
        return self.page.locator(".jp-nbrelay-button")

    def cell(self, index: int) -> Locator:
        assert self.page is not None
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def run(self, index: int) -> None:
        """Run a cell as a user does: click into it, Shift+Enter."""
        assert self.page is not None
        self.cell(index).locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")

    @property
    def kernel_id(self) -> str:
        def listed() -> str | None:
            sessions = self.server.get("api/sessions").json()
            return next((s["kernel"]["id"] for s in sessions if s["path"] == self.name), None)

        return wait_for(listed, 30, "the notebook's session")

    def attach(self) -> None:
        """A jupyter_client on the notebook's kernel: it receives every IOPub message."""
        client = BlockingKernelClient(
            connection_file=str(self.server.runtime_dir / f"kernel-{self.kernel_id}.json")
        )
        client.load_connection_file()
        client.context.setsockopt(zmq.RCVHWM, 0)  # as Kernel's: the oracle must miss nothing
        client.start_channels()
        wait_for(lambda: client.iopub_channel.is_alive(), 10, "the oracle's channels")
        self.oracle = client
        self.seen: list[dict[str, Any]] = []

    def received(self) -> list[dict[str, Any]]:
        """Every IOPub message the oracle has received so far."""
        assert self.oracle is not None
        while self.oracle.iopub_channel.msg_ready():
            self.seen.append(self.oracle.get_iopub_msg(timeout=1))
        return self.seen

    def execution(self, code: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The oracle's messages of the (last) execution of ``code``, once it is idle."""

        def done() -> list[dict[str, Any]] | None:
            msgs = self.received()
            inputs = [
                m for m in msgs if m["msg_type"] == "execute_input" and m["content"]["code"] == code
            ]
            if not inputs:
                return None
            parent = inputs[-1]["parent_header"]["msg_id"]
            idle = any(
                m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == parent
                for m in reversed(msgs)
            )
            return [m for m in msgs if m["parent_header"].get("msg_id") == parent] if idle else None

        return wait_for(done, timeout, "the execution to end")

    def close(self) -> None:
        if self.page is not None:
            self.page.close()
            self.page = None


def shown_text(cell: Locator) -> str:
    """The cell's stdout as the page shows it."""
    stdout = cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")
    return "".join(stdout.all_inner_texts()).rstrip("\n")
