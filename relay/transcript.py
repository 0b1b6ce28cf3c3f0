"""Records as text, for a terminal (``nbrelay tail``) or a plain log file (``export .txt``).

A terminal gets stream text as the kernel wrote it, colours and ``\\r`` included, so a
progress bar redraws in place, but none of the escape sequences that could do more (see
:class:`Sanitiser`). A log file gets what a terminal would finally show: each ``\\r``
overwrite applied, and no escape codes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .protocol import COMM_TYPES, GAP, START
from .widgets import Widgets, shown_model

RULE = "─" * 3
WHY_CHARS = 200  # of an exception's message in a placeholder: enough to say what was wrong


def cannot_render(record: dict[str, Any], exc: BaseException) -> str:
    """The line that stands for a record nbrelay cannot show, so that one bad record costs
    only itself: the rest of the kernel's output is still shown and exported."""
    message = str(exc).strip().partition("\n")[0]  # nbformat's go on for lines
    why = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(why) > WHY_CHARS:
        why = why[:WHY_CHARS] + "…"
    return f"[nbrelay: record {record.get('seq')} could not be rendered: {why}]"


def of_type(value: Any, kind: type, what: str) -> Any:
    """``value``, or TypeError saying which field of a record has the wrong type."""
    if not isinstance(value, kind):
        raise TypeError(f"{what} is {type(value).__name__}, not {kind.__name__}")
    return value


def _mime_text(content: dict[str, Any]) -> str:
    data = of_type(content.get("data", {}), dict, "data")
    text = data.get("text/plain")
    if isinstance(text, list):
        text = "".join(text)
    if isinstance(text, str):
        return text if text.endswith("\n") else text + "\n"
    kinds = ", ".join(sorted(data)) or "nothing"
    return f"[{kinds}]\n"


def render(record: dict[str, Any]) -> str:
    """One record or notice as terminal text, escape codes and ``\\r`` as the kernel wrote
    them (see :class:`Sanitiser`); a record of a shape no kernel sends as a placeholder."""
    try:
        return _render(record)
    except Exception as exc:  # hostile or broken content: any error, only this record's
        return cannot_render(record, exc) + "\n"


def _render(record: dict[str, Any]) -> str:
    kind = record.get("msg_type") or record.get("type")
    content = of_type(record.get("content") or {}, dict, "content")
    if kind == "stream":
        text: str = of_type(content.get("text", ""), str, "text")
        return text
    if kind == "execute_input":
        count = content.get("execution_count")
        code = of_type(content.get("code", ""), str, "code").rstrip("\n")
        first, _, rest = code.partition("\n")
        more = f"  (+{rest.count(chr(10)) + 1} lines)" if rest else ""
        return f"\n{RULE} In [{count}]: {first}{more}\n"
    if kind == "error":
        default = [f"{content.get('ename')}: {content.get('evalue')}"]
        traceback = of_type(content.get("traceback") or default, list, "traceback")
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


