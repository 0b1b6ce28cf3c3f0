"""A short, bounded load: 20 kernels and 50 viewers (5 slow) on one daemon."""

from __future__ import annotations

from load import run
from support import Daemon


def test_load_loses_nothing_and_slow_viewers_hold_up_no_one(daemon: Daemon) -> None:
    """Under load nothing is lost or doubled, every fast viewer keeps up while the slow ones
    lag behind, ingest is all acknowledged, and the daemon's memory stays bounded."""
    report = run(daemon, kernels=20, viewers=50, slow=5, seconds=3, rate=200)
    stored = daemon.messages()
    streams = [r for r in stored if r["msg_type"] == "stream"]
    assert len(streams) == report.sent  # every message, once (seqs are checked by viewers)
    assert len({r["msg_id"] for r in streams}) == report.sent
    assert [r["seq"] for r in stored] == list(range(1, len(stored) + 1))
    for viewer in report.viewers:
        assert not viewer.errors, viewer.errors[:3]
    fast = [v for v in report.viewers if not v.slow]
    assert all(v.last_seq == stored[-1]["seq"] for v in fast)
    # The slow ones were still far behind when ingest had finished: nobody waited for them.
    assert report.slow_behind_at_end > 1000
    assert report.peak_rss_mb < 300, report.peak_rss_mb
