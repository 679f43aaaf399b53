"""Running daemons for the tests, in three variants, each stopped even when a test fails.

* :class:`InProcessDaemon` (:func:`in_process_daemon`): an Axon and its control
  server inside the test's own trio run, for tests that look at the server's state.
* :class:`ServeDaemon`: ``axonfs serve --foreground`` as a child process of the
  test (no FUSE); :meth:`ServeDaemon.stop` terminates it.
* :class:`MountDaemon`: ``axonfs mount STORE MNT``, which returns once the mount
  and the control socket are ready while the daemon runs on, detached.
  :meth:`MountDaemon.close` unmounts and stops it whatever its state: fixtures
  make them through :func:`mount_daemons`, which closes every one at the end and
  fails the test if a daemon's log holds an error.

Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio
from helpers.cli import AXONFS, run_axonfs
from helpers.fuse import is_mounted, pid_alive, pid_gone, wait_until

from axonfs.axon import Axon
from axonfs.config import control_socket
from axonfs.ctlserver import ControlServer, serve_control

START_TIMEOUT = 30.0
"""How long a daemon may take to be ready."""
COMMAND_TIMEOUT = 60.0
"""How long ``axonfs mount`` / ``axonfs umount`` may take."""


def log_problems(log: Path) -> list[str]:
    """ERROR/CRITICAL lines and tracebacks in a daemon's log."""
    if not log.exists():
        return []
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if " ERROR " in line or " CRITICAL " in line or "Traceback" in line
    ]


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM *process*, SIGKILL it if it is still there after *timeout*; its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def socket_answers(path: Path) -> bool:
    """Whether a daemon accepts connections on *path* and says hello."""
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(2)
            probe.connect(str(path))
            return bool(probe.recv(4))
    except OSError:
        return False


# -- in-process ---------------------------------------------------------------------------


@dataclass
class InProcessDaemon:
    """An Axon and its control server running in the test's trio run."""

    axon: Axon
    server: ControlServer
    socket: Path


@contextlib.asynccontextmanager
async def in_process_daemon(store: Path, nursery: trio.Nursery) -> AsyncIterator[InProcessDaemon]:
    """Open *store* and serve its control socket in *nursery* until the block ends."""
    async with Axon.open(store) as axon:
        path = control_socket(store)
        server = await nursery.start(serve_control, axon, path)
        yield InProcessDaemon(axon, server, path)
        nursery.cancel_scope.cancel()


# -- axonfs serve --foreground ----------------------------------------------------------