class Transcript:
    """:func:`render` for records in seq order, with widget progress bars as text lines.

    A bar is drawn as one line when it is displayed, then redrawn in place with ``\r`` on
    each update, like tqdm's own terminal line, as long as nothing else was written after
    it. Once other output ended its line, the bar's next update draws it anew below, as
    tqdm's does in a terminal, unless another bar's line is open: then (bars in parallel)
    it is drawn once with its latest state when its execution ends (an idle status) or the
    records do (:meth:`finish`), not on each update.
    """

    def __init__(self) -> None:
        self.widgets = Widgets()
        self._shown: dict[str, str] = {}  # displayed model -> its line as last written
        self._open: str | None = None  # the model whose line the cursor is on
        self._behind: dict[str, None] = {}  # displayed models updated since left behind

    def render(self, record: dict[str, Any]) -> str:
        """The text ``record`` adds to what was written so far."""
        kind = record.get("msg_type")
        try:
            if kind in COMM_TYPES:
                changed = self.widgets.apply(record)
                return "" if changed is None else self._redraw(changed)
            content = record.get("content")
            model = shown_model(content) if isinstance(content, dict) else None
            line = None if model is None else self.widgets.line(model)
        except Exception as exc:  # hostile or broken content: only this record's
            return self._after_open(cannot_render(record, exc) + "\n")
        if model is not None and line is not None:
            text = self._after_open(line)
            self._shown[model], self._open = line, model
            return text
        if kind == "status" and (content or {}).get("execution_state") == "idle":
            return self.finish()
        return self._after_open(render(record))

    def recall(self, record: dict[str, Any]) -> None:
        """Take in a record written before this transcript starts (``tail`` starts near the
        end): its widget models and the bars it displayed, so that later updates show."""
        with contextlib.suppress(Exception):  # as render() would: only this record is lost
            if record.get("msg_type") in COMM_TYPES:
                self.widgets.apply(record)
            elif (model := shown_model(record.get("content") or {})) is not None:
                line = self.widgets.line(model)
                if line is not None:
                    self._shown[model] = line

    def finish(self) -> str:
        """The latest lines of the bars left behind since their last update."""
        text = ""
        for model in self._behind:
            line = self.widgets.line(model)
            if line is not None and line != self._shown.get(model):
                text += self._after_open("") + line + "\n"
                self._shown[model] = line
        self._behind.clear()
        return text

    def _after_open(self, text: str) -> str:
        """``text``, after the end of the open bar's line if it is not empty."""
        if text and self._open is not None:
            self._open = None
            return "\n" + text
        return text

    def _redraw(self, changed: str) -> str:
        text = ""
        for model in self._shown:
            if changed not in self.widgets.closure([model]):
                continue
            line = self.widgets.line(model)
            if line is None or line == self._shown[model]:
                continue
            if model == self._open:
                pad = " " * (len(self._shown[model]) - len(line))
                text += "\r" + line + pad
                self._shown[model] = line
            elif self._open is None:
                text += line
                self._shown[model], self._open = line, model
                self._behind.pop(model, None)
            else:
                self._behind[model] = None
        return text


# -- what may reach a terminal --------------------------------------------------------------

