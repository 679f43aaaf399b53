"""Fixtures of the reliability suite (crash, full disk, bad input, load, S3 faults).

* ``daemons``: a factory of :class:`~helpers.daemon.MountDaemon`; every daemon
  it made is stopped and every mount undone at the end, even on failure, and
  the daemons' logs must hold no ERROR line or traceback.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from helpers.daemon import MountDaemon, mount_daemons
from helpers.fuse import fuse_available, mounts_under, skip_tests_under

pytestmark = pytest.mark.fuse

Figures = dict[str, dict[str, Any]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not (fuse_available() and os.geteuid() == 0):
        skip_tests_under(
            items, "reliability", "the reliability suite needs /dev/fuse and root (tmpfs)"
        )


@pytest.fixture(scope="session", autouse=True)
def nothing_left_mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No FUSE or tmpfs mount under this session's temporary directory survives it
    (other sessions on the machine may mount elsewhere meanwhile)."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    left = mounts_under(base, "fuse.axonfs", "fuse.powercut", "tmpfs")
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


class MakeDaemon(Protocol):
    """``daemons(store=None, mnt=None, options=(), name="d")``: the ``daemons`` fixture."""

    def __call__(
        self,
        store: Path | None = None,
        mnt: Path | None = None,
        options: tuple[str, ...] = (),
        name: str = "d",
    ) -> MountDaemon: ...


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[MakeDaemon]:
    """Factory of daemons (not started) of ``NAME-store`` on ``NAME-mnt``, logging
    to ``NAME.log`` outside the store (the store may sit on a full disk)."""
    with mount_daemons() as made:

        def make(
            store: Path | None = None,
            mnt: Path | None = None,
            options: tuple[str, ...] = (),
            name: str = "d",
        ) -> MountDaemon:
            return made.add(
                MountDaemon(
                    store or tmp_path / f"{name}-store",
                    mnt or tmp_path / f"{name}-mnt",
                    tmp_path / f"{name}.log",
                    options,
                )
            )

        yield make
