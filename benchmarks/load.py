"""Load: 20 kernels (the hook's own sending code) and 50 viewers, 5 of them slow, on one
daemon for a minute; figures for stored messages/s, viewer lag and daemon memory.

    python benchmarks/load.py [--seconds 60] [--rate 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import Daemon, machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from load import run, summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=50, help="messages/s per kernel")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp)).start()
        try:
            report = run(
                daemon, kernels=20, viewers=50, slow=5, seconds=args.seconds, rate=args.rate
            )
        finally:
            daemon.stop()
    errors = sum(len(v.errors) for v in report.viewers)
    print(
        json.dumps(
            {
                "benchmark": "load: 20 kernels, 50 viewers (5 slow)",
                **summary(report),
                "viewer_errors": errors,
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
