"""The viewer against hostile output and hostile records, in a real Chromium with a real daemon:
nothing a kernel prints or a token holder sends stops the page from showing the rest."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from support import FACTOR, Daemon

expect.set_options(timeout=20_000 * FACTOR)

COLUMNS = 1000  # static/terminal.js COLUMNS
WIDTH = 10_000  # static/terminal.js WIDTH: where text wraps
SEGMENTS = 256  # static/terminal.js SEGMENTS: styled segments per row
FAR = 9_999_999_999  # ten billion: more spaces or lines than a tab can hold
LONG = "y" * 100_000

# Written to a Terminal: none may throw, and what it holds stays within what was written,
# plus at most a screen's width of spaces per line, in a bounded number of styled segments.
BOUNDED_CASES = {
    "cursor forward": f"a\x1b[{FAR}Cb",
    "cursor to column": f"a\x1b[{FAR}Gb",
    "cursor forward past any number": f"a\x1b[{'9' * 400}Cb",
    "erase to the start after a far move": f"a\x1b[{FAR}C\x1b[1Kb",
    "cursor down": "a\x1b[10000000Bb",
    "up from a long line": "a\n" * 50 + LONG + "\x1b[Ab" * 50,
    "down from a long line": "\n" * 50 + "\x1b[50A" + LONG + "\x1b[Bb" * 50,
    "colours, then overwrites": "\x1b[31mx\x1b[32mx" * 2000 + "\rz" * 20_000 + "\x1b[0mb",
}


@pytest.mark.parametrize("written", BOUNDED_CASES.values(), ids=BOUNDED_CASES.keys())
def test_terminal_counts_are_bounded(daemon: Daemon, page: Page, written: str) -> None:
    """Cursor moves stop at a screen's edge and a line's styles are bounded: no count makes
    the terminal throw or hold more than what was written plus a screen's width per line."""
    page.goto(daemon.url)
    held = page.evaluate(
        """async (written) => {
            const { Terminal } = await import("./static/terminal.js");
            const t = new Terminal();
            try {
                t.write(written);
            } catch (e) {
                return { error: String(e) };
            }
            const chars = t.lines.reduce((n, l) => n + l.reduce((m, s) => m + s.text.length, 0), 0);
            const segments = Math.max(...t.lines.map((l) => l.length));
            return { lines: t.lines.length + t.trimmed, chars, segments, text: t.text() };
        }""",
        written,
    )
    assert "error" not in held, held["error"]
    assert held["lines"] <= written.count("\n") + 1 + len(written) // WIDTH
    assert held["chars"] <= len(written) + COLUMNS * held["lines"]
    assert held["segments"] <= SEGMENTS
    assert "b" in held["text"]


def test_terminal_wraps_long_lines_and_gives_them_back_whole(daemon: Daemon, page: Page) -> None:
    """A line longer than the terminal's width wraps into rows, which text() joins again; "\\r"
    goes back to the start of the last row, as on a terminal."""
    page.goto(daemon.url)
    line = "".join(f"{n:09d}," for n in range(2500))  # 25,000 characters
    rows, text = page.evaluate(
        """async (line) => {
            const { Terminal } = await import("./static/terminal.js");
            const t = new Terminal();
            t.write(line + "\\rX\\nnext\\n");
            return [t.lines.map((l) => l.map((s) => s.text).join("").length), t.text()];
        }""",
        line,
    )
    assert rows == [WIDTH, WIDTH, 5000, 4, 0]
    assert text == line[: 2 * WIDTH] + "X" + line[2 * WIDTH + 1 :] + "\nnext\n"


def test_terminal_reads_at_most_32_sgr_parameters(daemon: Daemon, page: Page) -> None:
    """An SGR sequence's parameters past the 32nd are ignored: terminals read a bounded number."""
    page.goto(daemon.url)
    written = "\x1b[" + "1;" * 31 + "4;31mx\x1b[0m" + "\x1b[" + "1;" * 32 + "4;31my"
    styles = page.evaluate(
        """async (written) => {
            const { Terminal } = await import("./static/terminal.js");
            const t = new Terminal();
            t.write(written);
            return t.lines[0].map((s) => [s.text, JSON.stringify(s.style)]);
        }""",
        written,
    )
    assert styles == [["x", '{"bold":true,"underline":true}'], ["y", '{"bold":true}']]
