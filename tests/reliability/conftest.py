"""Fixtures of the reliability suite (crash, full disk, bad input, load, S3 faults).

* ``daemons``: a factory of :class:`~reliability.tools.Daemon`; every daemon it
  made is stopped and every mount undone at the end, even on failure, and the
  daemons' logs must hold no ERROR line or traceback.
* ``figures``: a session-wide dict the tests record their figures in (rounds,
  inputs, operations, losses). With ``AXONFS_RELIABILITY_REPORT=PATH`` set, the
  session writes them to PATH as the figures section of ``docs/RELIABILITY.md``
  (see ``report.py``).
* The session fails if an axonfs FUSE mount or a tmpfs made here is left behind.

Sizes and counts can be scaled with environment variables (each test names its
own), but the defaults are the issue's minimums and the whole suite stays
under about four minutes on two cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.fuse import fuse_available

from .tools import Daemon, mounts_of_type

pytestmark = pytest.mark.fuse

Figures = dict[str, dict[str, Any]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if fuse_available() and os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="the reliability suite needs /dev/fuse and root (tmpfs)")
    for item in items:
        if "tests/reliability" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No FUSE or tmpfs mount under this session's temporary directory survives it
    (other sessions on the machine may mount elsewhere meanwhile)."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    left = [path for path in mounts_of_type("fuse.axonfs") + mounts_of_type("fuse.powercut")
            + mounts_of_type("tmpfs")
            if path == base or path.startswith(base + "/")]
    assert not left, f"mounts left behind: {sorted(left)}"


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    recorded: Figures = {}
    yield recorded
    target = os.environ.get("AXONFS_RELIABILITY_REPORT")
    seconds = recorded.pop("_seconds", {}).get("total", 0.0)
    if target and recorded:
        from .report import write_report

        write_report(Path(target), recorded, seconds)


@pytest.fixture(autouse=True)
def _timed(figures: Figures) -> Iterator[None]:
    """Add up the time the reliability tests themselves take (for the report)."""
    started = time.monotonic()
    yield
    total = figures.setdefault("_seconds", {"total": 0.0})
    total["total"] += time.monotonic() - started


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(store: Path | None = None, mnt: Path | None | bool = True,
             options: tuple[str, ...] = (), name: str = "d") -> Daemon:
        mount_point: Path | None
        if mnt is True:
            mount_point = tmp_path / f"{name}-mnt"
        elif mnt is False:
            mount_point = None
        else:
            mount_point = mnt  # type: ignore[assignment]
        daemon = Daemon(store or tmp_path / f"{name}-store", mount_point,
                        tmp_path / f"{name}.log", options)
        made.append(daemon)
        return daemon

    yield make
    problems: list[str] = []
    for daemon in made:
        daemon.close()
        problems += daemon.problems()
    assert not problems, "a daemon logged errors:\n" + "\n".join(problems[:40])
