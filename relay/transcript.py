"""Records as text, for a terminal (``nbrelay tail``) or a plain log file (``export .txt``).

A terminal gets stream text as the kernel wrote it, ANSI colours and ``\\r`` included, so a
progress bar redraws in place. A log file gets what a terminal would finally show: each
``\\r`` overwrite applied, and no escape codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from .protocol import GAP, START

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
RULE = "─" * 3


def _mime_text(content: dict[str, Any]) -> str:
    data = content.get("data") or {}
    text = data.get("text/plain")
    if isinstance(text, list):
        text = "".join(text)
    if isinstance(text, str):
        return text if text.endswith("\n") else text + "\n"
    kinds = ", ".join(sorted(data)) or "nothing"
    return f"[{kinds}]\n"


def render(record: dict[str, Any]) -> str:
    """One record or notice as terminal text: ANSI kept, ``\\r`` left for the terminal."""
    kind = record.get("msg_type") or record.get("type")
    content = record.get("content") or {}
    if kind == "stream":
        return str(content.get("text", ""))
    if kind == "execute_input":
        count = content.get("execution_count")
        code = str(content.get("code", "")).rstrip("\n")
        first, _, rest = code.partition("\n")
        more = f"  (+{rest.count(chr(10)) + 1} lines)" if rest else ""
        return f"\n{RULE} In [{count}]: {first}{more}\n"
    if kind == "error":
        traceback = content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"]
        return "\n".join(map(str, traceback)) + "\n"
    if kind == "execute_result":
        return f"Out[{content.get('execution_count')}]: {_mime_text(content)}"
    if kind in ("display_data", "update_display_data"):
        return _mime_text(content)
    if kind == START:
        return (
            f"\n{RULE} kernel process {content.get('pid')} on {content.get('hostname')} "
            f"started {content.get('started')} {RULE}\n"
        )
    if kind == GAP:
        return (
            f"{RULE} {content.get('dropped')} messages lost: the kernel's buffer was full {RULE}\n"
        )
    if kind == "gap":
        return f"{RULE} {record.get('records')} older records were pruned by retention {RULE}\n"
    if kind == "disconnected":
        return f"\n{RULE} lost the daemon ({record.get('reason')}); reconnecting {RULE}\n"
    return ""  # status, clear_output: nothing to show as text


class Line:
    """A line as a terminal shows it while it is printed: ``\\r`` sends the cursor back to
    its start, and each backspace takes back the character before it, as Jupyter applies
    them. In time linear in what is written, however many of each."""

    def __init__(self) -> None:
        self._shown: list[str] = []  # as of the last \r
        self._part: list[str] = []  # written since, backspaces applied
        self.written = False

    def write(self, text: str) -> None:
        self.written = self.written or bool(text)
        first, *returns = text.split("\r")
        self._add(first)
        for part in returns:
            self._shown[: len(self._part)] = self._part
            self._part = []
            self._add(part)

    def _add(self, part: str) -> None:
        first, *backspaced = part.split("\b")
        self._part.extend(first)
        for piece in backspaced:
            del self._part[-1:]
            self._part.extend(piece)

    def text(self) -> str:
        return "".join(self._part) + "".join(self._shown[len(self._part) :])


def overwrite(line: str) -> str:
    """``line`` as a terminal shows it once each ``\\r`` and backspace is applied."""
    shown = Line()
    shown.write(line)
    return shown.text()


def plain_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The text of ``records`` as a log file keeps it: finished lines, overwrites applied,
    escape codes removed. Progress bars spread over many messages end as one line."""
    line = Line()
    for record in records:
        *finished, rest = ANSI.sub("", render(record)).split("\n")
        for part in finished:
            line.write(part)
            yield line.text() + "\n"
            line = Line()
        line.write(rest)
    if line.written:
        yield line.text() + "\n"
