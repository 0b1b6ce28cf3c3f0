"""The ``nbrelay`` command. Each flag maps onto a field of :class:`Settings`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from . import __version__
from .errors import NbrelayError
from .settings import Settings, default_db

COMMANDS = ("serve",)


def _env(name: str, default: object) -> object:
    return os.environ.get(name, default)


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
    serve.add_argument(
        "--host",
        default=_env("NBRELAY_HOST", "127.0.0.1"),
        help="address to listen on (env NBRELAY_HOST)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=_env("NBRELAY_PORT", 8765),
        help="port to listen on; 0 picks a free one (env NBRELAY_PORT)",
    )
    serve.add_argument(
        "--db",
        type=Path,
        default=_env("NBRELAY_DB", default_db()),
        help="SQLite database file (env NBRELAY_DB)",
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("NBRELAY_TOKEN"),
        help="the token clients must present (env NBRELAY_TOKEN) (default: a new random token)",
    )
    serve.add_argument(
        "--log-level",
        default=_env("NBRELAY_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (env NBRELAY_LOG_LEVEL)",
    )
    return parser


def _serve(args: argparse.Namespace) -> None:
    from .server import serve  # the daemon's stack is imported only when serving

    settings = Settings(host=args.host, port=args.port, db=args.db, log_level=args.log_level)
    if args.token:
        settings = replace(settings, token=args.token)
    serve(settings)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            _serve(args)
    except NbrelayError as exc:
        print(f"nbrelay: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
