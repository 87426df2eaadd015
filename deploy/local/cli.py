"""``pgprov-local``: the local helpers as one console script (the Makefile calls it).

    pgprov-local urls inventories/local.py     # the runtime and migrator URLs, no password
    pgprov-local reset inventories/dev.py      # drop the database (local and dev only)
    pgprov-local start|stop|status [.pgdata]   # the embedded server

Exit 0 on success, 2 on an error (one line); ``status`` exits 1 when the server is stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pgprov.audit.report import exit_code


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pgprov-local", description="Local helpers: URLs, reset, the embedded server."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("urls", "print an environment's connection URLs (passwords never printed)"),
        ("reset", "drop an environment's database (local and dev only); then make deploy"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("inventory", help="inventory file, e.g. inventories/local.py")
    for name, text in (
        ("start", "start the embedded server (make deploy does it too)"),
        ("stop", "stop the embedded server"),
        ("status", "say whether the embedded server runs (exit 1 when stopped)"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("root", nargs="?", default=".pgdata", help="default: .pgdata")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return exit_code("pgprov-local", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.command == "urls":
        from pgprov.local import urls

        return urls.main([args.inventory])
    if args.command == "reset":
        from pgprov.local import reset

        return reset.main([args.inventory])
    from pgprov.local import embedded

    return embedded.main([args.command, args.root])


if __name__ == "__main__":
    sys.exit(main())
