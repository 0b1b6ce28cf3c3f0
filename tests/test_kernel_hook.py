"""The kernel hook in a real ipykernel: what the notebook client sees is what the relay stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import (
    CAPTURED,
    HAS_SECOND_USER,
    Daemon,
    Kernel,
    assert_relayed,
    listening_as_nobody,
    nbrelay,
    relayed,
    stream_text,
    wait_for,
)

from nbrelay.protocol import INGEST_PROTOCOL

EVERY_OUTPUT = r"""
import ctypes, os, subprocess, sys
from IPython.display import HTML, Image, clear_output, display, update_display
print("to stdout")
print("to stderr", file=sys.stderr)
sys.stdout.flush(); sys.stderr.flush()
libc = ctypes.CDLL(None)
libc.printf(b"from C via printf\n"); libc.fflush(None)
os.system("echo from a shell")
subprocess.run([sys.executable, "-c", "print('from a subprocess')"])
handle = display(HTML("<b>first</b>"), display_id=True)
update_display(HTML("<i>second</i>"), display_id=handle.display_id)
display(Image(data=b"\x89PNG\r\n\x1a\n" + b"\0" * 16, format="png"))
print("before clear")
clear_output(wait=True)
print("after clear \u2713 \U0001F600")
{"a": [1, 2.5, None, True], "b": "\u00e9"}
"""

FORKED_CHILDREN = r"""
import multiprocessing
def work(i):
    print(f"child {i} says hello", flush=True)
ctx = multiprocessing.get_context("fork")
procs = [ctx.Process(target=work, args=(i,)) for i in range(3)]
for p in procs: p.start()
for p in procs: p.join()
print("parent done")
"""


def test_every_output_type_arrives_unchanged(daemon: Daemon, kernel: Kernel) -> None:
    """Streams (also from C and subprocesses), displays, updates, clears, results: all unchanged."""
    lines = ("to stdout", "to stderr", "from C via printf", "from a shell", "from a subprocess")
    msgs = kernel.run_ok(
        EVERY_OUTPUT, until=lambda seen: all(x in stream_text(seen) for x in lines)
    )
    types = {m["msg_type"] for m in msgs}
    assert CAPTURED - {"error"} <= types, types
    assert_relayed(daemon, kernel, msgs)


def test_errors_arrive_with_their_traceback(daemon: Daemon, kernel: Kernel) -> None:
    """An exception's error message is stored exactly as the client got it, colours included."""
    msgs = kernel.run("def f():\n    raise ValueError('bad value')\nf()")
    errors = [m for m in msgs if m["msg_type"] == "error"]
    assert errors and errors[0]["content"]["ename"] == "ValueError"
    assert_relayed(daemon, kernel, msgs)
    assert any("\x1b[" in line for line in errors[0]["content"]["traceback"])


def test_forked_children_output_arrives(daemon: Daemon, kernel: Kernel) -> None:
    """Output of multiprocessing children (fork) is relayed like the notebook shows it."""
    lines = [f"child {i} says hello" for i in range(3)]
    msgs = kernel.run_ok(
        FORKED_CHILDREN, until=lambda seen: all(x in stream_text(seen) for x in lines)
    )
    assert_relayed(daemon, kernel, msgs)


def test_records_describe_the_kernel(daemon: Daemon, kernel: Kernel) -> None:
    """The kernel list names the kernel by id and notebook, and knows it is connected and idle."""
    kernel.run_ok("print('hi')")

    def listed() -> dict[str, Any] | None:
        kernels = daemon.get("api/kernels").json()["kernels"]
        return next(
            (
                k
                for k in kernels
                if k["kernel_id"] == kernel.kernel_id
                and k["execution_state"] == "idle"
                and k["last_seq"]
            ),
            None,
        )

    info = wait_for(listed, 10, "the kernel in /api/kernels")
    pid = stream_text(kernel.run_ok("import os; print(os.getpid())")).strip()
    assert info["notebook"] == "work/analysis.ipynb"
    assert info["connected"] is True
    assert info["pid"] == int(pid)
    assert info["hostname"] and info["started"] and info["first_seq"] >= 1
    start = daemon.messages(kernel_id=kernel.kernel_id)[0]
    assert start["msg_type"] == "nbrelay.start" and start["content"]["pid"] == int(pid)


