from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Daemon, Kernel


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A running daemon; stopped (and checked to stop cleanly) afterwards."""
    d = Daemon(tmp_path).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


@pytest.fixture
def kernel_factory(daemon: Daemon) -> Iterator[type[Kernel]]:
    """Start kernels that find ``daemon`` through its runtime file; shut them down afterwards."""
    kernels: list[Kernel] = []

    def start(**env: str) -> Kernel:
        k = Kernel(daemon.runtime_dir, env)
        kernels.append(k)
        return k

    yield start  # type: ignore[misc]
    for k in kernels:
        k.shutdown()


@pytest.fixture
def kernel(kernel_factory: type[Kernel]) -> Kernel:
    """A kernel with nbrelay loaded."""
    k = kernel_factory()
    k.run_ok("%load_ext nbrelay")
    return k
