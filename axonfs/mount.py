"""``axonfs mount``, ``axonfs umount`` and ``axonfs serve``.

``mount`` without ``--foreground`` starts the foreground daemon as a detached
child (``python -P -m axonfs ... --foreground --ready-fd N``) and returns once
the child writes ``READY`` to the pipe, i.e. once the mount and the control
socket are up; a child that fails first writes ``ERROR <message>``, which is
printed. The parent never opens the store or starts trio, so nothing forks
after LMDB or trio started. With ``--foreground`` the daemon runs in place
(systemd ``Type=notify``). ``serve`` is the same daemon without FUSE.

``umount`` unmounts (``fusermount3 -u``: refused while files are open) and
then waits until the daemon process has exited, i.e. finished its commits and
closed the store. Both commands detect a mount point left dead by a killed
daemon ("Transport endpoint is not connected"), detach it and say so.

This module is imported by every ``axonfs`` command, so it imports trio,
pyfuse3 and the store lazily.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import grp
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from axonfs.cliutil import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    HelpFormatter,
    Parsers,
    QuietError,
    Subparsers,
    resolve_store,
    store_argument,
)
from axonfs.config import LOG_NAME
from axonfs.errors import store_unavailable
from axonfs.mountinfo import find_mount
from axonfs.options import Settings, add_options, backend_from_settings
from axonfs.store.lock import LOCK_NAME

if TYPE_CHECKING:
    from axonfs.daemon import DaemonConfig
    from axonfs.telepath.config import TelepathConfig

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 120.0
"""Seconds ``axonfs mount`` waits for the detached daemon to become ready."""
PID_XATTR = "user.axonfs.pid"
_READY, _ERROR = b"READY", b"ERROR "
T = TypeVar("T")


def register(commands: Subparsers) -> Parsers:
    """Add ``mount``, ``umount``, ``serve`` and ``stop`` to the ``axonfs`` command."""
    return {
        "mount": _register_mount(commands),
        "umount": _register_umount(commands),
        "serve": _register_serve(commands),
        "stop": _register_stop(commands),
    }


# -- command line ----------------------------------------------------------------


def _daemon_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_options(parser, command, "store", "daemon", "backend")


def _register_mount(commands: Subparsers) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "mount",
        formatter_class=HelpFormatter,
        help="mount the store as a filesystem",
        description="Mount the store on MOUNTPOINT: /by-sha256/<hex> (read-only blobs),\n"
        "/history/YYYY-MM-DD/ (symlinks in added order), /history.log (grows),\n"
        "/incoming/ (writable: a file closed there becomes a blob).\n"
        "Returns once the mount and its control socket are ready.",
        epilog="exit status: 0 mounted, 2 usage, 3 store unusable (cannot be created, "
        "read-only, not writable) or in use by another process, 4 failed (e.g. "
        "/dev/fuse cannot be opened)",
    )
    _daemon_arguments(parser, "mount")
    add_options(parser, "mount", "mount")
    parser.set_defaults(func=_run_mount, kernel_flags=[])  # -o adds the kernel's flags
    return parser


def _register_umount(commands: Subparsers) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "umount",
        formatter_class=HelpFormatter,
        help="unmount and wait for the daemon",
        description="Unmount MOUNTPOINT and return once its daemon has finished every\n"
        "pending commit and exited. A mount point left dead by a killed\n"
        "daemon is detached.",
        epilog="exit status: 0 unmounted, 1 not mounted or not an axonfs mount, 4 failed "
        "(e.g. files still open)",
    )
    parser.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")
    parser.set_defaults(func=_run_umount)
    return parser


def _register_serve(commands: Subparsers) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "serve",
        formatter_class=HelpFormatter,
        help="run the daemon without a mount",
        description="Open the store and serve its control socket only (no FUSE).\n"
        "Returns once the socket is ready; stop it with 'axonfs stop' (or SIGTERM).",
        epilog="exit status: 0 ready, 3 store unusable (cannot be created, read-only, not "
        "writable) or in use by another process, 4 failed",
    )
    _daemon_arguments(parser, "serve")
    parser.set_defaults(func=_run_serve)
    return parser


def _register_stop(commands: Subparsers) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "stop",
        formatter_class=HelpFormatter,
        help="stop the daemon that has the store open",
        description="Stop the daemon (of 'axonfs serve' or 'axonfs mount') that holds the\n"
        "store, as SIGTERM does: it finishes every pending commit, unmounts if\n"
        "it had a mount, and exits. Returns once it has exited.",
        epilog="exit status: 0 stopped, 1 no daemon has the store open, 4 failed",
    )
    store_argument(parser, creates=False)
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        default=None,
        help="give up waiting after S seconds (the daemon goes on stopping)",
    )
    parser.set_defaults(func=_run_stop)
    return parser


# -- mount and serve ---------------------------------------------------------------


def _run_mount(args: argparse.Namespace) -> int:
    settings = Settings.from_namespace(args)
    if settings.mountpoint is None:
        raise QuietError(
            "no MOUNTPOINT: give one, or set 'mountpoint' in the --config file", EXIT_USAGE
        )
    mountpoint = _absolute(settings.mountpoint)
    _prepare_mountpoint(mountpoint, announce=not settings.ready_fd, nonempty=settings.nonempty)
    if not settings.foreground:
        return _start_detached(args.command, settings)
    return _run_foreground(settings, mountpoint)


def _run_serve(args: argparse.Namespace) -> int:
    settings = Settings.from_namespace(args)
    if not settings.foreground:
        return _start_detached(args.command, settings)
    return _run_foreground(settings, None)


def _prepare_mountpoint(mountpoint: Path, *, announce: bool, nonempty: bool = False) -> None:
    """Check MOUNTPOINT, detaching a dead mount left on it by a killed daemon.

    A directory that is not empty is refused unless *nonempty*: its files
    would be hidden while mounted, which is more often a wrong path than intent.
    """
    entry = find_mount(mountpoint)
    if entry is not None and not entry.is_axonfs:
        raise QuietError(f"{mountpoint} is already mounted ({entry.fstype})", EXIT_USAGE)
    state = probe_mount(mountpoint)
    if state == "dead":
        detach_dead_mount(mountpoint, announce=announce)
    elif state == "alive":
        raise QuietError(f"{mountpoint} is already mounted; 'axonfs umount' it first", EXIT_USAGE)
    if not mountpoint.is_dir():
        raise QuietError(f"{mountpoint} is not a directory", EXIT_USAGE)
    if not nonempty and _has_entries(mountpoint):
        raise QuietError(
            f"{mountpoint} is not empty; mount over it with --nonempty (or -o nonempty)", EXIT_USAGE
        )


def _has_entries(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is not None
    except OSError as exc:
        raise QuietError(f"cannot list {directory}: {exc.strerror}", EXIT_USAGE) from None


def probe_mount(mountpoint: Path) -> str:
    """``"none"``, ``"alive"`` or ``"dead"`` (axonfs mount whose daemon is gone).

    statvfs() always reaches the daemon (stat() may be answered from the
    kernel's attribute cache), so it tells a dead connection (ENOTCONN).
    Another filesystem is always ``"alive"``: it is not ours to detach.
    """
    entry = find_mount(mountpoint)
    if entry is None:
        return "none"
    if not entry.is_axonfs:
        return "alive"
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return "dead"
        raise QuietError(f"cannot use {mountpoint}: {exc.strerror}") from None
    return "alive"


def _run_foreground(settings: Settings, mountpoint: Path | None) -> int:
    import trio

    from axonfs import daemon

    if settings.log is not None:
        _log_to_file(settings.log)
    reporter = _ReadyReporter(settings.ready_fd)
    try:
        config = _daemon_config(settings, mountpoint)
        trio.run(daemon.run, config, reporter.ready)
    except BaseException as exc:
        cause = _sole_cause(exc)
        reporter.failed(str(cause) or type(cause).__name__)
        if cause is not exc:
            raise cause from exc  # the CLI maps it to its one line and exit status
        raise
    return EXIT_OK


def _sole_cause(exc: BaseException) -> BaseException:
    """The one exception inside nested one-exception groups (a nursery's wrapping)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _daemon_config(settings: Settings, mountpoint: Path | None) -> DaemonConfig:
    from axonfs.config import WGET_MAX_BYTES
    from axonfs.daemon import READAHEAD_KB, STOP_TIMEOUT, DaemonConfig
    from axonfs.incoming import RETENTION_DEFAULT
    from axonfs.store.store import Limits

    store = resolve_store(settings.store)
    return DaemonConfig(
        store=store,
        mountpoint=mountpoint,
        allow_other=settings.allow_other,
        read_only=settings.read_only,
        kernel_flags=frozenset(settings.kernel_flags),
        allow_delete=settings.allow_delete,
        incoming_retention=_or(settings.incoming_retention, RETENTION_DEFAULT),
        limits=Limits(max_bytes=settings.max_bytes, max_count=settings.max_count),
        backend=backend_from_settings(settings, store),
        ctl_group=_group_id(settings.ctl_group),
        http_proxy=settings.http_proxy,
        wget_max_bytes=_or(settings.wget_max_bytes, WGET_MAX_BYTES),
        readahead_kb=0 if settings.no_readahead else READAHEAD_KB,
        metrics_listen=_metrics_address(settings),
        hosts_sync_interval=settings.s3_sync_interval,
        sync_interval=(settings.sync_interval or 0) / 1000,
        telepath=_telepath_config(settings),
        stop_timeout=_or(settings.stop_timeout, STOP_TIMEOUT),
    )


def _or(value: T | None, default: T) -> T:
    """*value*, or *default* where the option was not given."""
    return default if value is None else value


def _telepath_config(settings: Settings) -> TelepathConfig:
    from axonfs.telepath.config import from_options

    try:
        return from_options(
            settings.telepath_listen or (),
            allow_remote=settings.telepath_allow_remote,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
        )
    except ValueError as exc:
        raise QuietError(f"--telepath-listen: {exc}", EXIT_USAGE) from None


def _metrics_address(settings: Settings) -> tuple[str, int] | None:
    from axonfs.metrics_http import parse_listen

    if not settings.metrics_listen:
        return None
    try:
        return parse_listen(settings.metrics_listen, allow_remote=settings.metrics_allow_remote)
    except ValueError as exc:
        raise QuietError(f"--metrics-listen: {exc}", EXIT_USAGE) from None


def _group_id(group: str | None) -> int | None:
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise QuietError(f"no such group: {group}", EXIT_USAGE) from None


def _log_to_file(path: Path) -> None:
    """Send the log to *path* instead of stderr (keeping the level)."""
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    )
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


class _ReadyReporter:
    """The child's end of the readiness pipe (a no-op without ``--ready-fd``)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def ready(self) -> None:
        self._send(_READY + b"\n")

    def failed(self, message: str) -> None:
        self._send(_ERROR + message.encode(errors="replace") + b"\n")

    def _send(self, data: bytes) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.write(fd, data)
        except OSError:
            pass  # the parent gave up waiting
        finally:
            os.close(fd)


def _start_detached(command: str, settings: Settings) -> int:
    """Start the foreground daemon as a detached child; wait until it is ready."""
    argv = sys.argv[1:]
    if command not in argv:
        raise QuietError(
            "cannot restart this command line as a daemon; use --foreground", EXIT_USAGE
        )
    # Options the daemon would refuse are refused here, before the store is created.
    _metrics_address(settings)
    _telepath_config(settings)
    _group_id(settings.ctl_group)
    store = resolve_store(settings.store)
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise store_unavailable(store, exc, "create") from None
    log_path = (settings.log or store / LOG_NAME).expanduser().absolute()
    try:
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed below, once passed on
    except OSError as exc:
        if settings.log is None:  # the store's own log: the store is not writable
            raise store_unavailable(store, exc, "write to") from None
        raise QuietError(f"cannot write the log {log_path}: {exc.strerror}", EXIT_USAGE) from None
    read_fd, write_fd = os.pipe()
    # -P: the working directory is not put on sys.path, so a folder named
    # "axonfs" there (a clone's parent, say) cannot shadow the installed package.
    child_argv = [
        sys.executable,
        "-P",
        "-m",
        "axonfs",
        *argv,
        "--foreground",
        "--ready-fd",
        str(write_fd),
        "--log",
        str(log_path),
    ]
    with log_file:
        child = subprocess.Popen(
            child_argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    os.close(write_fd)
    try:
        message = _read_until_eof(read_fd, STARTUP_TIMEOUT)
    finally:
        os.close(read_fd)
    if message.startswith(_READY):
        return EXIT_OK
    return _startup_failed(child, message, log_path)


def _startup_failed(child: subprocess.Popen[bytes], message: bytes, log_path: Path) -> int:
    try:
        status = child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise QuietError(
            f"the daemon was not ready after {STARTUP_TIMEOUT:.0f} s and was "
            f"stopped; see {log_path}"
        ) from None
    if message.startswith(_ERROR):
        text = message[len(_ERROR) :].decode(errors="replace").strip()
    else:
        text = f"the daemon exited with status {status} before it was ready"
    raise QuietError(f"{text} (log: {log_path})", status or EXIT_FAILED)


def _read_until_eof(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
        if b"\n" in chunk:
            break
    return b"".join(chunks)


# -- umount ------------------------------------------------------------------------


def _run_umount(args: argparse.Namespace) -> int:
    mountpoint = _absolute(args.mountpoint)
    entry = find_mount(mountpoint)
    if entry is None:
        raise QuietError(f"{mountpoint} is not mounted", 1)
    if not entry.is_axonfs:
        # fusermount3 run by root unmounts anything: refuse before it is reached.
        raise QuietError(
            f"{mountpoint} is not an axonfs mount (it is {entry.fstype}); left alone", 1
        )
    state = probe_mount(mountpoint)
    if state == "dead":
        detach_dead_mount(mountpoint, announce=True)
        return EXIT_OK
    pidfd = _daemon_pidfd(mountpoint)
    try:
        _fusermount(["-u", str(mountpoint)])
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the daemon has exited
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return EXIT_OK


def _run_stop(args: argparse.Namespace) -> int:
    store = resolve_store(args.store)
    try:
        pidfd = _store_daemon_pidfd(store)
    except PermissionError as exc:
        raise QuietError(f"cannot read the lock of {store}: {exc.strerror}") from None
    if pidfd is None:
        raise QuietError(f"no daemon has the store {store} open", 1)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        ready, _, _ = select.select([pidfd], [], [], args.timeout)  # readable once it exited
    except ProcessLookupError:
        ready = [pidfd]  # it exited on its own meanwhile
    except PermissionError:
        raise QuietError(f"not allowed to stop the daemon of {store} (another user's)") from None
    finally:
        os.close(pidfd)
    if not ready:
        raise QuietError(f"the daemon of {store} is still stopping after {args.timeout:g} s")
    return EXIT_OK


def _store_daemon_pidfd(store: Path) -> int | None:
    """A pidfd of the process holding *store*'s lock, or None if nobody holds it.

    The pid comes from the lock file; the lock is checked again once the
    pidfd is open, so a pid reused after the daemon exited is never signalled.
    """
    try:
        fd = os.open(store / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if not _locked(fd):
            return None
        try:
            pidfd = os.pidfd_open(int(os.pread(fd, 32, 0).decode().strip()))
        except (ValueError, ProcessLookupError):
            return None
        if not _locked(fd):
            os.close(pidfd)
            return None
        return pidfd
    finally:
        os.close(fd)


def _locked(fd: int) -> bool:
    """True if another process holds an exclusive flock on *fd*'s file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _absolute(path: Path) -> Path:
    """An absolute path without symlinks, as /proc/self/mountinfo spells it."""
    return Path(os.path.realpath(path.expanduser()))


def _daemon_pidfd(mountpoint: Path) -> int | None:
    """A pidfd of the mount's daemon (taken before unmounting: no pid reuse race)."""
    try:
        pid = int(os.getxattr(mountpoint, PID_XATTR))
        return os.pidfd_open(pid)
    except (OSError, ValueError):
        return None


def detach_dead_mount(mountpoint: Path, *, announce: bool) -> None:
    """Lazily unmount a mount point whose daemon is gone (ENOTCONN)."""
    _fusermount(["-u", "-z", str(mountpoint)])
    if announce:
        print(
            f"axonfs: {mountpoint} was left unusable by a daemon that stopped abruptly; "
            "unmounted it",
            file=sys.stderr,
        )
    log.debug("detached the dead mount at %s", mountpoint)


def _fusermount(options: list[str]) -> None:
    result = subprocess.run(["fusermount3", *options], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = result.stderr.strip().removeprefix("fusermount3: ")
        raise QuietError(message or f"fusermount3 {' '.join(options)} failed")