def test_unload_restores_the_kernel_and_flushes(daemon: Daemon, kernel_factory: Any) -> None:
    """%unload_ext delivers what is pending, then restores the class's own method."""
    k = kernel_factory()
    probe = (
        "print(type(get_ipython().kernel.iopub_thread).__dict__['_really_send'] is "
        "getattr(get_ipython().kernel.iopub_thread._really_send, '__func__', None))"
    )
    assert stream_text(k.run_ok(probe)) == "True\n"
    k.run_ok("%load_ext nbrelay")
    k.run_ok("%load_ext nbrelay")  # loading twice is harmless
    k.run_ok("import nbrelay; nbrelay.load_ipython_extension(get_ipython())")
    assert stream_text(k.run_ok(probe)) == "False\n"
    last = k.run_ok("for i in range(200): print(i, flush=True)\n%unload_ext nbrelay")

    def state() -> Any:
        return daemon.kernel(k.kernel_id)["execution_state"]

    wait_for(lambda: state() == "unloaded", 10, "the unload recorded")
    after = k.run_ok(probe)
    assert stream_text(after) == "True\n"
    # Everything up to the unload was delivered, once; nothing after it was captured.
    stored = [r["msg_id"] for r in daemon.messages(kernel_id=k.kernel_id)]
    assert len(stored) == len(set(stored))
    streams = {m["header"]["msg_id"] for m in last if m["msg_type"] == "stream"}
    assert streams <= set(stored)
    assert not {m["header"]["msg_id"] for m in after} & set(stored)
    # Loading again continues the same kernel process's stream: no new start record.
    k.run_ok("%load_ext nbrelay")
    again = k.run_ok("print('back')")
    ids = {m["header"]["msg_id"] for m in again if m["msg_type"] in CAPTURED}
    wait_for(
        lambda: ids <= {r["msg_id"] for r in daemon.messages(kernel_id=k.kernel_id)},
        10,
        "output after reloading",
    )
    starts = [r for r in daemon.messages(kernel_id=k.kernel_id) if r["msg_type"] == "nbrelay.start"]
    assert len(starts) == 1
    # Relayed again, the kernel shows its own state once more, not "unloaded".
    wait_for(lambda: state() == "idle", 10, "the state after reloading")


def test_a_kernel_shut_down_cleanly_shows_as_exited(daemon: Daemon, kernel_factory: Any) -> None:
    """After a shutdown request a kernel's last status is "busy"; the hook says at exit that
    the process ended, so the kernel shows as exited. One that unloads the extension shows
    as unloaded (its last status is the unload cell's "busy"), and one that is killed keeps
    its last state."""

    def state(k: Kernel) -> Any:
        return daemon.kernel(k.kernel_id)["execution_state"]

    def connected(k: Kernel) -> bool:
        return bool(daemon.kernel(k.kernel_id)["connected"])

    def idle() -> set[str]:
        kernels = daemon.get("api/kernels").json()["kernels"]
        return {k["kernel_id"] for k in kernels if k["execution_state"] == "idle"}

    unloaded, killed = kernel_factory(), kernel_factory()
    for k in (unloaded, killed):
        k.run_ok("%load_ext nbrelay\nprint('hello')")
    # Killed before its hook had connected, a kernel would not be listed at all.
    wait_for(lambda: {unloaded.kernel_id, killed.kernel_id} <= idle(), 10, "both relayed")
    unloaded.run_ok("%unload_ext nbrelay")
    killed.shutdown()
    wait_for(lambda: not connected(unloaded) and not connected(killed), 10, "both gone")
    clean = Kernel(daemon.runtime_dir)
    try:
        clean.run_ok("%load_ext nbrelay\nprint('hello')")
    finally:
        clean.shutdown(now=False)
    wait_for(lambda: state(clean) == "exited", 10, "the clean shutdown recorded")
    assert state(killed) == "idle"
    assert state(unloaded) == "unloaded"
    assert not connected(clean)


