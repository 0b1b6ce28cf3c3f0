"""The daemon's settings: one typed object, filled in by CLI flags and ``NBRELAY_*`` variables."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_data_path

MiB = 2**20


def default_db() -> Path:
    return user_data_path("nbrelay") / "nbrelay.sqlite3"


def new_token() -> str:
    """256 random bits, URL-safe, so the token can sit in a URL fragment or query."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port; the runtime file tells which
    db: Path = field(default_factory=default_db)
    token: str = field(default_factory=new_token, repr=False)
    #: Largest ingest frame. The hook batches below it and never sends a single
    #: message above it (it drops it and the daemon records the gap).
    max_frame_bytes: int = 16 * MiB
    #: Records per replay frame and per /api/messages page (the ``limit`` cap).
    page_records: int = 1000
    log_level: str = "info"
