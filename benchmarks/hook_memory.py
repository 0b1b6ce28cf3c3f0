"""The hook's memory while the daemon is down: a kernel prints far more than its buffer holds.

Two kernels print the same long stream, one plain and one with ``%load_ext nbrelay`` and no
daemon to reach (``NBRELAY_URL`` names a closed port), its buffer set to 8 MiB. Their peak
RSS (VmHWM) is compared; the hook's extra must stay near its buffer, however much is printed.

    python benchmarks/hook_memory.py [--lines 400000]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
from pathlib import Path

from common import machine
from support import Kernel, stream_text

BUFFER = 8 * 2**20
PEAK = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns


def peak_mb(kernel: Kernel, lines: int) -> float:
    kernel.run_ok(f"for i in range({lines}): print(f'{{i:>8}} ' + 'x' * 90)", timeout=600)
    return float(stream_text(kernel.run_ok(f"print({PEAK})")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=400_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp)
        down = {
            "NBRELAY_URL": f"http://127.0.0.1:{closed_port()}/",
            "NBRELAY_TOKEN": "no-daemon-listens-here",
            "NBRELAY_BUFFER_BYTES": str(BUFFER),
        }
        plain, hooked = Kernel(runtime), Kernel(runtime, env=down)
        try:
            hooked.run_ok("%load_ext nbrelay")
            result = {
                "benchmark": "hook memory with the daemon down",
                "lines": args.lines,
                "printed_mb": round(args.lines * 100 / 2**20, 1),
                "buffer_mb": BUFFER / 2**20,
                "plain_peak_mb": round(peak_mb(plain, args.lines), 1),
                "nbrelay_peak_mb": round(peak_mb(hooked, args.lines), 1),
                "hook_status": stream_text(hooked.run_ok("%nbrelay")).splitlines()[1].strip(),
                "machine": machine(),
            }
        finally:
            plain.shutdown()
            hooked.shutdown()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