def test_plain_ipython_is_refused_politely(tmp_path: Any) -> None:
    """Outside a Jupyter kernel the extension says so and changes nothing."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--quick", "-c", "%load_ext nbrelay"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0
    assert "not a Jupyter kernel" in out.stderr


def test_daemon_found_through_environment_variables(daemon: Daemon, tmp_path: Any) -> None:
    """NBRELAY_URL and NBRELAY_TOKEN point a kernel at a daemon whose runtime file it cannot see."""
    k = Kernel(tmp_path / "elsewhere", {"NBRELAY_URL": daemon.url, "NBRELAY_TOKEN": daemon.token})
    try:
        k.run_ok("%load_ext nbrelay")
        msgs = k.run_ok("print('via the environment')")
        assert_relayed(daemon, k, msgs)
    finally:
        k.shutdown()


def test_wrong_token_is_reported_once_and_nothing_is_lost(daemon: Daemon, tmp_path: Any) -> None:
    """A refused token is logged once, clearly; the output stays buffered, not stored elsewhere."""
    k = Kernel(tmp_path / "elsewhere", {"NBRELAY_URL": daemon.url, "NBRELAY_TOKEN": "wrong"})
    try:
        k.run_ok("%load_ext nbrelay")
        k.run_ok("for i in range(3): print(i)")
        wait_for(lambda: "refused" in k.log_path.read_text(), 10, "the refusal in the kernel log")
        k.run_ok("print('still running fine')")
        log = k.log_path.read_text()
        assert log.count("refused") == 1 and "missing or wrong token" in log
        assert daemon.get("api/kernels").json()["kernels"] == []
    finally:
        k.shutdown()


def test_a_malformed_nbrelay_url_is_reported(tmp_path: Path) -> None:
    """An NBRELAY_URL whose port is not a number is named in %nbrelay; the kernel runs on."""
    url = "http://127.0.0.1:notaport/"
    k = Kernel(tmp_path / "elsewhere", {"NBRELAY_URL": url, "NBRELAY_TOKEN": "t" * 20})
    try:
        k.run_ok("%load_ext nbrelay")
        why = f"the URL {url!r} given in NBRELAY_URL is not like http://127.0.0.1:8765/"

        def status() -> str:
            return stream_text(k.run_ok("%nbrelay"))

        assert why in wait_for(lambda: why in status() and status(), 10, "%nbrelay to say why")
        k.run_ok("print('still running fine')")
    finally:
        k.shutdown()


def test_a_kernel_of_another_nbrelay_version_is_told_so_and_keeps_its_output(
    daemon: Daemon, kernel_factory: Any
) -> None:
    """The kernel's nbrelay speaking another ingest protocol (here made so in the kernel) is
    refused with both versions named, in the kernel log and %nbrelay; once the versions
    match, the output buffered meanwhile arrives."""
    k = kernel_factory()
    k.run_ok("import nbrelay.protocol\nnbrelay.protocol.INGEST_PROTOCOL += 1")
    k.run_ok("%load_ext nbrelay")
    buffered = k.run_ok("print('printed while refused')")
    wait_for(lambda: "refused" in k.log_path.read_text(), 10, "the refusal in the kernel log")
    status = stream_text(k.run_ok("%nbrelay"))
    assert f"ingest protocol {INGEST_PROTOCOL + 1}, daemon {INGEST_PROTOCOL}" in status
    assert "buffering output" in status
    assert daemon.get("api/kernels").json()["kernels"] == []
    k.run_ok("nbrelay.protocol.INGEST_PROTOCOL -= 1")  # as if the kernel's nbrelay was upgraded
    assert_relayed(daemon, k, buffered)


def test_daemon_restarted_with_a_new_token_is_found_again(daemon: Daemon, kernel: Kernel) -> None:
    """After a restart with a new port and token, the hook reads the runtime file again."""
    before = kernel.run_ok("print('before')")
    relayed(daemon, kernel, before)
    daemon.stop()
    daemon.token = "a-new-token-after-the-restart"
    daemon.start()
    after = kernel.run_ok("print('after')")
    assert_relayed(daemon, kernel, after)


def test_large_outputs_arrive_whole_and_oversized_ones_cut_with_a_marker(
    daemon: Daemon, kernel: Kernel
) -> None:
    """A 3 MB output is relayed intact; one above --max-output-bytes (4 MiB) is stored cut,
    its start and end kept, with a marker saying how much went."""
    big = kernel.run_ok("print('x' * 3_000_000)")
    assert_relayed(daemon, kernel, big)
    huge = kernel.run_ok("print('start' + 'y' * 20_000_000 + 'end')")
    (stream,) = [m for m in huge if m["msg_type"] == "stream"]
    (stored,) = [r for r in relayed(daemon, kernel, huge) if r["msg_type"] == "stream"]
    assert stored["msg_id"] == stream["header"]["msg_id"]
    text = stored["content"]["text"]
    assert text.startswith("start") and text.endswith("end\n") and "bytes cut]" in text
    assert stored["content"]["nbrelay_truncated"]["original_bytes"] > 20_000_000
    assert len(text) < 4 * 2**20


def test_each_execution_records_its_notebook_cell_id(daemon: Daemon, kernel_factory: Any) -> None:
    """An execution sent with a cell id, as JupyterLab sends it, gets one nbrelay.cell record
    whose parent is its request; one without a cell id gets none, and nor does any after
    %unload_ext, which leaves IPython's pre_run_cell callbacks as they were."""
    k = kernel_factory()
    callbacks = "print(len(get_ipython().events.callbacks['pre_run_cell']))"
    before = stream_text(k.run_ok(callbacks))
    k.run_ok("%load_ext nbrelay")
    first = k.run_ok("print('first')", cell_id="6f1c2f8e-3b7e-4c1a-9b1a-1d2e3f4a5b6c")
    plain = k.run_ok("print('no cell id')")
    again = k.run_ok("print('first again')", cell_id="6f1c2f8e-3b7e-4c1a-9b1a-1d2e3f4a5b6c")
    other = k.run_ok("print('second')", cell_id="cell-2")
    assert_relayed(daemon, k, plain)  # the cell record is no IOPub message

    def request(msgs: list[dict[str, Any]]) -> str:
        parent: str = msgs[0]["parent_header"]["msg_id"]
        return parent

    expected = [
        (request(first), {"cell_id": "6f1c2f8e-3b7e-4c1a-9b1a-1d2e3f4a5b6c"}),
        (request(again), {"cell_id": "6f1c2f8e-3b7e-4c1a-9b1a-1d2e3f4a5b6c"}),
        (request(other), {"cell_id": "cell-2"}),
    ]

    def cells() -> list[tuple[str, dict[str, Any]]]:
        records = daemon.messages(kernel_id=k.kernel_id)
        return [
            (r["parent_msg_id"], r["content"]) for r in records if r["msg_type"] == "nbrelay.cell"
        ]

    wait_for(lambda: len(cells()) >= len(expected), 10, "the cell records")
    assert cells() == expected

    k.run_ok("%unload_ext nbrelay")
    assert stream_text(k.run_ok(callbacks)) == before
    k.run_ok("print('unloaded')", cell_id="cell-unloaded")
    k.run_ok("%load_ext nbrelay")
    back = k.run_ok("print('back')", cell_id="cell-3")
    relayed(daemon, k, back)
    assert cells()[-1] == (request(back), {"cell_id": "cell-3"})
    assert len(cells()) == len(expected) + 1


