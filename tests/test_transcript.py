"""Kernel output as text, from hostile kernels: `nbrelay tail` and `export`, against a real
daemon fed through a real ingest connection."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import FACTOR, Daemon, nbrelay

from nbrelay import protocol
from nbrelay.transcript import overwrite

Message = tuple[str, str]  # msg_type, content as JSON; all of one execution


def ingest(daemon: Daemon, messages: list[Message], hostname: str = "host") -> str:
    """A new kernel's id, once the daemon stored ``messages`` as that kernel's output."""
    kernel_id = str(uuid.uuid4())
    hello = protocol.Hello(kernel_id, uuid.uuid4().hex, "work/hostile.ipynb", hostname, 1, "t")
    entries = [
        protocol.encode_output(n, f"m{n}", msg_type, "request", "t", content)
        for n, (msg_type, content) in enumerate(messages, 1)
    ]
    with daemon.ingest(hello) as ws:
        ws.send(protocol.encode_batch(entries))
        while protocol.decode_ack(ws.recv(10 * FACTOR)) < len(messages):
            pass
    return kernel_id


def cli(daemon: Daemon, *args: str) -> str:
    """What an nbrelay command printed; it must succeed."""
    result = nbrelay(*args, runtime=daemon.runtime_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


def message(msg_type: str, content: dict[str, Any]) -> Message:
    return msg_type, json.dumps(content)


def stream(text: str) -> Message:
    return message("stream", {"name": "stdout", "text": text})


def read(path: Path) -> Any:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return notebook


# -- backspaces and carriage returns ---------------------------------------------------------


@pytest.mark.timeout(60)  # linear: a few seconds; the quadratic code took hours
def test_backspaces_at_the_size_cap_are_applied_in_linear_time(tmp_path: Path) -> None:
    """An output of 1.2 million characters then as many backspaces, near the 4 MiB cap,
    is exported and tailed in seconds (it took hours), with the backspaces applied."""
    daemon = Daemon(tmp_path).start()
    try:
        many = 1_200_000
        kernel_id = ingest(
            daemon,
            [
                message("execute_input", {"code": "erase()", "execution_count": 1}),
                stream("x" * many + "\b" * many + "done\n"),
            ],
        )
        assert cli(daemon, "tail", kernel_id, "--since", "0").splitlines()[-1] == "done"
        cli(daemon, "export", kernel_id, "-o", str(tmp_path / "x.txt"))
        assert (tmp_path / "x.txt").read_text().splitlines()[-1] == "done"
        cli(daemon, "export", kernel_id, "-o", str(tmp_path / "x.ipynb"))
        (cell,) = [c for c in read(tmp_path / "x.ipynb").cells if c.source == "erase()"]
        assert [o.text for o in cell.outputs] == ["done\n"]
    finally:
        daemon.stop()


def quadratic_overwrite(line: str) -> str:
    """The rules as first written: the reference that overwrite() must match."""
    shown = ""
    for part in line.split("\r"):
        while "\b" in part:
            part = re.sub("[^\b]?\b", "", part, count=1)
        shown = part + shown[len(part) :]
    return shown


@given(st.text(alphabet="ab \r\b", max_size=60))
def test_overwrite_applies_returns_and_backspaces_as_before(line: str) -> None:
    """overwrite() gives what the first, quadratic version gave, for any line."""
    assert overwrite(line) == quadratic_overwrite(line)
