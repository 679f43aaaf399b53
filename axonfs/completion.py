"""Shell completion for bash and zsh, generated from the argparse definitions by shtab.

``python -m axonfs.completion bash`` (or ``zsh``) prints the script; ``make
install`` installs both. shtab walks the same parsers ``axonfs --help``
prints, so every command, subcommand and option completes without a list to
keep in step. Options that take a path complete file or directory names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import shtab

SHELLS = ("bash", "zsh")


def mark_paths(parser: argparse.ArgumentParser) -> None:
    """Tell shtab which arguments are paths (``type=Path``), here and in every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                mark_paths(sub)
        elif action.type is Path:
            directory = action.metavar in ("DIR", "MOUNTPOINT")
            action.complete = shtab.DIRECTORY if directory else shtab.FILE  # type: ignore[attr-defined]


def script(shell: str) -> str:
    """The completion script of ``axonfs`` for *shell* (``bash`` or ``zsh``)."""
    from axonfs.cli import build_parser

    parser = build_parser()
    mark_paths(parser)
    return str(shtab.complete(parser, shell=shell))


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1 or arguments[0] not in SHELLS:
        print(f"usage: python -m axonfs.completion {{{','.join(SHELLS)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(script(arguments[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
