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


BACKSPACE = re.compile("[^\b]?\b")


def overwrite(line: str) -> str:
    """A line as a terminal shows it once each ``\\r`` has sent the cursor back to its start
    and each backspace has taken back a character."""
    shown = ""
    for part in line.split("\r"):
        while "\b" in part:
            part = BACKSPACE.sub("", part, count=1)
        shown = part + shown[len(part) :]
    return shown


def plain_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The text of ``records`` as a log file keeps it: finished lines, overwrites applied,
    escape codes removed. Progress bars spread over many messages end as one line."""
    pending = ""
    for record in records:
        pending += ANSI.sub("", render(record))
        *lines, pending = pending.split("\n")
        for line in lines:
            yield overwrite(line) + "\n"
    if pending:
        yield overwrite(pending) + "\n"
