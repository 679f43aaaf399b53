"""Fixtures for tests that mount a store through the real kernel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.fuse import Mounted, axonfs_mounts, fuse_available
from helpers.s3server import moto, moto_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.fuse


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if fuse_available():
        return
    skip = pytest.mark.skip(reason="needs /dev/fuse")
    for item in items:
        if "tests/mount" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def no_mount_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session if any test left an axonfs mount behind (only this
    session's own: a benchmark's mount elsewhere on the machine is not ours)."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    left = [mount for mount in axonfs_mounts() if mount.startswith(base)]
    assert not left, f"mounts left behind: {sorted(left)}"


@pytest.fixture(params=["local", "s3"])
def backend_options(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Every mount test runs on local blob files and on S3 (a moto server)."""
    if request.param == "local":
        return ()
    from helpers.s3server import new_bucket_name

    endpoint = request.getfixturevalue("moto_server")
    return ("--s3-bucket", new_bucket_name(), "--s3-endpoint", endpoint)


@pytest.fixture
def make_mount(tmp_path: Path, backend_options: tuple[str, ...]
               ) -> Iterator[type[Mounted] | object]:
    """Factory: ``make_mount(*options)`` mounts a fresh store; all are unmounted
    at the end, even on failure, and the daemon's log must hold no ERROR."""
    made: list[Mounted] = []

    def make(*options: str, name: str = "m", mount: bool = True) -> Mounted:
        mounted = Mounted(tmp_path / name, (*backend_options, *options))
        made.append(mounted)
        if mount:
            mounted.mount()
        return mounted

    yield make
    problems: list[str] = []
    for mounted in made:
        mounted.close()
        problems += mounted.log_problems()
    assert not problems, "the daemon logged errors:\n" + "\n".join(problems)


@pytest.fixture
def mounted(make_mount) -> Mounted:  # type: ignore[no-untyped-def]
    """A fresh store mounted with default options."""
    return make_mount()  # type: ignore[no-any-return]
