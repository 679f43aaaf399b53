"""The daemon: one ``trio.run``, one root nursery, mount and control socket.

:func:`run` opens the store, starts the control socket server and, unless it
only serves the socket, mounts the tree with pyfuse3; then it reports
readiness and runs until unmounted or signalled. Shutdown order:
``pyfuse3.main()`` returns once every in-flight request (and so every commit
in progress) has finished; the nursery is cancelled; uncommitted uploads are
discarded; the store is closed. Only then does the process exit, which is what
``axonfs umount`` waits for.

SIGTERM and SIGINT end the FUSE loop with ``pyfuse3.terminate()`` and unmount
cleanly. While files are being written into ``/incoming`` they first wait,
serving as usual, until every such file is closed (and so committed) or
``stop_timeout`` passes; a second signal stops at once. Uploads still open
then are discarded, each logged by name; their writers get ENOTCONN.

An unexpected error leaves the mount point dead on purpose: programs using it
then fail with ENOTCONN instead of writing into the directory beneath.
``axonfs mount``/``umount`` clean such mount points up.

A marker ``<store>/run/daemon.pid`` (the daemon's pid) exists while a daemon
runs and is removed by a clean stop. Finding it at start means the previous
daemon died abruptly (SIGKILL, power loss); this is logged. Repairing the
store after such a crash is the store's job: opening it settles an
interrupted commit (:mod:`axonfs.store.intent`) and sweeps stale spools.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyfuse3
import trio
import trio.lowlevel

from axonfs import systemd
from axonfs.axon import Axon
from axonfs.backends.base import BlobBackend
from axonfs.config import WGET_MAX_BYTES, FetchOptions, control_socket
from axonfs.ctlserver import ControlServer, serve_control
from axonfs.errors import MountFailed
from axonfs.fsutil import raise_descriptor_limit
from axonfs.incoming import RETENTION_DEFAULT, Incoming
from axonfs.ops import FuseKernelCache, Operations
from axonfs.stats import Stats
from axonfs.store.store import Limits
from axonfs.telepath.config import TelepathConfig
from axonfs.vfs import TreeOptions, Vfs
from axonfs.writers import ProcWriters

if TYPE_CHECKING:
    from axonfs.hostsync import HostSync

log = logging.getLogger(__name__)

READAHEAD_KB = 1024
"""Read-ahead of the mount's bdi: 1 MiB requests double read throughput."""
MARKER_NAME = "daemon.pid"
FUSE_DEVICE = "/dev/fuse"
STOP_TIMEOUT = 60.0
"""Default of :attr:`DaemonConfig.stop_timeout`: well inside the units' TimeoutStopSec=120,
leaving time for the last commits before systemd's SIGKILL."""


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Everything a daemon run needs; built by :mod:`axonfs.mount` from the CLI."""

    store: Path
    mountpoint: Path | None = None
    """None: serve the control socket only (``axonfs serve``)."""
    allow_other: bool = False
    read_only: bool = False
    kernel_flags: frozenset[str] = frozenset()
    """Mount flags given with ``-o`` (``nosuid``, ``noatime``...), passed to libfuse."""
    allow_delete: bool = False
    incoming_retention: float = RETENTION_DEFAULT
    limits: Limits = Limits()
    backend: BlobBackend | None = None
    ctl_group: int | None = None
    http_proxy: str | None = None
    wget_max_bytes: int = WGET_MAX_BYTES
    """Largest body ``wget`` stores (0: no cap)."""
    readahead_kb: int = READAHEAD_KB
    metrics_listen: tuple[str, int] | None = None
    """Serve Prometheus metrics on this (host, port); None: no listener."""
    hosts_sync_interval: float | None = None
    """Seconds between applications of other hosts' change records (None: never;
    this host's own changes are published whenever the blobs live in S3)."""
    sync_interval: float = 0.0
    """Seconds a commit of small blobs may stay not durable (0: every call is
    durable when it returns); see :meth:`Axon.open <axonfs.axon.Axon.open>`."""
    telepath: TelepathConfig = TelepathConfig()
    """Network listeners for Telepath (the unix socket is always served)."""
    stop_timeout: float = STOP_TIMEOUT
    """Seconds SIGTERM/SIGINT wait for files being written to /incoming to be closed."""


