"""Fixtures for the operations tests: daemons started the way a service manager would.

* ``make_mount``: like tests/mount's, a factory of real mounts, each unmounted
  at the end even on failure (skipped without /dev/fuse).
* ``start_serve``: ``axonfs serve --foreground`` subprocesses (no FUSE),
  terminated at the end; the daemon's stderr goes to a log file.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.fuse import Mounted, axonfs_mounts, fuse_available
from helpers.s3server import (  # noqa: F401 - moto and moto_server are fixtures
    moto,
    moto_server,
    new_bucket_name,
)

AXONFS = [sys.executable, "-m", "axonfs"]
START_TIMEOUT = 20.0

needs_fuse = pytest.mark.skipif(not fuse_available(), reason="needs /dev/fuse")


def run_axonfs(*args: str | Path, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``axonfs ARGS`` to completion; never raises on a non-zero status."""
    return subprocess.run([*AXONFS, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def wait_for(predicate: Callable[[], object], timeout: float = START_TIMEOUT,
             what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def socket_answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(2)
            probe.connect(str(path))
            return bool(probe.recv(4))
    except OSError:
        return False


@dataclass
class Served:
    """A running ``axonfs serve --foreground``."""

    store: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.store / "run" / "ctl.sock"

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_axonfs("ctl", "--socket", self.socket, *args)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: ``start_serve(*options, store=None)``; every daemon is stopped at the end."""
    started: list[Served] = []

    def start(*options: str | Path, store: Path | None = None,
              env: dict[str, str] | None = None) -> Served:
        store = store or tmp_path / f"store{len(started)}"
        log = tmp_path / f"serve{len(started)}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [*AXONFS, "serve", "--store", str(store), "--foreground", *map(str, options)],
                stdout=output, stderr=output, stdin=subprocess.DEVNULL, env=env)
        served = Served(store, log, process)
        started.append(served)
        wait_for(lambda: socket_answers(served.socket) or process.poll() is not None,
                 what="the control socket")
        assert process.poll() is None, f"serve exited:\n{served.log_text()}"
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def make_mount(tmp_path: Path) -> Iterator[Callable[..., Mounted]]:
    """Factory: ``make_mount(*options)`` mounts a fresh store; all unmounted at the end."""
    if not fuse_available():
        pytest.skip("needs /dev/fuse")
    before = set(axonfs_mounts())
    made: list[Mounted] = []

    def make(*options: str, name: str = "m") -> Mounted:
        mounted = Mounted(tmp_path / name, tuple(options))
        made.append(mounted)
        mounted.mount()
        return mounted

    yield make
    for mounted in made:
        mounted.close()
    assert set(axonfs_mounts()) <= before, "a mount was left behind"
    problems = [line for mounted in made for line in mounted.log_problems()]
    assert not problems, "the daemon logged errors:\n" + "\n".join(problems)


def metrics_port(log: str) -> int:
    """The port the daemon's metrics listener reported in its log."""
    match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log)
    assert match, f"no metrics listener in the log:\n{log}"
    return int(match.group(1))


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points axonfs at another daemon or systemd."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("AXONFS_SOCKET", "AXONFS_STORE", "AXONFS_CACHE_DIR", "NOTIFY_SOCKET",
                          "JOURNAL_STREAM", "INVOCATION_ID")}
    env.update(extra)
    return env
