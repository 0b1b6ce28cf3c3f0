"""The viewer inside JupyterLab and JupyterHub, through jupyter-server-proxy: no SSH tunnel.

jupyter-server-proxy calls :func:`setup_nbrelay` (our ``jupyter_serverproxy_servers`` entry
point) when the Jupyter server starts. The first time someone opens ``<server>/nbrelay/`` (or
its launcher tile), the proxy runs :func:`main` on a port it picks, and the Jupyter server's
own login guards everything after. :func:`main` uses the daemon the user already runs, if one
answers (README step 1), by forwarding to it (:mod:`nbrelay.forward`); otherwise it runs the
daemon itself; and if that cannot start either, it serves a page that says why, at once.

The daemon's token is read from the runtime file (or ``NBRELAY_TOKEN``) for every request and
added by the proxy, so a daemon restarted with a new token is followed, and the token never
reaches the browser. The proxy forwards the browser's Host and Origin, which name the Jupyter
server; it replaces them with the daemon's own, since the Jupyter server has checked both.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import forward, static
from .errors import START_HINT, NbrelayError
from .runtime import locate_daemon

#: What a page through the proxy says when the daemon it used stops.
RESTART_ADVICE = f"Start it again ({START_HINT}), then reload this page."


def request_headers() -> dict[str, str]:
    """The headers the proxy puts on each request: the token of the daemon that runs now, and
    the daemon's own Host and Origin (``{port}`` is filled in by jupyter-server-proxy)."""
    own = "127.0.0.1:{port}"
    headers = {"Host": own, "Origin": f"http://{own}"}
    try:
        token = locate_daemon().token
    except NbrelayError:
        return headers  # none runs: the page says so
    return {**headers, "Authorization": f"Bearer {token}"} if token else headers


def setup_nbrelay() -> dict[str, Any]:
    return {
        "command": [sys.executable, "-m", "nbrelay.server_proxy", "{port}"],
        "request_headers_override": request_headers,
        "timeout": 30,
        "absolute_url": False,  # the viewer's URLs are relative: it works under any prefix
        "new_browser_tab": True,
        "launcher_entry": {
            "title": "nbrelay",
            "icon_path": str(Path(static.__file__).parent / "icon.svg"),
            "category": "Notebook",  # the launcher shows an icon only in "Notebook" and "Console"
        },
    }


PARENT_CHECK_INTERVAL = 1.0  # seconds between checks that the Jupyter server still runs


def _stop_with_the_jupyter_server() -> None:
    """SIGTERM to this process (for a daemon, a clean stop) once the Jupyter server that
    started it has exited: one that is killed, or stopped by a second Ctrl-C, leaves
    jupyter-server-proxy's processes behind."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_INTERVAL)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="nbrelay-parent", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> None:
    """What jupyter-server-proxy runs: ``python -m nbrelay.server_proxy PORT``."""
    from .cli import build_parser, serve_args

    port = int((sys.argv[1:] if argv is None else argv)[0])
    _stop_with_the_jupyter_server()
    try:
        forward.reach_daemon().close()
    except (NbrelayError, OSError):
        pass  # none answers: run one here
    else:
        print(f"nbrelay: forwarding port {port} to your own daemon", file=sys.stderr)
        forward.serve(port, forward.to_daemon(None, RESTART_ADVICE))
        return
    try:
        serve_args(build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", str(port)]))
    except NbrelayError as exc:
        print(f"nbrelay: error: {exc}", file=sys.stderr)
        advice = f"Fix that, or start it yourself ({START_HINT}), then reload this page."
        forward.serve(port, forward.to_daemon(f"the daemon could not start: {exc}", advice))


if __name__ == "__main__":
    main()