# Where plain text stops: every C0 control but \t, \n, \r and \b (ESC among them), DEL, and
# the 8-bit C1 controls, which many terminals obey as ESC plus a character.
_GROUND_STOP = re.compile("[\x00-\x07\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# What ends a control string (OSC, DCS, SOS, PM, APC): BEL or ST (ESC \ or 0x9C), CAN or SUB
# (which abort it in terminals), and a newline: no real one holds a newline, and a stray
# introducer must not swallow the rest of the output.
_STRING_STOP = re.compile("[\x07\n\x18\x1a\x1b\x9c]")
_CSI_END = re.compile("[^ -?]")  # past the parameter and intermediate bytes
_SGR_PARAMETERS = re.compile("[0-9;:]*")
_ERASE_LINE = ("", "0", "1", "2")  # ESC [ K: to the end, from the start, or the whole line
_C1_STRINGS = "\x90\x98\x9d\x9e\x9f"  # DCS, SOS, OSC, PM, APC in their 8-bit form
_MAX_CSI = 64  # parameter bytes: 38;2;r;g;b;48;2;r;g;b is 35, and no allowed one is longer

_GROUND, _ESCAPE, _NF, _CSI, _STRING, _STRING_ESCAPE = range(6)


class Sanitiser:
    """Kernel text cut down to what a terminal may safely be given, fed record by record.

    A terminal obeys the escape sequences it prints: a kernel's output could set the window
    title, write the clipboard (OSC 52), plant hyperlinks, ask the terminal to answer (DCS),
    reset it, switch to the alternate screen or move the cursor to rewrite lines already
    shown. With ``styles``, only what colours and progress bars need goes through: SGR
    (``ESC [ ... m``), erase in line (``ESC [ K``), ``\\r``, ``\\b``, ``\\n`` and ``\\t``;
    without, for a pipe or a file, not even those two sequences. Anything else is dropped
    whole, introducer included, so the terminal never enters a sequence it was not given in
    full, and the text after it is shown as text.

    The state carries over from one :meth:`feed` to the next, so a sequence split across two
    records is judged once it is complete; one that never completes is never written.
    """

    def __init__(self, styles: bool) -> None:
        self.styles = styles
        self._state = _GROUND
        self._csi = ""  # the parameter and intermediate bytes of the CSI being read
        self._csi_allowed = False  # begun with ESC [, not with the 8-bit CSI

    def feed(self, text: str) -> str:
        """What of ``text`` may be written, given what came before it."""
        out: list[str] = []
        i, size = 0, len(text)
        while i < size:
            state = self._state
            if state == _GROUND:
                stop = _GROUND_STOP.search(text, i)
                end = size if stop is None else stop.start()
                out.append(text[i:end])
                if stop is None:
                    break
                char, i = text[end], end + 1
                if char == "\x1b":
                    self._state = _ESCAPE
                elif char == "\x9b":  # CSI in its 8-bit form: read, and dropped
                    self._start_csi(allowed=False)
                elif char in _C1_STRINGS:
                    self._state = _STRING
                # any other control is dropped alone
            elif state == _STRING:
                stop = _STRING_STOP.search(text, i)
                if stop is None:
                    break  # still inside it: the rest is dropped
                i = stop.end()
                if stop.group() == "\x1b":
                    self._state = _STRING_ESCAPE
                else:
                    self._state = _GROUND
                    if stop.group() == "\n":
                        out.append("\n")
            elif state == _CSI:
                stop = _CSI_END.search(text, i)
                end = size if stop is None else stop.start()
                self._csi += text[i:end][: _MAX_CSI + 1 - len(self._csi)]
                if stop is None:
                    break  # not complete yet
                char, i = text[end], end
                self._state = _GROUND
                if "@" <= char <= "~":
                    i += 1
                    out.append(self._finished_csi(char))
                # else malformed: dropped, and the character is read as text again
            else:
                char = text[i]
                i = self._escape(state, char, i)
        return "".join(out)

    def _start_csi(self, allowed: bool) -> None:
        self._state, self._csi, self._csi_allowed = _CSI, "", allowed

    def _finished_csi(self, final: str) -> str:
        params = self._csi
        if not (self.styles and self._csi_allowed and len(params) <= _MAX_CSI):
            return ""
        if final == "m" and _SGR_PARAMETERS.fullmatch(params):
            return f"\x1b[{params}m"
        if final == "K" and params in _ERASE_LINE:
            return f"\x1b[{params}K"
        return ""

    def _escape(self, state: int, char: str, i: int) -> int:
        """One character after ESC, in ``state``; where to read on."""
        if state == _STRING_ESCAPE:
            if char == "\\":  # ST: the control string ends
                self._state = _GROUND
                return i + 1
            state = _ESCAPE  # any other ESC ends it and starts a sequence of its own
        if state == _NF:  # ESC, intermediates (0x20-0x2F), a final: a charset, DECALN...
            if " " <= char <= "/":
                return i + 1
            self._state = _GROUND
            return i + 1 if "0" <= char <= "~" else i
        # Just after ESC.
        if char == "[":
            self._start_csi(allowed=True)
        elif char in "]PX^_":  # OSC, DCS, SOS, PM, APC
            self._state = _STRING
        elif " " <= char <= "/":
            self._state = _NF
        elif "0" <= char <= "~":  # a two-character sequence: ESC c, ESC 7, ESC 8, ESC M...
            self._state = _GROUND
        else:  # not a sequence: the ESC alone is dropped, the character read again
            self._state = _GROUND
            return i
        return i + 1


# -- what a terminal finally shows ----------------------------------------------------------


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

    @property
    def cursor(self) -> int:
        """Where the next character goes: after what was written since the last ``\\r``."""
        return len(self._part)


def overwrite(line: str) -> str:
    """``line`` as a terminal shows it once each ``\\r`` and backspace is applied."""
    shown = Line()
    shown.write(line)
    return shown.text()


def plain_lines(
    records: Iterable[dict[str, Any]], transcript: Transcript | None = None
) -> Iterator[str]:
    """The text of ``records`` as a log file keeps it: finished lines, overwrites applied,
    escape codes removed. Progress bars spread over many messages end as one line. A
    ``transcript`` that recalled earlier records shows the widgets they made."""
    clean = Sanitiser(styles=False)
    transcript = transcript or Transcript()

    def texts() -> Iterator[str]:
        yield from map(transcript.render, records)
        yield transcript.finish()

    line = Line()
    for text in texts():
        *finished, rest = clean.feed(text).split("\n")
        for part in finished:
            line.write(part)
            yield line.text() + "\n"
            line = Line()
        line.write(rest)
    if line.written:
        yield line.text() + "\n"
