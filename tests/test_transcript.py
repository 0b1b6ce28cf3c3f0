"""Kernel output as text, from hostile kernels: `nbrelay tail` on a terminal and piped,
`export` to .txt, .jsonl and .ipynb, and `recover`, against a real daemon fed through a real
ingest connection."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import tty
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import nbformat
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_notebook
from support import FACTOR, Daemon, nbrelay

from nbrelay import protocol
from nbrelay.transcript import Sanitiser, overwrite

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


def on_a_terminal(daemon: Daemon, *args: str) -> str:
    """What an nbrelay command wrote to a terminal (a pty, raw: each byte as written)."""
    controller, terminal = pty.openpty()
    tty.setraw(terminal)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbrelay", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(daemon.runtime_dir)},
    )
    os.close(terminal)
    written = b""
    deadline = time.monotonic() + 30 * FACTOR
    try:
        while select.select([controller], [], [], max(0, deadline - time.monotonic()))[0]:
            try:
                chunk = os.read(controller, 1 << 16)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not chunk:
                break
            written += chunk
        else:
            raise AssertionError("the command still writes after 30 s")
    finally:
        os.close(controller)
        _, errors = proc.communicate(timeout=30 * FACTOR)
    assert proc.returncode == 0, errors
    return written.decode()


def message(msg_type: str, content: dict[str, Any]) -> Message:
    return msg_type, json.dumps(content)


def stream(text: str) -> Message:
    return message("stream", {"name": "stdout", "text": text})


HOSTILE: list[Message] = [
    message("execute_input", {"code": "run()\x1b]0;evil-title\x07", "execution_count": 1}),
    stream("\x1b[31mred\x1b[0m plain\n"),
    stream("progress 0%\rprogress 50%\rprogress 100%\n"),
    stream(
        "osc\x1b]0;evil-title\x07 clip\x1b]52;c;ZXZpbA==\x07 "
        "link:\x1b]8;;http://evil.example/\x1b\\here\x1b]8;;\x1b\\\n"
    ),
    stream(
        "dcs\x1bP1$qm\x1b\\ reset\x1bc alt\x1b[?1049h save\x1b7\x1b[s restore\x1b8\x1b[u "
        "moves\x1b[1A\x1b[2;1H\x1b[5D\x1b[J\n"
    ),
    stream("c1\x9b31m\x9d0;c1-title\x07\x85\x90x\x9c bell\x07\x00\x0b\x0c\x7f\x1b#8\x1b(0 end\n"),
    stream("split\x1b"),  # each sequence cut in two, across two records
    stream("]0;split-title\x07 osc "),
    stream("\x1b[3"),
    stream("2mgreen\x1b[0m\n"),
    stream("gone\x1b[2K\rline\x1b[K\tbs!\b?\n"),
    message("error", {"traceback": ["\x1b[0;31mValueError\x1b[0m", "\x1b]0;tb-title\x07boom"]}),
]
START = "\n─── kernel process 1 on box started t ───\n\n─── In [1]: run()\n"
ON_A_TERMINAL = START + (
    "\x1b[31mred\x1b[0m plain\n"
    "progress 0%\rprogress 50%\rprogress 100%\n"
    "osc clip link:here\n"
    "dcs reset alt save restore moves\n"
    "c1 bell end\n"
    "split osc \x1b[32mgreen\x1b[0m\n"  # both halves of each sequence: one judged whole
    "gone\x1b[2K\rline\x1b[K\tbs!\b?\n"
    "\x1b[0;31mValueError\x1b[0m\nboom\n"
)
PLAIN = START + (
    "red plain\n"
    "progress 100%\n"
    "osc clip link:here\n"
    "dcs reset alt save restore moves\n"
    "c1 bell end\n"
    "split osc green\n"
    "line\tbs?\n"
    "ValueError\nboom\n"
)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    """A daemon holding the output of a kernel that printed HOSTILE, on a hostile host."""
    daemon = Daemon(tmp_path_factory.mktemp("hostile")).start()
    try:
        yield daemon, ingest(daemon, HOSTILE, hostname="box\x1b]0;evil-title\x07")
    finally:
        daemon.stop()


def test_tail_on_a_terminal_keeps_only_colours_and_progress(
    hostile: tuple[Daemon, str],
) -> None:
    """On a terminal, SGR, erase in line, \\r and \\b reach it, also when a sequence is
    split across two records; OSC (titles, clipboard, links), DCS, ESC c, private modes,
    cursor moves and saves, C1 and other controls do not, from any field of a record."""
    daemon, kernel_id = hostile
    assert on_a_terminal(daemon, "tail", kernel_id, "--since", "0") == ON_A_TERMINAL


def test_piped_tail_and_txt_export_hold_no_escape_code(
    hostile: tuple[Daemon, str], tmp_path: Path
) -> None:
    """Piped, `tail` and `export -o x.txt` write plain text: no escape sequence, no control
    but newlines and tabs, each \\r and backspace applied."""
    daemon, kernel_id = hostile
    assert cli(daemon, "tail", kernel_id, "--since", "0") == PLAIN
    cli(daemon, "export", kernel_id, "-o", str(tmp_path / "x.txt"))
    assert (tmp_path / "x.txt").read_text() == PLAIN


# -- records nested as deep as the daemon takes, or of the wrong shape ----------------------


def nested(depth: int) -> str:
    """A JSON array ``depth`` levels deep (json and orjson cannot write one this deep)."""
    return "[" * depth + "]" * depth


def display(mime: str, value: str) -> Message:
    return "display_data", f'{{"data":{{"{mime}":{value}}},"metadata":{{}}}}'


# The daemon takes a batch line nested up to 1,024 deep: the line, content, data and value.
DEEPEST = 1024 - 3
BROKEN: list[Message] = [
    message("execute_input", {"code": "show()", "execution_count": 1}),
    stream("before\n"),
    display("application/json", nested(DEEPEST)),
    display("application/json", nested(1000)),
    display("text/plain", nested(1000)),
    message("error", {"ename": "E", "evalue": "v", "traceback": "not a list"}),
    message("execute_result", {"data": {"text/plain": "42"}, "metadata": {}, "execution_count": 1}),
    stream("after\n"),
]


def test_deep_or_malformed_records_cost_only_themselves(tmp_path: Path) -> None:
    """Records nested as deep as the daemon takes them, and records of the wrong shape, are
    shown and exported as placeholders by tail (piped and -f), export .txt, .jsonl and
    .ipynb and recover, and everything else is still there."""
    daemon = Daemon(tmp_path).start()
    try:
        kernel_id = ingest(daemon, BROKEN)
        first = daemon.head(kernel_id) - len(BROKEN) + 1  # the seq of BROKEN[0]
        placeholders = [
            f"[nbrelay: record {first + 4} could not be rendered: TypeError",
            f"[nbrelay: record {first + 5} could not be rendered: TypeError: traceback is str",
        ]

        def assert_log(text: str) -> None:
            for line in ["before", "[application/json]", "Out[1]: 42", "after"]:
                assert line in text.splitlines(), line
            assert all(placeholder in text for placeholder in placeholders)

        assert_log(cli(daemon, "tail", kernel_id, "--since", "0"))
        cli(daemon, "export", kernel_id, "-o", str(tmp_path / "x.txt"))
        assert_log((tmp_path / "x.txt").read_text())
        assert_log(follow_until(daemon, kernel_id, "after"))

        cli(daemon, "export", kernel_id, "-o", str(tmp_path / "x.jsonl"))
        lines = (tmp_path / "x.jsonl").read_bytes().splitlines()
        assert len(lines) == daemon.kernel(kernel_id)["records"]
        assert [orjson.loads(line)["seq"] for line in lines[-len(BROKEN) :]] == [
            first + n for n in range(len(BROKEN))
        ]
        assert nested(DEEPEST).encode() in lines[-len(BROKEN) + 2]  # as deep as it came

        cli(daemon, "export", kernel_id, "-o", str(tmp_path / "x.ipynb"))
        (cell,) = [c for c in read(tmp_path / "x.ipynb").cells if c.source == "show()"]
        assert_cell(cell, first)

        user = tmp_path / "hostile.ipynb"
        nbformat.write(new_notebook(cells=[new_code_cell("show()")]), user)
        assert "filled 1 cell " in cli(daemon, "recover", str(user), "--kernel", kernel_id)
        assert_cell(read(tmp_path / "hostile.recovered.ipynb").cells[0], first)
    finally:
        daemon.stop()


def read(path: Path) -> Any:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return notebook


def assert_cell(cell: Any, first: int) -> None:
    """The outputs of BROKEN's cell: each record that no notebook can hold is a note."""
    texts = [o.get("text") or o.data["text/plain"] for o in cell.outputs]
    assert texts[0] == "before\n" and texts[2:] == ["42", "after\n"], texts
    notes = re.findall(r"^\[nbrelay: record (\d+) could not be rendered: ", texts[1], re.M)
    assert notes == [str(first + n) for n in (2, 3, 4, 5)], texts[1]


