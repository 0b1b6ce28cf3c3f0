"""The daemon's settings: one typed object, filled in by CLI flags and ``NBRELAY_*`` variables."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_data_path

from .errors import NbrelayError
from .runtime import _foreign

MIN_TOKEN_LENGTH = 16  # a guessable token is no token
KiB = 2**10
MiB = 2**20
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": KiB,
    "mib": MiB,
    "gib": 2**30,
}


def default_db() -> Path:
    return user_data_path("nbrelay") / "nbrelay.sqlite3"


def new_token() -> str:
    """256 random bits, URL-safe, so the token can sit in a URL fragment or query."""
    return secrets.token_urlsafe(32)


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped), for ``--token-file``.

    A token on the command line is in every user's ``ps``; a file keeps it to its owner, so
    one that other users could read (or another user's) is refused rather than trusted.
    """
    try:
        with open(path, "rb") as f:
            problem = _foreign(os.fstat(f.fileno()))
            if problem:
                raise NbrelayError(
                    f"the token file {path} is {problem}: make it yours alone (chmod 600 {path})"
                )
            return f.read().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise NbrelayError(f"cannot read the token file {path}: {exc}") from None


def parse_size(text: str) -> int:
    """``"8MiB"``, ``"1GB"``, ``"4096"`` -> bytes; kB/MB/GB count in 1000s, KiB/MiB/GiB in 1024s."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match[2].lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (try 8MiB, 500MB or a number of bytes)")
    return int(float(match[1]) * _UNITS[match[2].lower()])


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"`` or seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (try 7d, 12h, 30m or a number of seconds)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def is_loopback(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1; no other name counts."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port; the runtime file tells which
    #: Path prefix everything is served under, for a reverse proxy that keeps it.
    base_url: str = "/"
    db: Path = field(default_factory=default_db)
    #: "normal": an acknowledged message survives a crash of the daemon (SQLite WAL with
    #: synchronous=NORMAL); "full": it also survives a power loss (synchronous=FULL).
    durability: str = "normal"
    token: str = field(default_factory=new_token, repr=False)
    #: No token at all: anyone who can reach the port reads everything. Loopback only.
    unsafe_no_token: bool = False
    #: Browser origins allowed besides the daemon's own (e.g. behind a proxy).
    allow_origins: tuple[str, ...] = ()
    #: Host names allowed besides loopback ones (DNS rebinding defence; e.g. behind a proxy).
    allow_hosts: tuple[str, ...] = ()
    #: Retention: the oldest records go once the database uses more (0: no limit)...
    max_size: int = 10**9
    #: ...or once they are older than this many seconds (0: no limit).
    max_age: float = 7 * 86400
    #: Largest WebSocket frame accepted. The hook batches below it.
    max_frame_bytes: int = 8 * MiB
    #: Largest output stored whole; a larger one is stored cut, with a marker saying so.
    max_output_bytes: int = 4 * MiB
    max_viewers: int = 64  # /ws/view connections at once
    max_kernels: int = 64  # /ws/ingest connections at once
    #: TCP connections at once, of any kind, counted before any token is checked. At the
    #: limit, a new one takes the place of the one that has waited longest for a request.
    max_connections: int = 1000
    #: Seconds a connection has to send a whole request, from its start or its last response.
    request_timeout: float = 10.0
    #: Records per replay frame and per /api/messages page (the ``limit`` cap).
    page_records: int = 1000
    log_level: str = "info"

    def __post_init__(self) -> None:
        prefix = self.base_url.strip("/")
        object.__setattr__(self, "base_url", f"/{prefix}/" if prefix else "/")  # /a/b/ form
        if self.durability not in ("normal", "full"):
            raise NbrelayError("--durability must be normal or full")
        if len(self.token) < MIN_TOKEN_LENGTH and not self.unsafe_no_token:
            raise NbrelayError(
                f"the token must have at least {MIN_TOKEN_LENGTH} characters; leave --token-file "
                "and NBRELAY_TOKEN out to get a random one"
            )
        if self.unsafe_no_token and not is_loopback(self.host):
            raise NbrelayError(
                f"refusing to listen on {self.host} without a token: anyone who can reach it "
                "could read every output of your kernels. Drop --unsafe-no-token, or listen "
                "on 127.0.0.1."
            )
        if not 4 * KiB <= self.max_output_bytes <= self.max_frame_bytes - 64 * KiB:
            raise NbrelayError(
                "--max-output-bytes must be at least 4 KiB, and 64 KiB below --max-frame-bytes"
            )
        if min(self.max_viewers, self.max_kernels, self.page_records) < 1:
            raise NbrelayError("--max-viewers and --max-kernels must be at least 1")
        if self.max_connections <= self.max_viewers + self.max_kernels:
            raise NbrelayError(
                "--max-connections must be above --max-viewers plus --max-kernels, so that "
                "requests still get through when every WebSocket is in use"
            )
        if self.request_timeout <= 0:
            raise NbrelayError("--request-timeout must be above 0")
