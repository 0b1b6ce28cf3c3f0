"""The ``nbrelay`` command. Each flag maps onto a field of :class:`Settings`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from . import __version__, commands
from .errors import NbrelayError
from .settings import Settings, default_db, parse_duration, parse_size, read_token_file

COMMANDS = (
    "serve",
    "status",
    "stop",
    "ls",
    "tail",
    "export",
    "recover",
    "enable",
    "disable",
    "ssh",
)
T = TypeVar("T")


def _env(name: str, default: object) -> object:
    return os.environ.get(name, default)


def _flag_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse type: its ValueError message is shown as it is."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


_size = _flag_type(parse_size)
_duration = _flag_type(parse_duration)


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbrelay",
        description="Keep every output of your Jupyter kernels. "
        "Without a command, `nbrelay` is `nbrelay serve`.",
    )
    parser.add_argument("--version", action="version", version=f"nbrelay {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the relay daemon (the default)",
        description="Run the relay daemon in the foreground.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = serve.add_argument
    add(
        "--host",
        default=_env("NBRELAY_HOST", "127.0.0.1"),
        help="address to listen on (env NBRELAY_HOST)",
    )
    add(
        "--port",
        type=int,
        default=_env("NBRELAY_PORT", 8765),
        help="port to listen on; 0 picks a free one (env NBRELAY_PORT)",
    )
    add(
        "--base-url",
        default=_env("NBRELAY_BASE_URL", "/"),
        help="path prefix to serve under, e.g. /nbrelay/ behind a reverse proxy that keeps it "
        "(env NBRELAY_BASE_URL)",
    )
    add(
        "--db",
        type=Path,
        default=_env("NBRELAY_DB", default_db()),
        help="SQLite database file (env NBRELAY_DB)",
    )
    add(
        "--max-size",
        type=_size,
        default=_env("NBRELAY_MAX_SIZE", "1GB"),
        help="prune the oldest records once the database uses more; 0: no limit "
        "(env NBRELAY_MAX_SIZE)",
    )
    add(
        "--max-age",
        type=_duration,
        default=_env("NBRELAY_MAX_AGE", "7d"),
        help="prune records older than this (7d, 12h, 30m, seconds); 0: no limit "
        "(env NBRELAY_MAX_AGE)",
    )
    add(
        "--durability",
        choices=["normal", "full"],
        default=_env("NBRELAY_DURABILITY", "normal"),
        help="normal: what is acknowledged survives a crash of the daemon; full: also a power "
        "loss, at a cost in speed (env NBRELAY_DURABILITY)",
    )
    add(
        "--token-file",
        type=Path,
        default=argparse.SUPPRESS,  # read in _token, with NBRELAY_TOKEN
        help="a file only you can read that holds the token clients must present "
        "(env NBRELAY_TOKEN_FILE, or the token itself in NBRELAY_TOKEN) "
        "(default: a new random token)",
    )
    add("--token", help=argparse.SUPPRESS)  # refused in _token: see there
    add(
        "--unsafe-no-token",
        action="store_true",
        default=bool(os.environ.get("NBRELAY_UNSAFE_NO_TOKEN")),
        help="require no token at all: anyone who can reach the port reads every output; "
        "loopback only (env NBRELAY_UNSAFE_NO_TOKEN)",
    )
    add(
        "--allow-origin",
        action="append",
        default=_list("NBRELAY_ALLOW_ORIGIN"),
        metavar="ORIGIN",
        help="a browser origin allowed besides the daemon's own, e.g. https://hub.example.com; "
        "repeatable (env NBRELAY_ALLOW_ORIGIN, comma-separated)",
    )
    add(
        "--allow-host",
        action="append",
        default=_list("NBRELAY_ALLOW_HOST"),
        metavar="HOST",
        help="a Host name allowed besides loopback ones, e.g. behind a proxy; repeatable "
        "(env NBRELAY_ALLOW_HOST, comma-separated)",
    )
    add(
        "--max-frame-bytes",
        type=_size,
        default=_env("NBRELAY_MAX_FRAME_BYTES", "8MiB"),
        help="largest WebSocket frame accepted (env NBRELAY_MAX_FRAME_BYTES)",
    )
    add(
        "--max-output-bytes",
        type=_size,
        default=_env("NBRELAY_MAX_OUTPUT_BYTES", "4MiB"),
        help="largest output stored whole; larger ones are stored cut, with a marker "
        "(env NBRELAY_MAX_OUTPUT_BYTES)",
    )
    add(
        "--max-viewers",
        type=int,
        default=_env("NBRELAY_MAX_VIEWERS", 64),
        help="viewer connections at once (env NBRELAY_MAX_VIEWERS)",
    )
    add(
        "--max-kernels",
        type=int,
        default=_env("NBRELAY_MAX_KERNELS", 64),
        help="kernel connections at once (env NBRELAY_MAX_KERNELS)",
    )
    add(
        "--max-connections",
        type=int,
        default=_env("NBRELAY_MAX_CONNECTIONS", 1000),
        help="TCP connections at once, of any kind; at the limit, the one that has waited "
        "longest for a request makes room (env NBRELAY_MAX_CONNECTIONS)",
    )
    add(
        "--request-timeout",
        type=_duration,
        default=_env("NBRELAY_REQUEST_TIMEOUT", "10s"),
        help="time a connection has to send a whole request, from its start or its last "
        "response (env NBRELAY_REQUEST_TIMEOUT)",
    )
    add(
        "--log-level",
        default=_env("NBRELAY_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (env NBRELAY_LOG_LEVEL)",
    )
    add(
        "--detach",
        action="store_true",
        help="run in the background, logging to a file beside the database; return once it serves",
    )

    status = commands.add_parser("status", help="whether a daemon runs, and where")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    commands.add_parser("stop", help="stop the daemon this user runs, cleanly")
    commands.add_parser("ls", help="the kernels the daemon knows")
    kernel_help = "a kernel id, a unique prefix of one, or a notebook name"
    tail = commands.add_parser("tail", help="print a kernel's output in this terminal")
    tail.add_argument("kernel", nargs="?", help=kernel_help + " (default: the latest active)")
    tail.add_argument("--since", type=int, default=None, help="start after this seq")
    tail.add_argument(
        "-n",
        "--records",
        type=int,
        default=20,
        help="without --since: start this many outputs back (not lines; a status is no output)",
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    export = commands.add_parser(
        "export", help="write a kernel's output to a file: .txt, .jsonl or .ipynb"
    )
    export.add_argument("kernel", help=kernel_help)
    export.add_argument(
        "-o", "--output", type=Path, required=True, help="FILE.txt, .jsonl or .ipynb"
    )
    recover = commands.add_parser(
        "recover", help="put a kernel's recorded outputs back into your notebook"
    )
    recover.add_argument("notebook", type=Path, help="the .ipynb whose outputs were lost")
    recover.add_argument("--kernel", help=kernel_help + " (default: the one that ran NOTEBOOK)")
    recover.add_argument(
        "-o", "--output", type=Path, help="where to write (default: NAME.recovered.ipynb)"
    )
    recover.add_argument(
        "--in-place", action="store_true", help="overwrite NOTEBOOK, keeping NOTEBOOK.bak"
    )
    commands.add_parser("enable", help="load nbrelay in every IPython kernel of this user")
    commands.add_parser("disable", help="undo `nbrelay enable`")
    ssh = commands.add_parser(
        "ssh",
        help="open the viewer of HOST's daemon here, over SSH (starting it there if needed)",
    )
    ssh.add_argument("host", help="the SSH destination, as for ssh (user@host, or a config alias)")
    ssh.add_argument("--port", type=int, help="the local port to forward (default: a free one)")
    ssh.add_argument(
        "--remote-command",
        default=os.environ.get("NBRELAY_REMOTE_COMMAND", "nbrelay"),
        help="how to run nbrelay on HOST, e.g. ~/venv/bin/nbrelay "
        "(env NBRELAY_REMOTE_COMMAND) (default: nbrelay)",
    )
    ssh.add_argument(
        "--ssh-command",
        help="the ssh command, e.g. 'ssh -F config' (env NBRELAY_SSH_COMMAND) (default: ssh)",
    )
    ssh.add_argument("--no-browser", action="store_true", help="only print the viewer URL")
    return parser


def _token(args: argparse.Namespace) -> str | None:
    """The token from ``--token-file``, ``NBRELAY_TOKEN_FILE`` or ``NBRELAY_TOKEN``, if any.

    Not from the command line: every local user's ``ps`` shows a process's arguments, and a
    detached daemon would carry them for its life. The flag is refused, not ignored, so that a
    script that passes it does not get a daemon with another token than it thinks.
    """
    if args.token is not None:
        raise NbrelayError(
            "--token would show the token to every user of this machine (`ps` lists command "
            "lines): put it in a file only you can read and pass --token-file FILE, or set "
            "NBRELAY_TOKEN"
        )
    path = getattr(args, "token_file", None) or os.environ.get("NBRELAY_TOKEN_FILE")
    return read_token_file(Path(path)) if path else os.environ.get("NBRELAY_TOKEN") or None


def serve_args(args: argparse.Namespace) -> None:
    """Run the daemon in the foreground with the settings of parsed ``serve`` arguments."""
    from .server import serve  # the daemon's stack is imported only when serving

    token = _token(args)
    settings = Settings(
        host=args.host,
        port=args.port,
        base_url=args.base_url,
        db=args.db,
        durability=args.durability,
        max_size=args.max_size,
        max_age=args.max_age,
        unsafe_no_token=args.unsafe_no_token,
        allow_origins=tuple(args.allow_origin),
        allow_hosts=tuple(args.allow_host),
        max_frame_bytes=args.max_frame_bytes,
        max_output_bytes=args.max_output_bytes,
        max_viewers=args.max_viewers,
        max_kernels=args.max_kernels,
        max_connections=args.max_connections,
        request_timeout=args.request_timeout,
        log_level=args.log_level,
    )
    serve(settings if token is None else replace(settings, token=token))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve" and args.detach:
            _token(args)  # a bad token file is an error here, in the terminal, not in the log
            # The token, if any, goes on in the environment or as --token-file: never in argv.
            return commands.detach(args.db, [a for a in argv if a != "--detach"])
        if args.command == "serve":
            serve_args(args)
        else:
            return int(getattr(commands, args.command)(args))
    except NbrelayError as exc:
        print(f"nbrelay: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
