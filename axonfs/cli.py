"""The ``axonfs`` command: one entry point, a subcommand per job.

Each subcommand lives in the module that does the job and registers itself
through a ``register(subparsers)`` function; this module only assembles them,
sets up logging, and turns :class:`QuietError` and store errors into a one-line
message and an exit status. argparse rather than a CLI framework: the
``axonfs ctl`` calls are run in shell loops, and a bare argparse start-up is
about 100 ms faster than Typer's.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from axonfs import __version__
from axonfs.backends import add_backend_arguments, backend_from_args
from axonfs.config import default_store
from axonfs.errors import AxonError, BadArg, StoreLocked, StoreUnavailable

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FALSE, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_FAILED = 0, 1, 2, 3, 4

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

# Modules that add subcommands; imported once the parser is built, since they
# import this module for its exit codes and helpers.
COMMAND_MODULES = ("axonfs.mount", "axonfs.ctl", "axonfs.telepath.command")


class QuietError(Exception):
    """A user-facing failure: print the message alone, exit with *exitcode*."""

    def __init__(self, message: str, exitcode: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def store_argument(parser: argparse.ArgumentParser, *, creates: bool = True) -> None:
    """Add the common ``--store DIR`` option; *creates*: the command makes a missing store."""
    parser.add_argument(
        "--store", type=Path, default=None, metavar="DIR",
        help="the store directory (default: $AXONFS_STORE, else ~/.local/share/axonfs"
             + ("; created on first use)" if creates else "; must exist)"))


def resolve_store(args: argparse.Namespace) -> Path:
    store: Path | None = args.store
    return (store if store is not None else default_store()).expanduser().absolute()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axonfs", formatter_class=HelpFormatter, epilog=EPILOG,
        description="axonfs keeps files by their SHA-256 (the Synapse Axon storage API)\n"
                    "and shows them as a filesystem: /by-sha256/, /history/, /incoming/.")
    parser.add_argument("--version", action="version", version=f"axonfs {__version__}")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="how much to log to stderr (default: info; journald's format "
                             "under systemd; change it live with 'axonfs ctl log-level')")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _register_fsck(commands)
    _register_recover(commands)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    from axonfs import settings

    settings.install(commands)
    return parser


def _register_fsck(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "fsck", formatter_class=HelpFormatter, help="check the store's index against its blobs",
        description="Check that every indexed blob exists, has its size and hashes to its\n"
                    "name, that every stored blob is indexed, and that the counters add up.\n"
                    "The store must not be open by a daemon.",
        epilog="exit status: 0 clean, 1 problems found (even if repaired), 3 no store there, "
               "store in use, or (--repair) not writable")
    store_argument(parser, creates=False)
    parser.add_argument("--repair", action="store_true",
                        help="quarantine corrupt blobs, drop rows of missing ones, index "
                             "verified orphans, recompute the counters")
    parser.add_argument("--quick", action="store_true",
                        help="check presence and sizes only, without re-hashing")
    add_backend_arguments(parser)
    parser.set_defaults(func=_run_fsck)


def existing_store(args: argparse.Namespace) -> Path:
    """The ``--store`` of a command that checks or repairs: it must already be one.

    Such a command never creates a store: on a mistyped path it would report
    on an empty store it just made.
    """
    from axonfs.store.store import STORE_MARKERS, is_store

    store = resolve_store(args)
    if not store.is_dir():
        raise QuietError(f"no store at {store} (no such directory); check --store",
                         EXIT_UNREACHABLE)
    if not is_store(store):
        raise QuietError(f"{store} is not an axonfs store (it has none of "
                         f"{', '.join(STORE_MARKERS)}); check --store", EXIT_UNREACHABLE)
    return store


def _run_fsck(args: argparse.Namespace) -> int:
    from axonfs.fsck import fsck, open_for_fsck

    store_dir = existing_store(args)
    try:
        opened = open_for_fsck(store_dir, backend_from_args(args, store_dir),
                               repair=args.repair)
    except StoreLocked as exc:  # 'axonfs ctl' has no fsck: the daemon must go first
        raise QuietError(f"the store {store_dir} is open by a running daemon (pid "
                         f"{exc.fields.get('pid', '?')}); stop it first with 'axonfs stop "
                         f"--store {store_dir}' (or 'axonfs umount' its mount point)",
                         EXIT_UNREACHABLE) from None
    with opened as store:
        report = fsck(store, repair=args.repair, quick=args.quick,
                      show_progress=sys.stderr.isatty())
    print(report.summary())
    return EXIT_OK if not report.problems else EXIT_FALSE


def _register_recover(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "recover", formatter_class=HelpFormatter,
        help="rebuild the index from the blobs (offline)",
        description="Index every blob the backend holds and the index lacks, as if just added\n"
                    "(new rows dated now); blobs already indexed are skipped. Use it after\n"
                    "losing index.lmdb. With a daemon running, use 'axonfs ctl recover'.")
    store_argument(parser, creates=False)
    verify = parser.add_mutually_exclusive_group()
    verify.add_argument("--verify", dest="verify", action="store_true", default=None,
                        help="re-hash every blob before adopting it (the default for local "
                             "blobs; on S3 it downloads every object)")
    verify.add_argument("--no-verify", dest="verify", action="store_false",
                        help="adopt blobs without re-hashing them (the default on S3)")
    add_backend_arguments(parser)
    parser.set_defaults(func=_run_recover)


def _run_recover(args: argparse.Namespace) -> int:
    import trio
    from tqdm import tqdm

    from axonfs.axon import Axon

    async def recover(store_dir: Path) -> int:
        async with Axon.open(store_dir, backend=backend_from_args(args, store_dir)) as axon:
            with tqdm(desc="recovering", unit="blob", disable=not sys.stderr.isatty()) as bar:
                def progress(listed: int, added: int) -> None:
                    bar.update(listed - bar.n)
                report = await axon.recover(verify=args.verify, progress=progress)
        print(f"listed {report.listed}, added {report.added}, already indexed "
              f"{report.skipped}, ignored {report.ignored}, corrupt {len(report.corrupt)}")
        return EXIT_OK if not report.corrupt else EXIT_FALSE

    store_dir = existing_store(args)
    try:
        return trio.run(recover, store_dir)
    except StoreLocked as exc:  # only opening raises it: the daemon can do this very job
        raise QuietError(f"the store {store_dir} is open by a running daemon (pid "
                         f"{exc.fields.get('pid', '?')}); recover through it with "
                         f"'axonfs ctl --store {store_dir} recover'", EXIT_UNREACHABLE) from None


def main(argv: Sequence[str] | None = None) -> int:
    from axonfs import log as logsetup
    from axonfs import settings

    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        settings.apply(parser, arguments)  # the config file's values become the defaults
    except QuietError as exc:
        print(f"axonfs: {exc}", file=sys.stderr)
        return exc.exitcode
    args = parser.parse_args(arguments)
    if getattr(args, "print_config", False):
        return settings.print_config(parser, args)
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
