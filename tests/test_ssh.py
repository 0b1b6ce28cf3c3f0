"""`nbrelay ssh HOST` against a real OpenSSH server on loopback, with throwaway keys.

The "remote" host is this machine through sshd: the remote daemon runs in a folder of its
own (the remote command sets its runtime folder, database and port 0), as it would on
another machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import HAS_SECOND_USER, HTTP, listening_as_nobody, nbrelay, wait_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

needs_sshd = pytest.mark.skipif(
    os.geteuid() != 0 or not Path(SSHD).exists(),
    reason="sshd must run as root to log a user in (CI runs as root, with openssh-server)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An sshd on a loopback port that lets root in with a key made here; the ssh command
    and the remote nbrelay command that reach it."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for name in ("host", "user"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True
        )
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    port = free_port()
    (keys / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {keys / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
        "StrictModes no\nAllowTcpForwarding local\n"
    )
    host_key = (keys / "host.pub").read_text().split()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (keys / "ssh_config").write_text(
        f"Host testhost\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile {keys / 'user'}\n  UserKnownHostsFile {keys / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n  BatchMode yes\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    log = (tmp_path / "sshd.log").open("wb")
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(keys / "sshd_config")], stderr=log)
    remote = tmp_path / "remote"
    env = f"JUPYTER_RUNTIME_DIR={remote / 'runtime'} NBRELAY_DB={remote / 'db.sqlite3'}"
    remote_command = f"env {env} NBRELAY_PORT=0 {shlex.quote(sys.executable)} -m nbrelay"
    ssh = f"ssh -F {keys / 'ssh_config'}"
    try:

        def up() -> bool:
            probe = subprocess.run(
                [*shlex.split(ssh), "testhost", "true"], capture_output=True, timeout=30
            )
            return probe.returncode == 0

        wait_for(up, 30, "sshd to let us in")
        yield {"ssh": ssh, "remote": remote_command, "local_runtime": str(tmp_path / "local")}
    finally:
        subprocess.run([*shlex.split(ssh), "testhost", f"{remote_command} stop"], timeout=60)
        forward = tmp_path / "local" / "nbrelay-ssh-testhost.json"
        if forward.exists():  # its session outlives sshd's listener
            with contextlib.suppress(ProcessLookupError):
                os.kill(json.loads(forward.read_text())["pid"], signal.SIGTERM)
        sshd.send_signal(signal.SIGTERM)
        sshd.wait(10)
        log.close()


def connect(
    host: dict[str, str], *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    browser = () if env and "BROWSER" in env else ("--no-browser",)
    return nbrelay(
        "ssh",
        "testhost",
        "--ssh-command",
        host["ssh"],
        "--remote-command",
        host["remote"],
        *browser,
        *extra,
        runtime=Path(host["local_runtime"]),
        env=env,
    )


@needs_sshd
def test_ssh_starts_the_remote_daemon_forwards_and_reuses(host: dict[str, str]) -> None:
    first = connect(host)
    assert first.returncode == 0, first.stderr
    assert "forwarded over SSH" in first.stdout
    viewer = next(line.split()[-1] for line in first.stdout.splitlines() if "Viewer:" in line)
    url, _, token = viewer.partition("#token=")
    assert url.startswith("http://127.0.0.1:") and token
    # The viewer and the API answer here, through the forward.
    page = HTTP.get(url)
    assert page.status_code == 200 and "<title>nbrelay" in page.text
    health = HTTP.get(url + "api/health", headers={"Authorization": f"Bearer {token}"})
    assert health.status_code == 200 and health.json()["storage"] == "ok"

    opened = Path(host["local_runtime"]) / "opened.txt"
    browser = Path(host["local_runtime"]) / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o700)
    again = connect(host, env={"BROWSER": str(browser)})  # a browser that notes what it opens
    assert again.returncode == 0, again.stderr
    assert "reusing the SSH forward" in again.stdout
    assert again.stdout.splitlines()[1] == first.stdout.splitlines()[1]  # same URL and token
    assert wait_for(lambda: opened.exists() and opened.read_text().strip(), 10, "the browser")
    assert opened.read_text().strip() == viewer

    # A port that is taken is reported, and whatever holds it keeps running.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        refused = connect(host, "--port", str(taken))
        assert refused.returncode == 1
        assert f"local port {taken} is in use" in refused.stderr
        socket.create_connection(("127.0.0.1", taken), timeout=5).close()  # still listening

    os.kill(
        ssh_pid(first.stdout), signal.SIGTERM
    )  # the forward goes away: the next call makes a new one
    wait_for(lambda: closed(url), 10, "the forward to close")
    renewed = connect(host)
    assert renewed.returncode == 0, renewed.stderr
    assert "forwarded over SSH" in renewed.stdout

    # The remote daemon restarts on another port: a new forward, and the old one is closed.
    stopped = subprocess.run(
        [*shlex.split(host["ssh"]), "testhost", f"{host['remote']} stop"], capture_output=True
    )
    assert stopped.returncode == 0, stopped.stderr
    old = ssh_pid(renewed.stdout)
    moved = connect(host)
    assert moved.returncode == 0, moved.stderr
    assert "forwarded over SSH" in moved.stdout and ssh_pid(moved.stdout) != old
    wait_for(lambda: gone(old), 10, "the old forward to stop")


@needs_sshd
@pytest.mark.skipif(not HAS_SECOND_USER, reason="needs setpriv and user nobody (as in CI)")
def test_a_dead_forwards_port_taken_by_another_user_is_sent_nothing(
    host: dict[str, str], tmp_path: Path
) -> None:
    """The recorded forward's ssh died and user nobody now listens on its local port: nbrelay
    sends nothing there, the token least of all, and makes a new forward on another port."""
    first = connect(host)
    assert first.returncode == 0, first.stderr
    port, token = local_port(first.stdout), first.stdout.split("#token=")[1].split()[0]
    ssh = ssh_pid(first.stdout)
    argv = Path(f"/proc/{ssh}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"--") + 1] == b"testhost"  # a host is never taken for an option
    os.kill(ssh, signal.SIGKILL)
    wait_for(lambda: gone(ssh), 10, "the forward's ssh to die")
    with listening_as_nobody(port, tmp_path) as received:
        again = connect(host)
        assert again.returncode == 0, again.stderr
        assert "forwarded over SSH" in again.stdout and local_port(again.stdout) != port
        assert received.read_bytes() == b"listening\n"  # not even a connection attempt
    assert token.encode() not in received.read_bytes()


def test_the_host_goes_after_double_dash_and_one_like_an_option_is_refused(
    tmp_path: Path,
) -> None:
    """ssh gets the host after "--", so that it never reads it as an option; a host starting
    with "-" (-oProxyCommand=... runs a command) is refused before ssh runs at all."""
    argv = tmp_path / "ssh-argv"
    fake_ssh = tmp_path / "ssh"  # notes its arguments, one a line, and fails as ssh does
    fake_ssh.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {argv}\nexit 255\n')
    fake_ssh.chmod(0o700)
    ssh = f"{fake_ssh} -F config"
    result = nbrelay(
        "ssh", "--ssh-command", ssh, "--remote-command", "nbrelay", "gpu-box", runtime=tmp_path
    )
    assert result.returncode == 1 and "ssh to gpu-box failed" in result.stderr
    assert argv.read_text().splitlines() == [
        "-F",
        "config",
        "--",
        "gpu-box",
        "nbrelay status --json",
    ]
    argv.unlink()
    result = nbrelay("ssh", "--ssh-command", ssh, "--", "-oProxyCommand=sh", runtime=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "nbrelay: error: '-oProxyCommand=sh' is not a host name: it starts with '-'\n"
    )
    assert not argv.exists()


def local_port(stdout: str) -> int:
    return int(stdout.split("local port ")[1].split()[0])


def ssh_pid(stdout: str) -> int:
    return int(stdout.split("ssh pid ")[1].split(")")[0])


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def closed(url: str) -> bool:
    try:
        HTTP.get(url)
    except httpx.TransportError:
        return True
    return False


@needs_sshd
def test_ssh_to_an_unknown_host_is_a_one_line_error(host: dict[str, str]) -> None:
    result = nbrelay(
        "ssh",
        "nohost.invalid",
        "--ssh-command",
        host["ssh"] + " -o ConnectTimeout=5",
        "--no-browser",
    )
    assert result.returncode == 1
    assert result.stderr.startswith("nbrelay: error: ssh to nohost.invalid failed:")


def test_a_missing_ssh_is_a_one_line_error(tmp_path: Path) -> None:
    result = nbrelay(
        "ssh", "somewhere", "--ssh-command", str(tmp_path / "no-ssh"), runtime=tmp_path
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == f"nbrelay: error: cannot run {str(tmp_path / 'no-ssh')!r}: is OpenSSH installed?\n"
    )