@pytest.mark.skipif(not HAS_SECOND_USER, reason="needs root, setpriv and user nobody (as in CI)")
def test_a_crashed_daemons_port_taken_by_another_user_gets_no_token_and_no_output(
    tmp_path: Path,
) -> None:
    """After a kill -9 of the daemon, user nobody listens on its port: neither the kernel hook
    nor the CLI sends it the token or any output, both say why, and the output buffered
    meanwhile reaches the daemon once it runs again (on another port)."""
    daemon = Daemon(tmp_path).start()
    port = daemon.port
    daemon.kill()  # its runtime file stays behind, naming the port
    why = (
        f"the port {port} recorded in {daemon.runtime_file} is held by another user "
        "(uid 65534), not by your daemon; it probably crashed: start it again"
    )
    with listening_as_nobody(port, tmp_path) as received:
        k = Kernel(daemon.runtime_dir)
        try:
            k.run_ok("%load_ext nbrelay")
            secret = k.run_ok("print('the password is ' + 'hunter' + '42')")

            def status() -> str:
                return stream_text(k.run_ok("%nbrelay"))

            assert why in wait_for(lambda: why in status() and status(), 15, "%nbrelay to say why")
            assert "connected to" not in status()
            # No viewer URL either: nobody's page there would read the token in it.
            assert daemon.token not in status()
            cli = nbrelay("ls", runtime=daemon.runtime_dir)
            assert (cli.returncode, cli.stderr) == (1, f"nbrelay: error: {why}\n")
            assert received.read_bytes() == b"listening\n"  # not a byte: no token, no output

            daemon.start()
            try:
                assert daemon.port != port
                assert_relayed(daemon, k, secret)
            finally:
                daemon.stop()
        finally:
            k.shutdown()
    assert b"hunter42" not in received.read_bytes()


START_HINT = (
    "start it with `nbrelay serve --detach` (or, with jupyter-server-proxy, the nbrelay tile "
    "in JupyterLab's launcher)"
)


def test_without_a_daemon_the_kernel_and_the_cli_give_one_hint(tmp_path: Path) -> None:
    """With no daemon, the kernel (in the cell and in its log) and the CLI say how to start
    one in the same words; the kernel's first connection is not called a reconnection."""
    daemon = Daemon(tmp_path)
    kernel = Kernel(daemon.runtime_dir)
    try:
        loaded = stream_text(kernel.run_ok("%load_ext nbrelay"))
        wait_for(lambda: START_HINT in kernel.log_path.read_text(), 10, "the hint in the log")
        cli = nbrelay("ls", runtime=daemon.runtime_dir)
        daemon.start()
        wait_for(lambda: "connected to" in kernel.log_path.read_text(), 20, "the connection")
        log = kernel.log_path.read_text()
    finally:
        kernel.shutdown()
        if daemon.proc is not None:
            daemon.stop()
    assert START_HINT in loaded and START_HINT in cli.stderr
    assert f"connected to {daemon.url}; sending what was buffered" in log and "again" not in log
