"""``nbrelay ssh HOST``: the viewer of a daemon on another machine, in one command.

What people script by hand, done once: ask HOST whether its daemon runs (starting it
detached if not), read its port and token from ``nbrelay status --json`` there, forward a
free local port to it over SSH, and print the local viewer URL. The forward runs in the
background and is remembered in the runtime folder, so the next call reuses it while it works.
Everything goes through the user's own ``ssh``, with their keys and ``~/.ssh/config``. The
forward runs in a session of its own, without a terminal, so it must log in without a prompt
(keys, an agent, or a ControlMaster connection), as background tunnels do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_core.paths import secure_write

from .client import Client
from .errors import NbrelayError
from .runtime import Endpoint, private_runtime_dir
from .sockets import listeners

CONNECT_TIMEOUT = 30.0  # seconds for ssh to log in and the forward to answer


@dataclass(frozen=True)
class Remote:
    host: str
    ssh: list[str]  # the ssh command, e.g. ["ssh"] or ["ssh", "-F", "config"]
    nbrelay: str  # how to run nbrelay on HOST, as a shell command there

    def run(self, args: str) -> subprocess.CompletedProcess[str]:
        """``nbrelay ARGS`` on HOST. ssh asks for passwords and host keys on the terminal."""
        try:
            return subprocess.run(
                [*self.ssh, "--", self.host, f"{self.nbrelay} {args}"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CONNECT_TIMEOUT * 2,
            )
        except FileNotFoundError:
            raise NbrelayError(f"cannot run {self.ssh[0]!r}: is OpenSSH installed?") from None
        except subprocess.TimeoutExpired:
            raise NbrelayError(
                f"ssh to {self.host} did not finish within {CONNECT_TIMEOUT * 2:.0f} s"
            ) from None

    def daemon(self) -> dict[str, Any]:
        """The status of HOST's daemon, started detached first if none runs."""
        status = self.run("status --json")
        if status.returncode != 0:
            if status.returncode == 255:  # ssh's own failure: no login, no host
                raise NbrelayError(f"ssh to {self.host} failed: {status.stderr.strip()}")
            started = self.run("serve --detach")
            if started.returncode != 0:
                raise NbrelayError(
                    f"could not start nbrelay on {self.host}: "
                    f"{(started.stderr or started.stdout).strip()}"
                )
            status = self.run("status --json")
            if status.returncode != 0:
                raise NbrelayError(f"nbrelay on {self.host}: {status.stderr.strip()}")
        try:
            info: dict[str, Any] = json.loads(status.stdout)
            int(info["port"])
        except (ValueError, KeyError, TypeError):
            raise NbrelayError(
                f"`{self.nbrelay} status --json` on {self.host} did not answer as nbrelay does: "
                f"{status.stdout.strip()[:200]!r}"
            ) from None
        return info


def _state_file(host: str, suffix: str = ".json") -> Path:
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in host)
    return private_runtime_dir() / f"nbrelay-ssh-{safe}{suffix}"


def _answers(port: int, token: str) -> bool:
    """Whether an nbrelay daemon with this token answers on local ``port``. Through the CLI's
    client, so only a listener of this user's is sent the token."""
    endpoint = Endpoint(f"http://127.0.0.1:{port}/", token, "of the SSH forward")
    try:
        Client(lambda: endpoint).get("api/health")
    except NbrelayError:
        return False
    return True


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def forward(remote: Remote, info: dict[str, Any], local_port: int | None) -> tuple[int, int, bool]:
    """A local port forwarded to HOST's daemon: (port, ssh pid, reused). A forward that
    still answers with the daemon's token is reused; ssh's messages go to a log beside it."""
    token = str(info.get("token") or "")
    state = _state_file(remote.host)
    try:
        known = json.loads(state.read_text())
    except (OSError, ValueError):
        known = None
    if (
        isinstance(known, dict)
        and known.get("remote_port") == info["port"]
        and local_port in (None, known.get("local_port"))
        and _forwarding(known)
        and _answers(int(known["local_port"]), token)
    ):
        return int(known["local_port"]), int(known["pid"]), True
    if isinstance(known, dict):
        _close(known)  # it no longer leads to HOST's daemon: do not leave it holding a port
    port = local_port or _free_port()
    if not _free(port):
        raise NbrelayError(
            f"local port {port} is in use; pick another with --port (nothing was stopped)"
        )
    log_path = _state_file(remote.host, ".log")
    log = os.fdopen(os.open(log_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb")
    tunnel = subprocess.Popen(
        [
            *remote.ssh,
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            _spec(port, info["port"]),
            "--",
            remote.host,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,  # it outlives this command, like `ssh -f`
    )
    log.close()
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while not _answers(port, token):
        if tunnel.poll() is not None:
            error = log_path.read_text(errors="replace").strip()
            raise NbrelayError(f"the SSH forward to {remote.host} failed: {error}")
        if time.monotonic() > deadline:
            tunnel.kill()
            raise NbrelayError(f"the SSH forward to {remote.host} did not answer in time")
        time.sleep(0.1)
    with secure_write(str(state)) as f:
        json.dump({"local_port": port, "remote_port": info["port"], "pid": tunnel.pid}, f)
    return port, tunnel.pid, False


def _spec(local_port: int, remote_port: int) -> str:
    """ssh's ``-L`` argument: the forward, as it also shows in the ssh process's command line."""
    return f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}"


def _process(known: dict[str, Any]) -> Path | None:
    """The /proc folder of the forward recorded in ``known``, if its process is still ours and
    still that forward (not another process that got its pid); None if not, or no /proc."""
    try:
        proc = Path(f"/proc/{int(known['pid'])}")
        spec = _spec(int(known["local_port"]), int(known["remote_port"]))
        if proc.stat().st_uid == os.getuid() and spec.encode() in (
            proc / "cmdline"
        ).read_bytes().split(b"\0"):
            return proc
    except (OSError, KeyError, TypeError, ValueError):
        pass  # gone, not ours to look into, or a state file of another shape
    return None


def _forwarding(known: dict[str, Any]) -> bool:
    """Whether the recorded forward still runs: its ssh process is ours, alive, that forward,
    and itself holds the listening socket of the local port. Only then may that port be sent
    the token: once the process is gone, any local user can listen there."""
    proc = _process(known)
    if proc is None:
        return False
    try:
        held = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        found = listeners("127.0.0.1", int(known["local_port"]))
    except OSError:  # it exited meanwhile (a zombie has no descriptors either)
        return False
    return any(f"socket:[{listener.inode}]" in held for listener in found)


def _close(known: dict[str, Any]) -> None:
    """Stop a forward this command started earlier, if that process is still that forward."""
    proc = _process(known)
    if proc is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(proc.name), signal.SIGTERM)


def remote_from(host: str, ssh_command: str | None, remote_command: str) -> Remote:
    if host.startswith("-"):  # ssh would take it for an option, such as -oProxyCommand=...
        raise NbrelayError(f"{host!r} is not a host name: it starts with '-'")
    command = ssh_command or os.environ.get("NBRELAY_SSH_COMMAND") or "ssh"
    return Remote(host, shlex.split(command), remote_command)
