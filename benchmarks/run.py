"""Run every benchmark, one after the other, and print their JSON results.

python benchmarks/run.py            # the figures recorded in docs/benchmarks.md
python benchmarks/run.py --quick    # small sizes: a smoke run that the code still works
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = [
    ["ingest.py", "--messages", "200000"],
    ["kernel.py"],
    ["kernel.py", "--pin"],
    ["replay.py", "--records", "1000000"],
    ["viewer.py", "--records", "1000000", "--runs", "5"],
    ["load.py", "--seconds", "60"],
    ["hook_memory.py", "--lines", "1000000"],
    ["notebook.py", "--lines", "100000", "--runs", "3", "--idle", "60"],
    ["widgets.py", "--hours", "1"],
]
QUICK = [
    ["ingest.py", "--messages", "2000"],
    ["kernel.py", "--kernels", "1", "--runs", "1", "--lines", "100"],
    ["kernel.py", "--kernels", "1", "--runs", "1", "--lines", "100", "--pin"],
    ["replay.py", "--records", "5000"],
    ["viewer.py", "--records", "5000", "--runs", "1"],
    ["load.py", "--seconds", "3"],
    ["hook_memory.py", "--lines", "20000"],
    ["notebook.py", "--lines", "2000", "--runs", "1", "--live-lines", "500", "--idle", "2"],
    ["widgets.py", "--hours", "0.01"],
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    failed = 0
    for command in QUICK if args.quick else FULL:
        print(f"== {' '.join(command)}", flush=True)
        failed += (
            subprocess.run([sys.executable, HERE / command[0], *command[1:]], cwd=HERE).returncode
            != 0
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
