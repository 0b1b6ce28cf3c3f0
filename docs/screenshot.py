"""Make docs/screenshot.png (the viewer) and docs/notebook.png (a notebook reopened in
JupyterLab): a real daemon, real kernels running a realistic session, headless Chromium.
Run from the repository root: python docs/screenshot.py"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import Daemon, JupyterServer, Kernel, Notebook  # noqa: E402

CELLS = [
    "import sys, time\nprint('loading data from s3://bucket/train.parquet ...')\n"
    "print('\\x1b[32m✓\\x1b[0m 1,204,311 rows, 38 columns')",
    "for epoch in range(1, 4):\n    for step in range(0, 101, 5):\n"
    "        bar = '█' * (step // 5) + ' ' * (20 - step // 5)\n"
    "        print(f'\\repoch {epoch}: {step:3d}% |{bar}|', end='')\n"
    "    print(f'  loss={0.9 / epoch:.3f}')",
    "from IPython.display import HTML\n"
    "HTML('<table><tr><th>model</th><th>auc</th></tr><tr><td>baseline</td><td>0.81</td></tr>"
    "<tr><td>tuned</td><td>0.87</td></tr></table>')",
    "print('saving checkpoint', file=sys.stderr)\n"
    "raise RuntimeError('out of GPU memory while saving')",
]


TRAINING = (
    "import time\n"
    "for epoch in range(1, 13):\n"
    "    print(f'epoch {epoch:2d}: loss={1 / epoch:.4f}', flush=True)\n"
    "    time.sleep(0.1)\n"
    "raise RuntimeError('out of GPU memory while saving')"
)


def notebook() -> None:
    """docs/notebook.png: the browser was closed while the cell ran; the notebook reopened."""
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        daemon = Daemon(Path(tmp)).start()
        server = JupyterServer(Path(tmp), runtime_dir=daemon.runtime_dir)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            nb = Notebook(server, browser, ["%load_ext nbrelay", TRAINING])
            nb.relaying()
            nb.run(1)
            expect(nb.cell(1).locator(".jp-OutputArea-output")).to_contain_text("epoch  3")
            nb.close()  # the laptop lid closes
            nb.execution(TRAINING)
            page = nb.open()
            page.set_viewport_size({"width": 1280, "height": 800})
            expect(page.get_by_text("out of GPU memory").first).to_be_visible()
            page.keyboard.press("Control+b")  # the file browser away: room for the toolbar
            expect(nb.status).to_be_visible()
            page.screenshot(path=str(Path(__file__).parent / "notebook.png"))
            nb.close()
        finally:
            browser.close()
            server.stop()
            daemon.stop()


def main() -> None:
    notebook()
    viewer()


def viewer() -> None:
    """docs/screenshot.png: the viewer on a realistic session."""
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp)).start()
        kernel = Kernel(daemon.runtime_dir)
        try:
            kernel.run_ok("%load_ext nbrelay")
            for code in CELLS:
                kernel.run(code)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1100, "height": 720})
                page.goto(f"{daemon.url}#token={daemon.token}")
                expect(page.locator("#connection")).to_have_text("live")
                expect(page.get_by_text("out of GPU memory").first).to_be_visible()
                page.screenshot(path=str(Path(__file__).parent / "screenshot.png"))
                browser.close()
        finally:
            kernel.shutdown()
            daemon.stop()


if __name__ == "__main__":
    main()
