"""What every ``axonfs`` command module shares: exit statuses, the user-facing
error, the help formatter and the ``--store`` option.

It sits below the command modules (:mod:`axonfs.cli`, :mod:`axonfs.mount`,
:mod:`axonfs.ctl`, ...) and imports none of them, so that they can all use it
without importing each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from axonfs.config import default_store

EXIT_OK, EXIT_FALSE, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_FAILED = 0, 1, 2, 3, 4

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What a command module's ``register()`` adds its subcommands to."""
Parsers: TypeAlias = dict[str, argparse.ArgumentParser]
"""Parsers by command name, as ``register()`` returns them."""


class QuietError(Exception):
    """A user-facing failure: print the message alone, exit with *exitcode*."""

    def __init__(self, message: str, exitcode: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def store_help(*, creates: bool) -> str:
    """The help of ``--store``; *creates*: the command makes a missing store."""
    return "the store directory (default: $AXONFS_STORE, else ~/.local/share/axonfs" + (
        "; created on first use)" if creates else "; must exist)"
    )


def store_argument(parser: argparse.ArgumentParser, *, creates: bool = True) -> None:
    """Add the common ``--store DIR`` option; *creates*: the command makes a missing store."""
    parser.add_argument(
        "--store", type=Path, default=None, metavar="DIR", help=store_help(creates=creates)
    )


def resolve_store(store: Path | None) -> Path:
    """The store directory an option names, else the default one, made absolute."""
    return (store if store is not None else default_store()).expanduser().absolute()


def existing_store(store: Path | None) -> Path:
    """The ``--store`` of a command that checks or repairs: it must already be one.

    Such a command never creates a store: on a mistyped path it would report
    on an empty store it just made.
    """
    from axonfs.store.store import STORE_MARKERS, is_store

    path = resolve_store(store)
    if not path.is_dir():
        raise QuietError(f"no store at {path} (no such directory); check --store", EXIT_UNREACHABLE)
    if not is_store(path):
        raise QuietError(
            f"{path} is not an axonfs store (it has none of "
            f"{', '.join(STORE_MARKERS)}); check --store",
            EXIT_UNREACHABLE,
        )
    return path
