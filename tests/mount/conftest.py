"""Fixtures for tests that mount a store through the real kernel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.daemon import MakeMount, MountDaemon, mount_daemons
from helpers.fuse import fuse_available, mounts_under, skip_tests_under
from helpers.s3server import moto, moto_server, new_bucket_name  # noqa: F401 - fixtures

pytestmark = pytest.mark.fuse


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not fuse_available():
        skip_tests_under(items, "mount", "needs /dev/fuse")


@pytest.fixture(scope="session", autouse=True)
def no_mount_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session if any test left an axonfs mount behind (only this
    session's own: a benchmark's mount elsewhere on the machine is not ours)."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    left = mounts_under(base, "fuse.axonfs")
    assert not left, f"mounts left behind: {sorted(left)}"


@pytest.fixture(params=["local", "s3"])
def backend_options(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Every mount test runs on local blob files and on S3 (a moto server)."""
    if request.param == "local":
        return ()
    endpoint: str = request.getfixturevalue("moto_server")
    return ("--s3-bucket", new_bucket_name(), "--s3-endpoint", endpoint)


@pytest.fixture
def make_mount(tmp_path: Path, backend_options: tuple[str, ...]) -> Iterator[MakeMount]:
    """Factory: ``make_mount(*options)`` mounts a fresh store; all are unmounted
    at the end, even on failure, and the daemon's log must hold no ERROR."""
    with mount_daemons() as daemons:

        def make(*options: str, name: str = "m", mount: bool = True) -> MountDaemon:
            return daemons.under(tmp_path / name, (*backend_options, *options), start=mount)

        yield make


@pytest.fixture
def mounted(make_mount: MakeMount) -> MountDaemon:
    """A fresh store mounted with default options."""
    return make_mount()


@pytest.fixture
def local_mount(tmp_path: Path) -> Iterator[MountDaemon]:
    """A local store, not yet mounted; unmounted at the end whatever happened, and
    the daemon's log must hold no ERROR."""
    with mount_daemons() as daemons:
        yield daemons.under(tmp_path / "m", start=False)
