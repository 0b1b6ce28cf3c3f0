"""The viewer inside JupyterLab and JupyterHub, through jupyter-server-proxy: no SSH tunnel.

jupyter-server-proxy calls :func:`setup_nbrelay` (our ``jupyter_serverproxy_servers`` entry
point) when the Jupyter server starts. The daemon then starts the first time someone opens
``<server>/nbrelay/`` (or its launcher tile), on a port the proxy picks, and the Jupyter
server's own login guards it. The daemon's token is made here, given to the daemon in its
environment and added to every proxied request by the proxy: it never reaches the browser.
The proxy forwards the browser's Host and Origin, which name the Jupyter server; it replaces
them with the daemon's own, since the Jupyter server has already checked both.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

from . import static


def setup_nbrelay() -> dict[str, Any]:
    token = secrets.token_urlsafe(32)
    own = "127.0.0.1:{port}"  # {port} is filled in by jupyter-server-proxy
    return {
        "command": [sys.executable, "-m", "nbrelay", "serve", "--host", "127.0.0.1"]
        + ["--port", "{port}"],
        "environment": {"NBRELAY_TOKEN": token},
        "request_headers_override": {
            "Authorization": f"Bearer {token}",
            "Host": own,
            "Origin": f"http://{own}",
        },
        "timeout": 30,
        "absolute_url": False,  # the viewer's URLs are relative: it works under any prefix
        "new_browser_tab": True,
        "launcher_entry": {
            "title": "nbrelay",
            "icon_path": str(Path(static.__file__).parent / "icon.svg"),
            "category": "Other",
        },
    }
