"""Viewer: time from opening the page to the latest output visible, for a kernel that has
printed a million lines (one record each: the worst case), in headless Chromium.

    python benchmarks/viewer.py [--records 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import Daemon, fill, machine
from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp)).start()
        try:
            fill(daemon, "big", args.records)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
                )
                timings = []
                for _ in range(args.runs):
                    page = browser.new_page()
                    start = time.perf_counter()
                    page.goto(f"{daemon.url}?kernel=big#token={daemon.token}")
                    page.get_by_text(f"line {args.records}", exact=True).wait_for()
                    timings.append(time.perf_counter() - start)
                    page.close()
                browser.close()
        finally:
            daemon.stop()
    print(
        json.dumps(
            {
                "benchmark": "viewer: open page to latest output visible",
                "records": args.records,
                "median_s": round(statistics.median(timings), 3),
                "max_s": round(max(timings), 3),
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