class Daemon:
    """One run of the daemon; see the module docstring for the lifecycle."""

    def __init__(self, config: DaemonConfig, axon: Axon) -> None:
        self.config = config
        self.axon = axon
        self.socket_path = control_socket(config.store)
        self.ops: Operations | None = None
        self.control: ControlServer | None = None
        self.incoming: Incoming | None = None
        self.stats = Stats(axon, store=config.store)
        self._mounted = False
        self._stop = trio.Event()
        self.hosts: HostSync | None = None
        """Set on a shared bucket: publishes this host's changes, applies the others'."""
        if axon.backend.name == "s3":  # imported here: boto3 is slow to import
            from axonfs.backends.s3 import S3Backend
            from axonfs.hostsync import HostSync, SyncConfig

            assert isinstance(axon.backend, S3Backend)
            self.hosts = HostSync(
                axon, axon.backend, SyncConfig(interval=config.hosts_sync_interval)
            )
            self.stats.hosts = self.hosts

    async def run(self, ready: Callable[[], None]) -> None:
        async with trio.open_nursery() as nursery:
            await self._start_control(nursery)
            await self._start_telepath(nursery)
            await self._start_metrics(nursery)
            nursery.start_soon(self._watch_signals)
            if self.hosts is not None:
                nursery.start_soon(self.hosts.run)
            if self.config.mountpoint is None:
                _announce_ready(ready)
                await self._stop.wait()
            else:
                await self._serve_mount(nursery, ready)
            nursery.cancel_scope.cancel()
        systemd.notify("STOPPING=1")

    async def _start_control(self, nursery: trio.Nursery) -> None:
        self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # We hold the store lock, so a socket file left here is a dead daemon's.
        self.socket_path.unlink(missing_ok=True)
        self.control = await nursery.start(
            functools.partial(serve_control, ctl_group=self.config.ctl_group, stats=self.stats),
            self.axon,
            self.socket_path,
        )

    async def _start_telepath(self, nursery: trio.Nursery) -> None:
        from axonfs.telepath.server import serve_telepath

        urls = await nursery.start(
            functools.partial(serve_telepath, ctl_group=self.config.ctl_group),
            self.axon,
            self.config.store,
            self.config.telepath,
        )
        assert self.control is not None
        self.control.telepath_urls = tuple(urls)

    async def _start_metrics(self, nursery: trio.Nursery) -> None:
        if self.config.metrics_listen is not None:
            from axonfs.metrics_http import serve_metrics

            await nursery.start(serve_metrics, self.stats, *self.config.metrics_listen)

    async def _serve_mount(self, nursery: trio.Nursery, ready: Callable[[], None]) -> None:
        mountpoint = self.config.mountpoint
        assert mountpoint is not None
        kernel = FuseKernelCache()
        # Resolved before mounting: afterwards a stat() of the mount point
        # from this thread would wait for a reply only this thread can send.
        writers = ProcWriters(Path(await trio.to_thread.run_sync(os.path.realpath, mountpoint)))
        self.incoming = Incoming(
            self.axon, retention=self.config.incoming_retention, kernel=kernel, writers=writers
        )
        options = TreeOptions(
            allow_delete=self.config.allow_delete,
            socket_path=self.socket_path,
            daemon_pid=os.getpid(),
        )
        self.ops = Operations(Vfs(self.axon, self.incoming, options, kernel))
        self.stats.attach_operations(self.ops)  # times each request handler
        try:
            pyfuse3.init(self.ops, str(mountpoint), self._fuse_options())
        except RuntimeError as exc:  # libfuse printed the cause; pyfuse3 keeps none
            raise _mount_failure(mountpoint, exc) from None
        self._mounted = True
        clean = False
        try:
            await nursery.start(self.incoming.run_expiry)
            nursery.start_soon(self._finish_mount, ready)
            await pyfuse3.main()
            clean = True
        finally:
            self._mounted = False
            if self.ops.failsafe:
                log.error("there were unexpected errors during this run; see the log above")
            pyfuse3.close(unmount=clean)
            self.incoming.close()
        log.info("unmounted %s", mountpoint)

    async def _finish_mount(self, ready: Callable[[], None]) -> None:
        """Once the kernel's INIT is answered: tune read-ahead, then report ready.

        Read-ahead must be raised after INIT: the kernel caps it at INIT time
        to what was configured when the mount was made.
        """
        assert self.ops is not None and self.config.mountpoint is not None
        await self.ops.initialized.wait()
        await trio.lowlevel.checkpoint()  # let the INIT handler send its reply first
        _raise_readahead(self.config.mountpoint, self.config.readahead_kb)
        log.info("mounted %s on %s", self.config.store, self.config.mountpoint)
        _announce_ready(ready)

    def _fuse_options(self) -> set[str]:
        options = set(pyfuse3.default_options)  # default_permissions: the kernel checks modes
        options |= {"fsname=axonfs", "subtype=axonfs"}
        if self.config.allow_other:
            options.add("allow_other")
        if self.config.read_only:  # the kernel refuses every change with EROFS
            options.add("ro")
        return options | self.config.kernel_flags

    async def _watch_signals(self) -> None:
        draining = False
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    uploads = self.incoming.uploads() if self.incoming is not None else []
                    if draining or not uploads or not self._mounted:
                        log.info("received %s: stopping", name)
                        self.stop()
                        continue
                    draining = True
                    log.info(
                        "received %s: stopping once the %d files being written to "
                        "/incoming are closed (at most %g s; another signal stops now): "
                        "%s",
                        name,
                        len(uploads),
                        self.config.stop_timeout,
                        ", ".join(node.path for node in uploads[:10]),
                    )
                    nursery.start_soon(self._stop_when_uploads_done)

    async def _stop_when_uploads_done(self) -> None:
        assert self.incoming is not None
        with trio.move_on_after(self.config.stop_timeout) as waited:
            await self.incoming.wait_uploads_done()
        if waited.cancelled_caught:
            log.warning(
                "files still being written to /incoming after %g s: stopping anyway",
                self.config.stop_timeout,
            )
        else:
            log.info("every file being written to /incoming was closed: stopping")
        self.stop()

    def stop(self) -> None:
        """End the run: unmount (after in-flight requests) or stop serving."""
        if self._mounted:
            pyfuse3.terminate()
        self._stop.set()


