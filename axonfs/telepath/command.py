"""``axonfs passwd``: add, change or delete a Telepath user of a store.

The password comes from stdin (``echo PW | axonfs passwd NAME``: the one
trailing newline ``echo`` adds is dropped) or, on a terminal, from a prompt
asked twice. The file is :mod:`axonfs.telepath.users`'s; a running daemon
uses the change for its next logins.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from axonfs.cliutil import (
    EXIT_FALSE,
    EXIT_OK,
    EXIT_USAGE,
    HelpFormatter,
    Parsers,
    QuietError,
    Subparsers,
    resolve_store,
    store_argument,
)


def register(commands: Subparsers) -> Parsers:
    """Add ``passwd`` to the ``axonfs`` command."""
    parser = commands.add_parser(
        "passwd",
        formatter_class=HelpFormatter,
        help="set or delete the password of a Telepath user",
        description="Set the password of user NAME for the daemon's Telepath network\n"
        "listeners (--telepath-listen tcp://... or ssl://...), who then connect\n"
        "as tcp://NAME:PASSWORD@HOST:PORT/. The password is read from stdin (a\n"
        "trailing newline is dropped) or asked for on a terminal. A running\n"
        "daemon applies the change to new connections.",
        epilog="exit status: 0 done, 1 (--delete) no such user, 2 usage error",
    )
    store_argument(parser)
    parser.add_argument("--delete", action="store_true", help="remove user NAME instead")
    parser.add_argument("name", metavar="NAME")
    parser.set_defaults(func=run)
    return {"passwd": parser}


def run(args: argparse.Namespace) -> int:
    from axonfs.telepath import users

    store = resolve_store(args.store)
    try:
        users.validate_name(args.name)
    except ValueError as exc:
        raise QuietError(str(exc), EXIT_USAGE) from None
    try:
        if args.delete:
            if not users.delete_user(store, args.name):
                print(f"axonfs: no Telepath user {args.name!r} in {store}", file=sys.stderr)
                return EXIT_FALSE
            return EXIT_OK
        users.set_password(store, args.name, _read_password())
    except users.UsersFileError as exc:
        raise QuietError(str(exc)) from None
    return EXIT_OK


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise QuietError("the passwords differ", EXIT_USAGE)
        password = first
    else:
        password = sys.stdin.readline()
        password = password.removesuffix("\n").removesuffix("\r")
    if not password:
        raise QuietError("empty password", EXIT_USAGE)
    return password
