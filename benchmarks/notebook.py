"""The notebook extension in a real JupyterLab, in headless Chromium, three figures:

- restore: a cell printed ``--lines`` lines of 100 bytes while no page was open; time from
  opening the notebook to its last line visible, against opening the same notebook with the
  outputs saved in it (JupyterLab's own rendering, nbrelay not involved), and the longest
  task that blocked the page meanwhile;
- live: a cell still running when a second page opens is restored there and goes on live;
  how much later than in the page that ran it (JupyterLab's own handling) each line shows;
- idle: requests the page sends to nbrelay in ``--idle`` seconds after the restore.

    python benchmarks/notebook.py [--lines 100000] [--runs 3] [--idle 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from common import Daemon, machine
from playwright.sync_api import Browser, Page, sync_playwright
from support import JUPYTER_TOKEN, JupyterServer, Notebook

LOAD = "%load_ext nbrelay"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    # Both pages of the live figure must run at full speed, as two windows on a desk do.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
# Longest tasks on the page's main thread, kept from the first script on.
LONG_TASKS = """
window.__longest = 0;
new PerformanceObserver(list => {
  for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
}).observe({ type: 'longtask', buffered: true });
"""
# When the restore request went out and its answer was in (ms since the page's start).
ASKED = """() => {
  const asked = performance.getEntriesByType('resource').find(e => e.name.includes('api/nbrelay'));
  return asked ? [asked.startTime, asked.responseEnd] : null;
}"""
# Each line of the cell's stdout, by number, with the time (ms since the epoch) it showed.
LINE_TIMES = """
window.__lines = {};
new MutationObserver(() => {
  const now = performance.timeOrigin + performance.now();
  const out = document.querySelectorAll('.jp-Notebook .jp-Cell')[1]
    ?.querySelector("[data-mime-type='application/vnd.jupyter.stdout']");
  if (!out) return;
  for (const m of out.textContent.matchAll(/tick (\\d+)/g)) window.__lines[m[1]] ??= now;
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def big_cell(lines: int) -> str:
    return f"for i in range({lines}):\n    print(f'{{i:>8}} ' + 'x' * 91)\n"


STDOUT = "[data-mime-type='application/vnd.jupyter.stdout']"


def last_line_shown(page: Page, lines: int) -> None:
    page.wait_for_function(
        f"""last => [...document.querySelectorAll("{STDOUT}")]
             .some(e => e.textContent.trimEnd().endsWith(last))""",
        arg=f"{lines - 1:>8} " + "x" * 91,
        timeout=120_000,
    )


def timed_open(nb: Notebook, lines: int) -> tuple[float, float, tuple[float, float] | None]:
    """Seconds from opening the notebook to its last line shown, the longest task (ms), and
    the seconds from the restore request to its answer and on to the last line shown (None
    without one)."""
    start = time.perf_counter()
    page = nb.open(wait=False)
    last_line_shown(page, lines)
    shown_at = page.evaluate("performance.now()")
    took = time.perf_counter() - start
    longest = float(page.evaluate("window.__longest"))
    asked = page.evaluate(ASKED)
    nb.close()
    if asked is None:
        return took, longest, None
    return took, longest, ((asked[1] - asked[0]) / 1000, (shown_at - asked[1]) / 1000)


def restore(server: JupyterServer, browser: Browser, lines: int, runs: int) -> dict[str, Any]:
    code = big_cell(lines)
    nb = Notebook(server, browser, [LOAD, code], init_script=LONG_TASKS)
    nb.open()
    nb.attach()
    nb.run(0)
    nb.run(1)
    nb.close()  # the cell prints while no page is open
    nb.execution(code, timeout=600)
    restored = [timed_open(nb, lines) for _ in range(runs)]

    # The same outputs saved in the notebook: what JupyterLab itself takes to show them.
    saved = Notebook(server, browser, [LOAD, code], init_script=LONG_TASKS)
    source = nbformat.read(server.workdir / saved.name, as_version=4)
    text = "".join(f"{i:>8} " + "x" * 91 + "\n" for i in range(lines))
    source.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    nbformat.write(source, server.workdir / saved.name)
    plain = [timed_open(saved, lines) for _ in range(runs)]
    return {
        "lines": lines,
        "bytes": len(text),
        "restored_open_median_s": round(statistics.median(t for t, _, _ in restored), 3),
        "restored_open_max_s": round(max(t for t, _, _ in restored), 3),
        "restore_request_to_shown_median_s": round(
            statistics.median(sum(r) for _, _, r in restored if r is not None), 3
        ),
        "restore_request_to_answer_median_s": round(
            statistics.median(r[0] for _, _, r in restored if r is not None), 3
        ),
        "restored_longest_task_ms": round(max(lt for _, lt, _ in restored)),
        "saved_open_median_s": round(statistics.median(t for t, _, _ in plain), 3),
        "saved_longest_task_ms": round(max(lt for _, lt, _ in plain)),
    }


def live(server: JupyterServer, browser: Browser, lines: int) -> dict[str, Any]:
    code = (
        f"import time\nfor i in range({lines}):\n"
        "    print(f'tick {i}', flush=True)\n    time.sleep(0.02)\n"
    )
    nb = Notebook(server, browser, [LOAD, code], init_script=LINE_TIMES)
    ran = nb.open()
    nb.attach()
    nb.run(0)
    nb.run(1)
    ran.wait_for_function("() => Object.keys(window.__lines).length > 20")
    other = browser.new_context().new_page()  # a second window: a reload elsewhere
    other.add_init_script(LINE_TIMES)
    other.goto(f"{server.url}lab/tree/{nb.name}?token={JUPYTER_TOKEN}&reset")
    nb.execution(code, timeout=600)
    last = f"tick {lines - 1}"
    for page in (ran, other):
        page.wait_for_function(f"() => '{lines - 1}' in window.__lines")
    own, restored = ran.evaluate("window.__lines"), other.evaluate("window.__lines")
    # Lines the first page showed a second after the restore came: live in both pages.
    live_from = min(restored.values()) + 1000
    lags = sorted(restored[k] - own[k] for k in own if own[k] > live_from and k in restored)
    other.context.close()
    nb.close()
    if not lags:  # the cell ended before the second page was up: nothing came live
        return {"lines_compared": 0, "last": last}
    return {
        "lines_compared": len(lags),
        "last": last,
        "lag_p50_ms": round(lags[len(lags) // 2], 1),
        "lag_p99_ms": round(lags[int(len(lags) * 0.99)], 1),
        "lag_max_ms": round(lags[-1], 1),
    }


def idle(server: JupyterServer, browser: Browser, seconds: float) -> dict[str, Any]:
    nb = Notebook(server, browser, [LOAD, "print('done')"])
    page = nb.open()
    nb.run(0)
    nb.run(1)
    nb.close()
    page = nb.open()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "api/nbrelay" in r.url else None)
    page.wait_for_timeout(seconds * 1000)  # the measurement itself: a page left alone
    nb.close()
    return {"idle_s": seconds, "requests_to_nbrelay": len(asked)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--live-lines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        workdir = Path(tmp)
        daemon = Daemon(workdir).start()
        server = JupyterServer(workdir, runtime_dir=daemon.runtime_dir)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            result = {
                "benchmark": "notebook extension: restore, live lag, idle requests",
                "restore": restore(server, browser, args.lines, args.runs),
                "live": live(server, browser, args.live_lines),
                "idle": idle(server, browser, args.idle),
                "machine": machine(),
            }
        finally:
            browser.close()
            server.stop()
            daemon.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
