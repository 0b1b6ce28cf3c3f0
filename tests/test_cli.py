"""The `nbrelay` command: flags, the runtime file, clean exits, one-line errors."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

from support import FACTOR, Daemon, nbrelay, wait_for

from nbrelay.server import bind


def test_help_shows_every_flag_with_its_default_and_variable() -> None:
    """`nbrelay serve --help` documents each flag, its env variable and its default."""
    out = nbrelay("serve", "--help").stdout
    for flag, env in [
        ("--host", "NBRELAY_HOST"),
        ("--port", "NBRELAY_PORT"),
        ("--db", "NBRELAY_DB"),
        ("--token-file", "NBRELAY_TOKEN_FILE"),
        ("--log-level", "NBRELAY_LOG_LEVEL"),
    ]:
        assert flag in out and env in out
    assert "127.0.0.1" in out and "8765" in out and "nbrelay.sqlite3" in out
    assert "serve" in nbrelay("--help").stdout


def test_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    """A port already in use: exit 1 and one clear line, no traceback."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        out = nbrelay("--port", str(port), "--db", str(tmp_path / "db.sqlite3"), runtime=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"nbrelay: error: port {port} on 127.0.0.1 is already in use: pick another with --port "
        "(or --port 0 for any free port)"
    )
    assert not (tmp_path / "nbrelay.json").exists()


def test_connections_are_accepted_with_nagle_off() -> None:
    """With Nagle on, a small live frame waits for the viewer's delayed ACK: up to 40 ms."""
    with bind("127.0.0.1", 0) as server, socket.create_connection(server.getsockname()[:2]):
        accepted, _ = server.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_runtime_file_is_private_and_removed_on_exit(tmp_path: Path) -> None:
    """The runtime file (it holds the token) is 0600 while running and gone after SIGTERM."""
    daemon = Daemon(tmp_path).start()
    info = json.loads(daemon.runtime_file.read_text())
    assert stat.S_IMODE(daemon.runtime_file.stat().st_mode) == 0o600
    assert info["token"] == daemon.token and info["port"] > 0 and info["pid"] == daemon.proc.pid
    assert info["url"] == f"http://127.0.0.1:{info['port']}/"
    assert daemon.stop() == 0
    assert not daemon.runtime_file.exists()
    # Printed into a file, the URL goes without its token, and says where to find it.
    assert daemon.token not in daemon.printed() + daemon.log()
    assert f"#token=... (the token is in {daemon.runtime_file}" in daemon.printed()


def test_the_viewer_url_has_its_token_on_a_terminal(tmp_path: Path) -> None:
    """Run in a terminal, the daemon prints the URL to open with its token, like Jupyter's."""
    daemon = Daemon(tmp_path)
    controller, terminal = pty.openpty()
    env = {**daemon.env, "NBRELAY_TOKEN": daemon.token}
    argv = ["--port", "0", "--db", str(daemon.db)]
    with os.fdopen(controller, "rb", buffering=0) as screen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbrelay", *argv], env=env, stdout=terminal, stderr=terminal
        )
        os.close(terminal)
        shown = b""
        try:
            while b"In a notebook" not in shown:
                assert select.select([screen], [], [], 15 * FACTOR)[0], shown
                shown += screen.read(4096)
        finally:
            proc.terminate()
            proc.wait(15 * FACTOR)
    assert b"Viewer: http://127.0.0.1:" in shown
    assert f"/#token={daemon.token}\r\n".encode() in shown


def test_bare_nbrelay_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """`nbrelay` alone is `nbrelay serve`; Ctrl-C stops it cleanly."""
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path),
        "NBRELAY_PORT": "0",
        "NBRELAY_DB": str(tmp_path / "db.sqlite3"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbrelay"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runtime = tmp_path / "nbrelay.json"
    wait_for(
        lambda: runtime.exists() and json.loads(runtime.read_text() or "{}").get("pid") == proc.pid,
        15,
        "the runtime file",
    )
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=15 * FACTOR)
    assert proc.returncode == 0, output
    assert "Viewer: http://127.0.0.1:" in output
    assert (tmp_path / "db.sqlite3").exists() and not runtime.exists()


def test_importing_the_extension_leaves_the_daemon_stack_out() -> None:
    """A kernel importing nbrelay does not import starlette, uvicorn or aiosqlite."""
    code = (
        "import sys, nbrelay, nbrelay.kernel_hook; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'aiosqlite') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_flag_is_documented_in_the_readme() -> None:
    """Each option that `nbrelay serve --help` lists, and its variable, is in the README."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    flags = set(re.findall(r"(--[a-z][a-z-]+)", nbrelay("serve", "--help").stdout)) - {"--help"}
    assert "--port" in flags
    for flag in sorted(flags - {"--detach"}):  # a setting each, with its variable
        env = "NBRELAY_" + flag[2:].upper().replace("-", "_")
        assert f"`{flag}`" in readme and f"`{env}`" in readme, flag
    assert "`--detach`" in readme


def test_short_tokens_are_refused(tmp_path: Path) -> None:
    """A token a person could guess is refused with a clear message."""
    out = nbrelay(
        "--port",
        "0",
        "--db",
        str(tmp_path / "db"),
        runtime=tmp_path,
        env={"NBRELAY_TOKEN": "secret"},
    )
    assert out.returncode == 1
    assert "at least 16 characters" in out.stderr