def follow_until(daemon: Daemon, kernel_id: str, last: str) -> str:
    """What `tail -f`, piped, printed up to the line ``last``."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "nbrelay", "tail", kernel_id, "-f", "--since", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(daemon.runtime_dir)},
    )
    assert follower.stdout is not None
    printed = ""
    try:
        while (line := follower.stdout.readline()) and line != last + "\n":
            printed += line
    finally:
        follower.kill()
        follower.communicate()
    return printed + line


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


KEPT = r"\x1b\[[0-9;:]*m|\x1b\[[012]?K"  # what a terminal may get: SGR and erase in line
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but \t and \n
ESCAPES = st.text(alphabet="a;0123[]Pm?Kc7\\\x1b\x07\x9b\x9c\x9d\x85\r\b\n\t\x00", max_size=40)


@given(ESCAPES, st.lists(st.integers(0, 40), max_size=4), st.booleans())
def test_sanitiser_keeps_no_forbidden_sequence_however_the_text_is_cut(
    text: str, cuts: list[int], styles: bool
) -> None:
    """Fed in pieces, the sanitiser writes what it writes for the whole text, and that holds
    only text, \\r, \\b, \\n, \\t and (with styles) complete SGR and erase-line sequences."""
    whole = Sanitiser(styles).feed(text)
    pieces = Sanitiser(styles)
    bounds = [0, *sorted(cuts), len(text)]
    assert "".join(pieces.feed(text[a:b]) for a, b in pairwise(bounds)) == whole
    rest = re.sub(KEPT, "", whole) if styles else whole
    assert not CONTROLS.search(rest.replace("\r", "").replace("\b", ""))
