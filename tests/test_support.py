"""The tests' own harness, where it works around a known race of the parts it drives."""

from __future__ import annotations

import socket
from contextlib import closing
from pathlib import Path

import pytest
from jupyter_client.connect import LocalPortCache
from support import Kernel


def test_a_kernel_that_lost_the_port_race_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jupyter_client picks a kernel's ports before the kernel binds them, and another process
    can take one in between: the kernel then dies ("Address already in use") and whichever
    test wanted it failed. The harness starts it again with new ports. Here the first port
    handed out is one that is taken."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    find_port = LocalPortCache.find_available_port
    handed_out: list[int] = []

    def first_one_taken(cache: LocalPortCache, ip: str) -> int:
        port = find_port(cache, ip) if handed_out else taken.getsockname()[1]
        handed_out.append(port)
        return port

    monkeypatch.setattr(LocalPortCache, "find_available_port", first_one_taken)
    with closing(taken):
        kernel = Kernel(tmp_path / "runtime")
    try:
        assert "Address already in use" in kernel.log_path.read_text()  # the race was lost
        outputs = kernel.run_ok("print(6 * 7)")
        assert [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"] == ["42\n"]
    finally:
        kernel.shutdown()