async def run(config: DaemonConfig, ready: Callable[[], None]) -> None:
    """Run a daemon until it is unmounted or signalled.

    Args:
        config: what to serve and how.
        ready: called once the mount (if any) and the control socket are up.

    Raises:
        StoreLocked: another process has the store open.
    """
    old, new = raise_descriptor_limit()
    log.info("descriptor limit: %d (was %d)", new, old)
    async with AsyncExitStack() as stack:
        axon = await stack.enter_async_context(
            Axon.open(
                config.store,
                backend=config.backend,
                limits=config.limits,
                sync_interval=config.sync_interval,
            )
        )
        # Read by the control server (wget); not part of the Axon API itself.
        axon.fetch_options = FetchOptions(config.http_proxy, config.wget_max_bytes)
        marker, crashed = _mark_running(config.store)
        if crashed:
            log.info(
                "the previous daemon of %s stopped abruptly; the store has settled "
                "what it left unfinished",
                config.store,
            )
        daemon = Daemon(config, axon)
        await daemon.run(ready)
        failed = daemon.ops is not None and daemon.ops.failsafe
        if not failed:
            marker.unlink(missing_ok=True)


def _mount_failure(mountpoint: Path, exc: RuntimeError) -> MountFailed:
    """Name the cause of a failed mount: most often, no usable ``/dev/fuse``."""
    try:
        fd = os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        return MountFailed(
            f"cannot open {FUSE_DEVICE} ({error.strerror}): load the kernel module "
            "('modprobe fuse'), give a container the device ('--device /dev/fuse'), "
            "or run 'axonfs serve' to use the store without a mount",
            mountpoint=str(mountpoint),
        )
    os.close(fd)
    return MountFailed(
        f"the kernel refused to mount {mountpoint} ({exc}); see the log", mountpoint=str(mountpoint)
    )


def _announce_ready(ready: Callable[[], None]) -> None:
    ready()
    systemd.notify("READY=1")


def _marker_path(store: Path) -> Path:
    return store / "run" / MARKER_NAME


def _mark_running(store: Path) -> tuple[Path, bool]:
    """Create the running marker; return it and whether a dead daemon left one."""
    marker = _marker_path(store)
    marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    crashed = marker.exists()
    marker.write_text(f"{os.getpid()}\n")
    return marker, crashed


def _raise_readahead(mountpoint: Path, kilobytes: int) -> None:
    """Set the mount's read-ahead (root only; best effort).

    The device number comes from /proc/self/mountinfo: a stat() of our own
    mount point from this thread would wait for a reply we have yet to send.
    """
    from axonfs.mountinfo import find_mount

    entry = find_mount(mountpoint)
    if entry is None or kilobytes <= 0:
        return
    path = Path("/sys/class/bdi") / entry.device / "read_ahead_kb"
    try:
        path.write_text(f"{kilobytes}\n")
    except OSError as exc:
        log.info(
            "cannot raise read-ahead of %s to %d KiB (%s); reads will be slower",
            mountpoint,
            kilobytes,
            exc.strerror,
        )
    else:
        log.debug("read-ahead of %s (bdi %s) set to %d KiB", mountpoint, entry.device, kilobytes)
