"""Widget progress bars (#22): ten tqdm.auto bars updating ten times a second, as a kernel
sends them (each tick: the bar's value and its two HTML texts, three comm_msg), with a line
of stream output each second; records stored, database size, ingest rate and replay time.

Updates of one model are stored coalesced (relay/coalesce.py), so what is stored and
replayed does not grow with the hours simulated: only the stream lines do.

    python benchmarks/widgets.py [--hours 1] [--bars 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import Daemon, machine
from websockets.sync.client import connect

from nbrelay import protocol

TICKS_PER_S = 10
BATCH = 2000


def messages(bars: int, seconds: int) -> Iterator[tuple[str, dict[str, object]]]:
    """(msg_type, content) as the kernel sends them: the bars' widgets opened, then each
    second ten ticks of every bar and one stream line."""
    for bar in range(bars):
        for part, state in (
            ("left", {"_model_name": "HTMLModel", "value": ""}),
            ("bar", {"_model_name": "FloatProgressModel", "value": 0.0, "max": 1e9}),
            ("right", {"_model_name": "HTMLModel", "value": ""}),
        ):
            yield (
                "comm_open",
                {
                    "comm_id": f"{bar}-{part}",
                    "target_name": "jupyter.widget",
                    "data": {"state": state, "buffer_paths": []},
                },
            )
    tick = 0
    for second in range(seconds):
        for _ in range(TICKS_PER_S):
            tick += 1
            for bar in range(bars):
                for part, value in (
                    ("left", f"epoch {bar}: {tick % 100:3d}%"),
                    ("bar", float(tick)),
                    ("right", f" {tick}/1000000000 [00:{second:02d}&lt;?, 10.00it/s]"),
                ):
                    data = {"method": "update", "state": {"value": value}, "buffer_paths": []}
                    yield "comm_msg", {"comm_id": f"{bar}-{part}", "data": data}
        yield "stream", {"name": "stdout", "text": f"second {second}\n"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours of bars")
    parser.add_argument("--bars", type=int, default=10)
    args = parser.parse_args()
    seconds = int(args.hours * 3600)
    hello = protocol.Hello("bars", "bars-1", "bars.ipynb", "bench", 1, "t")
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp)).start()
        try:
            start = time.perf_counter()
            sent = 0
            with daemon.ingest(hello) as ws:
                entries = []
                for n, (msg_type, content) in enumerate(messages(args.bars, seconds), start=1):
                    time_ = "2026-01-01T00:00:00Z"
                    entries.append(
                        protocol.encode_output(
                            n, f"m{n}", msg_type, "cell-1", time_, json.dumps(content)
                        )
                    )
                    if len(entries) == BATCH:
                        ws.send(protocol.encode_batch(entries))
                        entries = []
                    sent = n
                if entries:
                    ws.send(protocol.encode_batch(entries))
                acked = 0
                while acked < sent:
                    acked = json.loads(ws.recv())["acked"]
            ingest_took = time.perf_counter() - start
            stored = daemon.kernel("bars")["records"]
            db_bytes = sum(p.stat().st_size for p in Path(tmp).glob(daemon.db.name + "*"))
            url = daemon.ws_url(f"ws/view?since=0&kernel_id=bars&token={daemon.token}")
            start = time.perf_counter()
            replayed = 0
            with connect(url, proxy=None, max_size=None) as ws:
                while isinstance(data := json.loads(ws.recv()), list):
                    replayed += len(data)
            replay_took = time.perf_counter() - start
        finally:
            daemon.stop()
    streams = seconds
    assert replayed == stored, (replayed, stored)
    print(
        json.dumps(
            {
                "benchmark": "widgets",
                "bars": args.bars,
                "simulated_hours": args.hours,
                "messages_sent": sent,
                "stream_lines": streams,
                "records_stored": stored,
                "widget_records_stored": stored - streams - 1,  # less the start record
                "database_mb": round(db_bytes / 2**20, 1),
                "ingest_messages_per_s": round(sent / ingest_took),
                "replay_ms": round(replay_took * 1000, 1),
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
