"""The CLI's commands other than ``serve``: each takes the parsed arguments, prints, and
returns the exit code. Errors are NbrelayError, which the CLI prints as one line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .client import Client
from .datadir import open_private, private_data_folder
from .errors import NbrelayError
from .protocol import MAX_SEQ
from .runtime import login_url, read_runtime_file, runtime_file
from .transcript import Sanitiser, Transcript, plain_lines, render
from .widgets import WIDGET_RECORDS

START_TIMEOUT = 30.0  # seconds for a detached daemon to serve
STOP_TIMEOUT = 15.0  # seconds for a daemon to stop after SIGTERM


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running nbrelay daemon (not a process that reused its number)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's process now
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"nbrelay" in cmdline.read_bytes()


# -- daemon life cycle --------------------------------------------------------------------


def detach(db: Path, serve_argv: list[str]) -> int:
    """``serve --detach``: start the daemon in its own session, wait until it serves."""
    private_data_folder(db)
    log_path = db.with_name(db.name + ".log")  # the log goes beside the database
    with open(open_private(log_path, os.O_CREAT | os.O_WRONLY | os.O_APPEND), "ab") as log:
        # A daemon that runs on this database logs here too: only what follows is this start's.
        start = os.fstat(log.fileno()).st_size
        child = subprocess.Popen(
            [sys.executable, "-m", "nbrelay", *serve_argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a closed terminal or Ctrl-C there does not stop it
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            with open(log_path, "rb") as written:
                written.seek(start)
                tail = written.read().decode(errors="replace").strip().splitlines()[-5:]
            raise NbrelayError(
                "the daemon did not start:\n    " + "\n    ".join(tail) + f"\n(log: {log_path})"
            )
        try:
            info = read_runtime_file()
        except NbrelayError:
            info = {}
        if info.get("pid") == child.pid:
            token = info.get("token")
            viewer = f"{info['url']}#token={token}" if token else info["url"]
            print(f"nbrelay is running in the background (pid {child.pid}, log {log_path})")
            print(f"    Viewer: {viewer}")
            return 0
        time.sleep(0.05)
    child.terminate()
    raise NbrelayError(f"the daemon did not start within {START_TIMEOUT:.0f} s (log: {log_path})")


def status(args: argparse.Namespace) -> int:
    """Where the daemon runs and how it is; exit 1 if none answers."""
    client = Client()
    health = client.get("api/health")
    kernels = client.kernels()
    try:
        info = read_runtime_file()
    except NbrelayError:
        info = {}  # reached through NBRELAY_URL
    report: dict[str, Any] = {
        "url": client.endpoint.url,
        "port": info.get("port"),
        "token": client.endpoint.token,
        "pid": info.get("pid"),
        "db": info.get("db"),
        "version": info.get("version"),
        "storage": health["storage"],
        "last_seq": health["last_seq"],
        "db_bytes": health["db_bytes"],
        "kernels": len(kernels),
        "connected": sum(1 for k in kernels if k.get("connected")),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    pid = f" (pid {report['pid']})" if report["pid"] else ""
    print(f"nbrelay is running at {report['url']}{pid}")
    where = None if info else "NBRELAY_TOKEN"  # reached through NBRELAY_URL
    login = login_url(report["url"], client.endpoint.token, sys.stdout.isatty(), where)
    print(f"    log a browser in (once): {login}")
    if report["db"]:
        print(f"    database: {report['db']}, {report['db_bytes'] / 1e6:.1f} MB")
    print(f"    storage: {report['storage']}, {report['last_seq']} records")
    print(f"    kernels: {report['kernels']} known, {report['connected']} connected now")
    return 0


def stop(args: argparse.Namespace) -> int:
    """SIGTERM to the daemon named in the runtime file; wait until it is gone."""
    info = read_runtime_file()
    pid = info.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        runtime_file().unlink(missing_ok=True)
        print("nbrelay was not running (removed its stale runtime file)")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid):
        if time.monotonic() > deadline:
            raise NbrelayError(f"the daemon (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s")
        time.sleep(0.05)
    print(f"nbrelay stopped (pid {pid})")
    return 0


# -- reading output -----------------------------------------------------------------------


def ls(args: argparse.Namespace) -> int:
    kernels = Client().kernels()
    if not kernels:
        print("no kernels yet: run %load_ext nbrelay in a notebook")
        return 0
    rows = [
        (
            k["kernel_id"][:12],
            k.get("notebook") or "-",
            "connected" if k.get("connected") else "gone",
            k.get("execution_state") or "-",
            (k.get("last_time") or "-")[:19].replace("T", " "),
            str(k.get("records", "-")),
        )
        for k in kernels
    ]
    header = ("KERNEL", "NOTEBOOK", "LINK", "STATE", "LAST ACTIVITY (UTC)", "RECORDS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def tail(args: argparse.Namespace) -> int:
    client = Client()
    kernel = client.kernel(args.kernel)
    kernel_id = kernel["kernel_id"]
    since = _before_last(client, kernel_id, args.records) if args.since is None else args.since
    records = client.follow(kernel_id, since) if args.follow else client.history(kernel_id, since)
    transcript = Transcript()
    for earlier in client.history(kernel_id, types=WIDGET_RECORDS):  # bars shown before
        if earlier.get("seq", 0) > since:
            break
        transcript.recall(earlier)
    out = sys.stdout
    try:
        if out.isatty():  # colours and progress bars as the kernel drew them, and no more
            screen = Sanitiser(styles=True)
            for record in records:
                out.write(screen.feed(transcript.render(record)))
                out.flush()
        else:  # a pipe or a file: plain lines, as `export .txt` writes them
            for line in plain_lines(records, transcript):
                out.write(line)
                if args.follow:
                    out.flush()
    except KeyboardInterrupt:
        out.write("\n")
    return 0


def _before_last(client: Client, kernel_id: str, count: int) -> int:
    """The seq just before the kernel's last ``count`` records that print something, read
    backwards. Status records print nothing, and a kernel that shut down ends with them: a
    count that included them showed nothing at all for ``-n 3``."""
    before = MAX_SEQ  # the newest first
    while True:
        page = client.get("api/messages", kernel_id=kernel_id, before=before, limit=100)
        messages = page["messages"]
        for record in reversed(messages):
            if render(record):
                count -= 1
                if count <= 0:
                    return int(record["seq"]) - 1
        if not messages:
            return 0  # fewer than ``count``: all of them
        before = messages[0]["seq"]


def export(args: argparse.Namespace) -> int:
    client = Client()
    kernel = client.kernel(args.kernel)
    records = client.history(kernel["kernel_id"])
    path: Path = args.output
    suffix = path.suffix.lower()
    if suffix == ".ipynb":
        from .notebook import export_notebook, write  # nbformat: only when asked for

        notebook = export_notebook(records, kernel)  # a gap notice too: see executions()
        write(notebook, path)
        print(f"wrote {len(notebook.cells)} cells to {path}")
    elif suffix == ".jsonl":
        texts = client.record_texts(kernel["kernel_id"])
        with path.open("wb") as f:  # each record as the daemon sent it, byte for byte
            count = sum(f.write(text + b"\n") > 0 for text in texts)
        print(f"wrote {count} records to {path}")
    elif suffix == ".txt":
        with path.open("w") as f:
            f.writelines(plain_lines(records))
        print(f"wrote {path}")
    else:
        raise NbrelayError(f"cannot export to {path.name}: name a .txt, .jsonl or .ipynb file")
    return 0


def recover(args: argparse.Namespace) -> int:
    from nbformat import ValidationError

    from .notebook import read, recover, write

    path: Path = args.notebook
    if args.in_place and args.output:
        raise NbrelayError("pass either --in-place or -o, not both")
    try:
        notebook = read(path)
    except FileNotFoundError:
        raise NbrelayError(f"{path} does not exist") from None
    except Exception as exc:  # nbformat raises several kinds for a file it cannot read
        raise NbrelayError(f"cannot read {path} as a notebook: {exc}") from None
    client = Client()
    if args.kernel:
        kernel = client.kernel(args.kernel)
    else:
        ran = [k for k in client.kernels() if Path(k.get("notebook") or "").name == path.name]
        if not ran:
            raise NbrelayError(
                f"no kernel ran a notebook named {path.name}: say which with --kernel "
                "(`nbrelay ls` lists them)"
            )
        kernel = ran[0]  # the most recently active
    try:
        result = recover(notebook, client.history(kernel["kernel_id"]))
    except ValidationError as exc:  # the user's notebook: the outputs added are valid ones
        reason = str(exc).strip().splitlines()[0]
        raise NbrelayError(
            f"{path} is not a valid notebook, so nothing was written: {reason}"
        ) from None
    plural = "" if result.filled == 1 else "s"
    target = path if args.in_place else args.output or path.with_suffix(".recovered.ipynb")
    if args.in_place:
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
        print(f"kept the original as {backup}")
    write(result.notebook, target)
    name = Sanitiser(styles=False).feed(kernel["kernel_id"][:12])  # any hello's text
    print(
        f"filled {result.filled} cell{plural} from kernel {name} into {target}"
        + (f"; {result.unmatched} executions matched no cell" if result.unmatched else "")
    )
    return 0


# -- loading the extension in every kernel ------------------------------------------------

BEGIN = "# >>> nbrelay >>> (added by `nbrelay enable`; `nbrelay disable` removes it)"
END = "# <<< nbrelay <<<"
BLOCK = f'{BEGIN}\nc.InteractiveShellApp.extensions.append("nbrelay")\n{END}\n'


def _kernel_config() -> Path:
    from IPython.paths import get_ipython_dir

    return Path(get_ipython_dir()) / "profile_default" / "ipython_kernel_config.py"


def _without_block(text: str) -> str:
    start = text.find(BEGIN)
    if start < 0:
        return text
    end = text.find(END, start)
    end = len(text) if end < 0 else end + len(END)
    return (text[:start] + text[end:].lstrip("\n")).rstrip("\n") + "\n"


def enable(args: argparse.Namespace) -> int:
    path = _kernel_config()
    text = path.read_text() if path.exists() else ""
    if BEGIN in text:
        print(f"nbrelay is already enabled in {path}")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = text.rstrip("\n") + "\n\n" if text.strip() else "c = get_config()  # noqa\n\n"
    path.write_text(prefix + BLOCK)
    print(f"enabled: every new IPython kernel loads nbrelay ({path})")
    return 0


def disable(args: argparse.Namespace) -> int:
    path = _kernel_config()
    text = path.read_text() if path.exists() else ""
    if BEGIN not in text:
        print(f"nbrelay was not enabled in {path}")
        return 0
    path.write_text(_without_block(text))
    print(f"disabled: new kernels no longer load nbrelay ({path})")
    return 0


# -- a daemon on another machine ------------------------------------------------------------


def ssh(args: argparse.Namespace) -> int:
    from .remote import forward, remote_from

    remote = remote_from(args.host, args.ssh_command, args.remote_command)
    info = remote.daemon()
    port, pid, reused = forward(remote, info, args.port)
    token = info.get("token")
    url = f"http://127.0.0.1:{port}/"
    viewer = f"{url}#token={token}" if token else url
    how = "reusing the SSH forward" if reused else "forwarded over SSH"
    print(f"nbrelay on {args.host} ({info['url']}), {how}: local port {port} (ssh pid {pid})")
    print(f"    Viewer: {viewer}")
    print(f"    On {args.host}, in a notebook: %load_ext nbrelay")
    if not args.no_browser:
        import webbrowser

        webbrowser.open(viewer)
    return 0
