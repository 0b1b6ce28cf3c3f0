"""The viewer against hostile output and hostile records, in a real Chromium with a real daemon:
nothing a kernel prints or a token holder sends stops the page from showing the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from support import FACTOR, Daemon, Kernel

from nbrelay import protocol

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


def stream(text: str) -> tuple[str, dict[str, Any]]:
    return "stream", {"name": "stdout", "text": text}


# Records a token holder can send: each is stored (the daemon checks only the frame), and
# each must end as an error box, or as its bounded text, without stopping the others.
BAD = {
    "execute_input without code": ("execute_input", {"execution_count": 1}),
    "a traceback that is a string": (
        "error",
        {"ename": "E", "evalue": "v", "traceback": "not a list"},
    ),
    "data that is not an object": ("display_data", {"data": "not an object", "metadata": {}}),
    "stream text that is not a string": ("stream", {"name": "stdout", "text": {"a": 1}}),
    "an update whose data is a list": (
        "update_display_data",
        {"data": [1], "metadata": {}, "transient": {"display_id": "d"}},
    ),
}


def send(ws: Any, first: int, records: list[tuple[str, dict[str, Any]]], parent: str) -> int:
    """Records ``first``... of an ingest connection, as msg_ids ``m{n}``, under cell ``parent``;
    the last n sent."""
    entries = [
        protocol.encode_output(n, f"m{n}", msg_type, parent, "t", json.dumps(content))
        for n, (msg_type, content) in enumerate(records, start=first)
    ]
    ws.send(protocol.encode_batch(entries))
    last = first + len(records) - 1
    assert json.loads(ws.recv(10 * FACTOR))["acked"] == last
    return last


@pytest.fixture
def page_errors(page: Page) -> Iterator[list[str]]:
    """Every uncaught error of the page; the test checks it stays empty."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield errors


def test_bad_records_show_as_error_boxes_and_the_rest_renders(
    daemon: Daemon, page: Page, page_errors: list[str]
) -> None:
    """Records of the wrong shape and a cursor move of ten billion columns, loaded with the
    page or arriving live: each bad record is a box naming its seq, and every record before
    and after it, and another kernel, still show; the page raises no error."""
    bad = list(BAD.values())
    display = ("display_data", {"data": {"text/plain": "shown"}, "transient": {"display_id": "d"}})
    with daemon.ingest(protocol.Hello("other", "other-1", None, "h", 1, "t")) as ws:
        send(ws, 1, [stream("the other kernel\n")], "cell-o")
    with daemon.ingest(protocol.Hello("hostile", "hostile-1", None, "h", 1, "t")) as ws:
        # Loaded when the page opens, through /api/messages:
        n = send(ws, 1, [stream("first\n"), display, *bad, stream("second\n")], "cell-1")
        bad_ns = list(range(3, 3 + len(bad)))
        page.goto(f"{daemon.url}?kernel=hostile#token={daemon.token}")
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.get_by_text("second", exact=True)).to_be_visible()
        # Then live, through /ws/view, with the records after each bad one in the same frame:
        far, down = stream(f"\x1b[{FAR}Cfar\n"), stream(f"x\x1b[{FAR}Bdown\n")
        send(ws, n + 1, [*bad, far, down, stream("third\n")], "cell-2")
        bad_ns += list(range(n + 1, n + 1 + len(bad)))
    view = page.locator('.kernel[data-kernel="hostile"]')
    expect(view.get_by_text("third", exact=True)).to_be_visible()
    for text in ("first", "shown", "second"):
        expect(view.get_by_text(text, exact=True)).to_be_visible()
    expect(view.locator(".line", has_text="down")).to_have_text("xdown")
    assert view.locator(".line", has_text="far").text_content() == " " * (COLUMNS - 1) + "far"
    bad_msg_ids = {f"m{n}" for n in bad_ns}
    records = daemon.messages(kernel_id="hostile")
    bad_seqs = [r["seq"] for r in records if r["msg_id"] in bad_msg_ids]
    boxes = view.locator(".broken")
    expect(boxes).to_have_count(len(bad_seqs))
    for box, seq in zip(boxes.all(), bad_seqs, strict=True):
        expect(box).to_contain_text(f"record {seq} ")
        expect(box).to_contain_text("could not be shown")
    expect(page.locator("nav li.selected .meta")).to_have_text("h")  # its times are not times
    page.locator("nav li:not(.selected) button").click()
    expect(page.get_by_text("the other kernel", exact=True)).to_be_visible()
    assert page_errors == []


def test_a_kernel_printing_huge_cursor_moves_leaves_the_page_working(
    daemon: Daemon, kernel: Kernel, page: Page, page_errors: list[str]
) -> None:
    """A real kernel printing cursor moves of ten billion columns and lines: the page shows
    the text around them, and what the kernel prints next."""
    page.goto(f"{daemon.url}#token={daemon.token}")
    kernel.run_ok(
        f"print('before')\nprint('\\x1b[{FAR}Cright')\nprint('\\x1b[{FAR}Gedge')\n"
        f"print('x\\x1b[{FAR}Bdown')"
    )
    kernel.run_ok(f"print('\\x1b[{FAR}A\\x1b[{FAR}Dtop')\nprint('after')")
    view = page.locator(f'.kernel[data-kernel="{kernel.kernel_id}"]')
    expect(view.get_by_text("after", exact=True)).to_be_visible()
    for text in ("before", "xdown", "top"):
        expect(view.get_by_text(text, exact=True)).to_be_visible()
    for text in ("right", "edge"):
        expect(view.locator(".line", has_text=text)).to_have_count(1)
    assert page_errors == []
