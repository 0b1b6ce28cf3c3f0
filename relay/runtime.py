"""Where a running daemon says how to reach it, and how clients find it.

The daemon writes ``nbrelay.json`` into Jupyter's runtime directory (``jupyter --runtime-dir``,
``JUPYTER_RUNTIME_DIR`` moves it), the way Jupyter servers write theirs; kernels and the CLI
read it. ``NBRELAY_URL`` and ``NBRELAY_TOKEN`` take precedence, for a daemon elsewhere.

Standard library and jupyter_core only: the kernel hook imports this module.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_runtime_dir, secure_write

RUNTIME_FILE = "nbrelay.json"


@dataclass(frozen=True)
class Endpoint:
    """How to reach a daemon."""

    url: str  # http://host:port/ (with a trailing slash; a base path may follow the port)
    token: str

    def ws_url(self, path: str) -> str:
        """The WebSocket URL of ``path`` (relative, e.g. ``ws/ingest``) on this daemon."""
        base = self.url if self.url.endswith("/") else self.url + "/"
        if base.startswith("https://"):
            base = "wss://" + base[len("https://") :]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://") :]
        return base + path


def runtime_file() -> Path:
    return Path(jupyter_runtime_dir()) / RUNTIME_FILE


def write_runtime_file(info: dict[str, Any]) -> Path:
    """Write the runtime file readable by the user only (it holds the token)."""
    path = runtime_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with secure_write(str(path)) as f:
        json.dump(info, f, indent=1)
    return path


def read_runtime_file() -> dict[str, Any] | None:
    try:
        info = json.loads(runtime_file().read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def remove_runtime_file(pid: int) -> None:
    """Remove the runtime file if it is still ours: a newer daemon may have replaced it."""
    info = read_runtime_file()
    if info is not None and info.get("pid") == pid:
        runtime_file().unlink(missing_ok=True)


def locate_daemon() -> Endpoint | None:
    """The daemon to talk to: ``NBRELAY_URL``/``NBRELAY_TOKEN`` first, else the runtime file.

    Read anew at every connection attempt, because a restarted daemon may have a new port
    and token.
    """
    url = os.environ.get("NBRELAY_URL")
    if url:
        return Endpoint(url=url, token=os.environ.get("NBRELAY_TOKEN", ""))
    info = read_runtime_file()
    if info is None or not isinstance(info.get("url"), str):
        return None
    return Endpoint(url=info["url"], token=str(info.get("token", "")))