@dataclass
class ServeDaemon:
    """A running ``axonfs serve --foreground``, a child of the test; its output goes to *log*."""

    store: Path
    log: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls,
        store: Path,
        *options: str | Path,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        wait_telepath: bool = False,
    ) -> ServeDaemon:
        """Start the daemon and return once its control socket answers.

        *log* defaults to ``STORE.log`` beside the store. With *wait_telepath*,
        also wait for the Telepath socket, which comes up after the control
        socket and sets the run directory's mode.
        """
        log = log or store.parent / f"{store.name}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [*AXONFS, "serve", "--store", str(store), "--foreground", *map(str, options)],
                stdout=output,
                stderr=output,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        daemon = cls(store, log, process)
        try:
            daemon._wait_ready(wait_telepath)
        except BaseException:
            daemon.stop()
            raise
        return daemon

    def _wait_ready(self, wait_telepath: bool) -> None:
        ready: list[Callable[[], bool]] = [lambda: socket_answers(self.socket)]
        if wait_telepath:
            ready.append((self.socket.parent / "telepath.sock").exists)
        deadline = time.monotonic() + START_TIMEOUT
        for check in ready:
            while not check():
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the daemon exited with {self.process.returncode}:\n{self.log_text()}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no daemon on {self.socket}")
                time.sleep(0.02)

    @property
    def socket(self) -> Path:
        return control_socket(self.store)

    @property
    def pid(self) -> int:
        return self.process.pid

    def env(self) -> dict[str, str]:
        """Environment for an ``axonfs ctl`` subprocess that finds this daemon by default."""
        env = dict(os.environ)
        env.pop("AXONFS_SOCKET", None)
        env["AXONFS_STORE"] = str(self.store)
        return env

    def ctl(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """``axonfs ctl --socket SOCKET ARGS`` to completion."""
        return run_axonfs("ctl", "--socket", self.socket, *args, timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def problems(self) -> list[str]:
        return log_problems(self.log)

    def stop(self) -> int:
        """SIGTERM (SIGKILL after 15 s) and wait; the exit status."""
        return stop_process(self.process, 15)


# -- axonfs mount -------------------------------------------------------------------------


@dataclass
class MountDaemon:
    """``axonfs mount`` of one store on *mnt*; the daemon runs detached.

    *log* is where the daemon logs (``--log``); None leaves the daemon's
    default, ``STORE/axonfs.log``. Log lines containing one of *tolerated*
    are expected (e.g. S3 errors during an outage).
    """

    store: Path
    mnt: Path
    log: Path | None = None
    options: tuple[str, ...] = ()
    tolerated: tuple[str, ...] = ()
    pid: int | None = None
    pids: list[int] = field(default_factory=list)
    """Every daemon :meth:`start` started, so that :meth:`close` stops them all."""

    def __post_init__(self) -> None:
        self.mnt.mkdir(parents=True, exist_ok=True)

    @classmethod
    def under(cls, root: Path, options: tuple[str, ...] = ()) -> MountDaemon:
        """A store ``ROOT/store`` to mount on ``ROOT/mnt``."""
        return cls(root / "store", root / "mnt", options=options)

    @property
    def socket(self) -> Path:
        return control_socket(self.store)

    @property
    def log_file(self) -> Path:
        return self.log or self.store / "axonfs.log"

    @property
    def backend_options(self) -> list[str]:
        """The ``--s3-*`` options among :attr:`options` (for fsck, recover...)."""
        picked: list[str] = []
        options = list(self.options)
        for i, option in enumerate(options):
            if option.startswith("--s3-"):
                picked.append(option)
                if "=" not in option and i + 1 < len(options):
                    picked.append(options[i + 1])
        return picked

    def path(self, *parts: str) -> Path:
        return self.mnt.joinpath(*parts)

    def start(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """``axonfs mount`` (raises if it fails); returns once the mount is ready."""
        log = ("--log", str(self.log)) if self.log is not None else ()
        result = run_axonfs(
            "mount",
            "--store",
            self.store,
            *log,
            *self.options,
            *extra,
            self.mnt,
            check=True,
            timeout=COMMAND_TIMEOUT,
        )
        self.pid = int(os.getxattr(self.mnt, "user.axonfs.pid"))
        self.pids.append(self.pid)
        return result

    def umount(self) -> None:
        """``axonfs umount``, which returns only once the daemon has exited."""
        run_axonfs("umount", self.mnt, check=True, timeout=COMMAND_TIMEOUT)
        assert not is_mounted(self.mnt)
        if self.pid is not None:
            assert not pid_alive(self.pid), "umount returned before the daemon exited"

    def stop(self) -> None:
        """``axonfs umount``, then wait for the daemon to be gone."""
        run_axonfs("umount", self.mnt, check=True, timeout=COMMAND_TIMEOUT)
        assert not is_mounted(self.mnt)
        if self.pid is not None:
            assert wait_until(functools.partial(pid_gone, self.pid), timeout=30), "daemon lingers"

    def kill(self) -> None:
        """SIGKILL the daemon and wait until it is gone (the mount stays, dead)."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        assert wait_until(functools.partial(pid_gone, self.pid), timeout=20)

    def alive(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def gone(self) -> bool:
        """Whether the daemon it started last has exited and left nothing mounted."""
        return self.pid is not None and not pid_alive(self.pid) and not is_mounted(self.mnt)

    def close(self) -> None:
        """Unmount and stop for sure, whatever the state (the fixture's teardown)."""
        if is_mounted(self.mnt):
            with contextlib.suppress(Exception):
                run_axonfs("umount", self.mnt, timeout=30)
            if is_mounted(self.mnt):
                subprocess.run(
                    ["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, check=False
                )
        for pid in self.pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not wait_until(functools.partial(pid_gone, pid), timeout=10):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    wait_until(functools.partial(pid_gone, pid), timeout=5)

    def problems(self) -> list[str]:
        """The error lines of the daemon's log, but for the tolerated ones."""
        return [
            line
            for line in log_problems(self.log_file)
            if not any(pattern in line for pattern in self.tolerated)
        ]


class MakeMount(Protocol):
    """A fixture's factory of mounts: ``make_mount(*options, name="m", mount=True)``."""

    def __call__(self, *options: str, name: str = "m", mount: bool = True) -> MountDaemon: ...


class MountDaemons:
    """The :class:`MountDaemon`\\ s of one test, to close together."""

    def __init__(self) -> None:
        self.made: list[MountDaemon] = []

    def add(self, daemon: MountDaemon) -> MountDaemon:
        self.made.append(daemon)
        return daemon

    def under(self, root: Path, options: tuple[str, ...] = (), start: bool = True) -> MountDaemon:
        """A fresh store under *root* (see :meth:`MountDaemon.under`), mounted if *start*."""
        daemon = self.add(MountDaemon.under(root, options))
        if start:
            daemon.start()
        return daemon

    def close(self) -> list[str]:
        """Close every daemon (each one even if another fails); their log problems."""
        with contextlib.ExitStack() as stack:
            for daemon in self.made:
                stack.callback(daemon.close)
        return [line for daemon in self.made for line in daemon.problems()]


@contextlib.contextmanager
def mount_daemons() -> Iterator[MountDaemons]:
    """Daemons to make; on the way out all are closed, and none may have logged an error."""
    daemons = MountDaemons()
    try:
        yield daemons
    finally:
        problems = daemons.close()
    assert not problems, "a daemon logged errors:\n" + "\n".join(problems[:40])
