"""Fixtures for the operations tests: daemons started the way a service manager would.

* ``make_mount``: like tests/mount's, a factory of real mounts
  (:class:`~helpers.daemon.MountDaemon`), each unmounted at the end even on
  failure (skipped without /dev/fuse).
* ``start_serve``: ``axonfs serve --foreground`` subprocesses
  (:class:`~helpers.daemon.ServeDaemon`), terminated at the end; the daemon's
  output goes to a log file.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from helpers.daemon import MountDaemon, ServeDaemon, mount_daemons
from helpers.fuse import axonfs_mounts, fuse_available
from helpers.s3server import (  # noqa: F401 - moto and moto_server are fixtures
    moto,
    moto_server,
    new_bucket_name,
)

START_TIMEOUT = 20.0

needs_fuse = pytest.mark.skipif(not fuse_available(), reason="needs /dev/fuse")


def wait_for(
    predicate: Callable[[], object], timeout: float = START_TIMEOUT, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


class StartServe(Protocol):
    """``start_serve(*options, store=None, env=None)``: the ``start_serve`` fixture."""

    def __call__(
        self, *options: str | Path, store: Path | None = None, env: dict[str, str] | None = None
    ) -> ServeDaemon: ...


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[StartServe]:
    """Factory of ``axonfs serve --foreground`` daemons; every one is stopped at the end."""
    started: list[ServeDaemon] = []

    def start(
        *options: str | Path, store: Path | None = None, env: dict[str, str] | None = None
    ) -> ServeDaemon:
        store = store or tmp_path / f"store{len(started)}"
        log = tmp_path / f"serve{len(started)}.log"
        served = ServeDaemon.start(store, *options, log=log, env=env)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


class MakeOpsMount(Protocol):
    """``make_mount(*options, name="m")``: this directory's ``make_mount`` fixture."""

    def __call__(self, *options: str, name: str = "m") -> MountDaemon: ...


@pytest.fixture
def make_mount(tmp_path: Path) -> Iterator[MakeOpsMount]:
    """Factory: ``make_mount(*options)`` mounts a fresh store; all unmounted at the
    end, none may be left behind, and no daemon may log an error."""
    if not fuse_available():
        pytest.skip("needs /dev/fuse")
    before = set(axonfs_mounts())
    with mount_daemons() as daemons:

        def make(*options: str, name: str = "m") -> MountDaemon:
            return daemons.under(tmp_path / name, tuple(options))

        yield make
        daemons.close()
        assert set(axonfs_mounts()) <= before, "a mount was left behind"


def metrics_port(log: str) -> int:
    """The port the daemon's metrics listener reported in its log."""
    match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log)
    assert match, f"no metrics listener in the log:\n{log}"
    return int(match.group(1))


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points axonfs at another daemon or systemd."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in (
            "AXONFS_SOCKET",
            "AXONFS_STORE",
            "AXONFS_CACHE_DIR",
            "NOTIFY_SOCKET",
            "JOURNAL_STREAM",
            "INVOCATION_ID",
        )
    }
    env.update(extra)
    return env
