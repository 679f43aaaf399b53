"""The ``axonfs`` command: one entry point, a subcommand per job.

Each subcommand lives in the module that does the job and registers itself
through a ``register(subparsers)`` function that returns its parsers by name;
this module only assembles them, applies the config file
(:mod:`axonfs.settings`), sets up logging, and turns
:class:`~axonfs.cliutil.QuietError` and store errors into a one-line message and
an exit status. It is the top of the command-line layer: nothing imports it
but ``python -m axonfs`` and the tools that walk its parser (man page,
completion). What the command modules share is in :mod:`axonfs.cliutil`; the
daemon's options are declared in :mod:`axonfs.options`. argparse rather than a CLI framework: the
``axonfs ctl`` calls are run in shell loops, and a bare argparse start-up is
about 100 ms faster than Typer's.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from axonfs import __version__, ctl, mount, settings
from axonfs.cliutil import (
    EXIT_FAILED,
    EXIT_FALSE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    HelpFormatter,
    Parsers,
    QuietError,
    Subparsers,
    existing_store,
)
from axonfs.errors import AxonError, BadArg, StoreLocked, StoreUnavailable
from axonfs.options import TOP, Settings, add_options, backend_from_settings
from axonfs.telepath import command as telepath_command

log = logging.getLogger(__name__)

EPILOG = """\
exit status:
  0  done
  1  absent, false, or (fsck) problems found
  2  usage error
  3  the daemon or the store is unreachable: no store there (fsck, recover),
     a store that cannot be created, read-only (except for fsck without
     --repair), not ours to write, or in use by another process
  4  the call failed (mount: also /dev/fuse cannot be opened)

environment:
  AXONFS_STORE   the store directory (default ~/.local/share/axonfs)
  AXONFS_SOCKET  the control socket of the daemon 'axonfs ctl' talks to

Run 'axonfs COMMAND --help' for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``axonfs`` and all its subcommands."""
    return _build()[TOP]


def _build() -> Parsers:
    parser = argparse.ArgumentParser(
        prog="axonfs",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
        description="axonfs keeps files by their SHA-256 (the Synapse Axon storage API)\n"
        "and shows them as a filesystem: /by-sha256/, /history/, /incoming/.",
    )
    parser.add_argument("--version", action="version", version=f"axonfs {__version__}")
    add_options(parser, TOP, "top")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands: Parsers = {TOP: parser}
    for register in (
        _register_fsck,
        _register_recover,
        mount.register,
        ctl.register,
        telepath_command.register,
    ):
        commands.update(register(subparsers))
    for name in settings.CONFIG_COMMANDS:
        settings.add_config_options(commands[name], name)
    return commands


def _register_fsck(commands: Subparsers) -> Parsers:
    parser = commands.add_parser(
        "fsck",
        formatter_class=HelpFormatter,
        help="check the store's index against its blobs",
        description="Check that every indexed blob exists, has its size and hashes to its\n"
        "name, that every stored blob is indexed, and that the counters add up.\n"
        "The store must not be open by a daemon.",
        epilog="exit status: 0 clean, 1 problems found (even if repaired), 3 no store there, "
        "store in use, or (--repair) not writable",
    )
    add_options(parser, "fsck", "store")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="quarantine corrupt blobs, drop rows of missing ones, index "
        "verified orphans, recompute the counters",
    )
    parser.add_argument(
        "--quick", action="store_true", help="check presence and sizes only, without re-hashing"
    )
    add_options(parser, "fsck", "backend")
    parser.set_defaults(func=_run_fsck)
    return {"fsck": parser}


def _run_fsck(args: argparse.Namespace) -> int:
    from axonfs.fsck import fsck, open_for_fsck

    chosen = Settings.from_namespace(args)
    store_dir = existing_store(chosen.store)
    try:
        opened = open_for_fsck(
            store_dir, backend_from_settings(chosen, store_dir), repair=args.repair
        )
    except StoreLocked as exc:  # 'axonfs ctl' has no fsck: the daemon must go first
        raise QuietError(
            f"the store {store_dir} is open by a running daemon (pid "
            f"{exc.fields.get('pid', '?')}); stop it first with 'axonfs stop "
            f"--store {store_dir}' (or 'axonfs umount' its mount point)",
            EXIT_UNREACHABLE,
        ) from None
    with opened as store:
        report = fsck(
            store, repair=args.repair, quick=args.quick, show_progress=sys.stderr.isatty()
        )
    print(report.summary())
    return EXIT_OK if not report.problems else EXIT_FALSE


def _register_recover(commands: Subparsers) -> Parsers:
    parser = commands.add_parser(
        "recover",
        formatter_class=HelpFormatter,
        help="rebuild the index from the blobs (offline)",
        description="Index every blob the backend holds and the index lacks, as if just added\n"
        "(new rows dated now); blobs already indexed are skipped. Use it after\n"
        "losing index.lmdb. With a daemon running, use 'axonfs ctl recover'.",
    )
    add_options(parser, "recover", "store")
    verify = parser.add_mutually_exclusive_group()
    verify.add_argument(
        "--verify",
        dest="verify",
        action="store_true",
        default=None,
        help="re-hash every blob before adopting it (the default for local "
        "blobs; on S3 it downloads every object)",
    )
    verify.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="adopt blobs without re-hashing them (the default on S3)",
    )
    add_options(parser, "recover", "backend")
    parser.set_defaults(func=_run_recover)
    return {"recover": parser}


def _run_recover(args: argparse.Namespace) -> int:
    import trio
    from tqdm import tqdm

    from axonfs.axon import Axon

    chosen = Settings.from_namespace(args)

    async def recover(store_dir: Path) -> int:
        async with Axon.open(store_dir, backend=backend_from_settings(chosen, store_dir)) as axon:
            with tqdm(desc="recovering", unit="blob", disable=not sys.stderr.isatty()) as bar:

                def progress(listed: int, added: int) -> None:
                    bar.update(listed - bar.n)

                report = await axon.recover(verify=args.verify, progress=progress)
        print(
            f"listed {report.listed}, added {report.added}, already indexed "
            f"{report.skipped}, ignored {report.ignored}, corrupt {len(report.corrupt)}"
        )
        return EXIT_OK if not report.corrupt else EXIT_FALSE

    store_dir = existing_store(chosen.store)
    try:
        return trio.run(recover, store_dir)
    except StoreLocked as exc:  # only opening raises it: the daemon can do this very job
        raise QuietError(
            f"the store {store_dir} is open by a running daemon (pid "
            f"{exc.fields.get('pid', '?')}); recover through it with "
            f"'axonfs ctl --store {store_dir} recover'",
            EXIT_UNREACHABLE,
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    from axonfs import log as logsetup

    commands = _build()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        settings.apply(commands, arguments)  # the config file's values become the defaults
    except QuietError as exc:
        print(f"axonfs: {exc}", file=sys.stderr)
        return exc.exitcode
    args = commands[TOP].parse_args(arguments)
    if args.command in settings.CONFIG_COMMANDS and args.print_config:
        return settings.print_config(args.command, Settings.from_namespace(args))
    logsetup.setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except QuietError as exc:
        print(f"axonfs: {exc}", file=sys.stderr)
        return exc.exitcode
    except BadArg as exc:  # an option's value, found wrong once combined with the others
        print(f"axonfs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AxonError as exc:
        print(f"axonfs: {exc}", file=sys.stderr)
        unreachable = isinstance(exc, (StoreLocked, StoreUnavailable))
        return EXIT_UNREACHABLE if unreachable else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
